#![no_main]
//! Fuzz target `sse_roundtrip`: the property lives in `fuzz/checks/sse.rs`, shared with
//! the corpus replay in `tests/fuzz_corpus.rs`.

#[path = "../checks/sse.rs"]
#[allow(dead_code)]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::sse_roundtrip(data));
