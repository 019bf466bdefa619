//! Replays every committed fuzz corpus file through the same property the fuzz
//! target checks (`fuzz/checks/*.rs`), so stable CI exercises what the fuzzers
//! found without needing cargo-fuzz or a nightly toolchain.

use std::path::Path;

#[cfg(feature = "deflate")]
#[path = "../fuzz/checks/deflate.rs"]
#[allow(dead_code)]
mod deflate_checks;
#[path = "../fuzz/checks/http.rs"]
#[allow(dead_code)]
mod http_checks;
#[path = "../fuzz/checks/resp.rs"]
#[allow(dead_code)]
mod resp_checks;
#[path = "../fuzz/checks/sse.rs"]
#[allow(dead_code)]
mod sse_checks;
#[path = "../fuzz/checks/ws.rs"]
#[allow(dead_code)]
mod ws_checks;

/// Runs `check` on every file in `fuzz/corpus/<target>/` and returns how many.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file");
        check(&data);
        count += 1;
    }
    assert!(count > 0, "corpus {target} is empty");
    count
}

#[test]
fn http_head_corpus() {
    replay("http_head", http_checks::http_head);
}

#[test]
fn handshake_corpus() {
    replay("handshake", http_checks::handshake);
}

#[test]
fn ws_server_corpus() {
    replay("ws_server", ws_checks::ws_server);
}

#[test]
fn ws_client_corpus() {
    replay("ws_client", ws_checks::ws_client);
}

#[test]
fn utf8_corpus() {
    replay("utf8", ws_checks::utf8);
}

#[test]
fn sse_roundtrip_corpus() {
    replay("sse_roundtrip", sse_checks::sse_roundtrip);
}

#[test]
fn resp_reply_corpus() {
    replay("resp_reply", resp_checks::resp_reply);
}

#[cfg(feature = "deflate")]
#[test]
fn deflate_inflate_corpus() {
    replay("deflate_inflate", deflate_checks::deflate_inflate);
}
