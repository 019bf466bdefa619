//! Fuzz properties of the WebSocket receiver: frames → messages, and UTF-8.
//!
//! Shared by the fuzz targets (`fuzz/fuzz_targets/{ws_server,ws_client,utf8}.rs`)
//! and the stable corpus replay (`tests/fuzz_corpus.rs`), so: deterministic, fast,
//! and only `pushloop` + std.
//!
//! - `ws_server` / `ws_client`: a `MessageDecoder` fed the input whole, byte by
//!   byte, and in data-derived chunks the way a socket delivers them (leftovers
//!   kept and the next read appended) gives the same messages and the same error;
//!   every error closes with 1002, 1007 or 1009; the buffer never outgrows the
//!   message limit; what `NeedMore` leaves is at most a header plus a control
//!   frame; and every message re-encoded by the other side decodes the same.
//! - `utf8`: `Utf8Validator`, fed whole, byte by byte and in data-derived pieces,
//!   agrees with `std::str::from_utf8` and fails in the very piece holding the
//!   byte where std's verdict turns to "invalid".

use pushloop::ws::close::{encode_close_payload, CloseCode};
use pushloop::ws::frame::{encode_frame, OpCode, Role, MAX_HEADER_LEN};
use pushloop::ws::frame::{Decoded, MessageDecoder, MessageError, MessageLimits, Step};
use pushloop::ws::utf8::Utf8Validator;

/// Limits like a small server's.
const SMALL: MessageLimits = MessageLimits {
    max_frame_bytes: 64 * 1024,
    max_message_bytes: 64 * 1024,
    max_fragments: 1024,
};

/// Limits that short fuzz inputs can actually cross.
const TINY: MessageLimits = MessageLimits {
    max_frame_bytes: 200,
    max_message_bytes: 300,
    max_fragments: 6,
};

/// Frames a client sends (masked), decoded by a server.
pub fn ws_server(data: &[u8]) {
    check_decoder(data, Role::Server);
}

/// Frames a server sends (unmasked), decoded by a client.
pub fn ws_client(data: &[u8]) {
    check_decoder(data, Role::Client);
}

/// Incremental UTF-8 validation against `std::str::from_utf8`.
pub fn utf8(data: &[u8]) {
    let std_says = std::str::from_utf8(data);
    // The index of the byte on which the input stops being a valid prefix, if any:
    // std's error_len tells how long the bad sequence is, not where it was seen.
    let fails_at = match std_says {
        Err(e) if e.error_len().is_some() => {
            let start = e.valid_up_to();
            (start..data.len()).find(|&end| {
                std::str::from_utf8(&data[start..=end])
                    .err()
                    .is_some_and(|e| e.error_len().is_some())
            })
        }
        _ => None,
    };
    for pieces in [vec![data], data.chunks(1).collect(), chunks(data)] {
        let mut validator = Utf8Validator::new();
        let mut start = 0;
        let mut failed_in = None;
        for piece in pieces {
            if validator.feed(piece).is_err() {
                failed_in = Some(start..start + piece.len());
                break;
            }
            start += piece.len();
        }
        match (fails_at, failed_in) {
            (Some(at), Some(piece)) => {
                assert!(piece.contains(&at), "failed in {piece:?}, not at {at}")
            }
            (None, None) => assert_eq!(validator.finish().is_ok(), std_says.is_ok()),
            (expected, found) => panic!("expected failure at {expected:?}, failed in {found:?}"),
        }
    }
}

/// A message with its own copy of the bytes, to compare across feeds.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Owned {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(CloseCode, String)>),
}

impl Owned {
    fn from(message: &Decoded<'_>) -> Self {
        match message {
            Decoded::Text(text) => Self::Text(text.to_string()),
            Decoded::Binary(bytes) => Self::Binary(bytes.to_vec()),
            Decoded::Ping(bytes) => Self::Ping(bytes.to_vec()),
            Decoded::Pong(bytes) => Self::Pong(bytes.to_vec()),
            Decoded::Close(close) => Self::Close(close.map(|(c, r)| (c, r.to_string()))),
        }
    }

    /// Appends this message as one frame, masked with `mask` if `Some`.
    fn encode(&self, mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
        let mut close = [0u8; 125];
        let (opcode, payload): (OpCode, &[u8]) = match self {
            Self::Text(text) => (OpCode::Text, text.as_bytes()),
            Self::Binary(bytes) => (OpCode::Binary, bytes),
            Self::Ping(bytes) => (OpCode::Ping, bytes),
            Self::Pong(bytes) => (OpCode::Pong, bytes),
            Self::Close(None) => (OpCode::Close, &[]),
            Self::Close(Some((code, reason))) => {
                let len = encode_close_payload(*code, reason, &mut close);
                (OpCode::Close, &close[..len])
            }
        };
        encode_frame(out, true, opcode, mask, payload);
    }
}

/// The messages decoded, and the error that stopped decoding, if any.
type Outcome = (Vec<Owned>, Option<MessageError>);

fn check_decoder(data: &[u8], role: Role) {
    for limits in [SMALL, TINY] {
        let whole = decode(&[data], role, limits);
        let bytes: Vec<&[u8]> = data.chunks(1).collect();
        assert_eq!(decode(&bytes, role, limits), whole, "byte by byte");
        assert_eq!(decode(&chunks(data), role, limits), whole, "in chunks");
        if let Some(error) = whole.1 {
            let code = error.close_code();
            assert!(
                matches!(code.0, 1002 | 1007 | 1009),
                "{error:?} closes with {code}"
            );
        }
        // Round trip: the messages, sent again as the peer sends them (a client
        // masks, a server does not), one frame each, decode the same.
        let peer_mask = match role {
            Role::Server => Some([0xa1, 0x5e, 0x00, 0x7f]),
            Role::Client => None,
        };
        let mut resent = Vec::new();
        for message in &whole.0 {
            message.encode(peer_mask, &mut resent);
        }
        let one_frame_messages = MessageLimits {
            max_frame_bytes: limits.max_message_bytes.max(125),
            ..limits
        };
        let again = decode(&[&resent], role, one_frame_messages);
        assert_eq!(again, (whole.0, None), "round trip");
    }
}

/// Feeds `reads` in turn as a socket would deliver them: what `NeedMore` leaves is
/// kept and the next read appended, as `MessageDecoder::step` asks.
fn decode(reads: &[&[u8]], role: Role, limits: MessageLimits) -> Outcome {
    let mut decoder = MessageDecoder::new(role, limits);
    let mut pending: Vec<u8> = Vec::new();
    let mut messages = Vec::new();
    for read in reads {
        pending.extend_from_slice(read);
        loop {
            let used = match decoder.step(&mut pending) {
                Ok(Step::Message { message, used }) => {
                    if let Decoded::Text(text) = message {
                        assert!(std::str::from_utf8(text.as_bytes()).is_ok());
                    }
                    messages.push(Owned::from(&message));
                    used
                }
                Ok(Step::Progress { used }) => used,
                Ok(Step::NeedMore) => {
                    assert!(
                        pending.len() <= MAX_HEADER_LEN + 125,
                        "kept {}",
                        pending.len()
                    );
                    break;
                }
                Err(error) => return (messages, Some(error)),
            };
            assert!(
                used > 0 && used <= pending.len(),
                "used {used} of {}",
                pending.len()
            );
            pending.drain(..used);
            let held = decoder.buffered_bytes();
            assert!(held <= limits.max_message_bytes, "holds {held}");
        }
    }
    (messages, None)
}

/// Splits `data` into pieces whose sizes come from a hash of `data`: mostly small,
/// sometimes empty, now and then large, like reads from a socket.
fn chunks(data: &[u8]) -> Vec<&[u8]> {
    // FNV-1a, then xorshift64.
    let mut state = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    }) | 1;
    let mut rest = data;
    let mut pieces = Vec::new();
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let size = match state % 8 {
            0 => 0,
            1 => (state >> 8) as usize % 2048,
            _ => (state >> 8) as usize % 16,
        };
        let (piece, tail) = rest.split_at(size.min(rest.len()));
        pieces.push(piece);
        rest = tail;
    }
    pieces
}
