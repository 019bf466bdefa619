//! Properties of the HTTP layer and the WebSocket handshake, checked on any
//! input. Shared by the fuzz targets (`fuzz/fuzz_targets/{http_head,handshake}.rs`)
//! and the corpus replay in `tests/fuzz_corpus.rs`; uses only `pushloop` and std.

use pushloop::http::{httparse, parse_request, BodyDecoder, HeadScanner, HttpError};
use pushloop::limits::Limits;
use pushloop::ws::handshake::{self, HandshakeError, OriginPolicy};

/// A split point derived from the data, so the same input always splits the
/// same way.
fn split_point(data: &[u8]) -> usize {
    let seed = data.iter().take(8).fold(0usize, |acc, &b| {
        acc.wrapping_mul(31).wrapping_add(b.into())
    });
    seed % (data.len() + 1)
}

fn assert_http_status(error: HttpError) {
    assert!(
        [400, 413, 431, 501, 505].contains(&error.status()),
        "{error:?} has status {}",
        error.status()
    );
    let mut out = Vec::new();
    error.write_response(&mut out);
    assert!(out.starts_with(format!("HTTP/1.1 {} ", error.status()).as_bytes()));
}

/// Scans `data` in one go and in two pieces split at `split`; both must agree.
fn scan_both_ways(data: &[u8], max_head: usize) -> Result<Option<usize>, HttpError> {
    let whole = HeadScanner::new(max_head).scan(data);
    let mut scanner = HeadScanner::new(max_head);
    let first = scanner.scan(&data[..split_point(data)]);
    let split = if first == Ok(None) {
        scanner.scan(data)
    } else {
        first
    };
    assert_eq!(whole, split, "scanner disagrees with itself at a split");
    whole
}

/// Decodes `input` with `framing`, either in one call or in two (the second
/// handing back what the first left unconsumed).
fn decode(
    framing: pushloop::http::BodyFraming,
    max_body: usize,
    input: &[u8],
    split: Option<usize>,
) -> Result<(Vec<u8>, usize, bool), HttpError> {
    let mut decoder = BodyDecoder::new(framing, max_body);
    let mut body = Vec::new();
    let mut used = 0;
    for end in split.into_iter().chain([input.len()]) {
        let progress = decoder.decode(&input[used..end], &mut body)?;
        assert!(progress.used <= end - used);
        assert!(body.len() <= max_body);
        used += progress.used;
        if progress.done {
            return Ok((body, used, true));
        }
    }
    Ok((body, used, false))
}

/// `http_head`: scan, parse, frame and decode the body of whatever arrives.
/// No panic; every error answers 400/413/431/501/505; the scanner gives the
/// same head length whole or split, and httparse agrees with it on where the
/// head ends; the body decoder gives the same body,
/// length and error whole or split.
pub fn http_head(data: &[u8]) {
    let limits = Limits::default();
    let head_len = match scan_both_ways(data, limits.max_head_bytes) {
        Ok(Some(head_len)) => head_len,
        Ok(None) => return,
        Err(error) => return assert_http_status(error),
    };
    assert!(head_len <= limits.max_head_bytes && head_len <= data.len());
    let (head, rest) = data.split_at(head_len);
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let req = match parse_request(head, &mut headers) {
        Ok(req) => req,
        Err(error) => {
            // The scanner and httparse must agree on where a head ends.
            assert_ne!(
                error,
                HttpError::Unterminated,
                "scanner and httparse disagree"
            );
            return assert_http_status(error);
        }
    };
    // Every accessor, on whatever parsed.
    assert!(req.minor_version() <= 1);
    assert!(req.target().starts_with(req.path()) || req.target().contains("://"));
    let _ = (req.query(), req.query_param("after"), req.keep_alive());
    let _ = (
        req.header_str("host"),
        req.has_token("connection", "upgrade"),
        req.headers().count(),
    );
    // A small body limit, so the fuzzer reaches it.
    let max_body = 64;
    let framing = match req.body_framing(max_body) {
        Ok(framing) => framing,
        Err(error) => return assert_http_status(error),
    };
    let whole = decode(framing, max_body, rest, None);
    let split = decode(framing, max_body, rest, Some(split_point(rest)));
    assert_eq!(
        whole, split,
        "body decoder disagrees with itself at a split"
    );
    if let Err(error) = whole {
        assert_http_status(error);
    }
}

/// `handshake`: parse a head, then run the WebSocket handshake on it. No
/// panic; every refusal answers 400/403/405/426 with a response that parses;
/// an accepted handshake writes a 101 that parses back with the right
/// `Sec-WebSocket-Accept`.
pub fn handshake(data: &[u8]) {
    let limits = Limits::default();
    let Ok(Some(head_len)) = HeadScanner::new(limits.max_head_bytes).scan(data) else {
        return;
    };
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let Ok(req) = parse_request(&data[..head_len], &mut headers) else {
        return;
    };
    let policy = OriginPolicy::AllowList(vec!["http://example.com".to_owned()]);
    let result =
        handshake::check(&req).and_then(|upgrade| upgrade.check_origin(&policy).map(|()| upgrade));
    let upgrade = match result {
        Ok(upgrade) => upgrade,
        Err(error) => return assert_refusal(error),
    };
    assert!(handshake::is_upgrade_request(&req));
    let mut out = Vec::new();
    upgrade
        .write_accept(None, None, &mut out)
        .expect("no protocol is always allowed");
    assert_accept(&out, upgrade.key(), None);
    // Accepting the client's first offered protocol must work too.
    if let Some(protocol) = upgrade.offered_protocols().next() {
        let mut out = Vec::new();
        upgrade
            .write_accept(Some(protocol), None, &mut out)
            .expect("offered protocol");
        assert_accept(&out, upgrade.key(), Some(protocol));
    }
    let mut out = Vec::new();
    let unoffered = "\u{1}not-offered";
    assert_eq!(
        upgrade.write_accept(Some(unoffered), None, &mut out),
        Err(HandshakeError::ProtocolNotOffered)
    );
    assert!(out.is_empty());
}

fn assert_refusal(error: HandshakeError) {
    assert!([400, 403, 405, 426].contains(&error.status()), "{error:?}");
    let mut out = Vec::new();
    error.write_response(&mut out);
    let mut headers = [httparse::EMPTY_HEADER; 8];
    let mut response = httparse::Response::new(&mut headers);
    assert_eq!(
        response.parse(&out).ok().map(|s| s.is_complete()),
        Some(true)
    );
    assert_eq!(response.code, Some(error.status()));
}

/// `out` must be exactly one 101 head with the accept key for `key`.
fn assert_accept(out: &[u8], key: &str, protocol: Option<&str>) {
    let mut headers = [httparse::EMPTY_HEADER; 8];
    let mut response = httparse::Response::new(&mut headers);
    assert_eq!(
        response.parse(out),
        Ok(httparse::Status::Complete(out.len()))
    );
    assert_eq!(response.code, Some(101));
    let field = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    assert_eq!(
        field("sec-websocket-accept"),
        Some(&handshake::accept_key(key.as_bytes())[..])
    );
    assert_eq!(field("sec-websocket-protocol"), protocol.map(str::as_bytes));
    assert_eq!(field("sec-websocket-extensions"), None);
}
