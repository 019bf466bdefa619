//! Property for the `sse_roundtrip` fuzz target, shared with the corpus replay in
//! `tests/fuzz_corpus.rs`.
//!
//! 1. An event built from the input is encoded, refused exactly when its `id` or
//!    `event` holds CR, LF or NUL, and otherwise read back by `StreamParser` (fed
//!    in input-chosen chunks) as the same event a browser would see.
//! 2. The raw input, read as a stream, never panics, never yields more than the
//!    parser's limit, and gives the same result in any chunking.

use pushloop::sse::{
    encode, encode_comment, Event, ParsedEvent, SseError, StreamError, StreamParser,
};

/// Separates the parts of an input. 0xFF never occurs in UTF-8, so it cannot
/// stand for a character of any part.
const SEPARATOR: u8 = 0xFF;

/// The parser limit for raw input: small, so fuzzing reaches it often.
const RAW_LIMIT: usize = 64;

/// Runs both properties on one input.
pub fn sse_roundtrip(data: &[u8]) {
    round_trip(data);
    raw_stream(data);
}

/// Input layout, parts separated by 0xFF: `control`, `data`, `id`, `event`.
/// A missing `id` or `event` part means the field is unset. `control[0]` bit 0
/// sets `retry` to `control[1..5]` (little endian, zero-padded); all of `control`
/// gives the chunk sizes for feeding the parser.
fn round_trip(input: &[u8]) {
    let mut parts = input.split(|&byte| byte == SEPARATOR);
    let control = parts.next().unwrap_or_default();
    let data = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let id = parts.next().map(String::from_utf8_lossy);
    let name = parts.next().map(String::from_utf8_lossy);
    let retry = match control {
        [flags, rest @ ..] if flags & 1 == 1 => {
            let mut le = [0u8; 4];
            for (slot, byte) in le.iter_mut().zip(rest) {
                *slot = *byte;
            }
            Some(u32::from_le_bytes(le))
        }
        _ => None,
    };
    let event = Event {
        id: id.as_deref(),
        event: name.as_deref(),
        data: &data,
        retry,
    };

    // Refused exactly when a one-line field holds CR, LF or NUL; nothing written.
    let expected_refusal =
        refusal(event.id, SseError::LineBreakInId, SseError::NulInId).or_else(|| {
            refusal(
                event.event,
                SseError::LineBreakInEventName,
                SseError::NulInEventName,
            )
        });
    let poison = b"\xFFbefore";
    let mut wire = poison.to_vec();
    match (encode(&event, &mut wire), expected_refusal) {
        (Ok(()), None) => {}
        (Err(error), Some(expected)) => {
            assert_eq!(error, expected);
            assert_eq!(wire, poison, "a refused event appended bytes");
            assert!(
                error.status() == 500,
                "encode errors are the server's fault"
            );
            return;
        }
        (result, expected) => {
            panic!("encode gave {result:?}, expected refusal {expected:?} for {event:?}")
        }
    }
    let mut wire = wire.split_off(poison.len());
    // A comment and a second event without id: the comment changes nothing and the
    // id carries over (WHATWG HTML §9.2.6).
    encode_comment(&data, &mut wire);
    encode(&Event::new(&data), &mut wire).expect("an event with data only is never refused");

    let mut parser = StreamParser::new(wire.len());
    let mut events = Vec::new();
    for chunk in chunks(&wire, control) {
        events.extend(parser.feed(chunk).expect("the limit is the whole stream"));
    }
    let client_data = data.replace("\r\n", "\n").replace('\r', "\n");
    let last_event_id = event.id.unwrap_or_default().to_owned();
    let first = ParsedEvent {
        event_type: event
            .event
            .filter(|name| !name.is_empty())
            .unwrap_or("message")
            .to_owned(),
        data: client_data.clone(),
        last_event_id: last_event_id.clone(),
    };
    let second = ParsedEvent {
        event_type: "message".to_owned(),
        data: client_data,
        last_event_id,
    };
    assert_eq!(events, [first, second]);
    assert_eq!(parser.retry(), retry);
    assert_eq!(parser.last_event_id(), event.id.unwrap_or_default());
}

/// The error `encode` must give for a one-line field `value`, if any.
fn refusal(value: Option<&str>, line_break: SseError, nul: SseError) -> Option<SseError> {
    let value = value?;
    if value.contains(['\r', '\n']) {
        Some(line_break)
    } else if value.contains('\0') {
        Some(nul)
    } else {
        None
    }
}

/// The raw input as a stream: fed whole, and in chunks chosen by its own bytes.
fn raw_stream(input: &[u8]) {
    let whole = read(std::iter::once(input));
    let chunked = read(chunks(input, input));
    assert_eq!(whole, chunked, "chunking changed the result");
    let (events, _error) = whole;
    for event in events {
        // Each raw byte decodes to at most one character.
        assert!(
            event.data.chars().count() <= RAW_LIMIT,
            "data over the limit"
        );
        assert!(
            event.event_type.chars().count() <= RAW_LIMIT,
            "event type over the limit"
        );
        assert!(
            event.last_event_id.chars().count() <= RAW_LIMIT,
            "id over the limit"
        );
    }
}

/// Feeds `chunks` to a fresh parser until an error, then once more with nothing
/// to collect an error held back behind events.
fn read<'a>(chunks: impl Iterator<Item = &'a [u8]>) -> (Vec<ParsedEvent>, Option<StreamError>) {
    let mut parser = StreamParser::new(RAW_LIMIT);
    let mut events = Vec::new();
    for chunk in chunks.chain(std::iter::once(&[][..])) {
        match parser.feed(chunk) {
            Ok(more) => events.extend(more),
            Err(error) => return (events, Some(error)),
        }
    }
    (events, None)
}

/// Splits `bytes` into chunks of 1 to 16 bytes, sizes taken from `sizes` in turn
/// (one chunk when `sizes` is empty).
fn chunks<'a>(bytes: &'a [u8], sizes: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
    let mut rest = bytes;
    let mut sizes = sizes.iter().cycle();
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let size = sizes
            .next()
            .map_or(rest.len(), |size| usize::from(size % 16) + 1);
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        Some(chunk)
    })
}
