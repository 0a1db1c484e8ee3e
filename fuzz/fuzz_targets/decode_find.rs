//! Any bytes -> `Model::decode` -> graph view -> embedding search -> inspect summary.
//! Nothing may panic; errors are fine. The body is in `../bodies/mod.rs`.
#![no_main]

#[path = "../bodies/mod.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::decode_find(data));
