#![no_main]
//! Fuzz target `ws_server`: the property lives in `fuzz/checks/ws.rs`, shared with
//! the corpus replay in `tests/fuzz_corpus.rs`.

#[path = "../checks/ws.rs"]
#[allow(dead_code)]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::ws_server(data));
