//! Response heads, the client's side: finding where one ends, parsing it in
//! place, and deciding how its body is delimited.
//!
//! Reading list:
//! - RFC 9112 §2.2 (message parsing; bare LF; empty lines before the start
//!   line), §4 (status line), §5 (field lines), §6.1 (Transfer-Encoding),
//!   §6.3 (message body length: the rules for responses), §7.1 (chunked).
//! - RFC 9110 §8.6 (Content-Length), §15 (status codes; 1xx, 204 and 304 have
//!   no content).
//!
//! The request side ([`crate::http::request`]) answers a bad request with a
//! status. A client has nothing to answer with: after any [`ResponseError`] it
//! closes the connection and discards the response (RFC 9112 §6.3 item 5: "the
//! user agent MUST close the connection to the server and discard the received
//! response"). So the error says what the server did, and that is all.

use core::fmt;

use crate::http::body::BodyFraming;
use crate::http::request::HeadScanner;
use crate::http::syntax::{list_elements, trim_ows};

/// Every way a server's response head (or chunked body) can be refused. Each
/// variant says what the server did. The wire answer is always the same: close
/// the connection (RFC 9112 §6.3 item 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseError {
    /// Answered with bytes that do not start with `HTTP/1.0` or `HTTP/1.1`
    /// (RFC 9112 §2.3, §4): an HTML page, another protocol, or garbage.
    NotHttp1,
    /// Sent a status line whose status code is not three digits, or whose
    /// separator is not a space (RFC 9112 §4).
    BadStatusLine,
    /// Ended a line with something other than CRLF or a bare LF (RFC 9112 §2.2).
    BadLineEnding,
    /// Sent a field name that is not a token, or a folded line (RFC 9112 §5.1,
    /// §5.2).
    BadHeaderName,
    /// Sent a field value with a control byte in it (RFC 9110 §5.5).
    BadHeaderValue,
    /// Sent a head longer than the client's head limit without ending it.
    HeadTooLarge,
    /// Sent more header fields than the client's header-count limit.
    TooManyHeaders,
    /// Sent a `Content-Length` that is not `1*DIGIT`, or too large for this
    /// machine (RFC 9110 §8.6).
    BadContentLength,
    /// Sent `Content-Length` values that differ (RFC 9112 §6.3 item 5).
    ConflictingContentLength,
    /// Sent both `Transfer-Encoding` and `Content-Length` (RFC 9112 §6.3 item
    /// 3: "ought to be handled as an error").
    ContentLengthWithTransferEncoding,
    /// Sent `Transfer-Encoding` in an HTTP/1.0 response, whose framing must then
    /// be treated as faulty (RFC 9112 §6.1).
    TransferEncodingInHttp10,
    /// Sent a transfer coding other than a single `chunked` (gzip, ...), which
    /// this client cannot decode (RFC 9112 §6.1).
    UnsupportedTransferCoding,
    /// Sent a chunked body that breaks RFC 9112 §7.1 (a bad size line, chunk
    /// data not followed by CRLF, a bad trailer), or chunk extensions or a
    /// trailer past [`crate::http::body`]'s budgets. A
    /// [`crate::http::BodyDecoder`] reports these as an
    /// [`crate::http::HttpError`] written for requests (with a status to
    /// answer); reading a response, every one of them means this.
    BadChunkedBody,
    /// Handed [`parse_response`] bytes that do not end exactly at the head's
    /// blank line: the caller's bug (use [`ResponseHeadScanner`]).
    Unterminated,
}

impl ResponseError {
    /// Maps an `httparse` error on a response head.
    fn from_httparse(error: httparse::Error) -> ResponseError {
        match error {
            httparse::Error::Version => ResponseError::NotHttp1,
            httparse::Error::Status | httparse::Error::Token => ResponseError::BadStatusLine,
            httparse::Error::NewLine => ResponseError::BadLineEnding,
            httparse::Error::HeaderName => ResponseError::BadHeaderName,
            httparse::Error::HeaderValue => ResponseError::BadHeaderValue,
            httparse::Error::TooManyHeaders => ResponseError::TooManyHeaders,
        }
    }

    fn message(self) -> &'static str {
        match self {
            ResponseError::NotHttp1 => "the server did not answer with HTTP/1.x",
            ResponseError::BadStatusLine => "malformed status line",
            ResponseError::BadLineEnding => "malformed line ending",
            ResponseError::BadHeaderName => "malformed header field name",
            ResponseError::BadHeaderValue => "malformed header field value",
            ResponseError::HeadTooLarge => "response head too large",
            ResponseError::TooManyHeaders => "too many header fields",
            ResponseError::BadContentLength => "malformed Content-Length",
            ResponseError::ConflictingContentLength => "conflicting Content-Length values",
            ResponseError::ContentLengthWithTransferEncoding => {
                "both Content-Length and Transfer-Encoding"
            }
            ResponseError::TransferEncodingInHttp10 => "Transfer-Encoding in an HTTP/1.0 response",
            ResponseError::UnsupportedTransferCoding => "transfer coding other than chunked",
            ResponseError::BadChunkedBody => "malformed chunked body",
            ResponseError::Unterminated => "response head does not end at its blank line",
        }
    }
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl core::error::Error for ResponseError {}

/// Finds the end of a response head incrementally: [`HeadScanner`], whose
/// grammar (RFC 9112 §2.2: the first empty line ends the head, CRLF or bare LF,
/// empty lines before the start line skipped) is the same for both directions
/// and agrees with `httparse::Response`. Each byte is examined once, however
/// the head is split across reads.
///
/// ```
/// use pushloop_proto::http::response_head::ResponseHeadScanner;
/// let mut scanner = ResponseHeadScanner::new(8 * 1024);
/// let mut buf = b"HTTP/1.1 200 OK\r\n".to_vec();
/// assert_eq!(scanner.scan(&buf), Ok(None));
/// buf.extend_from_slice(b"\r\ndata: first body bytes");
/// assert_eq!(scanner.scan(&buf), Ok(Some(19)));
/// ```
#[derive(Clone, Debug)]
pub struct ResponseHeadScanner(HeadScanner);

impl ResponseHeadScanner {
    /// A scanner that refuses heads longer than `max_head_bytes`.
    pub fn new(max_head_bytes: usize) -> Self {
        ResponseHeadScanner(HeadScanner::new(max_head_bytes))
    }

    /// Looks for the end of the head in `buf` (everything received so far; only
    /// ever appended to between calls). `Ok(Some(head_len))`: the head is
    /// `buf[..head_len]` and the body starts after it. `Ok(None)`: call again
    /// with more bytes. `Err(HeadTooLarge)`: no end within the limit. Never
    /// panics.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, ResponseError> {
        self.0.scan(buf).map_err(|_| ResponseError::HeadTooLarge)
    }
}

/// Parses a complete response head, as delimited by [`ResponseHeadScanner`],
/// in place. `headers.len()` is the header-count limit.
///
/// ```
/// use pushloop_proto::http::{httparse, response_head::parse_response};
/// let mut headers = [httparse::EMPTY_HEADER; 16];
/// let head = b"HTTP/1.1 204 No Content\r\nServer: pushloop\r\n\r\n";
/// let response = parse_response(head, &mut headers)?;
/// assert_eq!((response.status(), response.header_str("server")), (204, Some("pushloop")));
/// # Ok::<(), pushloop_proto::http::response_head::ResponseError>(())
/// ```
pub fn parse_response<'a>(
    head: &'a [u8],
    headers: &'a mut [httparse::Header<'a>],
) -> Result<ResponseHead<'a>, ResponseError> {
    let mut parsed = httparse::Response::new(headers);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(len)) if len == head.len() => {}
        Ok(_) => return Err(ResponseError::Unterminated),
        Err(error) => return Err(ResponseError::from_httparse(error)),
    }
    let httparse::Response {
        version,
        code,
        reason,
        headers,
    } = parsed;
    let (Some(minor_version), Some(status)) = (version, code) else {
        return Err(ResponseError::Unterminated);
    };
    Ok(ResponseHead {
        minor_version,
        status,
        reason: reason.unwrap_or_default(),
        headers,
    })
}

/// How the body of a response to a GET is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseFraming {
    /// By the head: no body, a `Content-Length`, or chunked. Read it with a
    /// [`crate::http::BodyDecoder`].
    Delimited(BodyFraming),
    /// RFC 9112 §6.3 item 8: neither `Content-Length` nor `Transfer-Encoding`,
    /// so the body is every byte until the server closes the connection.
    UntilClose,
}

/// A parsed response head, borrowing the bytes it was parsed from.
#[derive(Clone, Copy, Debug)]
pub struct ResponseHead<'a> {
    minor_version: u8,
    status: u16,
    reason: &'a str,
    headers: &'a [httparse::Header<'a>],
}

impl<'a> ResponseHead<'a> {
    /// The status code (RFC 9110 §15), three digits.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The reason phrase, as sent (clients ignore it: RFC 9112 §4).
    pub fn reason(&self) -> &'a str {
        self.reason
    }

    /// The minor HTTP version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub fn minor_version(&self) -> u8 {
        self.minor_version
    }

    /// The value of the first field named `name`, compared ASCII
    /// case-insensitively (RFC 9110 §5.1).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.header_all(name).next()
    }

    /// [`ResponseHead::header`] as OWS-trimmed text: `None` when absent or not
    /// UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&'a str> {
        core::str::from_utf8(trim_ows(self.header(name)?)).ok()
    }

    /// The values of every field line named `name`, in order.
    pub fn header_all<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + 'n
    where
        'a: 'n,
    {
        self.headers
            .iter()
            .filter(move |header| header.name.eq_ignore_ascii_case(name))
            .map(|header| header.value)
    }

    /// Every field line as `(name, value)`, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + '_ {
        self.headers
            .iter()
            .map(|header| (header.name, header.value))
    }

    /// True when any field line named `name` holds `token` in its
    /// comma-separated list (RFC 9110 §5.6.1), compared ASCII
    /// case-insensitively.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.header_all(name)
            .flat_map(list_elements)
            .any(|element| element.eq_ignore_ascii_case(token.as_bytes()))
    }

    /// How the body of this response to a GET is delimited (RFC 9112 §6.3,
    /// the rules in order):
    ///
    /// 1. 1xx, 204 and 304 have no body, whatever the head says (item 1).
    /// 2. `Transfer-Encoding` with `Content-Length` is refused (item 3 lets the
    ///    client treat it as an error; it is the response-splitting pair), and
    ///    so is `Transfer-Encoding` in HTTP/1.0 (§6.1). Otherwise the codings
    ///    must be exactly `chunked`: anything else could not be decoded.
    /// 3. `Content-Length`: each value `1*DIGIT`, all equal (item 5).
    /// 4. Neither: the body runs until the server closes (item 8).
    pub fn body_framing(&self) -> Result<ResponseFraming, ResponseError> {
        // RFC 9112 §6.3 item 1, RFC 9110 §15.2, §15.3.5, §15.4.5.
        if matches!(self.status, 100..=199 | 204 | 304) {
            return Ok(ResponseFraming::Delimited(BodyFraming::None));
        }
        if self.header("transfer-encoding").is_some() {
            if self.header("content-length").is_some() {
                return Err(ResponseError::ContentLengthWithTransferEncoding);
            }
            if self.minor_version == 0 {
                return Err(ResponseError::TransferEncodingInHttp10);
            }
            // RFC 9112 §7: transfer-coding names are case-insensitive.
            let mut codings = self.header_all("transfer-encoding").flat_map(list_elements);
            return match (codings.next(), codings.next()) {
                (Some(coding), None) if coding.eq_ignore_ascii_case(b"chunked") => {
                    Ok(ResponseFraming::Delimited(BodyFraming::Chunked))
                }
                _ => Err(ResponseError::UnsupportedTransferCoding),
            };
        }
        Ok(match self.content_length()? {
            Some(length) => ResponseFraming::Delimited(BodyFraming::Length(length)),
            None => ResponseFraming::UntilClose,
        })
    }

    /// The single Content-Length value, if any (RFC 9110 §8.6): every element
    /// of every field line `1*DIGIT`, and all equal.
    fn content_length(&self) -> Result<Option<usize>, ResponseError> {
        let mut length = None;
        for element in self
            .header_all("content-length")
            .flat_map(|value| value.split(|&b| b == b','))
        {
            let element = parse_length(trim_ows(element))?;
            match length {
                None => length = Some(element),
                Some(seen) if seen == element => {}
                Some(_) => return Err(ResponseError::ConflictingContentLength),
            }
        }
        Ok(length)
    }
}

/// `Content-Length = 1*DIGIT` (RFC 9110 §8.6), refusing a numeral this
/// machine cannot hold ("prevent parsing errors due to integer conversion
/// overflows").
fn parse_length(digits: &[u8]) -> Result<usize, ResponseError> {
    if digits.is_empty() {
        return Err(ResponseError::BadContentLength);
    }
    digits.iter().try_fold(0usize, |value, &digit| {
        let digit = digit
            .checked_sub(b'0')
            .filter(|d| *d <= 9)
            .ok_or(ResponseError::BadContentLength)?;
        value
            .checked_mul(10)
            .and_then(|v| v.checked_add(usize::from(digit)))
            .ok_or(ResponseError::BadContentLength)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec::Vec;

    /// RFC 6455 §1.3: the server's handshake, a response head from a spec.
    const RFC6455_RESPONSE: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
        Sec-WebSocket-Protocol: chat\r\n\r\n";

    const MAX_HEAD: usize = 8 * 1024;

    /// Scans `input` whole, byte by byte, and split at every offset (each way
    /// with a fresh scanner); all must agree, and the answer is returned.
    fn scan_every_way(input: &[u8], max: usize) -> Result<Option<usize>, ResponseError> {
        let whole = ResponseHeadScanner::new(max).scan(input);
        let mut scanner = ResponseHeadScanner::new(max);
        let mut byte_by_byte = scanner.scan(&[]);
        for end in 1..=input.len() {
            byte_by_byte = scanner.scan(&input[..end]);
            if byte_by_byte != Ok(None) {
                break;
            }
        }
        assert_eq!(byte_by_byte, whole, "byte by byte");
        for split in 0..=input.len() {
            let mut scanner = ResponseHeadScanner::new(max);
            let first = scanner.scan(&input[..split]);
            let result = if first == Ok(None) {
                scanner.scan(input)
            } else {
                first
            };
            assert_eq!(result, whole, "split at {split}");
        }
        whole
    }

    /// Scans and parses `input`, and hands the head to `f`.
    fn with_response<T>(
        input: &[u8],
        f: impl FnOnce(ResponseHead<'_>) -> T,
    ) -> Result<T, ResponseError> {
        let len = scan_every_way(input, MAX_HEAD)?.ok_or(ResponseError::Unterminated)?;
        let mut headers = [httparse::EMPTY_HEADER; 16];
        parse_response(&input[..len], &mut headers).map(f)
    }

    fn framing(head: &str) -> Result<ResponseFraming, ResponseError> {
        with_response(head.as_bytes(), |response| response.body_framing())?
    }

    #[test]
    fn parses_rfc6455_section_1_3_response_split_at_every_byte() {
        let mut input = RFC6455_RESPONSE.to_vec();
        input.extend_from_slice(b"\x81\x05Hello");
        assert_eq!(
            scan_every_way(&input, MAX_HEAD),
            Ok(Some(RFC6455_RESPONSE.len()))
        );
        with_response(&input, |response| {
            assert_eq!(response.status(), 101);
            assert_eq!(response.reason(), "Switching Protocols");
            assert_eq!(response.minor_version(), 1);
            assert_eq!(response.header_str("UPGRADE"), Some("websocket"));
            assert!(response.has_token("connection", "upgrade"));
            assert_eq!(
                response.header("sec-websocket-accept"),
                Some(&b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="[..])
            );
            assert_eq!(response.headers().count(), 4);
            assert_eq!(
                response.body_framing(),
                Ok(ResponseFraming::Delimited(BodyFraming::None))
            );
        })
        .unwrap();
    }

    #[test]
    fn parses_event_stream_head_with_bare_lf_and_leading_empty_lines() {
        let input = b"\r\n\nHTTP/1.0 200 OK\nContent-Type: text/event-stream\n\ndata: x\n\n";
        let head_len = input.len() - b"data: x\n\n".len();
        assert_eq!(scan_every_way(input, MAX_HEAD), Ok(Some(head_len)));
        with_response(input, |response| {
            assert_eq!((response.status(), response.minor_version()), (200, 0));
            assert_eq!(response.body_framing(), Ok(ResponseFraming::UntilClose));
        })
        .unwrap();
    }

    #[test]
    fn status_line_without_reason_phrase_is_accepted() {
        with_response(b"HTTP/1.1 204\r\n\r\n", |response| {
            assert_eq!((response.status(), response.reason()), (204, ""));
        })
        .unwrap();
    }

    #[test]
    fn scanner_refuses_head_past_limit() {
        let mut head = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        head.resize(100, b'a');
        assert_eq!(scan_every_way(&head, 99), Err(ResponseError::HeadTooLarge));
        assert_eq!(scan_every_way(&head, 100), Ok(None));
        head.extend_from_slice(b"\r\n\r\n");
        assert_eq!(scan_every_way(&head, 100), Err(ResponseError::HeadTooLarge));
        assert_eq!(scan_every_way(&head, 104), Ok(Some(104)));
    }

    #[test]
    fn refuses_what_is_not_an_http_1_response() {
        let cases: [(&[u8], ResponseError); 8] = [
            (b"<!doctype html><p>hi</p>\n\n", ResponseError::NotHttp1),
            (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", ResponseError::NotHttp1),
            (b"HTTP/2 200\r\n\r\n", ResponseError::NotHttp1),
            (b"HTTP/1.1 2000 OK\r\n\r\n", ResponseError::BadStatusLine),
            (b"HTTP/1.1 20x OK\r\n\r\n", ResponseError::BadStatusLine),
            (
                b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
                ResponseError::BadHeaderName,
            ),
            (
                b"HTTP/1.1 200 OK\r\nX: a\x01b\r\n\r\n",
                ResponseError::BadHeaderValue,
            ),
            (
                b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
                ResponseError::BadHeaderValue,
            ),
        ];
        for (input, error) in cases {
            assert_eq!(with_response(input, |_| ()), Err(error), "{input:?}");
        }
    }

    #[test]
    fn refuses_more_headers_than_the_slots_given() {
        let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
        for _ in 0..3 {
            head.extend_from_slice(b"X: y\r\n");
        }
        head.extend_from_slice(b"\r\n");
        let mut two = [httparse::EMPTY_HEADER; 2];
        assert_eq!(
            parse_response(&head, &mut two).map(|r| r.status()),
            Err(ResponseError::TooManyHeaders)
        );
        let mut three = [httparse::EMPTY_HEADER; 3];
        assert_eq!(
            parse_response(&head, &mut three).map(|r| r.status()),
            Ok(200)
        );
    }

    #[test]
    fn refuses_bytes_that_do_not_end_at_the_blank_line() {
        for input in [&b"HTTP/1.1 200 OK\r\n"[..], b"HTTP/1.1 200 OK\r\n\r\nbody"] {
            let mut headers = [httparse::EMPTY_HEADER; 4];
            assert_eq!(
                parse_response(input, &mut headers).map(|r| r.status()),
                Err(ResponseError::Unterminated)
            );
        }
    }

    #[test]
    fn framing_follows_rfc_9112_section_6_3() {
        use BodyFraming::{Chunked, Length, None as Empty};
        use ResponseError::*;
        use ResponseFraming::{Delimited, UntilClose};
        // (status line, field lines, framing)
        let cases = [
            (
                "HTTP/1.1 200 OK",
                "Content-Length: 42",
                Ok(Delimited(Length(42))),
            ),
            (
                "HTTP/1.1 200 OK",
                "Content-Length: 7, 7\r\ncontent-length: 7",
                Ok(Delimited(Length(7))),
            ),
            (
                "HTTP/1.1 200 OK",
                "Transfer-Encoding: Chunked",
                Ok(Delimited(Chunked)),
            ),
            ("HTTP/1.1 200 OK", "X: y", Ok(UntilClose)),
            ("HTTP/1.0 200 OK", "X: y", Ok(UntilClose)),
            (
                "HTTP/1.1 204 No Content",
                "Content-Length: 9",
                Ok(Delimited(Empty)),
            ),
            (
                "HTTP/1.1 304 Not Modified",
                "Transfer-Encoding: chunked",
                Ok(Delimited(Empty)),
            ),
            (
                "HTTP/1.1 101 Switching Protocols",
                "X: y",
                Ok(Delimited(Empty)),
            ),
            (
                "HTTP/1.1 200 OK",
                "Content-Length: 1\r\nTransfer-Encoding: chunked",
                Err(ContentLengthWithTransferEncoding),
            ),
            (
                "HTTP/1.0 200 OK",
                "Transfer-Encoding: chunked",
                Err(TransferEncodingInHttp10),
            ),
            (
                "HTTP/1.1 200 OK",
                "Transfer-Encoding: gzip, chunked",
                Err(UnsupportedTransferCoding),
            ),
            (
                "HTTP/1.1 200 OK",
                "Transfer-Encoding: gzip",
                Err(UnsupportedTransferCoding),
            ),
            (
                "HTTP/1.1 200 OK",
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
                Err(UnsupportedTransferCoding),
            ),
            (
                "HTTP/1.1 200 OK",
                "Content-Length: 1\r\nContent-Length: 2",
                Err(ConflictingContentLength),
            ),
            (
                "HTTP/1.1 200 OK",
                "Content-Length: -1",
                Err(BadContentLength),
            ),
            (
                "HTTP/1.1 200 OK",
                "Content-Length: 1,,1",
                Err(BadContentLength),
            ),
            ("HTTP/1.1 200 OK", "Content-Length: ", Err(BadContentLength)),
            (
                "HTTP/1.1 200 OK",
                "Content-Length: 99999999999999999999999",
                Err(BadContentLength),
            ),
        ];
        for (status_line, fields, expected) in cases {
            let head = alloc::format!("{status_line}\r\n{fields}\r\n\r\n");
            assert_eq!(framing(&head), expected, "{head}");
        }
    }

    #[test]
    fn every_error_has_a_message() {
        let all = [
            ResponseError::NotHttp1,
            ResponseError::BadStatusLine,
            ResponseError::BadLineEnding,
            ResponseError::BadHeaderName,
            ResponseError::BadHeaderValue,
            ResponseError::HeadTooLarge,
            ResponseError::TooManyHeaders,
            ResponseError::BadContentLength,
            ResponseError::ConflictingContentLength,
            ResponseError::ContentLengthWithTransferEncoding,
            ResponseError::TransferEncodingInHttp10,
            ResponseError::UnsupportedTransferCoding,
            ResponseError::BadChunkedBody,
            ResponseError::Unterminated,
        ];
        let messages: Vec<_> = all.iter().map(ToString::to_string).collect();
        for (i, message) in messages.iter().enumerate() {
            assert!(!message.is_empty());
            assert!(!messages[..i].contains(message), "{message}");
        }
    }
}
