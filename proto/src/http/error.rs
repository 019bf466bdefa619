//! What a peer can do wrong in a request, and the status that answers it.
//!
//! Reading list: RFC 9110 §15 (status codes), RFC 6585 §5 (431), RFC 9112
//! §2.3 (HTTP-version), §9.6 (closing after an error).
//!
//! A leaf of the `http` layer: the head parser ([`crate::http::request`]) and
//! the body decoder ([`crate::http::body`]) both return an [`HttpError`], and
//! each error writes its own response with [`crate::http::response::write_head`].

use alloc::vec::Vec;
use core::fmt;

use crate::http::response::write_head;

/// Every way a request can be refused by this layer. Each variant says what the
/// peer did; [`HttpError::status`] is the answer on the wire. After any of them
/// the connection must be closed: the framing of whatever follows is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// Sent a request line that is not `method SP request-target SP
    /// HTTP-version` (RFC 9112 §3). 400.
    BadRequestLine,
    /// Ended a line with something other than CRLF or a bare LF, such as a
    /// lone CR or bytes after the HTTP version (RFC 9112 §2.2). 400.
    BadLineEnding,
    /// Sent a field name that is not a token, or whitespace before the colon
    /// (RFC 9112 §5.1), or a folded line (obs-fold, RFC 9112 §5.2). 400.
    BadHeaderName,
    /// Sent a field value with a control byte in it (RFC 9110 §5.5). 400.
    BadHeaderValue,
    /// Handed [`crate::http::parse_request`] bytes that do not end exactly at the head's
    /// blank line (use [`crate::http::HeadScanner`] to delimit the head). 400.
    Unterminated,
    /// Sent a head longer than the head limit (`max_head_bytes`) without
    /// ending it. 431 (RFC 6585 §5).
    HeadTooLarge,
    /// Sent more header fields than the header-count limit (`max_headers`).
    /// 431 (RFC 6585 §5).
    TooManyHeaders,
    /// Sent a well-formed HTTP version other than 1.0 or 1.1 (RFC 9110 §2.5,
    /// §15.6.6). 505.
    UnsupportedVersion,
    /// Sent an HTTP/1.1 request without a Host field (RFC 9112 §3.2). 400.
    MissingHost,
    /// Sent more than one Host field line (RFC 9112 §3.2). 400.
    MultipleHost,
    /// Sent both Content-Length and Transfer-Encoding, the classic request
    /// smuggling pair (RFC 9112 §6.1, §6.3 item 3). 400.
    ContentLengthWithTransferEncoding,
    /// Sent Transfer-Encoding in an HTTP/1.0 request, whose framing must then
    /// be treated as faulty (RFC 9112 §6.1). 400.
    TransferEncodingInHttp10,
    /// Sent a Transfer-Encoding whose final coding is not `chunked` (including
    /// an empty one), so the body length cannot be known (RFC 9112 §6.3 item 4). 400.
    ChunkedNotFinal,
    /// Applied `chunked` more than once (RFC 9112 §7). 400.
    ChunkedTwice,
    /// Sent a transfer coding other than `chunked` (gzip, deflate, ...), which
    /// pushloop does not implement (RFC 9112 §6.1). 501.
    UnsupportedTransferCoding,
    /// Sent a Content-Length that is not `1*DIGIT` (RFC 9110 §8.6). 400.
    BadContentLength,
    /// Sent Content-Length values that differ, across field lines or within
    /// one list (RFC 9110 §8.6, RFC 9112 §6.3 item 5). 400.
    ConflictingContentLength,
    /// Declared or sent a body larger than the body limit (`max_body_bytes`).
    /// 413 (RFC 9110 §15.5.14).
    BodyTooLarge,
    /// Sent a chunk-size line that is not `1*HEXDIG [ chunk-ext ] CRLF`, or a
    /// size of more than 16 hex digits (RFC 9112 §7.1). 400.
    BadChunkSize,
    /// Did not follow chunk data with CRLF (RFC 9112 §7.1). 400.
    BadChunkEnd,
    /// Sent more chunk-extension bytes in one body than
    /// [`crate::http::body::MAX_CHUNK_EXTENSION_BYTES`] (RFC 9112 §7.1.1). 413.
    ChunkExtensionsTooLong,
    /// Sent a trailer line that is not a field line (RFC 9112 §7.1.2). 400.
    BadTrailer,
    /// Sent a trailer section longer than
    /// [`crate::http::body::MAX_TRAILER_BYTES`]. 431 (RFC 6585 §5).
    TrailerTooLarge,
    /// Asked to switch to WebSocket (`Upgrade: websocket`) in a request that
    /// also has a body. Where the body ends and the new protocol starts
    /// would depend on whether a reader honours the length: the framing
    /// mismatch behind WebSocket smuggling through proxies. 400. (An offer
    /// of another protocol, which the server ignores, RFC 9110 §7.8, may
    /// have a body.)
    UpgradeWithBody,
}

impl HttpError {
    /// The status code that answers this error (RFC 9110 §15, RFC 6585 §5):
    /// always one of 400, 413, 431, 501, 505.
    pub fn status(self) -> u16 {
        match self {
            HttpError::HeadTooLarge | HttpError::TooManyHeaders | HttpError::TrailerTooLarge => 431,
            HttpError::BodyTooLarge | HttpError::ChunkExtensionsTooLong => 413,
            HttpError::UnsupportedTransferCoding => 501,
            HttpError::UnsupportedVersion => 505,
            HttpError::BadRequestLine
            | HttpError::BadLineEnding
            | HttpError::BadHeaderName
            | HttpError::BadHeaderValue
            | HttpError::Unterminated
            | HttpError::MissingHost
            | HttpError::MultipleHost
            | HttpError::ContentLengthWithTransferEncoding
            | HttpError::TransferEncodingInHttp10
            | HttpError::ChunkedNotFinal
            | HttpError::ChunkedTwice
            | HttpError::BadContentLength
            | HttpError::ConflictingContentLength
            | HttpError::BadChunkSize
            | HttpError::BadChunkEnd
            | HttpError::BadTrailer
            | HttpError::UpgradeWithBody => 400,
        }
    }

    /// Appends a complete response: status line, `Content-Type: text/plain;
    /// charset=utf-8`, `Connection: close` (RFC 9112 §9.6: the framing of
    /// anything after a bad request is unknown, so the connection ends),
    /// `Content-Length`, and a one-line body naming the problem.
    pub fn write_response(self, out: &mut Vec<u8>) {
        let body = self.message();
        let headers = [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Connection", "close"),
        ];
        write_head(out, self.status(), &headers, Some(body.len() + 1));
        out.extend_from_slice(body.as_bytes());
        out.push(b'\n');
    }

    fn message(self) -> &'static str {
        match self {
            HttpError::BadRequestLine => "malformed request line",
            HttpError::BadLineEnding => "malformed line ending",
            HttpError::BadHeaderName => "malformed header field name",
            HttpError::BadHeaderValue => "malformed header field value",
            HttpError::Unterminated => "request head does not end at its blank line",
            HttpError::HeadTooLarge => "request head too large",
            HttpError::TooManyHeaders => "too many header fields",
            HttpError::UnsupportedVersion => "HTTP version not supported",
            HttpError::MissingHost => "missing Host header field",
            HttpError::MultipleHost => "more than one Host header field",
            HttpError::ContentLengthWithTransferEncoding => {
                "both Content-Length and Transfer-Encoding"
            }
            HttpError::TransferEncodingInHttp10 => "Transfer-Encoding in an HTTP/1.0 request",
            HttpError::ChunkedNotFinal => "Transfer-Encoding does not end in chunked",
            HttpError::ChunkedTwice => "chunked applied more than once",
            HttpError::UnsupportedTransferCoding => "transfer coding not implemented",
            HttpError::BadContentLength => "malformed Content-Length",
            HttpError::ConflictingContentLength => "conflicting Content-Length values",
            HttpError::BodyTooLarge => "request body too large",
            HttpError::BadChunkSize => "malformed chunk size line",
            HttpError::BadChunkEnd => "chunk data not followed by CRLF",
            HttpError::ChunkExtensionsTooLong => "chunk extensions too long",
            HttpError::BadTrailer => "malformed trailer field",
            HttpError::TrailerTooLarge => "trailer section too large",
            HttpError::UpgradeWithBody => "a WebSocket upgrade request must not have a body",
        }
    }

    /// Maps an `httparse` error. A version error is 505 when the version is
    /// well formed but not 1.0 or 1.1, and 400 otherwise.
    pub(crate) fn from_httparse(error: httparse::Error, head: &[u8]) -> HttpError {
        match error {
            httparse::Error::HeaderName => HttpError::BadHeaderName,
            httparse::Error::HeaderValue => HttpError::BadHeaderValue,
            httparse::Error::NewLine => HttpError::BadLineEnding,
            httparse::Error::TooManyHeaders => HttpError::TooManyHeaders,
            httparse::Error::Version if has_wellformed_version(head) => {
                HttpError::UnsupportedVersion
            }
            httparse::Error::Version | httparse::Error::Token | httparse::Error::Status => {
                HttpError::BadRequestLine
            }
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message(), self.status())
    }
}

impl core::error::Error for HttpError {}

/// Does the request line end in a well-formed version that httparse refused?
///
/// ```text
/// HTTP-version = HTTP-name "/" DIGIT "." DIGIT     ; RFC 9112 §2.3
/// HTTP-name    = %s"HTTP"
/// ```
///
/// httparse accepts only `HTTP/1.0` and `HTTP/1.1`; anything else of this
/// shape (`HTTP/2.0`, `HTTP/1.2`) is a version we do not support (505) rather
/// than a malformed request (400). RFC 9110 §2.5 would let a server answer a
/// 1.2 request as 1.1; httparse does not, and no client sends one.
fn has_wellformed_version(head: &[u8]) -> bool {
    // RFC 9112 §2.2: empty lines before the request line are ignored.
    let start = head
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(head.len());
    let line = head.get(start..).unwrap_or_default();
    let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // RFC 9112 §3: method SP request-target SP HTTP-version — exactly two
    // spaces; with more, the line is malformed (400), not a new version.
    if line.iter().filter(|&&b| b == b' ').count() != 2 {
        return false;
    }
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
    matches!(
        version,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::httparse;

    const ALL_ERRORS: [HttpError; 24] = [
        HttpError::BadRequestLine,
        HttpError::BadLineEnding,
        HttpError::BadHeaderName,
        HttpError::BadHeaderValue,
        HttpError::Unterminated,
        HttpError::HeadTooLarge,
        HttpError::TooManyHeaders,
        HttpError::UnsupportedVersion,
        HttpError::MissingHost,
        HttpError::MultipleHost,
        HttpError::ContentLengthWithTransferEncoding,
        HttpError::TransferEncodingInHttp10,
        HttpError::ChunkedNotFinal,
        HttpError::ChunkedTwice,
        HttpError::UnsupportedTransferCoding,
        HttpError::BadContentLength,
        HttpError::ConflictingContentLength,
        HttpError::BodyTooLarge,
        HttpError::BadChunkSize,
        HttpError::BadChunkEnd,
        HttpError::ChunkExtensionsTooLong,
        HttpError::BadTrailer,
        HttpError::TrailerTooLarge,
        HttpError::UpgradeWithBody,
    ];

    #[test]
    fn every_error_writes_a_parseable_closing_response() {
        for error in ALL_ERRORS {
            assert!([400, 413, 431, 501, 505].contains(&error.status()));
            let mut out = Vec::new();
            error.write_response(&mut out);
            let mut headers = [httparse::EMPTY_HEADER; 8];
            let mut response = httparse::Response::new(&mut headers);
            let httparse::Status::Complete(head_len) = response.parse(&out).unwrap() else {
                panic!("partial response for {error:?}");
            };
            assert_eq!(response.code, Some(error.status()));
            let body = &out[head_len..];
            let length = response
                .headers
                .iter()
                .find(|h| h.name == "Content-Length")
                .map(|h| {
                    core::str::from_utf8(h.value)
                        .unwrap()
                        .parse::<usize>()
                        .unwrap()
                });
            assert_eq!(length, Some(body.len()));
            assert!(response
                .headers
                .iter()
                .any(|h| h.name == "Connection" && h.value == b"close"));
            assert_eq!(body.iter().filter(|&&b| b == b'\n').count(), 1);
            assert!(error.to_string().contains(&error.status().to_string()));
        }
    }

    #[test]
    fn error_response_bytes() {
        let mut out = Vec::new();
        HttpError::HeadTooLarge.write_response(&mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n\
              Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\
              Content-Length: 23\r\n\r\nrequest head too large\n"
        );
    }
}
