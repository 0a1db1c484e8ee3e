//! Any bytes: the first four choose the setting (method, bits, block, frequent tier, token
//! statistics, `allow_shared`, validation), the rest -> `Model::decode` -> `compress` with that
//! setting and small fit settings; the rewritten model must encode and decode again, and a
//! validation (with ONNX_EMBCOMP_FUZZ_VALIDATE=1) must not find its lookup differing from the
//! stored rows. Nothing may panic; errors are fine. The body is in `../bodies/mod.rs`.
#![no_main]

#[path = "../bodies/mod.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bodies::decode_find_rewrite(data);
});
