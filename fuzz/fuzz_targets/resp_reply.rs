#![no_main]
//! Fuzz target `resp_reply`: the property lives in `fuzz/checks/resp.rs`, shared with
//! the corpus replay in `tests/fuzz_corpus.rs`.

#[path = "../checks/resp.rs"]
#[allow(dead_code)]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::resp_reply(data));
