//! Request bodies: by Content-Length, or by the chunked transfer coding.
//!
//! Reading list:
//! - RFC 9112 §6.2 (Content-Length), §6.3 (which framing applies; see
//!   [`crate::http::Request::body_framing`]).
//! - RFC 9112 §7.1 (chunked: grammar), §7.1.1 (chunk extensions), §7.1.2
//!   (trailer section), §7.1.3 (decoding chunked).
//! - CVE-2024-22019 (Node.js): unbounded chunk extensions let a client keep a
//!   server reading without ever sending body bytes; Node now caps them at
//!   16 KiB per body, as [`MAX_CHUNK_EXTENSION_BYTES`] does here.

use crate::http::error::HttpError;
use crate::http::syntax::is_token;
use alloc::vec::Vec;

/// Chunk-extension bytes allowed in one body (RFC 9112 §7.1.1): everything on
/// the chunk-size lines after the size digits, summed over the body. pushloop
/// ignores extensions, and real clients send none; 16 KiB is Node.js's cap
/// (CVE-2024-22019). Past it: [`HttpError::ChunkExtensionsTooLong`] (413).
pub const MAX_CHUNK_EXTENSION_BYTES: usize = 16 * 1024;

/// Bytes allowed in the trailer section of a chunked body, its final blank
/// line included (RFC 9112 §7.1.2). Trailer fields are skipped, never stored;
/// 8 KiB matches the head limit's default. Past it:
/// [`HttpError::TrailerTooLarge`] (431).
pub const MAX_TRAILER_BYTES: usize = 8 * 1024;

/// Hex digits a chunk size may have: 16 fill a `u64`, and `httparse` refuses
/// more (RFC 9112 §7.1: "recipients MUST anticipate potentially large
/// hexadecimal numerals and prevent parsing errors due to integer conversion
/// overflows").
const MAX_CHUNK_SIZE_DIGITS: usize = 16;

/// How a request body is delimited (RFC 9112 §6.3), as decided by
/// [`crate::http::Request::body_framing`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (RFC 9112 §6.3 item 6: a request with neither Content-Length
    /// nor Transfer-Encoding has none).
    None,
    /// Exactly this many bytes follow the head (RFC 9112 §6.2).
    Length(usize),
    /// The chunked transfer coding (RFC 9112 §7.1).
    Chunked,
}

/// What one [`BodyDecoder::decode`] call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyProgress {
    /// Bytes of the input consumed. Bytes past `used` were not looked at as
    /// body (when `done`, they are the next request).
    pub used: usize,
    /// The body is complete.
    pub done: bool,
}

/// Where the decoder is in the body. Names follow the RFC 9112 §7.1 grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// RFC 9112 §6.2: this many Content-Length bytes still to come.
    Length { remaining: usize },
    /// RFC 9112 §7.1: `chunk-size [ chunk-ext ] CRLF`, not yet complete;
    /// `scanned` bytes at the front of the input were already searched for its
    /// LF (the caller hands them back, see [`BodyDecoder::decode`]).
    ChunkSize { scanned: usize },
    /// RFC 9112 §7.1: `chunk-data`, this many bytes still to come.
    ChunkData { remaining: usize },
    /// RFC 9112 §7.1: the CRLF after `chunk-data`.
    ChunkDataEnd { seen_cr: bool },
    /// RFC 9112 §7.1.2: `trailer-section CRLF` after the last chunk; `total`
    /// bytes of complete trailer lines so far, `scanned` as in `ChunkSize`.
    Trailer { scanned: usize, total: usize },
    /// The body is complete.
    Done,
    /// The body was refused; every later call returns the same error.
    Failed(HttpError),
}

/// A sans-IO request-body reader: bytes go in, decoded body bytes are appended
/// to the caller's `Vec`, never more than `max_body` of them.
///
/// Drive it with whatever bytes follow the head:
///
/// ```
/// use pushloop_proto::http::{BodyDecoder, BodyFraming};
/// let mut decoder = BodyDecoder::new(BodyFraming::Chunked, 1 << 20);
/// let mut body = Vec::new();
/// let progress = decoder.decode(b"5\r\nhello\r\n0\r\n\r\nGET /next", &mut body)?;
/// assert_eq!((progress.used, progress.done, &body[..]), (15, true, &b"hello"[..]));
/// # Ok::<(), pushloop_proto::http::HttpError>(())
/// ```
#[derive(Clone, Debug)]
pub struct BodyDecoder {
    state: State,
    max_body: usize,
    /// Decoded body bytes so far.
    received: usize,
    /// Chunk-extension bytes so far (see [`MAX_CHUNK_EXTENSION_BYTES`]).
    extension_bytes: usize,
}

impl BodyDecoder {
    /// A decoder for a body with this framing and limit
    /// (`max_body_bytes` limit). A `Length` over the limit
    /// fails on the first [`BodyDecoder::decode`] with `BodyTooLarge`.
    pub fn new(framing: BodyFraming, max_body: usize) -> Self {
        let state = match framing {
            BodyFraming::None => State::Done,
            BodyFraming::Length(length) if length > max_body => {
                State::Failed(HttpError::BodyTooLarge)
            }
            BodyFraming::Length(length) => State::Length { remaining: length },
            BodyFraming::Chunked => State::ChunkSize { scanned: 0 },
        };
        BodyDecoder {
            state,
            max_body,
            received: 0,
            extension_bytes: 0,
        }
    }

    /// Consumes a prefix of `input` (`used` bytes) and appends the body bytes
    /// it carried to `body`.
    ///
    /// Partial input is normal: when a chunk-size or trailer line is cut off,
    /// those bytes are left unconsumed, and the caller passes them again at the
    /// front of the next `input` with the new bytes after them. They are not
    /// searched twice, so a trickled body still costs linear time.
    ///
    /// Chunk extensions are ignored and trailer fields skipped, both bounded
    /// ([`MAX_CHUNK_EXTENSION_BYTES`], [`MAX_TRAILER_BYTES`]). Line endings in
    /// chunked framing must be CRLF. A chunk larger than what is left of
    /// `max_body` is refused (413) before any of its bytes is buffered.
    ///
    /// After an error the body is refused for good and the connection must be
    /// closed; later calls return the same error. Never panics.
    pub fn decode(&mut self, input: &[u8], body: &mut Vec<u8>) -> Result<BodyProgress, HttpError> {
        let mut used = 0;
        loop {
            match self.state {
                State::Done => return Ok(BodyProgress { used, done: true }),
                State::Failed(error) => return Err(error),
                _ => {}
            }
            let rest = input.get(used..).unwrap_or_default();
            match self.step(rest, body) {
                Ok(Some(consumed)) => used += consumed,
                Ok(None) => return Ok(BodyProgress { used, done: false }),
                Err(error) => {
                    self.state = State::Failed(error);
                    return Err(error);
                }
            }
        }
    }

    /// One transition. `Ok(Some(n))`: consumed `n` bytes (zero only when the
    /// state moved to `Done`); `Ok(None)`: needs more input.
    fn step(&mut self, input: &[u8], body: &mut Vec<u8>) -> Result<Option<usize>, HttpError> {
        match self.state {
            // RFC 9112 §6.2: the body is the next `remaining` bytes.
            State::Length { remaining: 0 } => {
                self.state = State::Done;
                Ok(Some(0))
            }
            State::Length { remaining } => {
                let Some(data) = input
                    .get(..remaining.min(input.len()))
                    .filter(|d| !d.is_empty())
                else {
                    return Ok(None);
                };
                append_within(body, data, remaining);
                self.received += data.len();
                self.state = State::Length {
                    remaining: remaining - data.len(),
                };
                Ok(Some(data.len()))
            }
            // RFC 9112 §7.1: chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
            State::ChunkSize { scanned } => {
                let Some(line) = line_at_front(input, scanned) else {
                    // Refuse an endless extension before the caller buffers it.
                    self.check_extension_budget(input)?;
                    self.state = State::ChunkSize {
                        scanned: input.len(),
                    };
                    return Ok(None);
                };
                let size = self.chunk_size(line)?;
                self.state = if size == 0 {
                    // RFC 9112 §7.1: last-chunk = 1*("0") [ chunk-ext ] CRLF
                    State::Trailer {
                        scanned: 0,
                        total: 0,
                    }
                } else {
                    // The body limit applies to the declared size, before any
                    // of the chunk is buffered.
                    let allowance = self.max_body.saturating_sub(self.received);
                    match usize::try_from(size) {
                        Ok(size) if size <= allowance => State::ChunkData { remaining: size },
                        _ => return Err(HttpError::BodyTooLarge),
                    }
                };
                Ok(Some(line.len()))
            }
            State::ChunkData { remaining } => {
                let Some(data) = input
                    .get(..remaining.min(input.len()))
                    .filter(|d| !d.is_empty())
                else {
                    return Ok(None);
                };
                append_within(body, data, self.max_body.saturating_sub(self.received));
                self.received += data.len();
                self.state = match remaining - data.len() {
                    0 => State::ChunkDataEnd { seen_cr: false },
                    remaining => State::ChunkData { remaining },
                };
                Ok(Some(data.len()))
            }
            State::ChunkDataEnd { seen_cr } => {
                let Some(&byte) = input.first() else {
                    return Ok(None);
                };
                self.state = match (seen_cr, byte) {
                    (false, b'\r') => State::ChunkDataEnd { seen_cr: true },
                    (true, b'\n') => State::ChunkSize { scanned: 0 },
                    _ => return Err(HttpError::BadChunkEnd),
                };
                Ok(Some(1))
            }
            // RFC 9112 §7.1.2: trailer-section = *( field-line CRLF ), then CRLF.
            State::Trailer { scanned, total } => {
                let Some(line) = line_at_front(input, scanned) else {
                    if total.saturating_add(input.len()) > MAX_TRAILER_BYTES {
                        return Err(HttpError::TrailerTooLarge);
                    }
                    self.state = State::Trailer {
                        scanned: input.len(),
                        total,
                    };
                    return Ok(None);
                };
                let total = total.saturating_add(line.len());
                if total > MAX_TRAILER_BYTES {
                    return Err(HttpError::TrailerTooLarge);
                }
                self.state = if line == b"\r\n" {
                    State::Done
                } else {
                    check_trailer_field(line)?;
                    State::Trailer { scanned: 0, total }
                };
                Ok(Some(line.len()))
            }
            State::Done | State::Failed(_) => Ok(None),
        }
    }

    /// Parses a complete chunk-size line (LF included) and charges its
    /// extensions to the budget.
    ///
    /// ```text
    /// chunk-size [ chunk-ext ] CRLF                          ; RFC 9112 §7.1
    /// chunk-size = 1*HEXDIG
    /// chunk-ext  = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
    /// ```
    fn chunk_size(&mut self, line: &[u8]) -> Result<u64, HttpError> {
        // Budget first, with the same count the partial-line check uses, so a
        // body gets the same answer however its bytes were split.
        self.check_extension_budget(line)?;
        self.extension_bytes += extension_len(line);
        let Some(content) = line.strip_suffix(b"\r\n") else {
            return Err(HttpError::BadChunkSize);
        };
        // chunk-size = 1*HEXDIG: httparse reads an empty size ("\r\n" or
        // ";ext\r\n") as 0, which would end the body early; require a digit.
        if !content.first().is_some_and(u8::is_ascii_hexdigit) {
            return Err(HttpError::BadChunkSize);
        }
        // httparse takes any byte inside an extension; refuse control bytes
        // (RFC 9110 §5.5 applies the same rule to field values), which other
        // parsers on the path may treat as line ends.
        if content.iter().any(|&b| b != b'\t' && b.is_ascii_control()) {
            return Err(HttpError::BadChunkSize);
        }
        match httparse::parse_chunk_size(line) {
            Ok(httparse::Status::Complete((parsed, size))) if parsed == line.len() => Ok(size),
            _ => Err(HttpError::BadChunkSize),
        }
    }

    /// Would this chunk-size line (complete or not) take the body past
    /// [`MAX_CHUNK_EXTENSION_BYTES`]?
    fn check_extension_budget(&self, line: &[u8]) -> Result<(), HttpError> {
        if self.extension_bytes.saturating_add(extension_len(line)) > MAX_CHUNK_EXTENSION_BYTES {
            return Err(HttpError::ChunkExtensionsTooLong);
        }
        Ok(())
    }
}

/// The line at the front of `input`, LF included, if its LF has arrived. The
/// first `scanned` bytes are known to hold no LF and are not searched again.
fn line_at_front(input: &[u8], scanned: usize) -> Option<&[u8]> {
    let lf = input.get(scanned..)?.iter().position(|&b| b == b'\n')?;
    input.get(..scanned + lf + 1)
}

/// The bytes of a chunk-size line (complete, or the start of one) beyond its
/// first [`MAX_CHUNK_SIZE_DIGITS`] hex digits and its line ending: the chunk
/// extensions, or junk. Never larger for a prefix of a line than for the whole
/// line, which keeps the budget check split-independent.
fn extension_len(line: &[u8]) -> usize {
    let digits = line
        .iter()
        .take(MAX_CHUNK_SIZE_DIGITS)
        .take_while(|b| b.is_ascii_hexdigit())
        .count();
    let content = line.strip_suffix(b"\n").unwrap_or(line);
    let content = content.strip_suffix(b"\r").unwrap_or(content);
    content.len().saturating_sub(digits)
}

/// A trailer line must be a field line (RFC 9112 §5, §7.1.2):
///
/// ```text
/// field-line = field-name ":" OWS field-value OWS     ; then CRLF
/// ```
///
/// The field is then discarded: RFC 9110 §6.5.1 lets a recipient ignore
/// trailer fields, and pushloop uses none.
fn check_trailer_field(line: &[u8]) -> Result<(), HttpError> {
    let content = line.strip_suffix(b"\r\n").ok_or(HttpError::BadTrailer)?;
    let colon = content
        .iter()
        .position(|&b| b == b':')
        .ok_or(HttpError::BadTrailer)?;
    let (name, value) = content.split_at(colon);
    let value_has_control = value
        .iter()
        .skip(1)
        .any(|&b| b != b'\t' && b.is_ascii_control());
    if !is_token(name) || value_has_control {
        return Err(HttpError::BadTrailer);
    }
    Ok(())
}

/// Appends `bytes` to `body`, growing it by doubling as `Vec` does, but never
/// reserving more than `allowance` bytes past its current length: the body
/// limit bounds the memory held, not only the bytes kept.
/// The caller guarantees `bytes.len() <= allowance`.
fn append_within(body: &mut Vec<u8>, bytes: &[u8], allowance: usize) {
    let needed = body.len().saturating_add(bytes.len());
    if needed > body.capacity() {
        let ceiling = body.len().saturating_add(allowance);
        let target = body.capacity().saturating_mul(2).min(ceiling).max(needed);
        body.reserve_exact(target - body.len());
    }
    body.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body exercising every part of the RFC 9112 §7.1 grammar: chunks with
    /// hex sizes in both cases, a chunk extension with a quoted value, chunk
    /// data holding CRLFs, a last-chunk of several zeros, and a trailer field.
    const CHUNKED: &[u8] = b"4\r\nWiki\r\n\
        5;name=\"a value\"\r\npedia\r\n\
        e\r\n in\r\n\r\nchunks.\r\n\
        000\r\n\
        Expires: never\r\n\
        \r\n";
    const CHUNKED_BODY: &[u8] = b"Wikipedia in\r\n\r\nchunks.";

    type Outcome = Result<(Vec<u8>, usize, bool), HttpError>;

    /// Feeds `input` in pieces ending at each of `cuts` and then at its end,
    /// as the event loop would: unconsumed bytes are handed back at the front
    /// of the next call. Returns the body, the bytes consumed, and `done`.
    fn decode_in_pieces(framing: BodyFraming, max: usize, input: &[u8], cuts: &[usize]) -> Outcome {
        let mut decoder = BodyDecoder::new(framing, max);
        let mut body = Vec::new();
        let mut consumed = 0;
        for &end in cuts.iter().chain([input.len()].iter()) {
            let progress = decoder.decode(&input[consumed..end], &mut body)?;
            assert!(body.len() <= max);
            assert!(body.capacity() <= max.max(body.len()));
            consumed += progress.used;
            if progress.done {
                return Ok((body, consumed, true));
            }
        }
        Ok((body, consumed, false))
    }

    /// Decodes `input` whole, byte by byte and split at every offset; all must
    /// agree, and the answer is returned.
    fn decode_every_way(framing: BodyFraming, max: usize, input: &[u8]) -> Outcome {
        let whole = decode_in_pieces(framing, max, input, &[]);
        let bytes: Vec<usize> = (0..input.len()).collect();
        assert_eq!(
            decode_in_pieces(framing, max, input, &bytes),
            whole,
            "byte by byte"
        );
        for split in 0..=input.len() {
            assert_eq!(
                decode_in_pieces(framing, max, input, &[split]),
                whole,
                "split at {split}"
            );
        }
        whole
    }

    fn chunked(input: &[u8]) -> Outcome {
        decode_every_way(BodyFraming::Chunked, 1 << 20, input)
    }

    // --- chunked ------------------------------------------------------------

    #[test]
    fn decodes_rfc_9112_chunked_grammar_example() {
        assert_eq!(
            chunked(CHUNKED),
            Ok((CHUNKED_BODY.to_vec(), CHUNKED.len(), true))
        );
    }

    #[test]
    fn leaves_pipelined_request_after_chunked_body() {
        let input = [CHUNKED, b"GET / HTTP/1.1\r\n"].concat();
        assert_eq!(
            chunked(&input),
            Ok((CHUNKED_BODY.to_vec(), CHUNKED.len(), true))
        );
    }

    #[test]
    fn waits_for_rest_of_truncated_chunked_body() {
        let cut = &CHUNKED[..CHUNKED.len() - 1];
        let (body, used, done) = chunked(cut).unwrap();
        assert_eq!((body.as_slice(), done), (CHUNKED_BODY, false));
        // The complete trailer line was consumed; the lone CR of the blank
        // line stays with the caller.
        assert_eq!(used, CHUNKED.len() - 2);
    }

    #[test]
    fn decodes_empty_chunked_body() {
        assert_eq!(chunked(b"0\r\n\r\n"), Ok((Vec::new(), 5, true)));
    }

    #[test]
    fn rejects_bad_chunk_sizes() {
        for input in [
            &b"g\r\nx\r\n0\r\n\r\n"[..],
            b"-1\r\nx\r\n0\r\n\r\n",
            b"+1\r\nx\r\n0\r\n\r\n",
            b"0x1\r\nx\r\n0\r\n\r\n",
            b" 1\r\nx\r\n0\r\n\r\n",
            b"\r\n",
            b";ext\r\n\r\n",
            b"1\nx\r\n0\r\n\r\n",
            b"1\r\rx\r\n0\r\n\r\n",
            b"1;a\x00b\r\nx\r\n0\r\n\r\n",
            b"1;a\rb\r\nx\r\n0\r\n\r\n",
            // 17 hex digits overflow a u64 (RFC 9112 §7.1).
            b"10000000000000000\r\n",
            b"00000000000000001\r\nx\r\n0\r\n\r\n",
        ] {
            assert_eq!(
                chunked(input),
                Err(HttpError::BadChunkSize),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(HttpError::BadChunkSize.status(), 400);
    }

    #[test]
    fn accepts_sixteen_hex_digit_size_then_applies_body_limit() {
        assert_eq!(
            chunked(b"ffffffffffffffff\r\n"),
            Err(HttpError::BodyTooLarge)
        );
        assert_eq!(
            chunked(b"0000000000000001\r\nx\r\n0\r\n\r\n").map(|o| o.0),
            Ok(b"x".to_vec())
        );
    }

    #[test]
    fn rejects_chunk_data_without_crlf() {
        for input in [
            &b"1\r\nxy\r\n0\r\n\r\n"[..],
            b"1\r\nx\n0\r\n\r\n",
            b"1\r\nx\r\r",
        ] {
            assert_eq!(chunked(input), Err(HttpError::BadChunkEnd));
        }
        assert_eq!(HttpError::BadChunkEnd.status(), 400);
    }

    #[test]
    fn rejects_chunked_body_past_limit_before_buffering_it() {
        // Accumulated: 3 + 3 fits a 6-byte limit; one more byte does not, and
        // the chunk declaring it is refused before its data arrives.
        let fits = b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n";
        assert_eq!(
            decode_every_way(BodyFraming::Chunked, 6, fits).map(|o| o.0),
            Ok(b"abcdef".to_vec())
        );
        let over = b"3\r\nabc\r\n4\r\n";
        assert_eq!(
            decode_every_way(BodyFraming::Chunked, 6, over),
            Err(HttpError::BodyTooLarge)
        );
        let mut decoder = BodyDecoder::new(BodyFraming::Chunked, 6);
        let mut body = Vec::new();
        assert_eq!(
            decoder.decode(over, &mut body),
            Err(HttpError::BodyTooLarge)
        );
        assert_eq!(body, b"abc");
    }

    #[test]
    fn skips_extensions_within_budget_and_refuses_past_it() {
        let mut input = b"1;".to_vec();
        input.resize(2 + MAX_CHUNK_EXTENSION_BYTES - 1, b'e');
        input.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        let decoded = decode_in_pieces(BodyFraming::Chunked, 10, &input, &[]);
        assert_eq!(decoded.map(|o| o.0), Ok(b"x".to_vec()));
        // One byte more, on the same line or on the last-chunk line.
        let mut over = input.clone();
        over.insert(2, b'e');
        for input in [over, [&input[..input.len() - 4], b";\r\n\r\n"].concat()] {
            for cuts in [&[][..], &[1000], &[input.len() - 3]] {
                assert_eq!(
                    decode_in_pieces(BodyFraming::Chunked, 10, &input, cuts),
                    Err(HttpError::ChunkExtensionsTooLong)
                );
            }
        }
        assert_eq!(HttpError::ChunkExtensionsTooLong.status(), 413);
    }

    #[test]
    fn refuses_endless_chunk_size_line_without_waiting_for_its_end() {
        let mut decoder = BodyDecoder::new(BodyFraming::Chunked, 10);
        let mut body = Vec::new();
        let mut line = b"1;".to_vec();
        line.resize(1 + MAX_CHUNK_EXTENSION_BYTES, b'e');
        assert_eq!(
            decoder.decode(&line, &mut body),
            Ok(BodyProgress {
                used: 0,
                done: false
            })
        );
        line.push(b'e');
        assert_eq!(
            decoder.decode(&line, &mut body),
            Err(HttpError::ChunkExtensionsTooLong)
        );
        // Leading zeros are no way around the budget either.
        let zeros = vec![b'0'; MAX_CHUNK_EXTENSION_BYTES + 17];
        let mut decoder = BodyDecoder::new(BodyFraming::Chunked, 10);
        assert_eq!(
            decoder.decode(&zeros, &mut body),
            Err(HttpError::ChunkExtensionsTooLong)
        );
    }

    #[test]
    fn skips_trailer_fields() {
        let input = b"1\r\nx\r\n0\r\nA: 1\r\nB-c:\r\nd: \t e \r\n\r\n";
        assert_eq!(chunked(input), Ok((b"x".to_vec(), input.len(), true)));
    }

    #[test]
    fn rejects_malformed_trailer_fields() {
        for input in [
            &b"0\r\nno colon\r\n\r\n"[..],
            b"0\r\n: no name\r\n\r\n",
            b"0\r\nbad name: v\r\n\r\n",
            b"0\r\nA: v\x01\r\n\r\n",
            b"0\r\nA: v\n\r\n",
            b"0\r\n\n",
        ] {
            assert_eq!(
                chunked(input),
                Err(HttpError::BadTrailer),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(HttpError::BadTrailer.status(), 400);
    }

    #[test]
    fn rejects_trailer_section_past_limit() {
        let mut input = b"0\r\nA: ".to_vec();
        input.resize(3 + MAX_TRAILER_BYTES - 4, b'v');
        input.extend_from_slice(b"\r\n\r\n");
        assert_eq!(input.len() - 3, MAX_TRAILER_BYTES);
        let at_limit = decode_in_pieces(BodyFraming::Chunked, 10, &input, &[]);
        assert_eq!(at_limit, Ok((Vec::new(), input.len(), true)));
        input.insert(10, b'v');
        for cuts in [&[][..], &[100], &[input.len() - 1]] {
            assert_eq!(
                decode_in_pieces(BodyFraming::Chunked, 10, &input, cuts),
                Err(HttpError::TrailerTooLarge)
            );
        }
        // An unterminated trailer line is refused once it alone is too long.
        let mut decoder = BodyDecoder::new(BodyFraming::Chunked, 10);
        let endless = [&b"0\r\n"[..], &vec![b'a'; MAX_TRAILER_BYTES + 1]].concat();
        assert_eq!(
            decoder.decode(&endless, &mut Vec::new()),
            Err(HttpError::TrailerTooLarge)
        );
        assert_eq!(HttpError::TrailerTooLarge.status(), 431);
    }

    #[test]
    fn searches_trickled_chunk_line_once() {
        // A long (but allowed) extension line fed byte by byte: each call
        // resumes the LF search where the last one stopped.
        let mut line = b"1;".to_vec();
        line.resize(4000, b'e');
        line.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        let mut decoder = BodyDecoder::new(BodyFraming::Chunked, 10);
        for end in 1..4000 {
            assert_eq!(
                decoder
                    .decode(&line[..end], &mut Vec::new())
                    .map(|p| p.used),
                Ok(0)
            );
            assert_eq!(decoder.state, State::ChunkSize { scanned: end });
        }
    }

    // --- Content-Length and none ---------------------------------------------

    #[test]
    fn decodes_content_length_body_and_leaves_the_rest() {
        let input = b"helloGET / HTTP/1.1\r\n";
        assert_eq!(
            decode_every_way(BodyFraming::Length(5), 5, input),
            Ok((b"hello".to_vec(), 5, true))
        );
        assert_eq!(
            decode_every_way(BodyFraming::Length(5), 5, b"hel"),
            Ok((b"hel".to_vec(), 3, false))
        );
        assert_eq!(
            decode_every_way(BodyFraming::Length(0), 0, b"next"),
            Ok((Vec::new(), 0, true))
        );
    }

    #[test]
    fn no_body_is_done_at_once() {
        assert_eq!(
            decode_every_way(BodyFraming::None, 0, b"GET"),
            Ok((Vec::new(), 0, true))
        );
    }

    #[test]
    fn refuses_declared_length_over_limit_before_reading() {
        let mut decoder = BodyDecoder::new(BodyFraming::Length(11), 10);
        let mut body = Vec::new();
        assert_eq!(
            decoder.decode(b"x", &mut body),
            Err(HttpError::BodyTooLarge)
        );
        assert!(body.is_empty());
    }

    #[test]
    fn keeps_returning_the_first_error() {
        let mut decoder = BodyDecoder::new(BodyFraming::Chunked, 10);
        let mut body = Vec::new();
        assert_eq!(
            decoder.decode(b"z\r\n", &mut body),
            Err(HttpError::BadChunkSize)
        );
        assert_eq!(
            decoder.decode(b"0\r\n\r\n", &mut body),
            Err(HttpError::BadChunkSize)
        );
    }

    #[test]
    fn body_capacity_never_exceeds_limit() {
        let max = 1000;
        let input: Vec<u8> = (0..max).map(|i| i as u8).collect();
        let cuts: Vec<usize> = (1..max).step_by(7).collect();
        let (body, ..) = decode_in_pieces(BodyFraming::Length(max), max, &input, &cuts).unwrap();
        assert_eq!(body, input);
        assert!(body.capacity() <= max);
        let mut chunked = Vec::new();
        for piece in input.chunks(7) {
            chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            chunked.extend_from_slice(piece);
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        let (body, ..) = decode_in_pieces(BodyFraming::Chunked, max, &chunked, &[]).unwrap();
        assert_eq!(body, input);
        assert!(body.capacity() <= max);
    }
}
