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
fn held_out_documents_are_never_counted() {
    let dir = tempdir();
    // One word of its own in each of 20 files: its count says whether its file was counted.
    let words: Vec<String> = (0..20u8).map(|i| format!("x{}", char::from(b'a' + i))).collect();
    let mut vocab: Vec<&str> = vec!["the", "cat", "sat", "on", "mat"];
    vocab.extend(words.iter().map(String::as_str));
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, fixtures::word_level_tokenizer(&vocab)).unwrap();
    let tok = TextTokenizer::from_file(&path).unwrap();
    let docs = dir.path().join("docs");
    std::fs::create_dir(&docs).unwrap();
    for (i, w) in words.iter().enumerate() {
        let lines: Vec<String> = (0..5).map(|j| format!("the cat sat on the mat {}", format!("{w} ").repeat(j + 1)).trim().to_string()).collect();
        std::fs::write(docs.join(format!("{i:02}.txt")), lines.join("\n")).unwrap();
    }
    let n = 4 + vocab.len();
    let tenth = Holdout { fraction: 0.1, max: 100 };
    let c = count_corpus(&tok, std::slice::from_ref(&docs), n, &tenth, 7, &mut |_, _, _| {}).unwrap();
    // Each small file is a document; one in each run of ten is held out.
    assert_eq!((c.documents, c.held_out_documents), (20, 2));
    let held: Vec<&String> = words.iter().filter(|w| c.counts[4 + vocab.iter().position(|v| v == *w).unwrap()] == 0).collect();
    assert_eq!(held.len(), 2, "{:?}", c.counts);
    // Every held-out sentence is from a held-out file, and those files gave all theirs.
    for s in &c.held_out {
        assert!(held.iter().any(|w| s.ends_with(w.as_str())), "{s} is from a counted file");
    }
    assert_eq!(c.held_out.len(), 10);
    assert_eq!(c.tokens, 18 * 5 * 2 + 18 * (6 * 5 + 15));
    // The seed picks others, the same seed the same.
    let again = count_corpus(&tok, std::slice::from_ref(&docs), n, &tenth, 7, &mut |_, _, _| {}).unwrap();
    assert_eq!(again, c);
    let other = count_corpus(&tok, std::slice::from_ref(&docs), n, &tenth, 8, &mut |_, _, _| {}).unwrap();
    assert_ne!(other.counts, c.counts);
    // Every document held out: nothing is left to count.
    let all = Holdout { fraction: 1.0, max: 3 };
    let e = count_corpus(&tok, std::slice::from_ref(&docs), n, &all, 7, &mut |_, _, _| {}).unwrap_err().to_string();
    assert!(e.contains("no text to count") && e.contains("20 of 20 documents held out"), "{e}");
}

#[test]
fn one_large_file_is_cut_into_documents() {
    let dir = tempdir();
    let tok = tiny_tokenizer(dir.path());
    let lines: Vec<String> = (0..2000).map(|i| format!("the cat sat on the mat {}", "dog ".repeat(i % 5 + 1)).trim().to_string()).collect();
    let file = dir.path().join("c.txt");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let c = count_corpus(&tok, std::slice::from_ref(&file), 10, &Holdout::default(), 0, &mut |_, _, _| {}).unwrap();
    // About 50 blocks of contiguous lines, one in ten held out.
    assert!((45..=55).contains(&c.documents), "{}", c.documents);
    assert!((c.documents / 10..=c.documents / 10 + 1).contains(&c.held_out_documents), "{} of {}", c.held_out_documents, c.documents);
    // Each counted line adds one [CLS]; the held-out blocks' lines none (blocks of about 1/50).
    let held = 2000 - c.counts[1];
    let per_block = 2000 / c.documents as u64;
    assert!(held >= (per_block - 1) * c.held_out_documents as u64 && held <= (per_block + 1) * c.held_out_documents as u64, "{held}");
    assert!(!c.held_out.is_empty());
}
