//! Any bytes -> `Model::decode` -> graph view -> embedding search -> inspect summary.
//! Nothing may panic; errors are fine.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use onnx_embcomp::Model;
use onnx_embcomp::inspect::Summary;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = Model::decode(bytes::Bytes::copy_from_slice(data), None, Path::new("fuzz.onnx")) else {
        return;
    };
    if let Ok(summary) = Summary::of(&model, None) {
        let _ = summary.render(true);
        let _ = summary.embedding.chosen();
    }
});
