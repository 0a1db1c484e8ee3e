//! Any bytes -> `Model::decode` -> `compress` with small settings and no validation; the
//! rewritten model must encode and decode again. Nothing may panic; errors are fine.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use onnx_embcomp::onnx::graph::GraphView;
use onnx_embcomp::rewrite::find::find_embedding;
use onnx_embcomp::{Model, Options, Size, compress};

/// Larger tables make slow inputs without reaching new code.
const MAX_TABLE_ELEMENTS: usize = 200_000;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = Model::decode(bytes::Bytes::copy_from_slice(data), None, Path::new("fuzz.onnx")) else {
        return;
    };
    let view = GraphView::new(model.graph());
    let small = find_embedding(&view, None)
        .ok()
        .and_then(|d| d.chosen().ok().map(|c| c.rows.saturating_mul(c.cols) <= MAX_TABLE_ELEMENTS));
    if small != Some(true) {
        return;
    }
    let options = Options {
        k: 2,
        size: Size::Dim(2),
        restarts: 1,
        max_iter: 2,
        threads: 1,
        validate: None,
        ..Options::default()
    };
    if let Ok((rewritten, _report)) = compress(&model, &options, &mut |_| {}) {
        let bytes = bytes::Bytes::from(rewritten.encode());
        Model::decode(bytes, None, Path::new("rewritten.onnx")).expect("the rewritten model decodes");
    }
});
