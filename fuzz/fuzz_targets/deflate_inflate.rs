#![no_main]
//! Fuzz target `deflate_inflate`: the property lives in `fuzz/checks/deflate.rs`,
//! shared with the corpus replay in `tests/fuzz_corpus.rs`.

#[path = "../checks/deflate.rs"]
#[allow(dead_code)]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::deflate_inflate(data));
