//! The fuzz targets' bodies, shared by the cargo-fuzz binaries (`fuzz_targets/`) and by the
//! main test suite (`tests/it/fuzz_seeds.rs`), which runs every seed through them on each
//! `cargo test`, so the targets cannot rot unnoticed. Nothing may panic; errors are fine,
//! except a validation that finds the rewritten lookup differing from the stored rows.

#![allow(dead_code)] // each binary uses one body

use std::path::Path;

use onnx_embcomp::data::DataOptions;
use onnx_embcomp::inspect::Summary;
use onnx_embcomp::quant::Bits;
use onnx_embcomp::{
    Data, Error, HotTier, Method, Model, Options, Precision, Setting, Size, Storage, Subspaces, ValidateOptions, compress,
};

/// Larger tables make slow inputs without reaching new code.
const MAX_TABLE_ELEMENTS: usize = 200_000;

/// Validation (tract runs the original and the rewritten model) only on tables and graphs this
/// small: it is the slow part, and on large mutated graphs it mostly exercises tract.
const MAX_VALIDATED_ELEMENTS: usize = 4096;
const MAX_VALIDATED_NODES: usize = 8;

/// Bytes at the head of a `decode_find_rewrite` input that choose the setting ([`Choice`]);
/// the model is the rest.
pub const SELECTOR_BYTES: usize = 4;

/// Any bytes -> `Model::decode` -> graph view -> embedding search -> inspect summary.
pub fn decode_find(data: &[u8]) {
    let Ok(model) = Model::decode(bytes::Bytes::copy_from_slice(data), None, Path::new("fuzz.onnx")) else {
        return;
    };
    if let Ok(summary) = Summary::of(&model, None) {
        let _ = onnx_embcomp::cli::render::summary(&summary, true);
        let _ = summary.embedding.chosen();
    }
}

/// What the first [`SELECTOR_BYTES`] of an input choose (every combination, valid or not:
/// an invalid one must fail with an error).
///
/// - byte 0: bits 0-2 the method (plain, k subspaces of dimension j, k subspaces at a ratio,
///   k auto at a ratio, product codes; 5-7 plain again), bit 3 adaptive dimensions, bit 4
///   `allow_shared` (a tied table), bit 5 validation in tract (small models only; see
///   [`decode_find_rewrite`]), bits 6-7 the token statistics ([`Weights`]);
/// - byte 1: bits 0-1 the precision (8, 4, 2 bits, float), bits 2-3 the frequent tier's, bit 4
///   a frequent tier, bits 5-7 the block (32, 16, 8, 4, 1, 7, 64, 0);
/// - byte 2: bits 0-3 k (1 + value) or the sub-vector's length, bits 4-7 j (1 + value) or the
///   ratio ((1 + value) / 16, so 1.0 is out of range);
/// - byte 3: bits 0-2 the tier's mass, bits 3-7 the seed.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub setting: Setting,
    pub allow_shared: bool,
    pub validate: bool,
    pub weights: Weights,
    pub seed: u64,
}

/// Token statistics: none, weights given ([`Data::Given`]), or counts read from a file
/// ([`DataOptions::counts`]: only counts make a frequent tier).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weights {
    None,
    /// Zipf-like weights, given.
    Zipf,
    /// Zipf-like counts (some zero), in a count file.
    Counts,
    /// Given weights, one of them zero, NaN, negative or infinite: must be refused.
    Invalid,
}

impl Choice {
    pub fn of(selector: [u8; SELECTOR_BYTES]) -> Choice {
        let [b0, b1, b2, b3] = selector;
        let precision = |v: u8| match v & 3 {
            0 => Precision::Bits(Bits::B8),
            1 => Precision::Bits(Bits::B4),
            2 => Precision::Bits(Bits::B2),
            _ => Precision::Float,
        };
        let mut storage = Storage::default();
        storage.bits = precision(b1);
        storage.block = [32, 16, 8, 4, 1, 7, 64, 0][usize::from(b1 >> 5)];
        if b1 & 0x10 != 0 {
            let mass = [0.999, 0.9, 0.5, 1.0, 0.1, 0.0, 1.5, f64::NAN][usize::from(b3 & 7)];
            storage.hot = Some(HotTier { bits: precision(b1 >> 2), mass });
        }
        let k = usize::from(b2 & 0xF) + 1;
        let high = usize::from(b2 >> 4) + 1;
        let ratio = high as f64 / 16.0;
        let adaptive = b0 & 8 != 0;
        let method = match b0 & 7 {
            1 => Method::Subspaces { k: Subspaces::Fixed(k), size: Size::Dim(high), adaptive },
            2 => Method::Subspaces { k: Subspaces::Fixed(k), size: Size::Ratio(ratio), adaptive },
            3 => Method::Subspaces { k: Subspaces::Auto, size: Size::Ratio(ratio), adaptive },
            4 => Method::Codes { sub: k - 1, rotated: adaptive }, // 0 is invalid; rotated by the adaptive bit
            _ => Method::Plain,
        };
        let weights = [Weights::None, Weights::Zipf, Weights::Counts, Weights::Invalid][usize::from(b0 >> 6)];
        Choice {
            setting: Setting::new(method, storage),
            allow_shared: b0 & 0x10 != 0,
            validate: b0 & 0x20 != 0,
            weights,
            seed: u64::from(b3 >> 3),
        }
    }

    /// The token statistics of `n` rows, as chosen; a count file is written at `counts`.
    fn data(&self, n: usize, counts: &Path) -> Option<Data> {
        // a permutation of the rows by frequency (7919 is prime)
        let rank = |i: usize| 1 + (i * 7919) % n.max(1);
        let mut w: Vec<f32> = match self.weights {
            Weights::None => return None,
            Weights::Zipf | Weights::Invalid => (0..n).map(|i| 1.0 / rank(i) as f32).collect(),
            Weights::Counts => {
                let text: String = (0..n).map(|i| format!("{i} {}\n", (4 * n / rank(i)).saturating_sub(3))).collect();
                std::fs::write(counts, text).expect("the count file is written");
                return Some(Data::Count(DataOptions::counts(counts.to_path_buf(), None)));
            }
        };
        if self.weights == Weights::Invalid && n > 0 {
            w[(self.seed as usize) % n] = [0.0, f32::NAN, -1.0, f32::INFINITY][(self.seed as usize) % 4];
        }
        Some(Data::Given { weights: w, held_out: None })
    }
}

/// A selector for each storage method the targets must reach, for seeding a corpus and for
/// the tests: plain at 8/4/2 bits, subspaces at several k and bits, a frequent tier with given
/// weights, product codes, a tied table (`allow_shared`), and validated variants.
pub const SELECTORS: [[u8; SELECTOR_BYTES]; 14] = [
    [0x01, 0x00, 0x11, 0x00], // k = 2, j = 2, 8 bits (the old target's only setting)
    [0x00, 0x00, 0x00, 0x00], // plain, 8 bits
    [0x00, 0x01, 0x00, 0x00], // plain, 4 bits
    [0x00, 0x02, 0x00, 0x00], // plain, 2 bits
    [0x02, 0x01, 0x52, 0x08], // k = 3, ratio 6/16, 4 bits
    [0x09, 0x42, 0x23, 0x10], // k = 4, j = 3, adaptive, 2 bits, block 8
    [0x03, 0x03, 0x70, 0x18], // k auto, ratio 8/16, float
    [0x80, 0x12, 0x00, 0x00], // plain 2 bits, frequent tier at 8 bits, mass 0.999, counts
    [0x81, 0x35, 0x11, 0x01], // k = 2, j = 2, 4 bits, tier at 4 bits, block 16, mass 0.9, counts
    [0x44, 0x00, 0x04, 0x00], // product codes, sub-vectors of 4, Zipf weights
    [0x50, 0x00, 0x00, 0x00], // plain 8 bits, allow_shared (a tied table's head served), Zipf weights
    [0x21, 0x00, 0x11, 0x00], // k = 2, j = 2, 8 bits, validated
    [0x20, 0x01, 0x00, 0x00], // plain 4 bits, validated
    [0xa4, 0x10, 0x02, 0x04], // codes of 2, tier at 8 bits, mass 0.1, counts, validated
];

/// `decode_find_rewrite` on any bytes: the first [`SELECTOR_BYTES`] choose the setting, the
/// rest is the model. Returns whether a model was rewritten.
///
/// Validation runs only when the environment sets `ONNX_EMBCOMP_FUZZ_VALIDATE=1`: in the fuzz
/// build tract (at opt-level 0, instrumented) takes ~0.9 s per tiny model against ~30 ms for
/// the rest, and its large coverage would make the corpus grow towards tract rather than our
/// code. The tests (`tests/it/fuzz_seeds.rs`) validate through [`rewrite_with`].
pub fn decode_find_rewrite(data: &[u8]) -> bool {
    static VALIDATE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let Some((selector, model)) = data.split_first_chunk::<SELECTOR_BYTES>() else {
        return false;
    };
    let mut choice = Choice::of(*selector);
    choice.validate &= *VALIDATE.get_or_init(|| std::env::var("ONNX_EMBCOMP_FUZZ_VALIDATE").is_ok_and(|v| v == "1"));
    rewrite_with(&choice, model)
}

/// Any bytes -> `Model::decode` -> `compress` with `choice` and small fit settings (and
/// validation when chosen and the model is small); the rewritten model must encode and decode
/// again and be searched again without panicking, and a validation must not find the rewritten
/// lookup differing from the stored rows. Returns whether a model was rewritten.
pub fn rewrite_with(choice: &Choice, data: &[u8]) -> bool {
    let Ok(model) = Model::decode(bytes::Bytes::copy_from_slice(data), None, Path::new("fuzz.onnx")) else {
        return false;
    };
    let Some((rows, cols)) = Summary::of(&model, None).ok().and_then(|s| s.embedding.chosen().ok().map(|c| (c.rows, c.cols))) else {
        return false;
    };
    let elements = rows.saturating_mul(cols);
    if elements > MAX_TABLE_ELEMENTS {
        return false;
    }
    let mut options = Options::default();
    (options.fit.restarts, options.fit.max_iter, options.fit.polish_iter, options.threads) = (1, 2, 2, 1);
    options.seed = choice.seed;
    options.allow_shared = choice.allow_shared;
    let validate = choice.validate && elements <= MAX_VALIDATED_ELEMENTS && model.graph().node.len() <= MAX_VALIDATED_NODES;
    options.validate = validate.then(|| ValidateOptions::new(1, 4));
    // one count file per process and thread (the tests run bodies on several threads)
    let counts = std::env::temp_dir().join(format!("onnx-embcomp-fuzz-{}-{:?}.counts", std::process::id(), std::thread::current().id()));
    options.data = choice.data(rows, &counts);
    let compressed = compress(&model, &options, &choice.setting, &mut |_| {});
    let _ = std::fs::remove_file(&counts);
    match compressed {
        Ok((rewritten, report)) => {
            assert_eq!(report.shape, [rows, cols], "the report's shape is the table's");
            assert_eq!(report.validation.is_some(), validate, "validated as asked");
            let bytes = bytes::Bytes::from(rewritten.encode());
            let again = Model::decode(bytes, None, Path::new("rewritten.onnx")).expect("the rewritten model decodes");
            if let Ok(summary) = Summary::of(&again, None) {
                let _ = onnx_embcomp::cli::render::summary(&summary, true);
            }
            true
        }
        Err(Error::ValidationMismatch(m)) => panic!("the rewritten lookup is not the stored rows: {m}"),
        Err(_) => false,
    }
}
