//! The library speaks in settings, the command line in flags: no flag spelling in a string of
//! the library's sources outside the command line's own module (src/cli/).

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "cli") {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `--word` inside a string literal of a line that is not a comment.
fn flags_in_strings(line: &str) -> Vec<String> {
    let code = line.trim_start();
    if code.starts_with("//") {
        return Vec::new();
    }
    let mut found = Vec::new();
    let mut in_string = false;
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' if in_string => i += 1,
            '"' => in_string = !in_string,
            '-' if in_string && chars.get(i + 1) == Some(&'-') && chars.get(i + 2).is_some_and(|c| c.is_ascii_lowercase()) => {
                let word: String = chars[i..].iter().take_while(|c| c.is_ascii_lowercase() || **c == '-').collect();
                found.push(word);
            }
            _ => {}
        }
        i += 1;
    }
    found
}

#[test]
fn no_flag_spelling_in_the_library_outside_the_command_line() {
    let mut files = Vec::new();
    rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    assert!(files.len() > 20, "{files:?}");
    let mut found = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        // unit tests may name flags in their comments and strings: only the code before them
        let code = text.split("#[cfg(test)]").next().unwrap();
        for (n, line) in code.lines().enumerate() {
            for flag in flags_in_strings(line) {
                found.push(format!("{}:{}: {flag}", f.display(), n + 1));
            }
        }
    }
    assert!(found.is_empty(), "flag spellings in library strings:\n{}", found.join("\n"));
}

#[test]
fn the_scanner_finds_a_flag_in_a_string_and_not_in_a_comment() {
    assert_eq!(flags_in_strings(r#"let m = format!("pass --no-validate");"#), ["--no-validate"]);
    assert!(flags_in_strings("// pass --no-validate").is_empty());
    assert!(flags_in_strings("let x = a--b;").is_empty());
}
