//! Writing HTTP/1.1 responses.
//!
//! Reading list:
//! - RFC 9112 §4 (status line), §5 (field lines).
//! - RFC 9110 §5.5 (field values: CR, LF and NUL are "invalid and dangerous"),
//!   §5.6.2 (tokens), §8.6 (Content-Length), §15 (status codes and reason phrases).
//! - RFC 6585 §4, §5 (429, 431).

use crate::http::syntax::{is_token, write_decimal};
use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;

/// The reason phrase RFC 9110 §15 gives a status code (plus 429 and 431 from
/// RFC 6585 §4–5), or `""` for a code it does not name. Clients ignore the phrase
/// (RFC 9112 §4), and an empty one is allowed.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Appends a response head: `HTTP/1.1 {status} {reason}\r\n`, each header as
/// `name: value\r\n`, `Content-Length: n\r\n` when `content_length` is `Some`,
/// and the blank line that ends the head.
///
/// Never panics, and no argument can add a field line or end the head early:
/// - a header whose name is not a token (RFC 9110 §5.6.2), or whose value holds
///   CR, LF, NUL or another control byte except HTAB (RFC 9110 §5.5), is
///   **skipped** (header injection / response splitting);
/// - when `content_length` is `Some`, caller-supplied `Content-Length` and
///   `Transfer-Encoding` headers are skipped, so the response never carries two
///   framings (RFC 9112 §6.1, §6.3);
/// - a status outside 100–599 (RFC 9110 §15: three digits, first digit 1–5) is
///   written as `500`.
///
/// ```
/// let mut out = Vec::new();
/// pushloop_proto::http::write_head(&mut out, 200, &[("Content-Type", "text/plain")], Some(2));
/// assert_eq!(out, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n");
/// ```
pub fn write_head(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[(&str, &str)],
    content_length: Option<usize>,
) {
    write_head_fields(out, status, headers.iter().copied(), content_length);
}

/// Appends a whole answer — head with `Content-Length`, then `body` — framed
/// for its request: `Connection: close` unless it is kept alive (RFC 9112
/// §9.6), and no body for `HEAD` (RFC 9110 §9.3.2). The shared answers of
/// polls are built with it, once for every waiter.
pub fn write_answer(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
    framing: Framing,
) {
    let close = (!framing.keep_alive).then_some(("Connection", "close"));
    write_head_fields(
        out,
        status,
        headers.iter().copied().chain(close),
        Some(body.len()),
    );
    if !framing.head_only {
        out.extend_from_slice(body);
    }
}

/// [`write_head`] over any sequence of fields, so [`Response::write`] can pass
/// its owned headers without collecting them into a new slice.
fn write_head_fields<'h>(
    out: &mut Vec<u8>,
    status: u16,
    headers: impl Iterator<Item = (&'h str, &'h str)>,
    content_length: Option<usize>,
) {
    // RFC 9110 §15: status-code = 3DIGIT, and only 1xx–5xx are defined classes.
    let status = if (100..=599).contains(&status) {
        status
    } else {
        500
    };
    // RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ]
    out.extend_from_slice(b"HTTP/1.1 ");
    write_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        let framing = name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding");
        if !is_safe_field(name, value) || (framing && content_length.is_some()) {
            continue;
        }
        write_field(out, name, value);
    }
    if let Some(length) = content_length {
        out.extend_from_slice(b"Content-Length: ");
        write_decimal(out, length as u64);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// RFC 9112 §5: field-line = field-name ":" OWS field-value OWS
fn write_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// A field we are willing to write: the name is a token (RFC 9110 §5.1) and the
/// value has no control byte except HTAB (RFC 9110 §5.5: field-vchar, SP, HTAB;
/// CR, LF and NUL are "invalid and dangerous").
fn is_safe_field(name: &str, value: &str) -> bool {
    is_token(name.as_bytes()) && value.bytes().all(|b| b == b'\t' || !(b.is_ascii_control()))
}

/// Statuses that never carry content: RFC 9110 §15.2 (1xx), §15.3.5 (204),
/// §15.4.5 (304). RFC 9110 §8.6 also forbids Content-Length on 1xx and 204.
fn has_no_content(status: u16) -> bool {
    matches!(status, 100..=199 | 204 | 304)
}

/// How the answer to one request must be framed: decided by the connection
/// ([`crate::http::session::HttpSession::answer`]) from the request and the
/// server's state, applied when the response is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framing {
    /// The connection stays open for another request (RFC 9112 §9.3); if
    /// false, the response says `Connection: close` (§9.6).
    pub keep_alive: bool,
    /// The request was `HEAD`: the head only, no body (RFC 9110 §9.3.2).
    pub head_only: bool,
}

/// A complete response, as a user route returns it.
///
/// ```
/// use pushloop_proto::http::Response;
/// let mut out = Vec::new();
/// Response::text(404, "no such feed").write(&mut out, true);
/// assert_eq!(
///     out,
///     b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n\
///       Content-Length: 12\r\n\r\nno such feed"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code (RFC 9110 §15).
    pub status: u16,
    /// Header fields in the order they are written. Unsafe ones are skipped
    /// when written (see [`write_head`]).
    pub headers: Vec<(String, String)>,
    /// The content; its length becomes `Content-Length`.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with this status, no headers and no body.
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header field (builder style).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body (builder style).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// A `text/plain; charset=utf-8` response.
    pub fn text(status: u16, text: &str) -> Self {
        Response::new(status)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(text)
    }

    /// An `application/json` response (RFC 8259 §11: JSON has no charset
    /// parameter; it is UTF-8).
    pub fn json(status: u16, json: impl Into<Vec<u8>>) -> Self {
        Response::new(status)
            .header("Content-Type", "application/json")
            .body(json)
    }

    /// A `text/html; charset=utf-8` response.
    pub fn html(status: u16, html: impl Into<Vec<u8>>) -> Self {
        Response::new(status)
            .header("Content-Type", "text/html; charset=utf-8")
            .body(html)
    }

    /// Appends the whole response: head, `Content-Length`, then the body.
    ///
    /// When `keep_alive` is false, adds `Connection: close` (RFC 9112 §9.6) in
    /// place of any `Connection` header of the response's own. A 1xx, 204 or
    /// 304 response gets neither `Content-Length` nor body bytes (RFC 9110
    /// §8.6, §15.3.5, §15.4.5), whatever `body` holds.
    pub fn write(&self, out: &mut Vec<u8>, keep_alive: bool) {
        self.write_framed(
            out,
            Framing {
                keep_alive,
                head_only: false,
            },
        );
    }

    /// [`Response::write`] for the request it answers: with `head_only` (the
    /// request was `HEAD`) the head says what a `GET` would have got,
    /// `Content-Length` included, and no body follows (RFC 9110 §9.3.2).
    pub fn write_framed(&self, out: &mut Vec<u8>, framing: Framing) {
        let keep_alive = framing.keep_alive;
        let own = self
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .filter(|(name, _)| keep_alive || !name.eq_ignore_ascii_case("connection"));
        let close = (!keep_alive).then_some(("Connection", "close"));
        if has_no_content(self.status) {
            write_head_fields(out, self.status, own.chain(close), None);
        } else {
            let length = Some(self.body.len());
            write_head_fields(out, self.status, own.chain(close), length);
            if !framing.head_only {
                out.extend_from_slice(&self.body);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_framed_for_their_request() {
        let mut out = Vec::new();
        let closing = Framing {
            keep_alive: false,
            head_only: false,
        };
        write_answer(
            &mut out,
            200,
            &[("Content-Type", "application/json")],
            b"[]",
            closing,
        );
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\
              Content-Length: 2\r\n\r\n[]"
        );
    }

    #[test]
    fn a_head_answer_has_the_get_length_and_no_body() {
        let mut out = Vec::new();
        let framing = Framing {
            keep_alive: true,
            head_only: true,
        };
        Response::text(200, "hello").write_framed(&mut out, framing);
        // RFC 9110 §9.3.2: the same fields as GET, Content-Length included.
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
              Content-Length: 5\r\n\r\n"
        );
    }

    fn head(status: u16, headers: &[(&str, &str)], length: Option<usize>) -> String {
        let mut out = Vec::new();
        write_head(&mut out, status, headers, length);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn writes_status_line_headers_and_length() {
        assert_eq!(
            head(
                200,
                &[("Content-Type", "text/plain"), ("X-A", "1")],
                Some(5)
            ),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-A: 1\r\nContent-Length: 5\r\n\r\n"
        );
    }

    #[test]
    fn writes_no_content_length_when_none() {
        assert_eq!(
            head(101, &[("Upgrade", "websocket")], None),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
        );
    }

    #[test]
    fn writes_unknown_status_with_empty_reason() {
        assert_eq!(head(299, &[], None), "HTTP/1.1 299 \r\n\r\n");
    }

    #[test]
    fn writes_out_of_range_status_as_500() {
        for status in [0, 99, 600, 1000, u16::MAX] {
            assert_eq!(
                head(status, &[], None),
                "HTTP/1.1 500 Internal Server Error\r\n\r\n"
            );
        }
    }

    #[test]
    fn skips_header_injection_attempts() {
        let evil = [
            ("X-Ok", "fine"),
            ("X-Evil", "a\r\nSet-Cookie: stolen=1"),
            ("X-Lf", "a\nb"),
            ("X-Cr", "a\rb"),
            ("X-Nul", "a\0b"),
            ("X-Bell", "a\x07b"),
            ("X-Del", "a\x7fb"),
            ("Set-Cookie: x=1\r\nX", "v"),
            ("Bad Name", "v"),
            ("", "v"),
            ("X-Tab", "a\tb"),
        ];
        let written = head(200, &evil, Some(0));
        assert_eq!(
            written,
            "HTTP/1.1 200 OK\r\nX-Ok: fine\r\nX-Tab: a\tb\r\nContent-Length: 0\r\n\r\n"
        );
        // The head still parses as exactly the fields we meant to send.
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut response = httparse::Response::new(&mut headers);
        let parsed = response.parse(written.as_bytes()).unwrap();
        assert_eq!(parsed, httparse::Status::Complete(written.len()));
        assert_eq!(response.headers.len(), 3);
    }

    #[test]
    fn explicit_length_replaces_caller_framing_headers() {
        assert_eq!(
            head(
                200,
                &[("content-length", "999"), ("Transfer-Encoding", "chunked")],
                Some(3)
            ),
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"
        );
        // Without an explicit length the caller's framing header stays.
        assert_eq!(
            head(200, &[("Transfer-Encoding", "chunked")], None),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn reason_phrases_follow_rfc_9110() {
        assert_eq!(reason_phrase(413), "Content Too Large");
        assert_eq!(reason_phrase(422), "Unprocessable Content");
        assert_eq!(reason_phrase(426), "Upgrade Required");
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
        assert_eq!(reason_phrase(505), "HTTP Version Not Supported");
        assert_eq!(reason_phrase(799), "");
    }

    #[test]
    fn response_write_keep_alive() {
        let mut out = Vec::new();
        Response::json(200, r#"{"a":1}"#).write(&mut out, true);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}"
        );
    }

    #[test]
    fn response_write_close_replaces_own_connection_header() {
        let mut out = Vec::new();
        Response::html(200, "<p>")
            .header("Connection", "keep-alive")
            .header("Cache-Control", "no-store")
            .write(&mut out, false);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
              Cache-Control: no-store\r\nConnection: close\r\nContent-Length: 3\r\n\r\n<p>"
        );
    }

    #[test]
    fn response_write_omits_length_and_body_for_204_304_and_1xx() {
        for status in [100, 101, 204, 304] {
            let mut out = Vec::new();
            Response::new(status).body("ignored").write(&mut out, true);
            let expected = format!("HTTP/1.1 {status} {}\r\n\r\n", reason_phrase(status));
            assert_eq!(out, expected.as_bytes());
        }
    }

    #[test]
    fn response_text_sets_utf8_content_type() {
        let response = Response::text(200, "hé");
        assert_eq!(
            response.headers,
            [(
                "Content-Type".to_owned(),
                "text/plain; charset=utf-8".to_owned()
            )]
        );
        assert_eq!(response.body, "hé".as_bytes());
    }
}
