//! Server-Sent Events: the `text/event-stream` format, both ways.
//!
//! Reading list (WHATWG HTML Living Standard, §9.2 "Server-sent events"):
//! - §9.2.4 The `Last-Event-ID` header: what a reconnecting browser sends back.
//! - §9.2.5 Parsing an event stream: the ABNF, UTF-8 only, and the three line
//!   ends (CRLF, lone LF, lone CR).
//! - §9.2.6 Interpreting an event stream: how a browser turns lines into events.
//!   [`StreamParser`] follows it step by step, and [`encode`] is written against it.
//! - §9.2.7 Authoring notes: a comment line "every 15 seconds or so" keeps legacy
//!   proxies from dropping an idle stream ([`encode_comment`]).
//! - RFC 9110 §5.5 and §5.6.3: the optional whitespace around a header value.
//!
//! The server side appends bytes to a buffer the caller owns: [`encode`] for an
//! event, [`encode_comment`] for keep-alives, [`encode_retry`] for the reconnection
//! time; [`parse_last_event_id`] reads the header of a reconnecting client. The
//! client side is [`StreamParser`]. Nothing here touches a socket or a clock: when
//! to send a keep-alive is the event loop's business.
//!
//! ```
//! use pushloop_proto::sse::{encode, Event, StreamParser};
//!
//! let mut wire = Vec::new();
//! encode(&Event::new("two\nlines").id("7").event("update"), &mut wire)?;
//! assert_eq!(wire, b"id: 7\nevent: update\ndata: two\ndata: lines\n\n");
//!
//! let mut client = StreamParser::new(1024);
//! let events = client.feed(&wire)?;
//! assert_eq!(events[0].event_type, "update");
//! assert_eq!(events[0].data, "two\nlines");
//! assert_eq!(client.last_event_id(), "7");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use alloc::vec::Vec;
use core::fmt;

use crate::http::response::write_head;
use crate::http::syntax::{trim_ows, write_decimal};

pub mod parser;
pub use parser::{ParsedEvent, StreamError, StreamParser};

/// One event of the `text/event-stream` format (WHATWG HTML §9.2.5).
///
/// What a browser's `EventSource` sees for it (§9.2.6): a `MessageEvent` whose
/// `type` is `event` (or `"message"` when `event` is `None` or empty), whose `data`
/// is `data` with every CRLF and lone CR turned into LF, and whose `lastEventId` is
/// `id` — or, when `id` is `None`, the id of the latest earlier event that had one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    /// The `id` field: becomes the client's last event ID, which it sends back in
    /// `Last-Event-ID` when it reconnects. `Some("")` clears it. Must not contain
    /// CR, LF or NUL.
    pub id: Option<&'a str>,
    /// The `event` field: the event type a listener subscribes to with
    /// `addEventListener`. Must not contain CR, LF or NUL.
    pub event: Option<&'a str>,
    /// The payload. Any text: line breaks become several `data` lines.
    pub data: &'a str,
    /// The `retry` field: the client's reconnection time in milliseconds.
    pub retry: Option<u32>,
}

impl<'a> Event<'a> {
    /// An event of type `"message"` carrying `data`, with no id and no retry.
    pub fn new(data: &'a str) -> Self {
        Event {
            id: None,
            event: None,
            data,
            retry: None,
        }
    }

    /// Sets the `id` field.
    #[must_use]
    pub fn id(self, id: &'a str) -> Self {
        Event {
            id: Some(id),
            ..self
        }
    }

    /// Sets the `event` field (the event type).
    #[must_use]
    pub fn event(self, event: &'a str) -> Self {
        Event {
            event: Some(event),
            ..self
        }
    }

    /// Sets the `retry` field (reconnection time in milliseconds).
    #[must_use]
    pub fn retry(self, ms: u32) -> Self {
        Event {
            retry: Some(ms),
            ..self
        }
    }
}

/// What went wrong encoding an event or reading `Last-Event-ID`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SseError {
    /// The application gave an `id` containing CR or LF: it would end the field
    /// early and let the rest of the id inject other fields.
    LineBreakInId,
    /// The application gave an `id` containing NUL: the browser would silently
    /// ignore the field (§9.2.6) and report a stale last event ID.
    NulInId,
    /// The application gave an `event` name containing CR or LF: it would end
    /// the field early and let the rest of the name inject other fields.
    LineBreakInEventName,
    /// The application gave an `event` name containing NUL: refused like a NUL in
    /// an id, so both one-line fields follow the same rule.
    NulInEventName,
    /// The client sent a `Last-Event-ID` header that is not a decimal event id
    /// pushloop could have given it (empty, not digits, or over `u64::MAX`).
    BadLastEventId,
}

impl SseError {
    /// The HTTP status to answer with (RFC 9110 §15).
    ///
    /// [`SseError::BadLastEventId`] is the client's fault: `400 Bad Request`, sent
    /// instead of opening the stream. The other variants are the application's
    /// fault and are found before a byte is written: `500 Internal Server Error`
    /// if the stream has not started yet; once it has, there is no status to send
    /// and the server drops that one event.
    pub fn status(self) -> u16 {
        match self {
            SseError::BadLastEventId => 400,
            SseError::LineBreakInId
            | SseError::NulInId
            | SseError::LineBreakInEventName
            | SseError::NulInEventName => 500,
        }
    }
}

impl fmt::Display for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SseError::LineBreakInId => "event id contains a line break",
            SseError::NulInId => "event id contains NUL",
            SseError::LineBreakInEventName => "event name contains a line break",
            SseError::NulInEventName => "event name contains NUL",
            SseError::BadLastEventId => "Last-Event-ID is not a decimal event id",
        })
    }
}

impl core::error::Error for SseError {}

/// Appends the event's bytes to `out`: `retry`, `id`, `event` (each only if set),
/// one `data` line per line of `data`, then the blank line that dispatches it.
///
/// Field by field (WHATWG HTML §9.2.6 is the reader these choices are made for):
/// - Every value is written after `": "`. The reader removes exactly one space
///   after the colon, so a value that itself starts with spaces keeps them all.
///   An empty value is written as the bare `"name:"`, which reads back as empty.
/// - `data` is split at every CRLF, lone CR and lone LF (§9.2.5 `end-of-line`),
///   and the reader joins the lines with LF. Empty `data` is still one `data:`
///   line: the reader's data buffer is then `"\n"`, not empty, so the event is
///   dispatched with data `""` (a block with no `data` line dispatches nothing).
/// - `id` and `event` must stay on one line, or they could end their field and
///   start another: CR or LF is refused, and NUL too (see [`SseError`]). A value
///   with both is reported as a line break. On `Err` nothing is appended.
///
/// Never panics.
pub fn encode(event: &Event, out: &mut Vec<u8>) -> Result<(), SseError> {
    // Check everything first, so a refused event leaves `out` as it was.
    if let Some(id) = event.id {
        check_one_line(id, SseError::LineBreakInId, SseError::NulInId)?;
    }
    if let Some(name) = event.event {
        check_one_line(
            name,
            SseError::LineBreakInEventName,
            SseError::NulInEventName,
        )?;
    }
    out.reserve(event.data.len() + 32);
    if let Some(ms) = event.retry {
        write_retry_field(ms, out);
    }
    if let Some(id) = event.id {
        write_field(out, b"id", id);
    }
    if let Some(name) = event.event {
        write_field(out, b"event", name);
    }
    for line in lines(event.data) {
        write_field(out, b"data", line);
    }
    // §9.2.6: "If the line is empty (a blank line)": dispatch the event.
    out.push(b'\n');
    Ok(())
}

/// Appends a comment: `": "` and the text, one comment line per line of `text`;
/// an empty line (or empty `text`) is the bare `":"`, so `encode_comment("", out)`
/// writes the shortest keep-alive, `":\n"`.
///
/// §9.2.6: a line starting with a colon is ignored, so a comment never dispatches
/// an event and never changes one being built. §9.2.7 suggests one "every 15
/// seconds or so" so that proxies do not drop an idle stream. Line breaks in
/// `text` start new comment lines, so `text` cannot inject a field. Never panics.
pub fn encode_comment(text: &str, out: &mut Vec<u8>) {
    for line in lines(text) {
        write_field(out, b"", line);
    }
}

/// Appends `"retry: ms\n\n"`: a block that only sets the client's reconnection
/// time, in milliseconds.
///
/// §9.2.6 applies `retry` when its line is read, so the blank line is not needed
/// for that; it is written so the block stands alone. A client that buffers whole
/// blocks then applies the value at once, and the next event starts from a clean
/// block. A blank line after a block without `data` dispatches nothing (§9.2.6,
/// "dispatch the event" step 2). Never panics.
pub fn encode_retry(ms: u32, out: &mut Vec<u8>) {
    write_retry_field(ms, out);
    out.push(b'\n');
}

/// Appends the head of a `200` event-stream response, then `retry: ms` (see
/// [`encode_retry`]). `extra` fields come after the fixed ones (say,
/// `Access-Control-Allow-Origin`).
///
/// The fields: `Content-Type: text/event-stream` (§9.2.5: the MIME type that
/// makes it an event stream); `Cache-Control: no-cache` (no cache may hold a
/// stream) and `X-Accel-Buffering: no` (nginx must not buffer it); and
/// `Connection: close` with neither length nor chunking (RFC 9112 §6.3: the
/// body runs until the connection closes, which is what a stream is).
///
/// ```
/// let mut out = Vec::new();
/// pushloop_proto::sse::write_stream_head(&mut out, 2000, &[]);
/// assert!(out.starts_with(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"));
/// assert!(out.ends_with(b"Connection: close\r\n\r\nretry: 2000\n\n"));
/// ```
pub fn write_stream_head(out: &mut Vec<u8>, retry_ms: u32, extra: &[(&str, &str)]) {
    let fixed = [
        ("Content-Type", "text/event-stream"),
        ("Cache-Control", "no-cache"),
        ("X-Accel-Buffering", "no"),
    ];
    let close = [("Connection", "close")];
    let mut fields: Vec<(&str, &str)> = Vec::with_capacity(fixed.len() + extra.len() + 1);
    fields.extend_from_slice(&fixed);
    fields.extend_from_slice(extra);
    fields.extend_from_slice(&close);
    write_head(out, 200, &fields, None);
    encode_retry(retry_ms, out);
}

/// Reads the `Last-Event-ID` request header (WHATWG HTML §9.2.4) as pushloop uses
/// it: the decimal `u64` id of the last event the client saw on this topic.
///
/// ```text
/// Last-Event-ID = OWS 1*DIGIT OWS      ; pushloop's own ids, within u64
/// ```
///
/// The browser sends back whatever `id` the server gave, so anything else was not
/// sent by pushloop: empty, non-digits (a sign, hex, inner spaces) or a value over
/// `u64::MAX` is [`SseError::BadLastEventId`], answered with `400`. Leading zeros
/// are accepted. Never panics.
pub fn parse_last_event_id(value: &[u8]) -> Result<u64, SseError> {
    // RFC 9110 §5.5: leading and trailing OWS is not part of a field value.
    let digits = trim_ows(value);
    if digits.is_empty() {
        return Err(SseError::BadLastEventId);
    }
    digits
        .iter()
        .try_fold(0u64, |id, &byte| {
            let digit = byte.checked_sub(b'0').filter(|digit| *digit <= 9)?;
            id.checked_mul(10)?.checked_add(u64::from(digit))
        })
        .ok_or(SseError::BadLastEventId)
}

/// Refuses a CR, LF (`line_break`) or NUL (`nul`) in a one-line field value.
fn check_one_line(value: &str, line_break: SseError, nul: SseError) -> Result<(), SseError> {
    if value.contains(['\r', '\n']) {
        Err(line_break)
    } else if value.contains('\0') {
        Err(nul)
    } else {
        Ok(())
    }
}

/// Writes `name:` then, if `value` is not empty, a space and `value`, then LF.
/// With an empty `name` this is a comment line.
fn write_field(out: &mut Vec<u8>, name: &[u8], value: &str) {
    out.extend_from_slice(name);
    out.push(b':');
    if !value.is_empty() {
        // §9.2.6: "If value starts with a U+0020 SPACE character, remove it from
        // value." Writing the space always makes that removal harmless.
        out.push(b' ');
        out.extend_from_slice(value.as_bytes());
    }
    out.push(b'\n');
}

/// Writes `retry: ms\n`.
fn write_retry_field(ms: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(b"retry: ");
    write_decimal(out, u64::from(ms));
    out.push(b'\n');
}

/// Splits `text` at every CRLF, lone CR and lone LF (§9.2.5 `end-of-line`).
/// Always yields at least one line: `""` is one empty line, `"a\n"` is `"a"`, `""`.
fn lines(text: &str) -> Lines<'_> {
    Lines { rest: Some(text) }
}

/// The iterator behind [`lines`]; `rest` is `None` once the last line is out.
struct Lines<'a> {
    rest: Option<&'a str>,
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.rest?;
        let Some(end) = rest.find(['\r', '\n']) else {
            self.rest = None;
            return Some(rest);
        };
        // `end` is at an ASCII byte, so both splits are at char boundaries.
        let (line, tail) = rest.split_at(end);
        let tail = tail
            .strip_prefix("\r\n")
            .or_else(|| tail.get(1..))
            .unwrap_or_default();
        self.rest = Some(tail);
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::parser::testing::*;
    use super::*;

    // --- encoding ---
    #[test]
    fn encodes_fields_in_order() {
        let event = Event::new("hi").event("update").retry(1000).id("7");
        assert_eq!(
            encoded(&event),
            b"retry: 1000\nid: 7\nevent: update\ndata: hi\n\n"
        );
    }

    #[test]
    fn encodes_every_line_break_in_data_as_new_data_line() {
        assert_eq!(
            encoded(&Event::new("a\nb\r\nc\rd")),
            b"data: a\ndata: b\ndata: c\ndata: d\n\n"
        );
        assert_eq!(
            encoded(&Event::new("a\n\rb")),
            b"data: a\ndata:\ndata: b\n\n"
        );
        assert_eq!(
            encoded(&Event::new("a\r\r\nb")),
            b"data: a\ndata:\ndata: b\n\n"
        );
    }

    #[test]
    fn encodes_empty_data_so_the_event_is_dispatched() {
        let wire = encoded(&Event::new(""));
        assert_eq!(wire, b"data:\n\n");
        assert_eq!(parse(&wire).events, [message("", "")]);
    }

    #[test]
    fn encodes_empty_id_to_clear_last_event_id() {
        let mut wire = encoded(&Event::new("a").id("5"));
        wire.extend(encoded(&Event::new("b").id("")));
        assert_eq!(wire, b"id: 5\ndata: a\n\nid:\ndata: b\n\n");
        assert_eq!(parse(&wire).events, [message("a", "5"), message("b", "")]);
    }

    #[test]
    fn keeps_leading_spaces_of_values() {
        let wire = encoded(&Event::new("  two").id(" 1").event(" e"));
        assert_eq!(wire, b"id:  1\nevent:  e\ndata:   two\n\n");
        assert_eq!(parse(&wire).events, [typed(" e", "  two", " 1")]);
    }

    #[test]
    fn refuses_line_break_or_nul_in_id() {
        for (id, error) in [
            ("1\ndata: evil", SseError::LineBreakInId),
            ("1\r", SseError::LineBreakInId),
            ("\r\n", SseError::LineBreakInId),
            ("a\0b", SseError::NulInId),
            ("\0\n", SseError::LineBreakInId),
        ] {
            let mut out = b"kept".to_vec();
            assert_eq!(
                encode(&Event::new("x").id(id), &mut out),
                Err(error),
                "{id:?}"
            );
            assert_eq!(out, b"kept", "nothing appended for {id:?}");
        }
    }

    #[test]
    fn refuses_line_break_or_nul_in_event_name() {
        for (name, error) in [
            ("x\rdata: evil", SseError::LineBreakInEventName),
            ("x\n", SseError::LineBreakInEventName),
            ("x\0", SseError::NulInEventName),
        ] {
            let mut out = b"kept".to_vec();
            assert_eq!(
                encode(&Event::new("x").event(name), &mut out),
                Err(error),
                "{name:?}"
            );
            assert_eq!(out, b"kept", "nothing appended for {name:?}");
        }
    }

    #[test]
    fn refuses_bad_id_before_looking_at_event_name() {
        let event = Event::new("x").id("\n").event("\0");
        assert_eq!(
            encode(&event, &mut Vec::new()),
            Err(SseError::LineBreakInId)
        );
    }

    #[test]
    fn encodes_comments_one_line_each() {
        let mut out = Vec::new();
        encode_comment("", &mut out);
        encode_comment("keep-alive", &mut out);
        encode_comment("a\nb\r\n\rc", &mut out);
        assert_eq!(out, b":\n: keep-alive\n: a\n: b\n:\n: c\n");
        assert_eq!(parse(&out).events, []);
    }

    #[test]
    fn comment_text_cannot_inject_an_event() {
        let mut out = Vec::new();
        encode_comment("x\r\ndata: evil\n\nid: 6\r\r", &mut out);
        out.push(b'\n');
        let outcome = parse(&out);
        assert_eq!(outcome.events, []);
        assert_eq!(outcome.last_event_id, "");
    }

    #[test]
    fn encodes_retry_as_its_own_block() {
        for ms in [0, 7, 1000, u32::MAX] {
            let mut out = Vec::new();
            encode_retry(ms, &mut out);
            assert_eq!(out, format!("retry: {ms}\n\n").as_bytes());
            let outcome = parse(&out);
            assert_eq!(outcome.retry, Some(ms));
            assert_eq!(outcome.events, []);
        }
    }

    #[test]
    fn parses_last_event_id() {
        assert_eq!(parse_last_event_id(b"42"), Ok(42));
        assert_eq!(parse_last_event_id(b" 42 "), Ok(42));
        assert_eq!(parse_last_event_id(b"\t 42\t"), Ok(42));
        assert_eq!(parse_last_event_id(b"0"), Ok(0));
        assert_eq!(parse_last_event_id(b"007"), Ok(7));
        assert_eq!(parse_last_event_id(b"18446744073709551615"), Ok(u64::MAX));
    }

    #[test]
    fn rejects_bad_last_event_id() {
        for bad in [
            &b""[..],
            b"   ",
            b"x",
            b"18446744073709551616",
            b"99999999999999999999999",
            b"4 2",
            b"+1",
            b"-1",
            b"0x10",
            b"1.0",
            b"\xEF\xBC\x91",
            b"1\r\n",
        ] {
            assert_eq!(
                parse_last_event_id(bad),
                Err(SseError::BadLastEventId),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn maps_errors_to_status() {
        assert_eq!(SseError::BadLastEventId.status(), 400);
        for ours in [
            SseError::LineBreakInId,
            SseError::NulInId,
            SseError::LineBreakInEventName,
            SseError::NulInEventName,
        ] {
            assert_eq!(ours.status(), 500);
        }
    }
}
