//! How much of a tokenizer's prior mass a corpus's counted rows hold
//! (`onnx_embcomp::prior::mass_seen`, the figure behind `prior::NARROW_COVERAGE`), and of the
//! rows counted fewer than a few times.
//!
//! `cargo run --release --example unseen_mass -- TOKENIZER.json ROWS CORPUS...`

use std::path::PathBuf;

use onnx_embcomp::data::DataOptions;
use onnx_embcomp::prior::{self, Prior};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: unseen_mass TOKENIZER.json ROWS CORPUS...");
        std::process::exit(2);
    }
    let tokenizer = PathBuf::from(&args[1]);
    let n: usize = args[2].parse().expect("ROWS is a number");
    let paths: Vec<PathBuf> = args[3..].iter().map(PathBuf::from).collect();
    let mut options = DataOptions::text(paths, tokenizer.clone());
    options.prior_share = 0.0;
    let data = options.count(n, 0, &mut |_, _, _| {}).expect("the corpus counts");
    let counts = data.stats.counts.expect("a corpus gives counts");
    let prior = Prior::from_file(&tokenizer, n).expect("the tokenizer loads");
    println!("prior {:?}; {} tokens counted; prior mass on the rows seen: {:.4}", prior.source, counts.iter().sum::<u64>(), prior::mass_seen(&prior, &counts));
    for below in [2u64, 5, 10, 100] {
        let rows: Vec<usize> = (0..n).filter(|&i| counts.get(i).copied().unwrap_or(0) < below).collect();
        let mass: f64 = rows.iter().map(|&i| prior.probabilities[i]).sum();
        println!("rows counted fewer than {below} times: {} holding {mass:.4} of the prior", rows.len());
    }
}
