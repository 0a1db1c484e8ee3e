//! Any bytes: the first four choose the setting (method, bits, block, frequent tier, given token
//! weights, `allow_shared`, validation), the rest -> `Model::decode` -> `compress` with that
//! setting and small fit settings; the rewritten model must encode and decode again, and a
//! validation must not find its lookup differing from the stored rows. Nothing may panic;
//! errors are fine. The body is in `../bodies/mod.rs`.
#![no_main]

#[path = "../bodies/mod.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bodies::decode_find_rewrite(data);
});
