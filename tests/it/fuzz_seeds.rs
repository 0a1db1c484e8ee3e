//! The fuzz targets' bodies (`fuzz/bodies/`) on every seed and fixture: a short run of the
//! fuzz targets in the ordinary test suite, so they keep compiling and keep passing.

#[path = "../../fuzz/bodies/mod.rs"]
mod bodies;

#[test]
fn fuzz_target_bodies_pass_on_the_seeds() {
    let mut seeds: Vec<std::path::PathBuf> = std::fs::read_dir("fuzz/seeds").unwrap().map(|e| e.unwrap().path()).collect();
    seeds.extend(["fixtures/encoder.onnx".into(), "fixtures/decoder.onnx".into()]);
    seeds.sort();
    let mut rewritten = 0;
    for seed in &seeds {
        let data = std::fs::read(seed).unwrap();
        bodies::decode_find(&data);
        rewritten += usize::from(bodies::decode_find_rewrite(&data));
        // Truncated and bit-flipped copies too, as a fuzzer's first mutations would be.
        for cut in [1, data.len() / 3, data.len() / 2] {
            bodies::decode_find(&data[..cut]);
            bodies::decode_find_rewrite(&data[..cut]);
        }
        let mut flipped = data.clone();
        for i in (0..flipped.len()).step_by(97) {
            flipped[i] ^= 0x5a;
        }
        bodies::decode_find(&flipped);
        bodies::decode_find_rewrite(&flipped);
    }
    // The encoder fixture and the f16/f32 seeds compress (the decoder's table is tied).
    assert!(rewritten >= 3, "only {rewritten} of {} seeds were rewritten", seeds.len());
}
