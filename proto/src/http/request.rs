//! Request heads: finding where one ends, parsing it in place, and reading it.
//!
//! Reading list:
//! - RFC 9112 §2.2 (message parsing; a bare LF may end a line; empty lines
//!   before the request line are ignored), §2.3 (HTTP-version), §3 (request
//!   line), §3.2 (Host), §3.2.2 (absolute-form), §5 (field lines), §6.1–6.3
//!   (message body length and request smuggling), §9.3 (persistence).
//! - RFC 9110 §5.1, §5.6.1–5.6.3 (field names, lists, tokens, OWS), §8.6
//!   (Content-Length), §7.6.1 (Connection), §15 (status codes).
//! - RFC 6585 §5 (431).
//! - CVE-2023-43669 (tungstenite): rescanning the whole buffer for the end of
//!   the head on every read made a trickled head cost quadratic time.

use alloc::borrow::Cow;

use crate::http::body::BodyFraming;
use crate::http::error::HttpError;
use crate::http::syntax::{list_elements, trim_ows};
use crate::http::uri;

/// Where the scanner is within the head, so a call can resume on the next
/// byte without looking back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ScanState {
    /// Before the request line: CR and LF here are the empty lines RFC 9112
    /// §2.2 says to ignore.
    LeadingEmptyLines,
    /// Inside a line (request line or field line).
    InLine,
    /// Just after an LF: a line starts here, and if it is empty the head ends.
    LineStart,
    /// A CR at the start of a line: an LF now ends the head.
    LineStartCr,
    /// The head ended; `searched` is its length.
    Done,
}

/// Finds the end of a request head incrementally.
///
/// Each call looks only at bytes it has not seen before, so a head that
/// arrives one byte per read costs O(n) in total, not O(n²) (CVE-2023-43669).
/// Instead of re-reading a few bytes of overlap, the scanner carries a
/// four-state machine across calls ("just after a line feed", ...).
///
/// The head ends at the first empty line: CRLF CRLF, or, because httparse
/// accepts a bare LF as a line ending (RFC 9112 §2.2 allows it: "a recipient
/// MAY recognize a single LF as a line terminator and ignore any preceding
/// CR"), also LF LF and LF CRLF. Empty lines before the request line are
/// skipped (RFC 9112 §2.2), as httparse does. The scanner and httparse therefore
/// agree on where the head ends, and [`parse_request`] checks that they do.
///
/// ```
/// use pushloop_proto::http::HeadScanner;
/// let mut scanner = HeadScanner::new(8 * 1024);
/// let mut buf = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
/// assert_eq!(scanner.scan(&buf), Ok(None));
/// buf.extend_from_slice(b"\r\nnext request...");
/// assert_eq!(scanner.scan(&buf), Ok(Some(27)));
/// ```
#[derive(Clone, Debug)]
pub struct HeadScanner {
    max_head_bytes: usize,
    /// How many bytes of the buffer have been searched.
    searched: usize,
    state: ScanState,
    /// Bytes looked at over the scanner's life, so a test can prove the
    /// linear bound by counting instead of timing.
    #[cfg(test)]
    examined: usize,
}

impl HeadScanner {
    /// A scanner that refuses heads longer than `max_head_bytes`
    /// (`max_head_bytes` limit).
    pub fn new(max_head_bytes: usize) -> Self {
        HeadScanner {
            max_head_bytes,
            searched: 0,
            state: ScanState::LeadingEmptyLines,
            #[cfg(test)]
            examined: 0,
        }
    }

    /// Looks for the blank line that ends the head in `buf`: the whole head
    /// buffered so far, to which bytes are only ever appended between calls.
    /// Only bytes not seen by an earlier call are examined.
    ///
    /// - `Ok(Some(head_len))`: the head is `buf[..head_len]`, blank line
    ///   included; what follows is body or the next request. Calling again
    ///   returns the same length until [`HeadScanner::reset`].
    /// - `Ok(None)`: no end yet; call again when more bytes arrive.
    /// - `Err(HttpError::HeadTooLarge)`: `buf` is longer than the limit and the
    ///   first `max_head_bytes` bytes hold no end (also when the end lies past
    ///   the limit).
    ///
    /// A `buf` shorter than what was already searched means a new head (the
    /// caller forgot [`HeadScanner::reset`]): the scanner starts over. Never
    /// panics.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, HttpError> {
        if buf.len() < self.searched {
            self.reset();
        }
        if self.state == ScanState::Done {
            return Ok(Some(self.searched));
        }
        let limit = buf.len().min(self.max_head_bytes);
        let unseen = buf.get(self.searched..limit).unwrap_or_default();
        for (offset, &byte) in unseen.iter().enumerate() {
            #[cfg(test)]
            {
                self.examined += 1;
            }
            self.state = match (self.state, byte) {
                // RFC 9112 §2.2: ignore empty lines before the request line.
                (ScanState::LeadingEmptyLines, b'\r' | b'\n') => ScanState::LeadingEmptyLines,
                (ScanState::LineStart, b'\n') | (ScanState::LineStartCr, b'\n') => ScanState::Done,
                (ScanState::LineStart, b'\r') => ScanState::LineStartCr,
                // LF ends a line, with or without a CR before it (RFC 9112 §2.2).
                (_, b'\n') => ScanState::LineStart,
                // Anything else is line content; httparse judges whether it is valid.
                _ => ScanState::InLine,
            };
            if self.state == ScanState::Done {
                self.searched += offset + 1;
                return Ok(Some(self.searched));
            }
        }
        self.searched = self.searched.max(limit);
        if buf.len() > self.max_head_bytes {
            return Err(HttpError::HeadTooLarge);
        }
        Ok(None)
    }

    /// Forgets the searched prefix, ready for the next head.
    pub fn reset(&mut self) {
        self.searched = 0;
        self.state = ScanState::LeadingEmptyLines;
    }
}

/// Parses a complete head, as delimited by [`HeadScanner`], in place.
///
/// `headers.len()` is the header-count limit
/// (`max_headers` limit): more fields give
/// [`HttpError::TooManyHeaders`] (431). Nothing is copied: the [`Request`]
/// borrows `head` and `headers`. Also enforces RFC 9112 §3.2: an HTTP/1.1
/// request needs exactly one Host field line, and no request may have two.
///
/// ```
/// use pushloop_proto::http::{httparse, parse_request};
/// let mut headers = [httparse::EMPTY_HEADER; 16];
/// let req = parse_request(b"GET /poll?after=7 HTTP/1.1\r\nHost: a\r\n\r\n", &mut headers)?;
/// assert_eq!((req.method(), req.path(), req.query_param("after").as_deref()), ("GET", "/poll", Some("7")));
/// # Ok::<(), pushloop_proto::http::HttpError>(())
/// ```
pub fn parse_request<'a>(
    head: &'a [u8],
    headers: &'a mut [httparse::Header<'a>],
) -> Result<Request<'a>, HttpError> {
    let mut parsed = httparse::Request::new(headers);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(len)) if len == head.len() => {}
        Ok(_) => return Err(HttpError::Unterminated),
        Err(error) => return Err(HttpError::from_httparse(error, head)),
    }
    let httparse::Request {
        method,
        path,
        version,
        headers,
    } = parsed;
    let (Some(method), Some(target), Some(minor_version)) = (method, path, version) else {
        return Err(HttpError::Unterminated);
    };
    let request = Request {
        method,
        target,
        minor_version,
        headers,
    };
    // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code
    // to any HTTP/1.1 request message that lacks a Host header field and to any
    // request message that contains more than one Host header field line".
    match request.header_all("host").count() {
        0 if minor_version == 1 => Err(HttpError::MissingHost),
        0 | 1 => Ok(request),
        _ => Err(HttpError::MultipleHost),
    }
}

/// A parsed request head, borrowing the bytes it was parsed from.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    method: &'a str,
    target: &'a str,
    minor_version: u8,
    headers: &'a [httparse::Header<'a>],
}

impl<'a> Request<'a> {
    /// The method, case-sensitive (RFC 9110 §9.1): `GET`, `POST`, ...
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// The raw request-target (RFC 9112 §3.2), e.g. `/poll?after=7`.
    pub fn target(&self) -> &'a str {
        self.target
    }

    /// The path: the target before `?`. For an absolute-form target
    /// (`http://host/a?b`, RFC 9112 §3.2.2), the part after the authority
    /// (`/a`, or `/` when empty). No percent-decoding is applied.
    pub fn path(&self) -> &'a str {
        let path = match self.target.split_once('?') {
            Some((path, _)) => path,
            None => self.target,
        };
        absolute_form_path(path).unwrap_or(path)
    }

    /// The query: the target after the first `?`, if there is one.
    pub fn query(&self) -> Option<&'a str> {
        self.target.split_once('?').map(|(_, query)| query)
    }

    /// The value of the first pair in the query whose name is `name`, both
    /// decoded as a browser encodes them (WHATWG URL §5.1: `+` is a space,
    /// `%XX` an octet, see [`crate::http::uri`]). A name without `=` gives
    /// `Some("")`. Borrows when there is nothing to decode.
    pub fn query_param(&self, name: &str) -> Option<Cow<'a, str>> {
        uri::query_pairs(self.query()?).find_map(|(key, value)| (key == name).then_some(value))
    }

    /// The path's segments, each percent-decoded (RFC 3986 §3.3, §2.1):
    /// `/rooms/a%20b` gives `rooms`, `a b`. Match on them to route:
    ///
    /// ```
    /// # use pushloop_proto::http::{httparse, parse_request};
    /// # let mut headers = [httparse::EMPTY_HEADER; 4];
    /// # let req = parse_request(b"GET /rooms/a%20b/events HTTP/1.1\r\nHost: x\r\n\r\n", &mut headers).unwrap();
    /// let segments: Vec<_> = req.path_segments().collect();
    /// match (req.method(), segments.as_slice()) {
    ///     ("GET", [rooms, name, events]) if rooms == "rooms" && events == "events" => {
    ///         assert_eq!(name, "a b");
    ///     }
    ///     _ => unreachable!(),
    /// }
    /// ```
    pub fn path_segments(&self) -> impl Iterator<Item = Cow<'a, str>> {
        uri::path_segments(self.path())
    }

    /// The minor HTTP version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub fn minor_version(&self) -> u8 {
        self.minor_version
    }

    /// The value of the first field named `name`, compared ASCII
    /// case-insensitively (RFC 9110 §5.1). httparse has trimmed its OWS.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.header_all(name).next()
    }

    /// [`Request::header`] as text: `None` when absent or not UTF-8.
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
    /// comma-separated list (RFC 9110 §5.6.1), elements OWS-trimmed and
    /// compared ASCII case-insensitively: `Connection: keep-alive, Upgrade`
    /// holds `upgrade`. Quoted strings are not unquoted (the lists this is
    /// used for, Connection and Upgrade, hold only tokens).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.header_all(name)
            .flat_map(list_elements)
            .any(|element| element.eq_ignore_ascii_case(token.as_bytes()))
    }

    /// How the body is delimited (RFC 9112 §6.3), refusing every framing an
    /// intermediary could read differently (request smuggling):
    ///
    /// 1. Transfer-Encoding in HTTP/1.0 → 400 (§6.1).
    /// 2. Transfer-Encoding with Content-Length → 400 (§6.1 allows rejecting;
    ///    we do).
    /// 3. Transfer-Encoding: the final coding must be `chunked` (§6.3 item 4,
    ///    400), applied once (§7, 400), with no other coding (§6.1, 501).
    /// 4. Content-Length: each value `1*DIGIT`, and all values equal (§6.3
    ///    item 5, 400). Identical duplicates (`42, 42` or two equal lines) are
    ///    accepted as one value, the option RFC 9110 §8.6 gives to "replace that
    ///    invalid field value with a single instance of the decimal value". A
    ///    length above `max_body` is 413 before any body byte is read.
    /// 5. Neither: no body (§6.3 item 6).
    pub fn body_framing(&self, max_body: usize) -> Result<BodyFraming, HttpError> {
        let transfer_encoding = self.header("transfer-encoding").is_some();
        let content_length = self.header("content-length").is_some();
        if transfer_encoding {
            if content_length {
                return Err(HttpError::ContentLengthWithTransferEncoding);
            }
            if self.minor_version == 0 {
                return Err(HttpError::TransferEncodingInHttp10);
            }
            self.check_transfer_codings()?;
            return Ok(BodyFraming::Chunked);
        }
        match self.content_length()? {
            None => Ok(BodyFraming::None),
            Some(length) if length > max_body => Err(HttpError::BodyTooLarge),
            Some(length) => Ok(BodyFraming::Length(length)),
        }
    }

    /// RFC 9112 §6.1, §6.3 item 4, §7: the only acceptable list is `chunked`.
    /// Transfer-coding names are case-insensitive (RFC 9112 §7).
    fn check_transfer_codings(&self) -> Result<(), HttpError> {
        let codings = || self.header_all("transfer-encoding").flat_map(list_elements);
        let is_chunked = |coding: &[u8]| coding.eq_ignore_ascii_case(b"chunked");
        if !codings().last().is_some_and(is_chunked) {
            return Err(HttpError::ChunkedNotFinal);
        }
        // Any coding before the final `chunked` is one too many.
        let earlier = codings().count().saturating_sub(1);
        match codings().take(earlier).next() {
            None => Ok(()),
            Some(coding) if is_chunked(coding) => Err(HttpError::ChunkedTwice),
            Some(_) => Err(HttpError::UnsupportedTransferCoding),
        }
    }

    /// The single Content-Length value, if any (RFC 9110 §8.6).
    fn content_length(&self) -> Result<Option<usize>, HttpError> {
        let mut length = None;
        for value in self.header_all("content-length") {
            // Empty list elements are not skipped here: `Content-Length: 1,,1`
            // is not 1*DIGIT and no merge of valid duplicates produces it.
            for element in value.split(|&b| b == b',') {
                let element = parse_decimal(trim_ows(element))?;
                match length {
                    None => length = Some(element),
                    Some(seen) if seen == element => {}
                    Some(_) => return Err(HttpError::ConflictingContentLength),
                }
            }
        }
        Ok(length)
    }

    /// Should the connection stay open after this request (RFC 9112 §9.3)?
    /// A `close` connection option ends it; otherwise HTTP/1.1 persists, and
    /// HTTP/1.0 persists only with `keep-alive` (RFC 9112 §C.2.2).
    pub fn keep_alive(&self) -> bool {
        if self.has_token("connection", "close") {
            return false;
        }
        self.minor_version == 1 || self.has_token("connection", "keep-alive")
    }
}

/// `Content-Length = 1*DIGIT` (RFC 9110 §8.6). A numeral too large for `usize`
/// is larger than any body limit, so it is [`HttpError::BodyTooLarge`]; RFC 9110
/// §8.6 asks recipients to "prevent parsing errors due to integer conversion
/// overflows".
fn parse_decimal(digits: &[u8]) -> Result<usize, HttpError> {
    if digits.is_empty() {
        return Err(HttpError::BadContentLength);
    }
    let mut value: usize = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return Err(HttpError::BadContentLength);
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(usize::from(digit - b'0')))
            .ok_or(HttpError::BodyTooLarge)?;
    }
    Ok(value)
}

/// For an absolute-form target (`http://host/path`, RFC 9112 §3.2.2), the
/// path after the authority; `None` for other forms.
fn absolute_form_path(target: &str) -> Option<&str> {
    let scheme_end = target.find("://")?;
    let scheme = target.get(..scheme_end)?;
    // RFC 3986 §3.1: schemes are case-insensitive.
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let after_scheme = target.get(scheme_end + 3..)?;
    Some(match after_scheme.find('/') {
        Some(slash) => after_scheme.get(slash..).unwrap_or("/"),
        None => "/",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RFC 6455 §1.3 sample opening handshake, a real-world head.
    const RFC6455_REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\n\
        Host: server.example.com\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Origin: http://example.com\r\n\
        Sec-WebSocket-Protocol: chat, superchat\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    const MAX_HEAD: usize = 8 * 1024;

    /// Parses `head` (which must be a whole head) and hands the request to `f`.
    fn with_request<T>(head: &[u8], f: impl FnOnce(Request<'_>) -> T) -> Result<T, HttpError> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        parse_request(head, &mut headers).map(f)
    }

    fn framing(head: &str, max_body: usize) -> Result<BodyFraming, HttpError> {
        with_request(head.as_bytes(), |req| req.body_framing(max_body))?
    }

    /// Scans `input` whole, byte by byte, and split at every offset; all three
    /// must agree, and the answer is returned.
    fn scan_every_way(input: &[u8], max: usize) -> Result<Option<usize>, HttpError> {
        let whole = HeadScanner::new(max).scan(input);

        let mut scanner = HeadScanner::new(max);
        let mut byte_by_byte = Ok(None);
        for end in 1..=input.len() {
            byte_by_byte = scanner.scan(&input[..end]);
            if byte_by_byte != Ok(None) {
                break;
            }
        }
        if input.is_empty() {
            byte_by_byte = scanner.scan(input);
        }
        assert_eq!(byte_by_byte, whole, "byte by byte");

        for split in 0..=input.len() {
            let mut scanner = HeadScanner::new(max);
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

    // --- HeadScanner --------------------------------------------------------

    #[test]
    fn scanner_finds_end_of_rfc6455_sample() {
        assert_eq!(
            scan_every_way(RFC6455_REQUEST, MAX_HEAD),
            Ok(Some(RFC6455_REQUEST.len()))
        );
    }

    #[test]
    fn scanner_stops_at_first_blank_line_of_pipelined_requests() {
        let one = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        let two = [&one[..], b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"].concat();
        assert_eq!(scan_every_way(&two, MAX_HEAD), Ok(Some(one.len())));
    }

    #[test]
    fn scanner_accepts_bare_lf_like_httparse() {
        for head in [
            &b"GET / HTTP/1.1\nHost: a\n\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\n\r\n",
            b"GET / HTTP/1.1\nHost: a\r\n\n",
        ] {
            assert_eq!(scan_every_way(head, MAX_HEAD), Ok(Some(head.len())));
            with_request(head, |req| assert_eq!(req.header_str("host"), Some("a"))).unwrap();
        }
    }

    #[test]
    fn scanner_skips_empty_lines_before_request_line() {
        let head = b"\r\n\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(scan_every_way(head, MAX_HEAD), Ok(Some(head.len())));
        with_request(head, |req| assert_eq!(req.path(), "/")).unwrap();
    }

    #[test]
    fn scanner_needs_more_without_blank_line() {
        assert_eq!(
            scan_every_way(b"GET / HTTP/1.1\r\nHost: a\r\n", MAX_HEAD),
            Ok(None)
        );
        assert_eq!(scan_every_way(b"", MAX_HEAD), Ok(None));
        assert_eq!(scan_every_way(b"\r\n\r\n\r\n", MAX_HEAD), Ok(None));
    }

    #[test]
    fn scanner_rejects_head_past_limit() {
        let mut head = b"GET / HTTP/1.1\r\nX: ".to_vec();
        head.resize(100, b'a');
        assert_eq!(scan_every_way(&head, 99), Err(HttpError::HeadTooLarge));
        // Exactly at the limit without an end: still waiting.
        assert_eq!(scan_every_way(&head, 100), Ok(None));
        // An end just past the limit does not count.
        head.extend_from_slice(b"\r\n\r\n");
        assert_eq!(scan_every_way(&head, 100), Err(HttpError::HeadTooLarge));
        assert_eq!(scan_every_way(&head, 104), Ok(Some(104)));
    }

    #[test]
    fn scanner_ignores_bytes_after_limit_when_head_ends_within_it() {
        let mut buf = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
        let head_len = buf.len();
        buf.resize(10_000, b'x');
        assert_eq!(scan_every_way(&buf, head_len), Ok(Some(head_len)));
    }

    #[test]
    fn scanner_examines_each_byte_once_when_trickled() {
        // An 8 KiB head fed one byte per call: the naive rescan would examine
        // n²/2 ≈ 33 million bytes; this scanner examines each byte once.
        let mut head = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
        head.resize(MAX_HEAD - 4, b'p');
        head.extend_from_slice(b"\r\n\r\n");
        let mut scanner = HeadScanner::new(MAX_HEAD);
        let mut found = None;
        for end in 1..=head.len() {
            if let Some(len) = scanner.scan(&head[..end]).unwrap() {
                found = Some(len);
                break;
            }
        }
        assert_eq!(found, Some(head.len()));
        assert_eq!(scanner.examined, head.len());
    }

    #[test]
    fn scanner_repeats_result_until_reset() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY";
        let mut scanner = HeadScanner::new(MAX_HEAD);
        assert_eq!(scanner.scan(head), Ok(Some(27)));
        assert_eq!(scanner.scan(head), Ok(Some(27)));
        scanner.reset();
        assert_eq!(scanner.scan(b"GET / HTTP/1.1\r\n"), Ok(None));
        assert_eq!(scanner.examined, 27 + 16);
    }

    #[test]
    fn scanner_starts_over_on_shorter_buffer() {
        let mut scanner = HeadScanner::new(MAX_HEAD);
        assert_eq!(scanner.scan(b"GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None));
        assert_eq!(scanner.scan(b"\r\n"), Ok(None));
        assert_eq!(scanner.scan(b"GET / HTTP/1.1\n\n"), Ok(Some(16)));
    }

    // --- parse_request and the accessors ------------------------------------

    #[test]
    fn parses_rfc6455_sample_request() {
        with_request(RFC6455_REQUEST, |req| {
            assert_eq!(req.method(), "GET");
            assert_eq!(req.target(), "/chat");
            assert_eq!(req.path(), "/chat");
            assert_eq!(req.query(), None);
            assert_eq!(req.minor_version(), 1);
            assert_eq!(req.header("HOST"), Some(&b"server.example.com"[..]));
            assert_eq!(req.header_str("sec-websocket-version"), Some("13"));
            assert!(req.has_token("connection", "upgrade"));
            assert!(req.has_token("Sec-WebSocket-Protocol", "superchat"));
            assert_eq!(req.headers().count(), 7);
            assert_eq!(
                req.headers().next(),
                Some(("Host", &b"server.example.com"[..]))
            );
            assert_eq!(req.body_framing(0), Ok(BodyFraming::None));
            assert!(req.keep_alive());
        })
        .unwrap();
    }

    #[test]
    fn splits_path_and_query() {
        with_request(
            b"GET /poll?after=7&x&after=9&e= HTTP/1.1\r\nHost: a\r\n\r\n",
            |req| {
                assert_eq!(req.path(), "/poll");
                assert_eq!(req.query(), Some("after=7&x&after=9&e="));
                assert_eq!(req.query_param("after").as_deref(), Some("7"));
                assert_eq!(req.query_param("x").as_deref(), Some(""));
                assert_eq!(req.query_param("e").as_deref(), Some(""));
                assert_eq!(req.query_param("AFTER"), None);
                assert_eq!(req.query_param("missing"), None);
            },
        )
        .unwrap();
        with_request(b"GET /a%20b?q=a%26b HTTP/1.1\r\nHost: a\r\n\r\n", |req| {
            assert_eq!(req.path(), "/a%20b", "the path is the target's, as sent");
            let segments: Vec<_> = req.path_segments().collect();
            assert_eq!(segments, ["a b"]);
            // WHATWG URL §5.1: decoded after splitting, so `%26` is a `&` in the value.
            assert_eq!(req.query_param("q").as_deref(), Some("a&b"));
        })
        .unwrap();
        with_request(b"GET /? HTTP/1.1\r\nHost: a\r\n\r\n", |req| {
            assert_eq!(req.query(), Some(""));
            assert_eq!(req.query_param(""), None, "an empty query has no pairs");
        })
        .unwrap();
    }

    #[test]
    fn path_of_absolute_form_target_drops_scheme_and_authority() {
        for (target, path) in [
            ("http://example.com/events?x=1", "/events"),
            ("HTTPS://example.com", "/"),
            ("http://example.com?after=1", "/"),
            ("ftp://example.com/a", "ftp://example.com/a"),
            ("*", "*"),
        ] {
            let head = format!("OPTIONS {target} HTTP/1.1\r\nHost: example.com\r\n\r\n");
            with_request(head.as_bytes(), |req| assert_eq!(req.path(), path)).unwrap();
        }
    }

    #[test]
    fn header_lookup_is_case_insensitive_and_trimmed() {
        with_request(
            b"GET / HTTP/1.1\r\nhOsT: a\r\nX-A:  \t v \t \r\nX-A: second\r\n\r\n",
            |req| {
                assert_eq!(req.header("Host"), Some(&b"a"[..]));
                assert_eq!(req.header_str("x-a"), Some("v"));
                assert_eq!(
                    req.header_all("X-a").collect::<Vec<_>>(),
                    [&b"v"[..], b"second"]
                );
                assert_eq!(req.header("missing"), None);
            },
        )
        .unwrap();
        with_request(b"GET / HTTP/1.1\r\nHost: a\r\nX-Bin: \xff\r\n\r\n", |req| {
            assert_eq!(req.header("x-bin"), Some(&b"\xff"[..]));
            assert_eq!(req.header_str("x-bin"), None);
        })
        .unwrap();
    }

    #[test]
    fn token_lists_match_any_case_across_lines() {
        with_request(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive,\r\nconnection:  ,UPGRADE , x\r\n\r\n",
            |req| {
                assert!(req.has_token("Connection", "upgrade"));
                assert!(req.has_token("CONNECTION", "Keep-Alive"));
                assert!(req.has_token("connection", "x"));
                assert!(!req.has_token("connection", ""));
                assert!(!req.has_token("connection", "upgrade,"));
                assert!(!req.has_token("connection", "keep"));
                assert!(!req.has_token("upgrade", "upgrade"));
            },
        )
        .unwrap();
    }

    #[test]
    fn keep_alive_follows_rfc_9112_section_9_3() {
        let cases: [(&[u8], bool); 6] = [
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n",
                false,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade, close\r\n\r\n",
                false,
            ),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
            (
                b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
                false,
            ),
        ];
        for (head, keep_alive) in cases {
            assert_eq!(with_request(head, |req| req.keep_alive()), Ok(keep_alive));
        }
    }

    #[test]
    fn rejects_malformed_heads_with_400() {
        let cases: [(&[u8], HttpError); 10] = [
            (b"GET\r\n\r\n", HttpError::BadRequestLine),
            (
                b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n",
                HttpError::BadRequestLine,
            ),
            (
                b"GET / HTPT/1.1\r\nHost: a\r\n\r\n",
                HttpError::BadRequestLine,
            ),
            (
                b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
                HttpError::BadLineEnding,
            ),
            (
                b"GET / HTTP/1.1\r\nHo st: a\r\n\r\n",
                HttpError::BadHeaderName,
            ),
            (
                b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
                HttpError::BadHeaderName,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
                HttpError::BadHeaderName,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\x01b\r\n\r\n",
                HttpError::BadHeaderValue,
            ),
            (b"GET / HTTP/1.1\r\nHost: a\r\n", HttpError::Unterminated),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\n\r\nextra",
                HttpError::Unterminated,
            ),
        ];
        for (head, error) in cases {
            assert_eq!(
                with_request(head, |_| ()),
                Err(error),
                "{:?}",
                String::from_utf8_lossy(head)
            );
            assert_eq!(error.status(), 400);
        }
    }

    #[test]
    fn rejects_unsupported_version_with_505() {
        for version in ["HTTP/2.0", "HTTP/1.2", "HTTP/0.9", "HTTP/3.0"] {
            let head = format!("GET / {version}\r\nHost: a\r\n\r\n");
            assert_eq!(
                with_request(head.as_bytes(), |_| ()),
                Err(HttpError::UnsupportedVersion)
            );
        }
        assert_eq!(HttpError::UnsupportedVersion.status(), 505);
    }

    #[test]
    fn rejects_too_many_headers_with_431() {
        let mut head = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..3 {
            head.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        let mut four = [httparse::EMPTY_HEADER; 4];
        assert!(parse_request(&head, &mut four).is_ok());
        let mut three = [httparse::EMPTY_HEADER; 3];
        assert_eq!(
            parse_request(&head, &mut three).err(),
            Some(HttpError::TooManyHeaders)
        );
        assert_eq!(HttpError::TooManyHeaders.status(), 431);
        assert_eq!(HttpError::HeadTooLarge.status(), 431);
    }

    #[test]
    fn enforces_host_rules_of_rfc_9112_section_3_2() {
        assert_eq!(
            with_request(b"GET / HTTP/1.1\r\n\r\n", |_| ()),
            Err(HttpError::MissingHost)
        );
        assert_eq!(
            with_request(b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", |_| ()),
            Err(HttpError::MultipleHost)
        );
        assert_eq!(
            with_request(b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", |_| ()),
            Err(HttpError::MultipleHost)
        );
        // HTTP/1.0 predates Host; an empty Host is valid (RFC 9110 §7.2).
        assert!(with_request(b"GET / HTTP/1.0\r\n\r\n", |_| ()).is_ok());
        assert!(with_request(b"GET / HTTP/1.1\r\nHost:\r\n\r\n", |_| ()).is_ok());
        assert_eq!(HttpError::MissingHost.status(), 400);
        assert_eq!(HttpError::MultipleHost.status(), 400);
    }

    // --- body_framing -------------------------------------------------------

    #[test]
    fn framing_by_content_length() {
        let head = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(framing(head, 5), Ok(BodyFraming::Length(5)));
        let zero = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(framing(zero, 0), Ok(BodyFraming::Length(0)));
        let leading_zeros = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n";
        assert_eq!(framing(leading_zeros, 7), Ok(BodyFraming::Length(7)));
    }

    #[test]
    fn framing_by_chunked_in_any_case() {
        for te in ["chunked", "Chunked", "CHUNKED", " chunked ", ", chunked,"] {
            let head = format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:{te}\r\n\r\n");
            assert_eq!(framing(&head, 0), Ok(BodyFraming::Chunked), "{te}");
        }
    }

    #[test]
    fn framing_none_without_length_or_coding() {
        assert_eq!(
            framing("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0),
            Ok(BodyFraming::None)
        );
        assert_eq!(framing("POST / HTTP/1.0\r\n\r\n", 0), Ok(BodyFraming::None));
    }

    #[test]
    fn rejects_declared_length_over_limit_with_413() {
        let head = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048577\r\n\r\n";
        assert_eq!(framing(head, 1 << 20), Err(HttpError::BodyTooLarge));
        let huge =
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999999\r\n\r\n";
        assert_eq!(framing(huge, usize::MAX), Err(HttpError::BodyTooLarge));
        assert_eq!(HttpError::BodyTooLarge.status(), 413);
    }

    #[test]
    fn rejects_content_length_with_transfer_encoding() {
        for head in [
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\n",
        ] {
            assert_eq!(
                framing(head, 100),
                Err(HttpError::ContentLengthWithTransferEncoding)
            );
        }
        assert_eq!(HttpError::ContentLengthWithTransferEncoding.status(), 400);
    }

    #[test]
    fn rejects_transfer_encoding_in_http_1_0() {
        let head = "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(framing(head, 100), Err(HttpError::TransferEncodingInHttp10));
        assert_eq!(HttpError::TransferEncodingInHttp10.status(), 400);
    }

    #[test]
    fn rejects_transfer_codings_other_than_a_single_final_chunked() {
        let cases = [
            ("gzip, chunked", HttpError::UnsupportedTransferCoding),
            (
                "gzip\r\nTransfer-Encoding: chunked",
                HttpError::UnsupportedTransferCoding,
            ),
            ("chunked;q=1", HttpError::ChunkedNotFinal),
            ("gzip", HttpError::ChunkedNotFinal),
            ("chunked, gzip", HttpError::ChunkedNotFinal),
            ("", HttpError::ChunkedNotFinal),
            (" , ", HttpError::ChunkedNotFinal),
            ("identity", HttpError::ChunkedNotFinal),
            ("chunked, chunked", HttpError::ChunkedTwice),
            (
                "chunked\r\nTransfer-Encoding: chunked",
                HttpError::ChunkedTwice,
            ),
        ];
        for (te, error) in cases {
            let head = format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {te}\r\n\r\n");
            assert_eq!(framing(&head, 100), Err(error), "{te:?}");
        }
        assert_eq!(HttpError::UnsupportedTransferCoding.status(), 501);
        assert_eq!(HttpError::ChunkedNotFinal.status(), 400);
        assert_eq!(HttpError::ChunkedTwice.status(), 400);
    }

    #[test]
    fn rejects_malformed_content_length() {
        for value in ["", "-1", "+1", "0x10", "1 1", "1.0", "1,,1", ",1", "١"] {
            let head = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {value}\r\n\r\n");
            assert_eq!(
                framing(&head, 100),
                Err(HttpError::BadContentLength),
                "{value:?}"
            );
        }
        assert_eq!(HttpError::BadContentLength.status(), 400);
    }

    #[test]
    fn rejects_differing_content_lengths() {
        for lines in [
            "Content-Length: 1\r\nContent-Length: 2",
            "Content-Length: 1, 2",
            "Content-Length: 01,2",
        ] {
            let head = format!("POST / HTTP/1.1\r\nHost: a\r\n{lines}\r\n\r\n");
            assert_eq!(
                framing(&head, 100),
                Err(HttpError::ConflictingContentLength),
                "{lines}"
            );
        }
        assert_eq!(HttpError::ConflictingContentLength.status(), 400);
    }

    #[test]
    fn accepts_identical_duplicate_content_lengths_per_rfc_9110_section_8_6() {
        for lines in [
            "Content-Length: 1,1",
            "Content-Length: 1, 1",
            "Content-Length: 1\r\ncontent-length: 1",
            "Content-Length: 1\r\ncontent-length: 01",
        ] {
            let head = format!("POST / HTTP/1.1\r\nHost: a\r\n{lines}\r\n\r\n");
            assert_eq!(framing(&head, 100), Ok(BodyFraming::Length(1)), "{lines}");
        }
    }

    // --- HttpError ----------------------------------------------------------
}
