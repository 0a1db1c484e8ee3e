//! Counting tokens in a corpus through a tokenizer, with held-out sentences.

use std::path::Path;

use onnx_embcomp::corpus::{Holdout, TextTokenizer, count_corpus};

use crate::{fixtures, tempdir};

/// Word-level tokenizer: [PAD] 0, [CLS] 1, [SEP] 2, [UNK] 3, then the, cat, sat, on, mat, dog.
fn tiny_tokenizer(dir: &Path) -> TextTokenizer {
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, fixtures::word_level_tokenizer(&["the", "cat", "sat", "on", "mat", "dog"])).unwrap();
    TextTokenizer::from_file(&path).unwrap()
}

#[test]
fn counts_are_exact_on_a_tiny_corpus() {
    let dir = tempdir();
    let tok = tiny_tokenizer(dir.path());
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(docs.join("sub")).unwrap();
    std::fs::write(docs.join("a.txt"), "The cat sat\n\nthe mat\n").unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, b"dog dog bird\n").unwrap();
    std::fs::write(docs.join("sub/b.txt.gz"), gz.finish().unwrap()).unwrap();
    std::fs::write(docs.join("image.bin"), [0u8, 1, 2, 0]).unwrap();
    let none = Holdout { fraction: 0.0, ..Holdout::default() };
    // A table of 9 rows: "dog" (id 9) falls outside it.
    let c = count_corpus(&tok, std::slice::from_ref(&docs), 9, &none, 0, &mut |_, _, _| {}).unwrap();
    // 3 lines, each wrapped in [CLS] ... [SEP]; "bird" is [UNK]
    assert_eq!(c.counts, vec![0, 3, 3, 1, 2, 1, 1, 0, 1]);
    assert_eq!((c.tokens, c.out_of_table, c.lines, c.files), (14, 2, 3, 2));
    assert_eq!(c.skipped_files, vec![docs.join("image.bin")]);
    assert!(c.held_out.is_empty());
}

#[test]
fn held_out_sentences_are_never_counted() {
    let dir = tempdir();
    let tok = tiny_tokenizer(dir.path());
    let lines: Vec<String> =
        (0..50).map(|i| format!("the cat sat on the mat {}", "dog ".repeat(i % 5 + 1)).trim().to_string()).collect();
    let file = dir.path().join("c.txt");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let all = Holdout { fraction: 1.0, max: 3 };
    let c = count_corpus(&tok, std::slice::from_ref(&file), 10, &all, 7, &mut |_, _, _| {});
    // Every line is a held-out sentence: nothing is left to count.
    assert!(c.unwrap_err().to_string().contains("no text to count"));
    let some = Holdout { fraction: 0.5, max: 100 };
    let c = count_corpus(&tok, std::slice::from_ref(&file), 10, &some, 7, &mut |_, _, _| {}).unwrap();
    // 5 distinct lines; held-out ones are distinct and each counted line adds one [CLS].
    assert!(!c.held_out.is_empty() && c.held_out.len() < 5, "{:?}", c.held_out);
    let held_copies = lines.iter().filter(|l| c.held_out.contains(l)).count() as u64;
    assert_eq!(c.counts[1], 50 - held_copies);
    let again = count_corpus(&tok, std::slice::from_ref(&file), 10, &some, 7, &mut |_, _, _| {}).unwrap();
    assert_eq!(again, c);
}
