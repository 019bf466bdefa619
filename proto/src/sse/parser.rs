//! The client side of Server-Sent Events: a `text/event-stream` read the way
//! a browser's `EventSource` reads it (WHATWG HTML §9.2.5-9.2.6).
//!
//! The server side (the encoder) is the parent module, [`crate::sse`]; this
//! module is what a device or a test uses to *receive* a stream. It owns no
//! socket: feed it bytes in any chunking, and it hands back events.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// An event as a browser's `EventSource` dispatches it (WHATWG HTML §9.2.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedEvent {
    /// The event type: the `event` field, or `"message"` when it was absent or empty.
    pub event_type: String,
    /// The `data` lines joined with LF (invalid UTF-8 replaced by U+FFFD).
    pub data: String,
    /// The last event ID string when this event was dispatched: set by the latest
    /// `id` field so far, in this event or an earlier one.
    pub last_event_id: String,
}

/// Why a [`StreamParser`] gave up on a stream. Both are limits the client sets in
/// [`StreamParser::new`]; the parser runs in the client, so there is no status or
/// close code to send: the client closes the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamError {
    /// The server sent a field line longer than `max_line_bytes` (line end not
    /// counted). Comment lines are skipped unbuffered and have no limit.
    LineTooLong,
    /// The server sent `data` lines that add up to an event longer than
    /// `max_line_bytes` (the LFs joining them counted).
    DataTooLong,
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StreamError::LineTooLong => "event stream line is longer than the limit",
            StreamError::DataTooLong => "event data is longer than the limit",
        })
    }
}

impl core::error::Error for StreamError {}

/// The UTF-8 byte order mark, which "UTF-8 decode" strips once at the start.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Whether the start of the stream has been checked for a BOM yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bom {
    /// The first `matched` bytes equal the BOM's; the next byte decides.
    Checking { matched: usize },
    /// Decided: any BOM is gone, and later U+FEFF characters are text.
    Decided,
}

/// Where the parser is within a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Line {
    /// At the start of a line. `after_cr`: the previous line ended with a CR, so
    /// an LF here is the second half of a CRLF and not a blank line.
    Start { after_cr: bool },
    /// Inside a field line; its bytes so far are in [`StreamParser`]'s `line`.
    Field,
    /// Inside a comment line: skipped, never buffered.
    Comment,
}

/// The client side: reads a `text/event-stream` the way a browser does
/// ("Interpreting an event stream", WHATWG HTML §9.2.6), from bytes in any
/// chunking.
///
/// It strips one leading BOM; ends lines at CRLF, lone LF and lone CR (a CR at
/// the end of one chunk and an LF at the start of the next are one line end);
/// ignores comments and unknown fields; treats a line without a colon as a field
/// with an empty value; removes one space after the colon; ignores an `id`
/// containing NUL and a `retry` that is not all digits; dispatches on a blank line
/// unless the data buffer is empty; removes the data buffer's trailing LF; uses
/// `"message"` when no event type was set; and keeps the last event ID across
/// events. An event not ended by a blank line is never dispatched.
///
/// Memory is bounded by `max_line_bytes`: the unfinished line, and the data of
/// the event being built, are each at most that long.
///
/// Drive it by calling [`StreamParser::feed`] with each chunk as it arrives, and
/// handle the events it returns in order. It never panics.
#[derive(Clone, Debug)]
pub struct StreamParser {
    /// The limit for one field line and for one event's data.
    max_line_bytes: usize,
    /// Whether a leading BOM has been dealt with.
    bom: Bom,
    /// Where we are within the current line.
    state: Line,
    /// The field line read so far (without its line end).
    line: Vec<u8>,
    /// §9.2.6 "data buffer": each `data` value followed by LF.
    data: Vec<u8>,
    /// §9.2.6 "event type buffer".
    event_type: Vec<u8>,
    /// §9.2.6 "last event ID buffer": set by `id` fields, never reset.
    id_buffer: String,
    /// §9.2.6 "last event ID string": the buffer's value at the last dispatch.
    last_event_id: String,
    /// §9.2.6 "reconnection time", once a `retry` field set it.
    retry: Option<u32>,
    /// The error that stopped the stream; every later call returns it.
    failed: Option<StreamError>,
}

impl StreamParser {
    /// A parser at the start of a stream. `max_line_bytes` bounds memory: a field
    /// line longer than it is [`StreamError::LineTooLong`], and an event whose data
    /// grows longer than it is [`StreamError::DataTooLong`] — never unbounded.
    pub fn new(max_line_bytes: usize) -> Self {
        StreamParser {
            max_line_bytes,
            bom: Bom::Checking { matched: 0 },
            state: Line::Start { after_cr: false },
            line: Vec::new(),
            data: Vec::new(),
            event_type: Vec::new(),
            id_buffer: String::new(),
            last_event_id: String::new(),
            retry: None,
            failed: None,
        }
    }

    /// A parser for a stream that continues an earlier one, after a
    /// reconnection: its last event ID starts as `last_event_id`, so events
    /// before the new stream's first `id` field carry it, and
    /// [`StreamParser::last_event_id`] returns it until the stream sets another.
    ///
    /// §9.2.6 associates a last event ID buffer with each parse, but the
    /// `EventSource`'s last event ID string outlives reconnections (§9.2.3
    /// reestablishes the connection on the same object), and browsers seed the
    /// new stream with it (Chromium builds each parser from the stored id), so
    /// an id-less event after a reconnect does not forget where the client was.
    pub fn resuming(max_line_bytes: usize, last_event_id: &str) -> Self {
        let mut parser = StreamParser::new(max_line_bytes);
        parser.id_buffer.push_str(last_event_id);
        parser.last_event_id.push_str(last_event_id);
        parser
    }

    /// Feeds the next bytes of the stream (any chunking) and returns the events
    /// they dispatched, in order.
    ///
    /// When the bytes cross a limit, the events dispatched before that point are
    /// still returned, and the error comes from the next call (or from this one
    /// if there were none): so [`StreamParser::last_event_id`] never runs ahead of
    /// the events handed out, and a client that reconnects with it misses nothing.
    /// After an error the stream is dead and every call returns that error.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<ParsedEvent>, StreamError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        let mut events = Vec::new();
        match self.feed_into(bytes, &mut events) {
            Ok(()) => Ok(events),
            Err(error) => {
                self.failed = Some(error);
                if events.is_empty() {
                    Err(error)
                } else {
                    Ok(events)
                }
            }
        }
    }

    /// The reconnection time the stream set last (§9.2.6 `retry`), in milliseconds.
    /// Values too large for a `u32` are ignored.
    pub fn retry(&self) -> Option<u32> {
        self.retry
    }

    /// The last event ID string (§9.2.6): what a browser would send as
    /// `Last-Event-ID` if it reconnected now. Updated when an event block ends,
    /// even one that dispatched nothing; empty until an `id` field set it.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// Strips a leading BOM, then reads lines.
    fn feed_into(
        &mut self,
        bytes: &[u8],
        events: &mut Vec<ParsedEvent>,
    ) -> Result<(), StreamError> {
        let mut rest = bytes;
        // §9.2.6: "The UTF-8 decode algorithm strips one leading UTF-8 Byte Order
        // Mark (BOM), if any." Its three bytes may arrive in different chunks.
        while let Bom::Checking { matched } = self.bom {
            let Some((&byte, tail)) = rest.split_first() else {
                return Ok(());
            };
            if BOM.get(matched) == Some(&byte) {
                rest = tail;
                let matched = matched + 1;
                self.bom = if matched == BOM.len() {
                    Bom::Decided
                } else {
                    Bom::Checking { matched }
                };
            } else {
                // Not a BOM after all: the bytes held back are ordinary text.
                self.bom = Bom::Decided;
                self.read_lines(BOM.get(..matched).unwrap_or_default(), events)?;
            }
        }
        self.read_lines(rest, events)
    }

    /// §9.2.6: splits the stream into lines and processes each as it ends.
    fn read_lines(
        &mut self,
        bytes: &[u8],
        events: &mut Vec<ParsedEvent>,
    ) -> Result<(), StreamError> {
        let mut rest = bytes;
        while let Some((&byte, tail)) = rest.split_first() {
            match (self.state, byte) {
                // "a single U+000A LINE FEED (LF) character not preceded by a
                // U+000D CARRIAGE RETURN": this LF completes the CRLF before it.
                (Line::Start { after_cr: true }, b'\n') => {
                    self.state = Line::Start { after_cr: false };
                    rest = tail;
                }
                // "If the line is empty (a blank line)": dispatch the event.
                (Line::Start { .. }, b'\r' | b'\n') => {
                    events.extend(self.dispatch());
                    self.state = Line::Start {
                        after_cr: byte == b'\r',
                    };
                    rest = tail;
                }
                // "If the line starts with a U+003A COLON character (:)": ignore it.
                (Line::Start { .. }, b':') => {
                    self.state = Line::Comment;
                    rest = tail;
                }
                // Anything else starts a field line; the `Field` arm reads it.
                (Line::Start { .. }, _) => self.state = Line::Field,
                // Buffer the field line up to its end, within the limit.
                (Line::Field, _) => {
                    let (text, line_end) = until_line_end(rest);
                    if self.line.len().saturating_add(text.len()) > self.max_line_bytes {
                        return Err(StreamError::LineTooLong);
                    }
                    self.line.extend_from_slice(text);
                    rest = match line_end {
                        Some((end, tail)) => {
                            self.process_line()?;
                            self.state = Line::Start {
                                after_cr: end == b'\r',
                            };
                            tail
                        }
                        None => &[],
                    };
                }
                // Skip the comment up to its end.
                (Line::Comment, _) => {
                    rest = match until_line_end(rest).1 {
                        Some((end, tail)) => {
                            self.state = Line::Start {
                                after_cr: end == b'\r',
                            };
                            tail
                        }
                        None => &[],
                    };
                }
            }
        }
        Ok(())
    }

    /// Processes the finished field line in `self.line`, then empties it.
    fn process_line(&mut self) -> Result<(), StreamError> {
        let line = core::mem::take(&mut self.line);
        let processed = self.process_field(&line);
        self.line = line;
        self.line.clear();
        processed
    }

    /// §9.2.6 "process the field", after splitting the line into name and value.
    fn process_field(&mut self, line: &[u8]) -> Result<(), StreamError> {
        // "If the line contains a U+003A COLON character": the name is what comes
        // before the first colon, the value what comes after, minus one leading
        // space. "Otherwise": the whole line is the name and the value is empty.
        let (name, value) = match line.iter().position(|&byte| byte == b':') {
            Some(colon) => {
                let (name, colon_value) = line.split_at(colon);
                let value = colon_value.get(1..).unwrap_or_default();
                (name, value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        // "Field names must be compared literally, with no case folding performed."
        match name {
            // "Set the event type buffer to field value."
            b"event" => {
                self.event_type.clear();
                self.event_type.extend_from_slice(value);
            }
            // "Append the field value to the data buffer, then append a single
            // U+000A LINE FEED (LF) character to the data buffer." The buffer's
            // last LF is removed at dispatch, so the event's data would be
            // `data.len() + value.len()` bytes: that is what the limit bounds.
            b"data" => {
                if self.data.len().saturating_add(value.len()) > self.max_line_bytes {
                    return Err(StreamError::DataTooLong);
                }
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
            }
            // "If the field value does not contain U+0000 NULL, then set the last
            // event ID buffer to the field value. Otherwise, ignore the field."
            b"id" if !value.contains(&0) => {
                self.id_buffer.clear();
                self.id_buffer.push_str(&String::from_utf8_lossy(value));
            }
            // "If the field value consists of only ASCII digits, then interpret the
            // field value as an integer in base ten, and set the event stream's
            // reconnection time to that integer. Otherwise, ignore the field."
            b"retry" => {
                if let Some(ms) = parse_retry(value) {
                    self.retry = Some(ms);
                }
            }
            // "Otherwise: The field is ignored." (So is an `id` containing NUL.)
            _ => {}
        }
        Ok(())
    }

    /// §9.2.6 "dispatch the event", the steps for web browsers.
    fn dispatch(&mut self) -> Option<ParsedEvent> {
        // Step 1: the last event ID string takes the buffer's value. "The buffer
        // does not get reset", so it carries over to later events.
        self.last_event_id.clone_from(&self.id_buffer);
        // Step 2: "If the data buffer is an empty string, set the data buffer and
        // the event type buffer to the empty string and return."
        if self.data.is_empty() {
            self.event_type.clear();
            return None;
        }
        // Step 3: "If the data buffer's last character is a U+000A LINE FEED (LF)
        // character, then remove the last character from the data buffer."
        if self.data.last() == Some(&b'\n') {
            self.data.pop();
        }
        // Steps 5 and 6: the type is "message" unless the event type buffer is set.
        let event_type = if self.event_type.is_empty() {
            String::from("message")
        } else {
            String::from_utf8_lossy(&self.event_type).into_owned()
        };
        // Step 7: "Set the data buffer and the event type buffer to the empty string."
        self.event_type.clear();
        let data = core::mem::take(&mut self.data);
        Some(ParsedEvent {
            event_type,
            // §9.2.6: "Streams must be decoded using the UTF-8 decode algorithm",
            // which replaces invalid bytes with U+FFFD. Lines and fields split at
            // ASCII bytes, so decoding each value alone gives the same text.
            data: String::from_utf8(data)
                .unwrap_or_else(|invalid| String::from_utf8_lossy(invalid.as_bytes()).into_owned()),
            last_event_id: self.last_event_id.clone(),
        })
    }
}

/// Splits `bytes` at the first CR or LF: the text before it, and that line end
/// with what follows it (`None` if the line has not ended yet).
fn until_line_end(bytes: &[u8]) -> (&[u8], Option<(u8, &[u8])>) {
    let end = bytes
        .iter()
        .position(|&byte| byte == b'\r' || byte == b'\n')
        .unwrap_or(bytes.len());
    let (text, rest) = bytes.split_at(end);
    (text, rest.split_first().map(|(&end, tail)| (end, tail)))
}

/// A `retry` value: only ASCII digits, at least one, and within `u32`.
/// An empty value has no integer to interpret, and a larger one (over 49 days)
/// cannot be held, so both are ignored like any other invalid value.
fn parse_retry(value: &[u8]) -> Option<u32> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u32, |ms, &byte| {
        let digit = byte.checked_sub(b'0').filter(|digit| *digit <= 9)?;
        ms.checked_mul(10)?.checked_add(u32::from(digit))
    })
}

/// Helpers shared by the encoder's and the parser's tests: run a parser over
/// chunks, and check that every split of the input agrees.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::sse::{encode, Event};

    /// A parser limit far above anything the tests send unless they test limits.
    pub(crate) const ROOMY: usize = 1 << 20;

    /// Everything one run of a parser produced.
    #[derive(Debug, PartialEq, Eq)]
    pub(crate) struct Outcome {
        pub(crate) events: Vec<ParsedEvent>,
        pub(crate) error: Option<StreamError>,
        pub(crate) retry: Option<u32>,
        pub(crate) last_event_id: String,
    }

    /// Feeds `chunks` in order, stopping at the first error; a last empty feed
    /// collects an error held back behind events.
    pub(crate) fn run<'a>(
        chunks: impl IntoIterator<Item = &'a [u8]>,
        max_line_bytes: usize,
    ) -> Outcome {
        let mut parser = StreamParser::new(max_line_bytes);
        let mut events = Vec::new();
        let mut error = None;
        for chunk in chunks.into_iter().chain([&[][..]]) {
            match parser.feed(chunk) {
                Ok(more) => events.extend(more),
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        Outcome {
            events,
            error,
            retry: parser.retry(),
            last_event_id: parser.last_event_id().to_owned(),
        }
    }

    /// Parses `input` whole, byte by byte, and split in two at every offset,
    /// checks that all agree, and returns the outcome.
    pub(crate) fn parse_with_limit(input: &[u8], max_line_bytes: usize) -> Outcome {
        let whole = run([input], max_line_bytes);
        let bytewise = run(input.chunks(1), max_line_bytes);
        assert_eq!(bytewise, whole, "byte by byte differs for {input:?}");
        for at in 0..=input.len() {
            let (head, tail) = input.split_at(at);
            assert_eq!(
                run([head, tail], max_line_bytes),
                whole,
                "split at {at} differs for {input:?}"
            );
        }
        whole
    }

    pub(crate) fn parse(input: &[u8]) -> Outcome {
        parse_with_limit(input, ROOMY)
    }

    pub(crate) fn message(data: &str, last_event_id: &str) -> ParsedEvent {
        typed("message", data, last_event_id)
    }

    pub(crate) fn typed(event_type: &str, data: &str, last_event_id: &str) -> ParsedEvent {
        ParsedEvent {
            event_type: event_type.into(),
            data: data.into(),
            last_event_id: last_event_id.into(),
        }
    }

    pub(crate) fn encoded(event: &Event) -> Vec<u8> {
        let mut out = Vec::new();
        encode(event, &mut out).expect("event is valid");
        out
    }

    /// What a client sees as the data of an event encoded from `data`.
    pub(crate) fn as_client_sees(data: &str) -> String {
        data.replace("\r\n", "\n").replace('\r', "\n")
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::sse::{encode, encode_comment, encode_retry, Event};

    // --- WHATWG HTML §9.2 examples, read by the parser ---

    #[test]
    fn spec_example_stock_ticker_joins_data_lines() {
        // §9.2.6: "data: YHOO / data: +2 / data: 10", once followed by a blank line.
        let outcome = parse(b"data: YHOO\ndata: +2\ndata: 10\n\n");
        assert_eq!(outcome.events, [message("YHOO\n+2\n10", "")]);
    }

    #[test]
    fn spec_example_four_blocks_with_comment_and_ids() {
        // §9.2.6: a comment block fires nothing; `id: 1` sets the last event ID,
        // a bare `id` resets it; the last data keeps one of its two spaces.
        let stream = b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n";
        let outcome = parse(stream);
        assert_eq!(
            outcome.events,
            [
                message("first event", "1"),
                message("second event", ""),
                message(" third event", "")
            ]
        );
        assert_eq!(outcome.last_event_id, "");
    }

    #[test]
    fn spec_example_last_block_needs_blank_line() {
        // §9.2.6: "the end of the stream is not enough to trigger the dispatch".
        let outcome = parse(b"data: first event\nid: 1\n\ndata:  third event\n");
        assert_eq!(outcome.events, [message("first event", "1")]);
    }

    #[test]
    fn spec_example_bare_data_fields_dispatch_empty_and_newline() {
        // §9.2.6: "data" fires "", "data data" fires "\n", and the trailing "data:"
        // block is discarded because no blank line follows it.
        let outcome = parse(b"data\n\ndata\ndata\n\ndata:");
        assert_eq!(outcome.events, [message("", ""), message("\n", "")]);
    }

    #[test]
    fn spec_example_one_space_after_colon_is_ignored() {
        // §9.2.6: "data:test" and "data: test" fire two identical events.
        let outcome = parse(b"data:test\n\ndata: test\n\n");
        assert_eq!(outcome.events, [message("test", ""), message("test", "")]);
    }

    #[test]
    fn spec_example_event_types_add_and_remove() {
        // §9.2.1: a stream with two event types.
        let outcome = parse(b"event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\nevent: add\ndata: 113411\n\n");
        assert_eq!(
            outcome.events,
            [
                typed("add", "73857293", ""),
                typed("remove", "2153", ""),
                typed("add", "113411", "")
            ]
        );
    }

    // --- line ends and the BOM ---

    #[test]
    fn accepts_crlf_lone_cr_and_lone_lf_line_ends() {
        let expected = [message("a\nb", "1"), message("c", "1")];
        for stream in [
            &b"id: 1\ndata: a\ndata: b\n\ndata: c\n\n"[..],
            b"id: 1\rdata: a\rdata: b\r\rdata: c\r\r",
            b"id: 1\r\ndata: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n",
            b"id: 1\r\ndata: a\rdata: b\n\r\ndata: c\r\r\n",
        ] {
            assert_eq!(parse(stream).events, expected, "{stream:?}");
        }
    }

    #[test]
    fn treats_lf_after_cr_in_next_chunk_as_one_line_end() {
        let mut parser = StreamParser::new(ROOMY);
        assert_eq!(parser.feed(b"data: x\r"), Ok(vec![]));
        // Not a blank line: it completes the CRLF of "data: x".
        assert_eq!(parser.feed(b"\n"), Ok(vec![]));
        assert_eq!(parser.feed(b"data: y\r"), Ok(vec![]));
        assert_eq!(parser.feed(b"\n\r"), Ok(vec![message("x\ny", "")]));
        assert_eq!(parser.feed(b"\n"), Ok(vec![]));
    }

    #[test]
    fn treats_cr_cr_as_line_end_and_blank_line() {
        assert_eq!(parse(b"data: x\r\r").events, [message("x", "")]);
        assert_eq!(parse(b"data: x\n\r").events, [message("x", "")]);
    }

    #[test]
    fn strips_one_leading_bom() {
        assert_eq!(parse(b"\xEF\xBB\xBFdata: x\n\n").events, [message("x", "")]);
        // A second BOM is text: it makes the field name "\u{FEFF}data", unknown.
        assert_eq!(parse(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\n").events, []);
        // A BOM later in the stream is text too.
        assert_eq!(
            parse(b"data: \xEF\xBB\xBFx\n\n").events,
            [message("\u{feff}x", "")]
        );
    }

    #[test]
    fn keeps_partial_bom_bytes_as_text() {
        // "\xEF\xBB" then "d" is no BOM: the line's name is "\u{FFFD}data", unknown.
        assert_eq!(
            parse(b"\xEF\xBBdata: x\n\ndata: y\n\n").events,
            [message("y", "")]
        );
        assert_eq!(parse(b"\xEF\n\ndata: y\n\n").events, [message("y", "")]);
        assert_eq!(parse(b"\xEF\xBB\xBF").events, []);
        assert_eq!(parse(b"").events, []);
    }

    // --- fields ---

    #[test]
    fn comments_never_dispatch() {
        let outcome = parse(b":\n\n: keep-alive\n\n:data: x\n\n");
        assert_eq!(outcome.events, []);
        // A comment inside a block leaves the block alone.
        assert_eq!(
            parse(b"data: a\n: note\ndata: b\n\n").events,
            [message("a\nb", "")]
        );
    }

    #[test]
    fn comments_have_no_length_limit() {
        let mut stream = b":".to_vec();
        stream.extend(std::iter::repeat_n(b'x', 100));
        stream.extend_from_slice(b"\ndata: ok\n\n");
        assert_eq!(parse_with_limit(&stream, 8).events, [message("ok", "")]);
    }

    #[test]
    fn splits_field_at_first_colon_only() {
        assert_eq!(
            parse(b"data: a:b\n\ndata::c\n\n").events,
            [message("a:b", ""), message(":c", "")]
        );
    }

    #[test]
    fn compares_field_names_literally() {
        assert_eq!(parse(b"Data: x\n\ndata : x\n\n data: x\n\n").events, []);
    }

    #[test]
    fn ignores_unknown_fields() {
        assert_eq!(
            parse(b"foo: bar\ndata: x\nbaz\n\n").events,
            [message("x", "")]
        );
    }

    #[test]
    fn keeps_nul_in_data() {
        assert_eq!(parse(b"data: a\0b\n\n").events, [message("a\0b", "")]);
    }

    #[test]
    fn replaces_invalid_utf8_with_replacement_characters() {
        assert_eq!(
            parse(b"data: \xFF\xC3\n\n").events,
            [message("\u{fffd}\u{fffd}", "")]
        );
        assert_eq!(
            parse(b"event: \xFF\ndata: \xC3\xA9\n\n").events,
            [typed("\u{fffd}", "é", "")]
        );
    }

    #[test]
    fn removes_only_the_last_lf_of_data() {
        assert_eq!(parse(b"data: x\ndata:\n\n").events, [message("x\n", "")]);
    }

    #[test]
    fn defaults_event_type_to_message() {
        assert_eq!(
            parse(b"event\ndata: x\n\nevent:\ndata: y\n\n").events,
            [message("x", ""), message("y", "")]
        );
    }

    #[test]
    fn resets_event_type_after_each_block() {
        assert_eq!(
            parse(b"event: a\ndata: 1\n\ndata: 2\n\n").events,
            [typed("a", "1", ""), message("2", "")]
        );
        // Also after a block that dispatched nothing.
        assert_eq!(parse(b"event: a\n\ndata: 1\n\n").events, [message("1", "")]);
    }

    #[test]
    fn ignores_id_containing_nul() {
        let outcome = parse(b"id: 1\n\nid: a\0b\ndata: x\n\n");
        assert_eq!(outcome.events, [message("x", "1")]);
        assert_eq!(outcome.last_event_id, "1");
    }

    #[test]
    fn keeps_last_event_id_across_events() {
        let outcome = parse(b"id: 7\ndata: a\n\ndata: b\n\nid: 8\ndata: c\n\n");
        assert_eq!(
            outcome.events,
            [message("a", "7"), message("b", "7"), message("c", "8")]
        );
    }

    #[test]
    fn sets_last_event_id_when_block_ends_even_without_data() {
        let mut parser = StreamParser::new(ROOMY);
        assert_eq!(parser.feed(b"id: 7\n"), Ok(vec![]));
        assert_eq!(parser.last_event_id(), "");
        assert_eq!(parser.feed(b"\n"), Ok(vec![]));
        assert_eq!(parser.last_event_id(), "7");
    }

    #[test]
    fn resuming_parser_carries_the_previous_id_until_the_stream_sets_one() {
        let mut parser = StreamParser::resuming(ROOMY, "41");
        assert_eq!(parser.last_event_id(), "41");
        assert_eq!(
            parser.feed(b"data: a\n\nid: 42\ndata: b\n\nid\ndata: c\n\n"),
            Ok(vec![
                message("a", "41"),
                message("b", "42"),
                message("c", "")
            ])
        );
        assert_eq!(parser.last_event_id(), "");
        let mut parser = StreamParser::resuming(ROOMY, "41");
        assert_eq!(parser.feed(b"id: 43\n\n"), Ok(vec![]));
        assert_eq!(parser.last_event_id(), "43");
    }

    #[test]
    fn takes_retry_only_when_all_digits() {
        assert_eq!(parse(b"retry: 1500\n").retry, Some(1500));
        assert_eq!(parse(b"retry:0\n").retry, Some(0));
        assert_eq!(parse(b"retry: 4294967295\n").retry, Some(u32::MAX));
        for ignored in [
            &b"retry: 15x\n"[..],
            b"retry: -1\n",
            b"retry: 1.5\n",
            b"retry: +1\n",
            b"retry:  15\n",
            b"retry:\n",
            b"retry\n",
            b"retry: 4294967296\n",
            b"retry: \xEF\xBC\x91\n", // FULLWIDTH DIGIT ONE is not an ASCII digit
        ] {
            assert_eq!(parse(ignored).retry, None, "{ignored:?}");
        }
        // An ignored value leaves the previous one in place.
        assert_eq!(parse(b"retry: 10\nretry: x\n").retry, Some(10));
    }

    // --- limits ---

    #[test]
    fn accepts_line_of_exactly_max_line_bytes() {
        assert_eq!(
            parse_with_limit(b"data: 12\n\n", 8).events,
            [message("12", "")]
        );
    }

    #[test]
    fn rejects_line_longer_than_max_line_bytes() {
        let outcome = parse_with_limit(b"data: 123\n\n", 8);
        assert_eq!(outcome.error, Some(StreamError::LineTooLong));
        assert_eq!(outcome.events, []);
        // The length counts, not the line end: an unended long line fails too.
        assert_eq!(
            parse_with_limit(b"data: 123", 8).error,
            Some(StreamError::LineTooLong)
        );
    }

    #[test]
    fn never_buffers_past_max_line_bytes() {
        let mut parser = StreamParser::new(16);
        assert_eq!(parser.feed(&[b'x'; 1 << 20]), Err(StreamError::LineTooLong));
        assert!(parser.line.capacity() <= 16);
    }

    #[test]
    fn accepts_data_of_exactly_max_line_bytes() {
        let outcome = parse_with_limit(b"data:12345\ndata:6789\n\n", 10);
        assert_eq!(outcome.events, [message("12345\n6789", "")]);
        assert_eq!(outcome.error, None);
        let eleven_bare_lines = b"data\n".repeat(11);
        let outcome = parse_with_limit(&[&eleven_bare_lines[..], b"\n"].concat(), 10);
        assert_eq!(outcome.events, [message(&"\n".repeat(10), "")]);
    }

    #[test]
    fn rejects_data_longer_than_max_line_bytes() {
        let outcome = parse_with_limit(b"data:12345\ndata:67890\n\n", 10);
        assert_eq!(outcome.error, Some(StreamError::DataTooLong));
        let twelve_bare_lines = b"data\n".repeat(12);
        let outcome = parse_with_limit(&twelve_bare_lines, 10);
        assert_eq!(outcome.error, Some(StreamError::DataTooLong));
    }

    #[test]
    fn returns_events_before_error_then_the_error() {
        let mut parser = StreamParser::new(8);
        assert_eq!(
            parser.feed(b"id: 1\ndata: a\n\ndata: 123456789\n\n"),
            Ok(vec![message("a", "1")])
        );
        assert_eq!(parser.last_event_id(), "1");
        assert_eq!(parser.feed(b""), Err(StreamError::LineTooLong));
        assert_eq!(parser.feed(b"data: b\n\n"), Err(StreamError::LineTooLong));
    }

    #[test]
    fn accepts_colons_unicode_and_nul_in_data() {
        let data = "a: b\0:\u{2028}é🦀";
        assert_eq!(
            parse(&encoded(&Event::new(data).id("ü:1").event("ñ:é"))).events,
            [typed("ñ:é", data, "ü:1")]
        );
    }

    #[test]
    fn round_trips_tricky_data() {
        let samples = [
            "",
            "\n",
            "\r\n",
            "\r",
            "\n\n",
            "\r\r",
            "\r\n\r\n",
            "\n\r",
            "a\n",
            "\na",
            "a\r",
            "\ra",
            " ",
            "  lead",
            "trail  ",
            " \n ",
            ":",
            "::",
            ": not a comment",
            "data: x",
            "\u{feff}",
            "id: 2\n\nevent: x",
            "ünï\r\ncödé",
            "\0",
            "\t tab",
        ];
        for data in samples {
            for event in [
                Event::new(data),
                Event::new(data).id("42").event("tick").retry(250),
            ] {
                let outcome = parse(&encoded(&event));
                let expected_type = event.event.unwrap_or("message");
                assert_eq!(
                    outcome.events,
                    [typed(
                        expected_type,
                        &as_client_sees(data),
                        event.id.unwrap_or("")
                    )],
                    "{data:?}"
                );
                assert_eq!(outcome.retry, event.retry);
            }
        }
    }

    #[test]
    fn round_trips_64_kib_data() {
        let one_line = "x".repeat(64 * 1024);
        let outcome = run([&encoded(&Event::new(&one_line))[..]], 64 * 1024 + 8);
        assert_eq!(outcome.events, [message(&one_line, "")]);

        let many_lines: String = (0..64 * 1024)
            .map(|i| ["a", "\n", "\r", "\r\n", " "][i % 5])
            .collect();
        let wire = encoded(&Event::new(&many_lines).id("big"));
        let expected = [message(&as_client_sees(&many_lines), "big")];
        assert_eq!(run([&wire[..]], many_lines.len()).events, expected);
        assert_eq!(run(wire.chunks(1), many_lines.len()).events, expected);
        assert_eq!(run(wire.chunks(4093), many_lines.len()).events, expected);
    }

    #[test]
    fn round_trips_a_stream_of_events() {
        let mut wire = Vec::new();
        encode_retry(3000, &mut wire);
        encode(&Event::new("one").id("1"), &mut wire).expect("valid");
        encode_comment("", &mut wire);
        encode(&Event::new("two").event("other"), &mut wire).expect("valid");
        encode_comment("multi\nline\r\ndata: not an event", &mut wire);
        encode(&Event::new("three\r\n").id("3"), &mut wire).expect("valid");
        let outcome = parse(&wire);
        assert_eq!(
            outcome.events,
            [
                message("one", "1"),
                typed("other", "two", "1"),
                message("three\n", "3")
            ]
        );
        assert_eq!(outcome.retry, Some(3000));
        assert_eq!(outcome.last_event_id, "3");
    }
}
