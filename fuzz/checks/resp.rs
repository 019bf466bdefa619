//! Property for the `resp_reply` fuzz target, shared with the corpus replay in
//! `tests/fuzz_corpus.rs`.
//!
//! The input is what a Redis server sent on one connection. Under small limits
//! (so fuzzing reaches them) and under the default ones:
//! 1. Parsing never panics, and every reply uses at least one byte and no more
//!    than it was given.
//! 2. Parsing it whole — one-shot `parse` of what is left, reply after reply —
//!    and feeding one `ReplyParser` in chunks (sizes taken from the input's own
//!    bytes) into a growing buffer give the same replies and the same error.
//! 3. The typed stream readers never panic on any reply.

use pushloop_proto::resp::stream::{published_id, range_entries, read_entries, StoredEvent};
use pushloop_proto::resp::{Reply, ReplyParser, RespError, RespLimits};

/// Limits small enough for fuzz inputs to cross every one.
const SMALL: RespLimits = RespLimits {
    max_bulk_bytes: 64,
    max_line_bytes: 32,
    max_array_elements: 8,
    max_depth: 4,
    max_reply_bytes: 256,
};

/// Runs the property under both sets of limits.
pub fn resp_reply(data: &[u8]) {
    for limits in [SMALL, RespLimits::default()] {
        let whole = read_whole(data, limits);
        let chunked = read_chunked(data, limits);
        // Debug text, because a double may be NaN, which equals nothing.
        assert_eq!(
            format!("{whole:?}"),
            format!("{chunked:?}"),
            "chunking changed the result"
        );
        for reply in whole.0 {
            read_typed(reply);
        }
    }
}

/// Replies, then the error that ended the stream, if any (`None`: the rest is
/// an incomplete reply or nothing).
type Outcome = (Vec<Reply>, Option<RespError>);

/// Parses `data` reply after reply, each time from scratch on all that is left.
fn read_whole(data: &[u8], limits: RespLimits) -> Outcome {
    let mut rest = data;
    let mut replies = Vec::new();
    loop {
        match ReplyParser::new(limits).parse(rest) {
            Ok(Some((reply, used))) => {
                assert!(
                    used >= 1 && used <= rest.len(),
                    "used {used} of {}",
                    rest.len()
                );
                replies.push(reply);
                rest = &rest[used..];
            }
            Ok(None) => return (replies, None),
            Err(error) => return (replies, Some(error)),
        }
    }
}

/// Feeds `data` to one parser in chunks of 1 to 16 bytes, as reads from a
/// socket would arrive, draining each reply's bytes from the buffer.
fn read_chunked(data: &[u8], limits: RespLimits) -> Outcome {
    let mut parser = ReplyParser::new(limits);
    let mut buf = Vec::new();
    let mut replies = Vec::new();
    let mut sizes = data.iter().cycle();
    let mut rest = data;
    while !rest.is_empty() {
        let size = sizes
            .next()
            .map_or(rest.len(), |size| usize::from(size % 16) + 1);
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        buf.extend_from_slice(chunk);
        loop {
            match parser.parse(&buf) {
                Ok(Some((reply, used))) => {
                    assert!(
                        used >= 1 && used <= buf.len(),
                        "used {used} of {}",
                        buf.len()
                    );
                    replies.push(reply);
                    buf.drain(..used);
                }
                Ok(None) => break,
                Err(error) => return (replies, Some(error)),
            }
        }
    }
    (replies, None)
}

/// Every typed reader on `reply`: any answer will do, but no panic.
fn read_typed(reply: Reply) {
    let _ = published_id(reply.clone());
    let _ = read_entries(reply.clone());
    if let Ok(entries) = range_entries(reply) {
        for entry in entries {
            let _ = StoredEvent::from_entry(entry);
        }
    }
}
