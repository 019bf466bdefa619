//! The Redis wire protocol (RESP), sans-IO: commands out, replies in.
//!
//! Reading list — redis.io, "Redis serialization protocol specification"
//! (cited below as *RESP spec*, by section title):
//! - "Sending commands to a Redis server": a command is an array of bulk
//!   strings; [`encode_command`].
//! - "RESP protocol description": the first byte names the type, every part
//!   ends in CRLF.
//! - RESP2 types: "Simple strings", "Simple errors", "Integers", "Bulk
//!   strings", "Null bulk strings", "Arrays", "Null arrays".
//! - RESP3 types (after `HELLO 3`): "Nulls", "Booleans", "Doubles", "Big
//!   numbers", "Bulk errors", "Verbatim strings", "Maps", "Sets", "Pushes";
//!   and "Attributes" and "Streamed strings / aggregates", which are refused.
//! - "Multiple commands and pipelining": replies come back in command order,
//!   back to back on one connection, so a buffer may hold several.
//!
//! ```text
//!   commands ──encode_command──▶ out: Vec<u8> ──▶ socket (the caller writes)
//!   socket (the caller reads) ──▶ buf: Vec<u8> ──ReplyParser::parse──▶ Reply, used
//! ```
//!
//! # Which RESP
//!
//! All of RESP2, and every RESP3 type Redis 7 sends after `HELLO 3`: null,
//! boolean, double, big number, bulk error, verbatim string, map, set, push.
//! Two RESP3 forms are refused with [`RespError::Unsupported`]: attributes
//! (`|`, which Redis sends only for features pushloop never turns on) and
//! streamed strings and aggregates (`$?`, `*?`; the spec defines them, Redis
//! never sends them). RESP3 types are accepted on any connection: a RESP2
//! connection never receives them, and a parser with one grammar has one set
//! of tests. pushloop's storage backend speaks RESP2 (no `HELLO`), because
//! every reply it reads (`XADD`, `XREAD`, `XRANGE`) has the same RESP2 shape
//! on every Redis since 5.0; [`stream`] also reads the RESP3 map of `XREAD`.
//!
//! # Bounds
//!
//! A reply is checked against [`RespLimits`] as its declared lengths arrive,
//! before anything is copied: a bulk string declaring 2^62 bytes is refused at
//! its header, and an array's buffer never grows past what has arrived. Memory
//! for one reply stays within a small multiple of
//! [`RespLimits::max_reply_bytes`].
//!
//! # Driving the parser
//!
//! Keep one [`ReplyParser`] per connection and one buffer of bytes read from
//! it. After each read: append to the buffer, then call
//! [`ReplyParser::parse`] with the whole buffer until it gives `Ok(None)`;
//! after each `Ok(Some((reply, used)))` remove `used` bytes from the front.
//! The parser remembers how far into the buffer it has got, so a large reply
//! arriving in many small reads costs time linear in its size, not quadratic.
//! Any [`RespError`] means the byte stream can no longer be trusted: close the
//! connection. Never panics.
//!
//! ```
//! use pushloop_proto::resp::{encode_command, Reply, ReplyParser, RespLimits};
//!
//! let mut out = Vec::new();
//! encode_command(&[b"PING"], &mut out);
//! assert_eq!(out, b"*1\r\n$4\r\nPING\r\n");
//!
//! let mut parser = ReplyParser::new(RespLimits::default());
//! let mut buf = b"+PO".to_vec();
//! assert_eq!(parser.parse(&buf), Ok(None)); // not enough bytes yet
//! buf.extend_from_slice(b"NG\r\n:42\r\n");
//! assert_eq!(parser.parse(&buf), Ok(Some((Reply::Simple(b"PONG".to_vec()), 7))));
//! buf.drain(..7);
//! assert_eq!(parser.parse(&buf), Ok(Some((Reply::Integer(42), 5))));
//! ```

pub mod stream;

use alloc::vec::Vec;
use core::fmt;

/// Appends `args` as one command: a RESP array of bulk strings (RESP spec,
/// "Sending commands to a Redis server"). Binary-safe: an argument may hold
/// any bytes, CR and LF included.
///
/// ```
/// let mut out = Vec::new();
/// pushloop_proto::resp::encode_command(&[b"LLEN", b"mylist"], &mut out);
/// assert_eq!(out, b"*2\r\n$4\r\nLLEN\r\n$6\r\nmylist\r\n");
/// ```
pub fn encode_command(args: &[&[u8]], out: &mut Vec<u8>) {
    out.push(b'*');
    push_decimal(args.len() as u64, out);
    out.extend_from_slice(b"\r\n");
    for arg in args {
        // RESP spec, "Bulk strings": `$<length>\r\n<data>\r\n`.
        out.push(b'$');
        push_decimal(arg.len() as u64, out);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends `n` in decimal ASCII.
pub(crate) fn push_decimal(mut n: u64, out: &mut Vec<u8>) {
    // u64::MAX has 20 digits.
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// One reply from Redis, owning its bytes.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// `+OK\r\n` (RESP spec, "Simple strings"): never holds CR or LF.
    Simple(Vec<u8>),
    /// `-ERR unknown command\r\n` ("Simple errors"), or RESP3
    /// `!21\r\nSYNTAX invalid syntax\r\n` ("Bulk errors"). The command
    /// failed; the connection is fine.
    Error(Vec<u8>),
    /// `:1000\r\n` ("Integers"): a signed 64-bit integer.
    Integer(i64),
    /// `$5\r\nhello\r\n` ("Bulk strings"): binary-safe.
    Bulk(Vec<u8>),
    /// `$-1\r\n` ("Null bulk strings"), `*-1\r\n` ("Null arrays") or RESP3
    /// `_\r\n` ("Nulls"). One variant, as RESP3 made them one type: `XREAD
    /// BLOCK` answers a timeout with a null array in RESP2 and `_` in RESP3.
    Null,
    /// `*2\r\n...` ("Arrays"): elements of any type, nested.
    Array(Vec<Reply>),
    /// `#t\r\n` or `#f\r\n` (RESP3 "Booleans").
    Boolean(bool),
    /// `,3.14\r\n`, `,inf\r\n`, `,nan\r\n` (RESP3 "Doubles").
    Double(f64),
    /// `(3492890328409238509324850943850943825024385\r\n` (RESP3 "Big
    /// numbers"): the digits, with their sign, as sent.
    BigNumber(Vec<u8>),
    /// `=15\r\ntxt:Some string\r\n` (RESP3 "Verbatim strings"): a
    /// three-byte format (`txt`, `mkd`) and the text.
    Verbatim {
        /// The encoding, such as `txt` or `mkd`.
        format: [u8; 3],
        /// The text after the `:`.
        text: Vec<u8>,
    },
    /// `%2\r\n...` (RESP3 "Maps"): key-value pairs in the order sent.
    Map(Vec<(Reply, Reply)>),
    /// `~3\r\n...` (RESP3 "Sets"): elements in the order sent.
    Set(Vec<Reply>),
    /// `>3\r\n...` (RESP3 "Pushes"): out-of-band data, not the answer to a
    /// command (pub/sub messages, client-side caching invalidations).
    Push(Vec<Reply>),
}

/// How large and how deep a reply may be. Each limit is checked against a
/// declared length before any byte of the value is copied. The defaults suit
/// pushloop's storage backend, whose largest reply is an `XRANGE` or `XREAD`
/// page of events; raise them with `max_body_bytes` if events grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RespLimits {
    /// Bytes in one bulk string, bulk error or verbatim string. Default 8 MiB:
    /// the largest bulk pushloop reads is an event's data, at most
    /// `max_body_bytes` (1 MiB by default); Redis's own ceiling
    /// (`proto-max-bulk-len`, 512 MiB) is far more than an event needs. Past
    /// it: [`RespError::BulkTooLarge`].
    pub max_bulk_bytes: usize,
    /// Bytes in a simple string, simple error, double or big number line,
    /// CRLF excluded. Default 64 KiB: Redis's simple strings are words such as
    /// `OK` or `PONG`, and its error messages quote at most 128 bytes of a
    /// command. (Integer and length lines are held to 20 bytes, the width of
    /// the smallest i64, whatever this says.) Past it: [`RespError::LineTooLong`].
    pub max_line_bytes: usize,
    /// Elements in one array, set or push, or pairs in one map. Default
    /// 65 536: pushloop asks `XRANGE` and `XREAD` for pages of at most a few
    /// thousand entries (`COUNT`), and an entry holds 8 fields and values.
    /// Past it: [`RespError::TooManyElements`].
    pub max_array_elements: usize,
    /// Aggregates nested in one reply, the outermost counted as 1. Default 8:
    /// the deepest reply pushloop reads, RESP2 `XREAD`, nests 5 (streams →
    /// stream → entries → entry → fields). Past it: [`RespError::TooDeep`].
    pub max_depth: usize,
    /// Bytes of one whole reply, from its type byte to its last CRLF. Default
    /// 64 MiB: a page of 64 events of the default maximum size, with room to
    /// spare; it bounds the memory one reply can take. Past it:
    /// [`RespError::ReplyTooLarge`].
    pub max_reply_bytes: usize,
}

impl Default for RespLimits {
    fn default() -> Self {
        RespLimits {
            max_bulk_bytes: 8 << 20,
            max_line_bytes: 64 << 10,
            max_array_elements: 1 << 16,
            max_depth: 8,
            max_reply_bytes: 64 << 20,
        }
    }
}

/// Bytes of an integer or length line, CRLF excluded: `-9223372036854775808`
/// (i64::MIN) is the widest value RESP can carry in one.
const NUMBER_LINE_BYTES: usize = 20;

/// The fewest bytes a value can take on the wire (`+\r\n`, `_\r\n`): an
/// aggregate declaring `n` elements needs at least `3n` more bytes.
const MIN_VALUE_BYTES: usize = 3;

/// What Redis sent that this parser refused. Every variant means the byte
/// stream can no longer be framed or trusted: close the connection (and
/// reconnect). A reply that parses is never an error, even `-ERR ...`, which is
/// a [`Reply::Error`] on a healthy connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RespError {
    /// Redis began a value with a byte that names no RESP type (RESP spec,
    /// "RESP protocol description").
    UnknownType,
    /// Redis sent an attribute (`|`, RESP spec "Attributes") or a streamed
    /// string or aggregate (`?` length), which this parser does not support.
    Unsupported,
    /// Redis ended a line with a bare LF, or put a CR inside a line (RESP
    /// spec, "Simple strings": no CR or LF inside, CRLF at the end).
    BadLineEnding,
    /// Redis sent a line longer than [`RespLimits::max_line_bytes`], or an
    /// integer or length line longer than 20 bytes.
    LineTooLong,
    /// Redis sent an integer that is not `[+-]digits` or does not fit an i64
    /// (RESP spec, "Integers").
    BadInteger,
    /// Redis sent a length that is not decimal digits, or is negative where
    /// only `-1` (null) is allowed, or for a type that has no null (RESP spec,
    /// "Bulk strings", "Arrays").
    BadLength,
    /// Redis declared a bulk string longer than [`RespLimits::max_bulk_bytes`].
    BulkTooLarge,
    /// Redis did not follow a bulk string's data with CRLF, so its length was
    /// wrong (RESP spec, "Bulk strings").
    MissingBulkTerminator,
    /// Redis declared an aggregate with more than
    /// [`RespLimits::max_array_elements`] elements (or map pairs).
    TooManyElements,
    /// Redis nested aggregates deeper than [`RespLimits::max_depth`].
    TooDeep,
    /// Redis sent, or declared, a reply longer than
    /// [`RespLimits::max_reply_bytes`].
    ReplyTooLarge,
    /// Redis sent a null (`_`) with bytes before its CRLF (RESP spec, "Nulls").
    BadNull,
    /// Redis sent a boolean other than `#t` or `#f` (RESP spec, "Booleans").
    BadBoolean,
    /// Redis sent a double that is not a decimal, `inf`, `-inf` or `nan`
    /// (RESP spec, "Doubles").
    BadDouble,
    /// Redis sent a big number that is not `[+-]digits` (RESP spec, "Big
    /// numbers").
    BadBigNumber,
    /// Redis sent a verbatim string without its `xxx:` format prefix (RESP
    /// spec, "Verbatim strings").
    BadVerbatim,
    /// Redis sent a well-formed reply of the wrong shape for the command, such
    /// as an `XRANGE` reply whose entry is not `[id, [field, value, ...]]`, or
    /// an error reply where [`stream`]'s readers expected data (check for
    /// [`Reply::Error`] before reading a typed reply).
    UnexpectedReply,
    /// Redis returned a stream entry that pushloop did not write: a field of
    /// [`stream::EVENT_FIELDS`] is missing, its id is not its stream id's
    /// (`<id>-0`), or its topic or event name is not UTF-8. The connection is
    /// fine ([`RespError::closes_connection`] is false); the entry is not an
    /// event.
    NotAnEvent,
}

impl RespError {
    /// The answer on the wire: whether the caller must close the Redis
    /// connection. True for every violation of the protocol, because what
    /// follows cannot be framed or trusted; false only for
    /// [`RespError::NotAnEvent`], a well-formed entry of foreign content.
    pub fn closes_connection(self) -> bool {
        !matches!(self, RespError::NotAnEvent)
    }

    fn message(self) -> &'static str {
        match self {
            RespError::UnknownType => "unknown RESP type byte",
            RespError::Unsupported => "RESP attribute or streamed value not supported",
            RespError::BadLineEnding => "malformed RESP line ending",
            RespError::LineTooLong => "RESP line too long",
            RespError::BadInteger => "malformed RESP integer",
            RespError::BadLength => "malformed RESP length",
            RespError::BulkTooLarge => "RESP bulk string too large",
            RespError::MissingBulkTerminator => "RESP bulk string not followed by CRLF",
            RespError::TooManyElements => "RESP aggregate has too many elements",
            RespError::TooDeep => "RESP aggregates nested too deep",
            RespError::ReplyTooLarge => "RESP reply too large",
            RespError::BadNull => "malformed RESP null",
            RespError::BadBoolean => "malformed RESP boolean",
            RespError::BadDouble => "malformed RESP double",
            RespError::BadBigNumber => "malformed RESP big number",
            RespError::BadVerbatim => "malformed RESP verbatim string",
            RespError::UnexpectedReply => "unexpected reply shape",
            RespError::NotAnEvent => "stream entry is not a pushloop event",
        }
    }
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl core::error::Error for RespError {}

/// Parses one reply from the start of `input` with the default limits: the
/// one-shot form of [`ReplyParser::parse`], for a buffer that is parsed once.
/// `Ok(None)` means the reply is not complete yet and nothing was consumed.
/// It starts from the first byte on every call, so a caller that retries it
/// after every small read of a large reply pays for the rescans: such a caller
/// keeps a [`ReplyParser`] instead.
///
/// ```
/// use pushloop_proto::resp::{parse, Reply};
/// assert_eq!(parse(b"$5\r\nhel"), Ok(None));
/// assert_eq!(parse(b"$5\r\nhello\r\n+OK\r\n"), Ok(Some((Reply::Bulk(b"hello".to_vec()), 11))));
/// ```
pub fn parse(input: &[u8]) -> Result<Option<(Reply, usize)>, RespError> {
    ReplyParser::new(RespLimits::default()).parse(input)
}

/// The kinds of aggregate, which differ only in how their elements are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Aggregate {
    Array,
    Map,
    Set,
    Push,
}

impl Aggregate {
    /// Builds the reply from its elements (a map's come as key, value, ...).
    fn build(self, items: Vec<Reply>) -> Reply {
        match self {
            Aggregate::Array => Reply::Array(items),
            Aggregate::Set => Reply::Set(items),
            Aggregate::Push => Reply::Push(items),
            Aggregate::Map => {
                let mut pairs = Vec::with_capacity(items.len() / 2);
                let mut items = items.into_iter();
                while let (Some(key), Some(value)) = (items.next(), items.next()) {
                    pairs.push((key, value));
                }
                Reply::Map(pairs)
            }
        }
    }
}

/// An aggregate whose header has been read and whose elements have not all
/// arrived.
#[derive(Debug)]
struct Open {
    kind: Aggregate,
    /// Elements still to come (a map's keys and values count one each).
    remaining: usize,
    items: Vec<Reply>,
}

/// What one value's first line (and, for strings, data) gave.
enum Token {
    /// A whole value.
    Value(Reply),
    /// The header of an aggregate of this many elements.
    Open(Aggregate, usize),
}

/// An incremental reply parser for one connection: it keeps the elements of a
/// large reply parsed so far, so a reply arriving in many reads is parsed once.
///
/// The contract: `buf` holds the bytes of the connection not consumed yet, and
/// between two calls bytes are only appended to it. A `buf` shorter than what
/// the parser has seen means a new stream (the caller dropped the old one):
/// the parser starts over. Never panics.
#[derive(Debug)]
pub struct ReplyParser {
    limits: RespLimits,
    /// Bytes of the current reply already parsed: where the next value starts.
    parsed: usize,
    /// Where the search for the end of the current line resumes, so a line
    /// arriving byte by byte is searched once.
    line_scan: usize,
    /// Aggregates begun and not complete, outermost first.
    open: Vec<Open>,
    /// Bytes searched for a line end over the parser's life, so a test can
    /// prove the linear bound by counting instead of timing.
    #[cfg(test)]
    examined: usize,
}

impl ReplyParser {
    /// A parser that holds replies to `limits`.
    pub fn new(limits: RespLimits) -> ReplyParser {
        ReplyParser {
            limits,
            parsed: 0,
            line_scan: 0,
            open: Vec::new(),
            #[cfg(test)]
            examined: 0,
        }
    }

    /// Parses the reply at the start of `buf`.
    ///
    /// - `Ok(Some((reply, used)))`: the reply is `buf[..used]`; remove those
    ///   bytes before the next call (what follows is the next reply).
    /// - `Ok(None)`: not complete yet; append the next read and call again.
    ///   Nothing is consumed, but the parser remembers what it has read.
    /// - `Err(_)`: Redis broke the protocol or a limit; close the connection.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Option<(Reply, usize)>, RespError> {
        if buf.len() < self.parsed {
            self.reset();
        }
        let result = self.parse_from(buf);
        if !matches!(result, Ok(None)) {
            self.reset();
        }
        result
    }

    /// Forgets any partial reply, for a new connection.
    pub fn reset(&mut self) {
        self.parsed = 0;
        self.line_scan = 0;
        self.open.clear();
    }

    fn parse_from(&mut self, buf: &[u8]) -> Result<Option<(Reply, usize)>, RespError> {
        loop {
            let Some((token, end)) = self.token(buf)? else {
                return Ok(None);
            };
            self.parsed = end;
            self.line_scan = end;
            let mut value = match token {
                Token::Value(value) => value,
                Token::Open(kind, 0) => kind.build(Vec::new()),
                Token::Open(kind, remaining) => {
                    // Room for what has arrived, never for what is declared.
                    let arrived = buf.len().saturating_sub(end) / MIN_VALUE_BYTES;
                    self.open.push(Open {
                        kind,
                        remaining,
                        items: Vec::with_capacity(remaining.min(arrived)),
                    });
                    continue;
                }
            };
            // The value completes its parent when it is the last element, the
            // parent may complete its own, and so on up.
            loop {
                let Some(parent) = self.open.last_mut() else {
                    return Ok(Some((value, self.parsed)));
                };
                parent.items.push(value);
                parent.remaining = parent.remaining.saturating_sub(1);
                if parent.remaining > 0 {
                    break;
                }
                let Some(done) = self.open.pop() else {
                    break;
                };
                value = done.kind.build(done.items);
            }
        }
    }

    /// Reads the value starting at `self.parsed`: `Ok(None)` until it has
    /// arrived whole (for an aggregate, until its header has), then the value
    /// and where it ends.
    fn token(&mut self, buf: &[u8]) -> Result<Option<(Token, usize)>, RespError> {
        let start = self.parsed;
        let Some(&kind) = buf.get(start) else {
            return Ok(None);
        };
        // RESP spec, "RESP protocol description": the first byte is the type.
        // Decided before the line arrives, so it fails on its first byte.
        let max_line = match kind {
            b'+' | b'-' | b',' | b'(' => self.limits.max_line_bytes,
            b':' | b'$' | b'*' | b'_' | b'#' | b'!' | b'=' | b'%' | b'~' | b'>' => {
                NUMBER_LINE_BYTES
            }
            // RESP spec, "Attributes": metadata before a reply, unsupported.
            b'|' => return Err(RespError::Unsupported),
            _ => return Err(RespError::UnknownType),
        };
        let Some(line_end) = self.find_line(buf, start, max_line)? else {
            return Ok(None);
        };
        let line = buf.get(start + 1..line_end).unwrap_or_default();
        let after = line_end + 2;
        let value = match kind {
            // RESP spec, "Simple strings" and "Simple errors".
            b'+' => Reply::Simple(line.to_vec()),
            b'-' => Reply::Error(line.to_vec()),
            // RESP spec, "Integers": `:[<+|->]<value>\r\n`, a signed 64-bit integer.
            b':' => Reply::Integer(parse_integer(line).ok_or(RespError::BadInteger)?),
            // RESP spec, "Bulk strings"; "Null bulk strings": `$-1\r\n`.
            b'$' => match parse_length(line, true)? {
                None => Reply::Null,
                Some(len) => {
                    let Some((data, end)) = self.bulk(buf, after, len)? else {
                        return Ok(None);
                    };
                    return Ok(Some((Token::Value(Reply::Bulk(data.to_vec())), end)));
                }
            },
            // RESP spec, "Bulk errors": a bulk string that is an error; no null.
            b'!' => {
                let len = parse_length(line, false)?.ok_or(RespError::BadLength)?;
                let Some((data, end)) = self.bulk(buf, after, len)? else {
                    return Ok(None);
                };
                return Ok(Some((Token::Value(Reply::Error(data.to_vec())), end)));
            }
            // RESP spec, "Verbatim strings": `=<length>\r\n<fmt>:<data>\r\n`,
            // the format exactly three bytes.
            b'=' => {
                let len = parse_length(line, false)?.ok_or(RespError::BadLength)?;
                let Some((data, end)) = self.bulk(buf, after, len)? else {
                    return Ok(None);
                };
                let value = match data {
                    [a, b, c, b':', text @ ..] => Reply::Verbatim {
                        format: [*a, *b, *c],
                        text: text.to_vec(),
                    },
                    _ => return Err(RespError::BadVerbatim),
                };
                return Ok(Some((Token::Value(value), end)));
            }
            // RESP spec, "Arrays"; "Null arrays": `*-1\r\n`.
            b'*' => match parse_length(line, true)? {
                None => Reply::Null,
                Some(count) => return self.open(Aggregate::Array, count, after),
            },
            // RESP spec, "Maps", "Sets", "Pushes": counted like arrays, no null.
            b'%' | b'~' | b'>' => {
                let count = parse_length(line, false)?.ok_or(RespError::BadLength)?;
                let kind = match kind {
                    b'%' => Aggregate::Map,
                    b'~' => Aggregate::Set,
                    _ => Aggregate::Push,
                };
                return self.open(kind, count, after);
            }
            // RESP spec, "Nulls": `_\r\n`.
            b'_' if line.is_empty() => Reply::Null,
            b'_' => return Err(RespError::BadNull),
            // RESP spec, "Booleans": `#<t|f>\r\n`.
            b'#' => match line {
                b"t" => Reply::Boolean(true),
                b"f" => Reply::Boolean(false),
                _ => return Err(RespError::BadBoolean),
            },
            // RESP spec, "Doubles": `,[<+|->]<integral>[.<fractional>][<E|e>[sign]<exponent>]\r\n`,
            // or `inf`, `-inf`, `nan`.
            b',' => Reply::Double(parse_double(line).ok_or(RespError::BadDouble)?),
            // RESP spec, "Big numbers": `([+|-]<number>\r\n`, any number of digits.
            b'(' => {
                let digits = line.strip_prefix(b"-").or(line.strip_prefix(b"+"));
                let digits = digits.unwrap_or(line);
                if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                    return Err(RespError::BadBigNumber);
                }
                Reply::BigNumber(line.to_vec())
            }
            _ => return Err(RespError::UnknownType),
        };
        Ok(Some((Token::Value(value), after)))
    }

    /// Finds the CRLF ending the line whose type byte is at `start`, searching
    /// only bytes not searched before, and returns where its CR is.
    ///
    /// A line too long, or one that would end past the reply limit, is refused
    /// as soon as that is certain, and with the same error whether the line
    /// arrived whole or in pieces: each violation is "the LF is at index ≥ T",
    /// and the one with the smaller T is reported.
    fn find_line(
        &mut self,
        buf: &[u8],
        start: usize,
        max_line: usize,
    ) -> Result<Option<usize>, RespError> {
        // type byte + content + CR, so an LF at index ≥ this is too long.
        let too_long_from = start.saturating_add(max_line).saturating_add(3);
        // The line ends at LF + 1, which must be ≤ max_reply_bytes.
        let too_large_from = self.limits.max_reply_bytes;
        let (threshold, error) = if too_large_from <= too_long_from {
            (too_large_from, RespError::ReplyTooLarge)
        } else {
            (too_long_from, RespError::LineTooLong)
        };
        let from = self.line_scan.max(start + 1);
        let unseen = buf.get(from..).unwrap_or_default();
        let Some(offset) = unseen.iter().position(|&byte| byte == b'\n') else {
            #[cfg(test)]
            {
                self.examined += unseen.len();
            }
            self.line_scan = buf.len().max(from);
            if buf.len() >= threshold {
                return Err(error);
            }
            return Ok(None);
        };
        #[cfg(test)]
        {
            self.examined += offset + 1;
        }
        let lf = from + offset;
        // Found again at once if the value is still waiting for its data.
        self.line_scan = lf;
        if lf >= threshold {
            return Err(error);
        }
        // RESP spec, "RESP protocol description": every part ends in CRLF;
        // "Simple strings": no CR or LF inside.
        let content = buf.get(start + 1..lf).unwrap_or_default();
        match content.split_last() {
            Some((b'\r', inside)) if !inside.contains(&b'\r') => Ok(Some(lf - 1)),
            _ => Err(RespError::BadLineEnding),
        }
    }

    /// The `len` data bytes starting at `at` and the index after their CRLF,
    /// or `Ok(None)` until they have arrived. Limits are checked first, from
    /// the declared length alone.
    fn bulk<'b>(
        &self,
        buf: &'b [u8],
        at: usize,
        len: usize,
    ) -> Result<Option<(&'b [u8], usize)>, RespError> {
        if len > self.limits.max_bulk_bytes {
            return Err(RespError::BulkTooLarge);
        }
        let end = at.saturating_add(len).saturating_add(2);
        if end > self.limits.max_reply_bytes {
            return Err(RespError::ReplyTooLarge);
        }
        let Some(with_crlf) = buf.get(at..end) else {
            return Ok(None);
        };
        // RESP spec, "Bulk strings": the data is followed by CRLF.
        match with_crlf.split_at(len) {
            (data, b"\r\n") => Ok(Some((data, end))),
            _ => Err(RespError::MissingBulkTerminator),
        }
    }

    /// Checks an aggregate header of `count` elements (pairs for a map) whose
    /// elements start at `after`.
    fn open(
        &self,
        kind: Aggregate,
        count: usize,
        after: usize,
    ) -> Result<Option<(Token, usize)>, RespError> {
        if count > self.limits.max_array_elements {
            return Err(RespError::TooManyElements);
        }
        if self.open.len() >= self.limits.max_depth {
            return Err(RespError::TooDeep);
        }
        // RESP spec, "Maps": a map of n pairs is followed by 2n values.
        let elements = if kind == Aggregate::Map {
            count.saturating_mul(2)
        } else {
            count
        };
        // Every element takes at least three bytes: refuse now what cannot fit.
        let least_end = elements
            .saturating_mul(MIN_VALUE_BYTES)
            .saturating_add(after);
        if least_end > self.limits.max_reply_bytes {
            return Err(RespError::ReplyTooLarge);
        }
        Ok(Some((Token::Open(kind, elements), after)))
    }

    /// Bytes searched for line ends so far.
    #[cfg(test)]
    fn examined(&self) -> usize {
        self.examined
    }
}

/// ```text
/// integer = [ "+" / "-" ] 1*DIGIT     ; RESP spec, "Integers"; fits an i64
/// ```
fn parse_integer(line: &[u8]) -> Option<i64> {
    let (negative, digits) = match line {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, line),
    };
    if digits.is_empty() {
        return None;
    }
    let mut value: i64 = 0;
    for &byte in digits {
        let digit = i64::from(byte.checked_sub(b'0').filter(|d| *d < 10)?);
        // Accumulate negatively so i64::MIN, one larger than i64::MAX, fits.
        value = value.checked_mul(10)?.checked_sub(digit)?;
    }
    if negative {
        Some(value)
    } else {
        value.checked_neg()
    }
}

/// ```text
/// length = 1*DIGIT / "-1"     ; RESP spec, "Bulk strings", "Arrays"
/// ```
///
/// `-1` is the null of `$` and `*` only (`allow_null`); `None` stands for it.
fn parse_length(line: &[u8], allow_null: bool) -> Result<Option<usize>, RespError> {
    if line == b"?" {
        // RESP spec, "Streamed strings" / "Streamed aggregates": unsupported.
        return Err(RespError::Unsupported);
    }
    if line == b"-1" && allow_null {
        return Ok(None);
    }
    if line.is_empty() {
        return Err(RespError::BadLength);
    }
    let mut value: usize = 0;
    for &byte in line {
        let digit = byte
            .checked_sub(b'0')
            .filter(|d| *d < 10)
            .ok_or(RespError::BadLength)?;
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(usize::from(digit)))
            .ok_or(RespError::BadLength)?;
    }
    Ok(Some(value))
}

/// A RESP3 double: a decimal with optional fraction and exponent, or `inf`,
/// `-inf`, `nan` (RESP spec, "Doubles"). The grammar is checked here so that
/// core's float parser sees only what the spec allows (it would also take
/// `infinity` or `.5`).
fn parse_double(line: &[u8]) -> Option<f64> {
    match line {
        b"inf" | b"+inf" => return Some(f64::INFINITY),
        b"-inf" => return Some(f64::NEG_INFINITY),
        b"nan" => return Some(f64::NAN),
        _ => {}
    }
    let unsigned = match line {
        [b'+' | b'-', rest @ ..] => rest,
        _ => line,
    };
    let (mantissa, exponent) = match unsigned.iter().position(|&b| b == b'e' || b == b'E') {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let (integral, fraction) = match mantissa.iter().position(|&b| b == b'.') {
        Some(at) => (&mantissa[..at], Some(&mantissa[at + 1..])),
        None => (mantissa, None),
    };
    let digits = |part: &[u8]| !part.is_empty() && part.iter().all(u8::is_ascii_digit);
    let exponent_ok = exponent.is_none_or(|e| {
        let e = match e {
            [b'+' | b'-', rest @ ..] => rest,
            _ => e,
        };
        digits(e)
    });
    if !digits(integral) || !fraction.is_none_or(digits) || !exponent_ok {
        return None;
    }
    core::str::from_utf8(line).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn bulk(bytes: &[u8]) -> Reply {
        Reply::Bulk(bytes.to_vec())
    }

    fn simple(bytes: &[u8]) -> Reply {
        Reply::Simple(bytes.to_vec())
    }

    /// Parses `wire` whole, byte by byte into one growing buffer, and split
    /// at every index; every way must give `expected`. On the way, the
    /// streaming parser's answer for each prefix must equal a fresh one-shot
    /// parse of that prefix (resuming changes nothing but the cost).
    fn check_all_splits(
        wire: &[u8],
        limits: RespLimits,
        expected: Result<Option<(Reply, usize)>, RespError>,
    ) {
        assert_eq!(
            ReplyParser::new(limits).parse(wire),
            expected,
            "whole: {wire:?}"
        );
        assert_eq!(feed(wire, limits, 1), expected, "byte by byte: {wire:?}");
        let mut streaming = ReplyParser::new(limits);
        for end in 0..=wire.len() {
            let resumed = streaming.parse(&wire[..end]);
            let fresh = ReplyParser::new(limits).parse(&wire[..end]);
            assert_eq!(resumed, fresh, "prefix of {end}: {wire:?}");
            if resumed.is_err() || matches!(resumed, Ok(Some(_))) {
                break;
            }
        }
        for split in 0..=wire.len() {
            let mut parser = ReplyParser::new(limits);
            let result = match parser.parse(&wire[..split]) {
                Ok(None) => parser.parse(wire),
                done => done,
            };
            assert_eq!(result, expected, "split at {split}: {wire:?}");
        }
    }

    /// Feeds `wire` `step` bytes at a time into one parser and one buffer, and
    /// returns its first answer that is not "not yet" (or the last one).
    fn feed(
        wire: &[u8],
        limits: RespLimits,
        step: usize,
    ) -> Result<Option<(Reply, usize)>, RespError> {
        let mut parser = ReplyParser::new(limits);
        let mut end = 0;
        loop {
            end = (end + step).min(wire.len());
            match parser.parse(&wire[..end]) {
                Ok(None) if end < wire.len() => {}
                answer => return answer,
            }
        }
    }

    fn ok(reply: Reply, used: usize) -> Result<Option<(Reply, usize)>, RespError> {
        Ok(Some((reply, used)))
    }

    fn whole(wire: &[u8], reply: Reply) {
        check_all_splits(wire, RespLimits::default(), ok(reply, wire.len()));
    }

    fn refused(wire: &[u8], limits: RespLimits, error: RespError) {
        check_all_splits(wire, limits, Err(error));
    }

    // --- The spec's examples (RESP spec, section by section) ---

    #[test]
    fn spec_simple_strings_and_errors() {
        whole(b"+OK\r\n", simple(b"OK"));
        whole(b"+\r\n", simple(b""));
        whole(
            b"-Error message\r\n",
            Reply::Error(b"Error message".to_vec()),
        );
        whole(
            b"-ERR unknown command 'asdf'\r\n",
            Reply::Error(b"ERR unknown command 'asdf'".to_vec()),
        );
        whole(
            b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
            Reply::Error(
                b"WRONGTYPE Operation against a key holding the wrong kind of value".to_vec(),
            ),
        );
    }

    #[test]
    fn spec_integers() {
        whole(b":0\r\n", Reply::Integer(0));
        whole(b":1000\r\n", Reply::Integer(1000));
        whole(b":-52\r\n", Reply::Integer(-52));
        whole(b":+7\r\n", Reply::Integer(7));
        whole(b":9223372036854775807\r\n", Reply::Integer(i64::MAX));
        whole(b":-9223372036854775808\r\n", Reply::Integer(i64::MIN));
    }

    #[test]
    fn spec_bulk_strings_and_null_bulk_string() {
        whole(b"$5\r\nhello\r\n", bulk(b"hello"));
        whole(b"$0\r\n\r\n", bulk(b""));
        whole(b"$-1\r\n", Reply::Null);
        // Binary-safe: CR, LF and NUL inside the data.
        whole(b"$4\r\n\r\n\0\n\r\n", bulk(b"\r\n\0\n"));
    }

    #[test]
    fn spec_arrays_nested_and_null() {
        whole(b"*0\r\n", Reply::Array(vec![]));
        whole(
            b"*2\r\n$5\r\nhello\r\n$5\r\nworld\r\n",
            Reply::Array(vec![bulk(b"hello"), bulk(b"world")]),
        );
        whole(
            b"*3\r\n:1\r\n:2\r\n:3\r\n",
            Reply::Array(vec![
                Reply::Integer(1),
                Reply::Integer(2),
                Reply::Integer(3),
            ]),
        );
        whole(
            b"*5\r\n:1\r\n:2\r\n:3\r\n:4\r\n$5\r\nhello\r\n",
            Reply::Array(vec![
                Reply::Integer(1),
                Reply::Integer(2),
                Reply::Integer(3),
                Reply::Integer(4),
                bulk(b"hello"),
            ]),
        );
        whole(
            b"*2\r\n*3\r\n:1\r\n:2\r\n:3\r\n*2\r\n+Hello\r\n-World\r\n",
            Reply::Array(vec![
                Reply::Array(vec![
                    Reply::Integer(1),
                    Reply::Integer(2),
                    Reply::Integer(3),
                ]),
                Reply::Array(vec![simple(b"Hello"), Reply::Error(b"World".to_vec())]),
            ]),
        );
        whole(b"*-1\r\n", Reply::Null);
        whole(
            b"*3\r\n$5\r\nhello\r\n$-1\r\n$5\r\nworld\r\n",
            Reply::Array(vec![bulk(b"hello"), Reply::Null, bulk(b"world")]),
        );
        // Empty arrays nested, closing several levels with one value.
        whole(
            b"*2\r\n*0\r\n*1\r\n*1\r\n:5\r\n",
            Reply::Array(vec![
                Reply::Array(vec![]),
                Reply::Array(vec![Reply::Array(vec![Reply::Integer(5)])]),
            ]),
        );
    }

    #[test]
    fn spec_resp3_scalars() {
        whole(b"_\r\n", Reply::Null);
        whole(b"#t\r\n", Reply::Boolean(true));
        whole(b"#f\r\n", Reply::Boolean(false));
        whole(b",1.23\r\n", Reply::Double(1.23));
        whole(b",10\r\n", Reply::Double(10.0));
        whole(b",-1.5e3\r\n", Reply::Double(-1500.0));
        whole(b",inf\r\n", Reply::Double(f64::INFINITY));
        whole(b",-inf\r\n", Reply::Double(f64::NEG_INFINITY));
        assert!(matches!(parse(b",nan\r\n"), Ok(Some((Reply::Double(x), 6))) if x.is_nan()));
        whole(
            b"(3492890328409238509324850943850943825024385\r\n",
            Reply::BigNumber(b"3492890328409238509324850943850943825024385".to_vec()),
        );
        whole(b"(-12\r\n", Reply::BigNumber(b"-12".to_vec()));
        whole(
            b"!21\r\nSYNTAX invalid syntax\r\n",
            Reply::Error(b"SYNTAX invalid syntax".to_vec()),
        );
        whole(
            b"=15\r\ntxt:Some string\r\n",
            Reply::Verbatim {
                format: *b"txt",
                text: b"Some string".to_vec(),
            },
        );
    }

    #[test]
    fn spec_resp3_aggregates() {
        whole(
            b"%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n",
            Reply::Map(vec![
                (simple(b"first"), Reply::Integer(1)),
                (simple(b"second"), Reply::Integer(2)),
            ]),
        );
        whole(b"%0\r\n", Reply::Map(vec![]));
        whole(
            b"~3\r\n+a\r\n:1\r\n#f\r\n",
            Reply::Set(vec![simple(b"a"), Reply::Integer(1), Reply::Boolean(false)]),
        );
        whole(
            b">3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$2\r\nhi\r\n",
            Reply::Push(vec![bulk(b"message"), bulk(b"chan"), bulk(b"hi")]),
        );
        whole(
            b"%1\r\n$1\r\nk\r\n%1\r\n$1\r\nj\r\n*1\r\n_\r\n",
            Reply::Map(vec![(
                bulk(b"k"),
                Reply::Map(vec![(bulk(b"j"), Reply::Array(vec![Reply::Null]))]),
            )]),
        );
    }

    #[test]
    fn spec_command_encoding() {
        let mut out = vec![0xEE];
        encode_command(&[b"LLEN", b"mylist"], &mut out);
        assert_eq!(out, b"\xEE*2\r\n$4\r\nLLEN\r\n$6\r\nmylist\r\n");
        let mut out = Vec::new();
        encode_command(&[], &mut out);
        assert_eq!(out, b"*0\r\n");
        // What a command encodes, a reply parser reads back as the same strings.
        let args: [&[u8]; 4] = [b"XADD", b"", b"\r\n", &[0xFF; 300]];
        let mut out = Vec::new();
        encode_command(&args, &mut out);
        let expected = Reply::Array(args.iter().map(|a| bulk(a)).collect());
        assert_eq!(parse(&out), ok(expected, out.len()));
    }

    #[test]
    fn push_decimal_writes_every_width() {
        for n in [0, 9, 10, 99, 100, 12345, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(n, &mut out);
            assert_eq!(out, alloc::format!("{n}").as_bytes());
        }
    }

    // --- Pipelining and the driving contract ---

    #[test]
    fn pipelined_replies_come_one_at_a_time() {
        // RESP spec, "Multiple commands and pipelining".
        let mut buf = b"+OK\r\n:1\r\n$-1\r\n*1\r\n$1\r\na\r\n+P".to_vec();
        let mut parser = ReplyParser::new(RespLimits::default());
        let mut replies = Vec::new();
        while let Some((reply, used)) = parser.parse(&buf).unwrap() {
            replies.push(reply);
            buf.drain(..used);
        }
        assert_eq!(
            replies,
            [
                simple(b"OK"),
                Reply::Integer(1),
                Reply::Null,
                Reply::Array(vec![bulk(b"a")])
            ]
        );
        assert_eq!(buf, b"+P");
        buf.extend_from_slice(b"ONG\r\n");
        assert_eq!(parser.parse(&buf), ok(simple(b"PONG"), 7));
    }

    #[test]
    fn a_shorter_buffer_starts_over() {
        let mut parser = ReplyParser::new(RespLimits::default());
        assert_eq!(parser.parse(b"*2\r\n:1\r\n"), Ok(None));
        // The caller dropped those bytes (a reconnect) and gives a new stream.
        assert_eq!(parser.parse(b":7\r\n"), ok(Reply::Integer(7), 4));
    }

    #[test]
    fn reset_forgets_a_partial_reply() {
        let mut parser = ReplyParser::new(RespLimits::default());
        assert_eq!(parser.parse(b"*2\r\n:1\r\n:2"), Ok(None));
        parser.reset();
        assert_eq!(parser.parse(b"+OK\r\n:2\r\n"), ok(simple(b"OK"), 5));
    }

    // --- Malformed replies ---

    #[test]
    fn refuses_malformed_replies() {
        let limits = RespLimits::default();
        let cases: &[(&[u8], RespError)] = &[
            (b"?x\r\n", RespError::UnknownType),
            (b"\r\n", RespError::UnknownType),
            (b"|1\r\n+a\r\n+b\r\n+OK\r\n", RespError::Unsupported),
            (b"$?\r\n;4\r\nHell\r\n;0\r\n", RespError::Unsupported),
            (b"*?\r\n:1\r\n.\r\n", RespError::Unsupported),
            (b"+OK\n", RespError::BadLineEnding),
            (b"\n", RespError::UnknownType),
            (b"+\n", RespError::BadLineEnding),
            (b"+O\rK\r\n", RespError::BadLineEnding),
            (b"+OK\r\r\n", RespError::BadLineEnding),
            (b":\r\n", RespError::BadInteger),
            (b":-\r\n", RespError::BadInteger),
            (b":1a\r\n", RespError::BadInteger),
            (b": 1\r\n", RespError::BadInteger),
            (b":9223372036854775808\r\n", RespError::BadInteger),
            (b":-9223372036854775809\r\n", RespError::BadInteger),
            (b"$\r\n", RespError::BadLength),
            (b"$-2\r\n", RespError::BadLength),
            (b"$+5\r\nhello\r\n", RespError::BadLength),
            (b"$99999999999999999999\r\n", RespError::BadLength),
            (b"*-2\r\n", RespError::BadLength),
            (b"%-1\r\n", RespError::BadLength),
            (b"!-1\r\n", RespError::BadLength),
            (b"$5\r\nhelloXY", RespError::MissingBulkTerminator),
            (b"$5\r\nhello\n\r", RespError::MissingBulkTerminator),
            (b"$3\r\nhello\r\n", RespError::MissingBulkTerminator),
            (b"_x\r\n", RespError::BadNull),
            (b"#x\r\n", RespError::BadBoolean),
            (b"#\r\n", RespError::BadBoolean),
            (b",\r\n", RespError::BadDouble),
            (b",1.\r\n", RespError::BadDouble),
            (b",.5\r\n", RespError::BadDouble),
            (b",infinity\r\n", RespError::BadDouble),
            (b",1e\r\n", RespError::BadDouble),
            (b"(\r\n", RespError::BadBigNumber),
            (b"(12x\r\n", RespError::BadBigNumber),
            (b"=3\r\ntxt\r\n", RespError::BadVerbatim),
            (b"=4\r\ntxt;\r\n", RespError::BadVerbatim),
            // An error inside an aggregate ends the whole reply.
            (b"*2\r\n:1\r\n:x\r\n", RespError::BadInteger),
        ];
        for (wire, error) in cases {
            refused(wire, limits, *error);
        }
    }

    // --- Limits crossed ---

    fn small_limits() -> RespLimits {
        RespLimits {
            max_bulk_bytes: 8,
            max_line_bytes: 8,
            max_array_elements: 3,
            max_depth: 2,
            max_reply_bytes: 64,
        }
    }

    #[test]
    fn bulk_limit_is_exact() {
        let limits = small_limits();
        check_all_splits(b"$8\r\n12345678\r\n", limits, ok(bulk(b"12345678"), 14));
        refused(b"$9\r\n123456789\r\n", limits, RespError::BulkTooLarge);
        refused(b"!9\r\n", limits, RespError::BulkTooLarge);
        refused(b"=9\r\n", limits, RespError::BulkTooLarge);
    }

    #[test]
    fn a_declared_length_of_2_pow_62_is_refused_without_allocating() {
        // Refused at the header, before any data: nothing to allocate.
        refused(
            b"$4611686018427387904\r\n",
            RespLimits::default(),
            RespError::BulkTooLarge,
        );
        let unlimited_bulk = RespLimits {
            max_bulk_bytes: usize::MAX,
            ..RespLimits::default()
        };
        refused(
            b"$4611686018427387904\r\n",
            unlimited_bulk,
            RespError::ReplyTooLarge,
        );
        refused(
            b"*4611686018427387904\r\n",
            RespLimits::default(),
            RespError::TooManyElements,
        );
        let unlimited_elements = RespLimits {
            max_array_elements: usize::MAX,
            ..RespLimits::default()
        };
        // Its elements could never fit the reply limit.
        refused(
            b"*4611686018427387904\r\n",
            unlimited_elements,
            RespError::ReplyTooLarge,
        );
        refused(
            b"%4611686018427387904\r\n",
            unlimited_elements,
            RespError::ReplyTooLarge,
        );
    }

    #[test]
    fn an_array_reserves_only_what_has_arrived() {
        let limits = RespLimits {
            max_array_elements: 1 << 16,
            ..RespLimits::default()
        };
        let mut parser = ReplyParser::new(limits);
        assert_eq!(parser.parse(b"*65536\r\n:1\r\n"), Ok(None));
        assert!(parser.open[0].items.capacity() < 16);
    }

    #[test]
    fn line_limit_is_exact() {
        let limits = small_limits();
        check_all_splits(b"+12345678\r\n", limits, ok(simple(b"12345678"), 11));
        refused(b"+123456789\r\n", limits, RespError::LineTooLong);
        refused(b"-123456789\r\n", limits, RespError::LineTooLong);
        // Refused before the line ends.
        assert_eq!(
            ReplyParser::new(limits).parse(b"+123456789\r"),
            Err(RespError::LineTooLong)
        );
        // Integer and length lines: 20 bytes at most, whatever max_line_bytes says.
        refused(
            b":-92233720368547758080\r\n",
            RespLimits::default(),
            RespError::LineTooLong,
        );
        refused(
            b"$000000000000000000005\r\nhello\r\n",
            RespLimits::default(),
            RespError::LineTooLong,
        );
        whole(b"$00000000000000000005\r\nhello\r\n", bulk(b"hello"));
    }

    #[test]
    fn element_limit_is_exact() {
        let limits = small_limits();
        let three = Reply::Array(vec![
            Reply::Integer(1),
            Reply::Integer(2),
            Reply::Integer(3),
        ]);
        check_all_splits(b"*3\r\n:1\r\n:2\r\n:3\r\n", limits, ok(three, 16));
        refused(
            b"*4\r\n:1\r\n:2\r\n:3\r\n:4\r\n",
            limits,
            RespError::TooManyElements,
        );
        refused(b"~4\r\n", limits, RespError::TooManyElements);
        refused(b">4\r\n", limits, RespError::TooManyElements);
        // A map counts pairs: 3 pairs pass, 4 do not.
        let map = b"%3\r\n:1\r\n:1\r\n:2\r\n:2\r\n:3\r\n:3\r\n";
        assert!(
            matches!(ReplyParser::new(limits).parse(map), Ok(Some((Reply::Map(p), _))) if p.len() == 3)
        );
        refused(b"%4\r\n", limits, RespError::TooManyElements);
    }

    #[test]
    fn depth_limit_is_exact() {
        let limits = small_limits();
        let two = Reply::Array(vec![Reply::Array(vec![])]);
        check_all_splits(b"*1\r\n*0\r\n", limits, ok(two, 8));
        refused(b"*1\r\n*1\r\n*0\r\n", limits, RespError::TooDeep);
        refused(b"%1\r\n~1\r\n>0\r\n", limits, RespError::TooDeep);
        // The default depth holds XREAD's five levels (see `stream`) and stops a
        // tower of ten thousand.
        let tower = b"*1\r\n".repeat(10_000);
        assert_eq!(parse(&tower), Err(RespError::TooDeep));
    }

    #[test]
    fn reply_limit_is_exact() {
        let limits = RespLimits {
            max_reply_bytes: 14,
            ..RespLimits::default()
        };
        // Exactly 14 bytes passes; one more byte of data is refused at the header.
        check_all_splits(b"$8\r\n12345678\r\n", limits, ok(bulk(b"12345678"), 14));
        refused(b"$9\r\n123456789\r\n", limits, RespError::ReplyTooLarge);
        // Many small elements add up.
        check_all_splits(
            b"*2\r\n:1\r\n:123\r\n",
            limits,
            ok(
                Reply::Array(vec![Reply::Integer(1), Reply::Integer(123)]),
                14,
            ),
        );
        refused(b"*2\r\n:1\r\n:1234\r\n", limits, RespError::ReplyTooLarge);
        // A line that would end past the limit.
        refused(b"+12345678901234\r\n", limits, RespError::ReplyTooLarge);
        // An array whose elements cannot fit: 4 header bytes + 4 × 3 > 14.
        refused(b"*4\r\n", limits, RespError::ReplyTooLarge);
    }

    // --- Linear time for replies that trickle in ---

    /// An XRANGE-like reply of just over 1 MiB: 4096 entries, each an id and
    /// a 256-byte data value among its fields.
    fn large_reply() -> (Vec<u8>, usize) {
        let mut wire = Vec::new();
        let entries = 4096;
        wire.extend_from_slice(b"*4096\r\n");
        for n in 0..entries {
            let id = alloc::format!("{n}-0");
            let data = [b'x'; 256];
            let fields: [&[u8]; 4] = [b"id", id.as_bytes(), b"data", &data];
            wire.extend_from_slice(b"*2\r\n");
            wire.extend_from_slice(alloc::format!("${}\r\n{}\r\n", id.len(), id).as_bytes());
            encode_command(&fields, &mut wire);
        }
        (wire, entries)
    }

    #[test]
    fn a_1_mib_reply_fed_byte_by_byte_is_searched_once() {
        let limits = RespLimits::default();
        let (wire, entries) = large_reply();
        assert!(wire.len() > 1 << 20);
        let mut parser = ReplyParser::new(limits);
        let mut answer = Ok(None);
        for end in 1..=wire.len() {
            answer = parser.parse(&wire[..end]);
            if end < wire.len() {
                assert_eq!(answer, Ok(None));
            }
        }
        let Ok(Some((Reply::Array(items), used))) = answer else {
            panic!("no reply: {answer:?}");
        };
        assert_eq!((items.len(), used), (entries, wire.len()));
        // Each byte searched for a line end about once (a header line waiting
        // for its data is found again with one byte), never rescanned.
        assert!(
            parser.examined() < 2 * wire.len(),
            "{} bytes searched",
            parser.examined()
        );
    }

    #[test]
    fn a_1_mib_bulk_fed_byte_by_byte_is_never_searched() {
        let mut wire = b"$1048576\r\n".to_vec();
        wire.extend(core::iter::repeat_n(b'\n', 1 << 20));
        wire.extend_from_slice(b"\r\n");
        let mut parser = ReplyParser::new(RespLimits::default());
        for end in 1..wire.len() {
            assert_eq!(parser.parse(&wire[..end]), Ok(None));
        }
        assert_eq!(
            parser.parse(&wire).map(|r| r.map(|(_, used)| used)),
            Ok(Some(wire.len()))
        );
        // Only the header's 10 bytes (and its LF again, once per call) were searched.
        assert!(
            parser.examined() <= wire.len() + 16,
            "{}",
            parser.examined()
        );
    }

    #[test]
    fn large_reply_agrees_in_any_chunking() {
        let (wire, _) = large_reply();
        let expected = parse(&wire);
        assert!(matches!(expected, Ok(Some(_))));
        for step in [2, 7, 100, 4096, 65536] {
            assert_eq!(
                feed(&wire, RespLimits::default(), step),
                expected,
                "step {step}"
            );
        }
    }

    /// Parse speed on the 1 MiB reply: whole, in 1460-byte reads (one TCP
    /// segment each) and byte by byte.
    /// `cargo test --release -p pushloop-proto -- --ignored measure_parse_speed --nocapture`
    #[test]
    #[ignore]
    fn measure_parse_speed() {
        let (wire, _) = large_reply();
        for step in [wire.len(), 1460, 1] {
            let rounds = if step == 1 { 5 } else { 50 };
            let start = std::time::Instant::now();
            for _ in 0..rounds {
                assert!(matches!(
                    feed(&wire, RespLimits::default(), step),
                    Ok(Some(_))
                ));
            }
            let elapsed = start.elapsed();
            std::println!(
                "{} B reply in reads of {step} B: {:.0} MB/s",
                wire.len(),
                (rounds * wire.len()) as f64 / elapsed.as_secs_f64() / 1e6
            );
        }
    }

    #[test]
    fn errors_display_their_message() {
        assert_eq!(
            RespError::TooDeep.to_string(),
            "RESP aggregates nested too deep"
        );
        assert!(RespError::BulkTooLarge.closes_connection());
        assert!(!RespError::NotAnEvent.closes_connection());
    }
}
