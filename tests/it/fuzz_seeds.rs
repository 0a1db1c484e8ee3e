//! The fuzz targets' bodies (`fuzz/bodies/`) on every seed and fixture: a short run of the
//! fuzz targets in the ordinary test suite, so they keep compiling and keep passing.

#[path = "../../fuzz/bodies/mod.rs"]
mod bodies;

use bodies::{Choice, SELECTORS};

fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds: Vec<std::path::PathBuf> = std::fs::read_dir("fuzz/seeds").unwrap().map(|e| e.unwrap().path()).collect();
    seeds.extend(["fixtures/encoder.onnx".into(), "fixtures/decoder.onnx".into()]);
    seeds.sort();
    seeds.into_iter().map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap())).collect()
}

#[test]
fn fuzz_target_bodies_pass_on_the_seeds() {
    let seeds = seeds();
    let mut rewritten = 0;
    for (_, data) in &seeds {
        bodies::decode_find(data);
        let framed = [&SELECTORS[0][..], data].concat();
        rewritten += usize::from(bodies::decode_find_rewrite(&framed));
        // Truncated and bit-flipped copies too, as a fuzzer's first mutations would be.
        for cut in [1, data.len() / 3, data.len() / 2] {
            bodies::decode_find(&data[..cut]);
            bodies::decode_find_rewrite(&framed[..cut + bodies::SELECTOR_BYTES]);
        }
        let mut flipped = data.clone();
        for i in (0..flipped.len()).step_by(97) {
            flipped[i] ^= 0x5a;
        }
        bodies::decode_find(&flipped);
        bodies::decode_find_rewrite(&[&SELECTORS[0][..], &flipped].concat());
    }
    // k = 2, j = 2 at 8 bits: every seed but the tied ones (whose table the head also reads).
    assert!(rewritten >= seeds.len() - 2, "only {rewritten} of {} seeds were rewritten", seeds.len());
}

/// Plain rows without a tier: what serves a tied head (`Plan::serving`; 8-bit rows of one scale
/// a row through integer products, any other plain rows dequantized).
fn serves_head(s: &onnx_embcomp::Setting) -> bool {
    matches!(s.method, onnx_embcomp::Method::Plain) && s.storage.hot.is_none()
}

/// Each storage method the targets choose compresses the small seeds (all of the quantized
/// layouts among them), the tied one with `allow_shared`; invalid choices fail as errors.
#[test]
fn each_storage_choice_of_the_rewrite_target_compresses_the_seeds() {
    let small: Vec<(String, Vec<u8>)> = seeds().into_iter().filter(|(name, _)| !name.ends_with("coder.onnx")).collect();
    assert_eq!(small.len(), 13);
    for selector in SELECTORS {
        let choice = Choice::of(selector);
        let done: Vec<&str> = small.iter().filter(|(_, data)| bodies::rewrite_with(&choice, data)).map(|(n, _)| n.as_str()).collect();
        let expected: Vec<&str> = small
            .iter()
            .map(|(n, _)| n.as_str())
            // a tied table (8 values a row): with allow_shared, or plain rows, which also
            // serve its head
            .filter(|n| choice.allow_shared || !n.contains("tied") || serves_head(&choice.setting))
            // product codes fit 256 codewords: only the seed of 264 rows has as many
            .filter(|n| !matches!(choice.setting.method, onnx_embcomp::Method::Codes { .. }) || n.contains("264rows"))
            // validation runs tract, which runs neither bf16 tables nor int4/uint4 codes
            .filter(|n| !choice.validate || !(n.contains("bf16") || n.contains("int4")))
            .collect();
        assert_eq!(done, expected, "{choice:?}");
    }
    // every selector byte value, on one seed: valid or not, no panic
    let (_, data) = small.iter().find(|(n, _)| n.contains("dequantize_after")).unwrap();
    for b in 0..=255u8 {
        for at in 0..bodies::SELECTOR_BYTES {
            let mut selector = SELECTORS[1];
            selector[at] = b;
            bodies::rewrite_with(&Choice::of(selector), data);
        }
    }
}
