//! The fuzz targets' bodies, shared by the cargo-fuzz binaries (`fuzz_targets/`) and by the
//! main test suite (`tests/it/fuzz_seeds.rs`), which runs every seed through them on each
//! `cargo test`, so the targets cannot rot unnoticed. Nothing may panic; errors are fine.

use std::path::Path;

use onnx_embcomp::inspect::Summary;
use onnx_embcomp::{Method, Model, Options, Setting, Size, Storage, compress};

/// Larger tables make slow inputs without reaching new code.
const MAX_TABLE_ELEMENTS: usize = 200_000;

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

/// Any bytes -> `Model::decode` -> `compress` with small settings and no validation; the
/// rewritten model must encode and decode again. Returns whether a model was rewritten.
pub fn decode_find_rewrite(data: &[u8]) -> bool {
    let Ok(model) = Model::decode(bytes::Bytes::copy_from_slice(data), None, Path::new("fuzz.onnx")) else {
        return false;
    };
    let small = Summary::of(&model, None)
        .ok()
        .and_then(|s| s.embedding.chosen().ok().map(|c| c.rows.saturating_mul(c.cols) <= MAX_TABLE_ELEMENTS));
    if small != Some(true) {
        return false;
    }
    let mut options = Options::default();
    (options.fit.restarts, options.fit.max_iter, options.threads) = (1, 2, 1);
    options.validate = None;
    let setting = Setting::new(Method::subspaces(2, Size::Dim(2)), Storage::default());
    match compress(&model, &options, &setting, &mut |_| {}) {
        Ok((rewritten, _report)) => {
            let bytes = bytes::Bytes::from(rewritten.encode());
            Model::decode(bytes, None, Path::new("rewritten.onnx")).expect("the rewritten model decodes");
            true
        }
        Err(_) => false,
    }
}
