//! Token statistics from text: counting a corpus through a Hugging Face tokenizer (streaming,
//! batches encoded in parallel), reading precomputed counts, turning counts into row weights,
//! and holding sentences out of the count for validation.

use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Lines encoded per batch: bounds memory whatever the corpus size.
const BATCH_LINES: usize = 4096;

/// A Hugging Face `tokenizer.json`, with padding and truncation switched off.
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
}

impl TextTokenizer {
    /// Loads `path` (the `tokenizer.json` format of the `tokenizers` library).
    pub fn from_file(path: &Path) -> Result<TextTokenizer> {
        let fail = |e: tokenizers::Error| Error::Corpus { path: path.into(), reason: format!("not a usable tokenizer.json: {e}") };
        let mut inner = tokenizers::Tokenizer::from_file(path).map_err(fail)?;
        inner.with_padding(None);
        inner.with_truncation(None).map_err(fail)?;
        Ok(TextTokenizer { inner, path: path.into() })
    }

    /// Token ids of each text, special tokens (e.g. `[CLS]`, `[SEP]`) included as a model
    /// would see them.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let encodings = self.inner.encode_batch(texts.to_vec(), true).map_err(|e| Error::Corpus {
            path: self.path.clone(),
            reason: format!("tokenizing failed: {e}"),
        })?;
        Ok(encodings.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tokenizer as the text of a `tokenizer.json` (what [`crate::prior::Prior`] reads).
    pub fn to_json(&self) -> Result<String> {
        self.inner.to_string(false).map_err(|e| Error::Corpus { path: self.path.clone(), reason: format!("cannot serialize the tokenizer: {e}") })
    }

    /// The id used to pad sequences: the tokenizer's pad token if it names one, else 0.
    pub fn pad_id(&self) -> u32 {
        ["[PAD]", "<pad>", "<|pad|>", "<|endoftext|>"].iter().find_map(|t| self.inner.token_to_id(t)).unwrap_or(0)
    }
}

/// What counting a corpus found.
#[derive(Debug, Clone, PartialEq)]
pub struct CorpusCounts {
    /// Occurrences of each token id, `[n]` (the table's rows), in the counted documents.
    pub counts: Vec<u64>,
    /// Tokens counted in all.
    pub tokens: u64,
    /// Tokens whose id is not a row of the table (not counted in `counts`).
    pub out_of_table: u64,
    /// Lines read (counted or held out).
    pub lines: u64,
    /// Files read, and files skipped as not text.
    pub files: usize,
    pub skipped_files: Vec<PathBuf>,
    /// Documents read (whole files, or contiguous blocks of a large file), and those held out.
    pub documents: usize,
    pub held_out_documents: usize,
    /// Held-out sentences (from held-out documents, never counted), at most the asked number,
    /// in a seeded order.
    pub held_out: Vec<String>,
}

/// How to hold text out of the count: whole documents, so the held-out text has tokens the
/// count never saw, as live text does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Holdout {
    /// Share of the documents held out (one in `round(1 / fraction)`, at a seeded place in each
    /// run of that many; 0: none, 1: all). A document is a file, or a contiguous block of a
    /// file larger than a fiftieth of the corpus (at least 1 KiB), so that a corpus of one
    /// large file still has documents to hold out.
    pub fraction: f64,
    /// Held-out sentences kept for validation at most.
    pub max: usize,
}

impl Default for Holdout {
    fn default() -> Self {
        Holdout { fraction: 0.1, max: 200 }
    }
}

/// Documents a corpus is cut into at least, when its files allow (see [`Holdout::fraction`]).
const MIN_DOCUMENTS: u64 = 50;

/// The files under `paths` (folders walked recursively, sorted for a fixed order).
pub fn corpus_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    fn walk(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        let meta = std::fs::metadata(path).map_err(|source| Error::Read { path: path.into(), source })?;
        if meta.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|source| Error::Read { path: path.into(), source })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            entries.sort();
            for e in entries {
                // Links to folders could loop: follow only links to files.
                if e.is_symlink() && e.is_dir() {
                    continue;
                }
                walk(&e, out)?;
            }
        } else if meta.is_file() {
            out.push(path.into());
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        walk(p, &mut out)?;
    }
    Ok(out)
}

/// Which documents are held out: one in every `period`, at a seeded place in each run.
struct DocumentRule {
    period: u64,
    seed: u64,
}

impl DocumentRule {
    fn new(fraction: f64, seed: u64) -> DocumentRule {
        let period = if fraction > 0.0 { (1.0 / fraction.min(1.0)).round().max(1.0) as u64 } else { 0 };
        DocumentRule { period, seed }
    }

    /// Whether document `index` (in corpus order) is held out.
    fn holds_out(&self, index: u64) -> bool {
        match self.period {
            0 => false,
            p => hash(self.seed, &(index / p).to_string()) % p == index % p,
        }
    }
}

/// Counts the tokens of every text file under `paths` for a table of `n` rows, holding out
/// whole documents as `holdout` says (which ones, by `seed`); held-out sentences come from
/// those. Files that are not UTF-8 text are skipped (and listed).
/// `progress(files_done, files_total, tokens)` is called after each batch.
pub fn count_corpus(
    tokenizer: &TextTokenizer,
    paths: &[PathBuf],
    n: usize,
    holdout: &Holdout,
    seed: u64,
    progress: &mut dyn FnMut(usize, usize, u64),
) -> Result<CorpusCounts> {
    let files = corpus_files(paths)?;
    if files.is_empty() {
        return Err(Error::Corpus { path: paths.first().cloned().unwrap_or_default(), reason: "holds no files".into() });
    }
    let mut out = CorpusCounts {
        counts: vec![0; n],
        tokens: 0,
        out_of_table: 0,
        lines: 0,
        files: 0,
        skipped_files: Vec::new(),
        documents: 0,
        held_out_documents: 0,
        held_out: Vec::new(),
    };
    // Documents: files, and blocks of a file over a fiftieth of the corpus (compressed files
    // counted at 4 times their size).
    let corpus_bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len() * if f.extension().is_some_and(|e| e == "gz") { 4 } else { 1 }))
        .sum();
    let block_bytes = (corpus_bytes / MIN_DOCUMENTS).max(1024) as usize;
    let rule = DocumentRule::new(holdout.fraction, seed);
    // The `max` held-out sentences with the smallest hashes: a max-heap of (hash, text).
    let mut kept: BinaryHeap<(u64, String)> = BinaryHeap::new();
    let mut batch: Vec<String> = Vec::with_capacity(BATCH_LINES);
    let count_batch = |batch: &mut Vec<String>, out: &mut CorpusCounts| -> Result<()> {
        let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
        for ids in tokenizer.encode(&refs)? {
            for id in ids {
                match out.counts.get_mut(id as usize) {
                    Some(c) => *c += 1,
                    None => out.out_of_table += 1,
                }
                out.tokens += 1;
            }
        }
        batch.clear();
        Ok(())
    };
    let mut held = false;
    for (done, file) in files.iter().enumerate() {
        let Some(mut reader) = open_text(file)? else {
            out.skipped_files.push(file.clone());
            continue;
        };
        out.files += 1;
        let mut raw = Vec::new();
        let mut in_document = block_bytes; // a new document starts with each file
        loop {
            raw.clear();
            let read = reader.read_until(b'\n', &mut raw).map_err(|source| Error::Read { path: file.clone(), source })?;
            if read == 0 {
                break;
            }
            if in_document >= block_bytes {
                held = rule.holds_out(out.documents as u64);
                out.documents += 1;
                out.held_out_documents += usize::from(held);
                in_document = 0;
            }
            in_document += read;
            let Ok(line) = std::str::from_utf8(&raw) else { continue };
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            out.lines += 1;
            if held {
                if is_sentence(line) {
                    let h = hash(seed, line);
                    if !kept.iter().any(|(kh, t)| *kh == h && t == line) {
                        kept.push((h, line.to_string()));
                        if kept.len() > holdout.max {
                            kept.pop();
                        }
                    }
                }
                continue;
            }
            batch.push(line.to_string());
            if batch.len() == BATCH_LINES {
                count_batch(&mut batch, &mut out)?;
                progress(done, files.len(), out.tokens);
            }
        }
        progress(done + 1, files.len(), out.tokens);
    }
    count_batch(&mut batch, &mut out)?;
    progress(files.len(), files.len(), out.tokens);
    out.held_out = kept.into_sorted_vec().into_iter().map(|(_, t)| t).collect();
    if out.tokens == 0 {
        return Err(Error::Corpus {
            path: paths.first().cloned().unwrap_or_default(),
            reason: format!(
                "no text to count in {} file(s) ({} skipped as not text, {} of {} documents held out)",
                files.len(),
                out.skipped_files.len(),
                out.held_out_documents,
                out.documents
            ),
        });
    }
    Ok(out)
}

/// A buffered reader of `path` (gunzipped when it ends in `.gz`), or `None` when the file does
/// not look like text (a NUL byte in its first 8 KiB).
fn open_text(path: &Path) -> Result<Option<Box<dyn BufRead>>> {
    let err = |source| Error::Read { path: path.into(), source };
    let file = File::open(path).map_err(err)?;
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut reader = BufReader::with_capacity(1 << 16, reader);
    let head = match reader.fill_buf() {
        Ok(head) => head,
        // A corrupt .gz is not text.
        Err(_) if path.extension().is_some_and(|e| e == "gz") => return Ok(None),
        Err(e) => return Err(err(e)),
    };
    if head.iter().take(8192).any(|&b| b == 0) {
        return Ok(None);
    }
    Ok(Some(Box::new(reader)))
}

/// Whether a line reads like a sentence worth holding out: several words, mostly letters.
fn is_sentence(line: &str) -> bool {
    let words = line.split_whitespace().count();
    let letters = line.chars().filter(|c| c.is_alphabetic()).count();
    (6..=60).contains(&words) && letters * 10 >= line.len() * 6
}

/// FNV-1a of the seed and the text: a stable hash (the same on every machine and version).
fn hash(seed: u64, text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Final mix so nearby texts spread over the whole range.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// `counts` `[n]` as the `id count` lines [`read_token_counts`] reads, ids with no count left out.
pub fn format_token_counts(counts: &[u64]) -> String {
    counts.iter().enumerate().filter(|(_, c)| **c > 0).map(|(id, c)| format!("{id} {c}\n")).collect()
}

/// Reads `id count` pairs, one per line (blank lines and `#` comments skipped), for a table
/// of `n` rows; repeated ids add up.
pub fn read_token_counts(path: &Path, n: usize) -> Result<Vec<u64>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.into(), source })?;
    let mut counts = vec![0u64; n];
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fail = |reason: String| Error::Corpus { path: path.into(), reason: format!("line {}: {reason}", i + 1) };
        let mut parts = line.split_whitespace();
        let (Some(id), Some(count), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(fail(format!("expected 'id count', found '{line}'")));
        };
        let id: usize = id.parse().map_err(|_| fail(format!("'{id}' is not a token id")))?;
        let count: u64 = count.parse().map_err(|_| fail(format!("'{count}' is not a count")))?;
        let slot = counts.get_mut(id).ok_or_else(|| fail(format!("token id {id} is outside the table's {n} rows")))?;
        *slot += count;
    }
    Ok(counts)
}

/// How token counts become row weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Weighting {
    /// Every row weighs the same (the plain method).
    None,
    /// `sqrt(count)`: frequent tokens matter more, without drowning the rest.
    Sqrt,
    /// `count`: the weight of a token is its share of the text.
    Linear,
}

/// Row weights from counts: `f(count) + floor * mean(f(count))`, with `f` given by
/// `weighting`; the floor keeps unseen tokens from being abandoned. `None` for
/// [`Weighting::None`].
pub fn weights(counts: &[u64], weighting: Weighting, floor: f64) -> Option<Vec<f32>> {
    let f = match weighting {
        Weighting::None => return None,
        Weighting::Sqrt => |c: u64| (c as f64).sqrt(),
        Weighting::Linear => |c: u64| c as f64,
    };
    let raw: Vec<f64> = counts.iter().map(|&c| f(c)).collect();
    let mean = raw.iter().sum::<f64>() / raw.len().max(1) as f64;
    // Weights stay positive even with no floor.
    let add = (floor * mean).max(mean * 1e-9).max(f32::MIN_POSITIVE as f64);
    Some(raw.into_iter().map(|w| (w + add) as f32).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_count_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("counts.txt");
        std::fs::write(&path, "# id count\n0 5\n2 7\n\n2 1\n").unwrap();
        assert_eq!(read_token_counts(&path, 3).unwrap(), vec![5, 0, 8]);
        std::fs::write(&path, "0 5\n3 1\n").unwrap();
        let e = read_token_counts(&path, 3).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("outside the table's 3 rows"), "{e}");
        std::fs::write(&path, "0 five\n").unwrap();
        assert!(read_token_counts(&path, 3).unwrap_err().to_string().contains("'five' is not a count"));
    }

    #[test]
    fn weights_follow_the_scheme_with_a_floor() {
        let counts = [0, 1, 4, 16];
        assert_eq!(weights(&counts, Weighting::None, 0.1), None);
        let w = weights(&counts, Weighting::Sqrt, 0.0).unwrap();
        assert!(w[0] > 0.0 && w[0] < 1e-6 && w[3] == 4.0, "{w:?}");
        // floor 0.5 * mean(0, 1, 2, 4) = 0.875
        assert_eq!(weights(&counts, Weighting::Sqrt, 0.5).unwrap(), vec![0.875, 1.875, 2.875, 4.875]);
        assert_eq!(weights(&counts, Weighting::Linear, 0.0).unwrap()[3], 16.0);
    }
}
