//! Any bytes -> `Model::decode` -> `compress` with small settings and no validation; the
//! rewritten model must encode and decode again. Nothing may panic; errors are fine. The body
//! is in `../bodies/mod.rs`.
#![no_main]

#[path = "../bodies/mod.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bodies::decode_find_rewrite(data);
});
