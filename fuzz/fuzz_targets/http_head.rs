#![no_main]
//! Fuzz target `http_head`: the property lives in `fuzz/checks/http.rs`, shared with
//! the corpus replay in `tests/fuzz_corpus.rs`.

#[path = "../checks/http.rs"]
#[allow(dead_code)]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::http_head(data));
