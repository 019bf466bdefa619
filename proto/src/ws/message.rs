//! From frames to messages: one receiver per connection.
//!
//! Reading list:
//! - RFC 6455 §5.4 "Fragmentation": a message is one frame with FIN, or a Text/Binary
//!   frame without FIN, Continuation frames, and a final Continuation with FIN.
//!   "Control frames MAY be injected in the middle of a fragmented message."
//! - RFC 6455 §5.5 "Control Frames": Close (§5.5.1), Ping (§5.5.2), Pong (§5.5.3).
//! - RFC 6455 §5.6 "Data Frames": Text is UTF-8, Binary is anything.
//! - RFC 6455 §8.1: invalid UTF-8 fails the connection (1007).
//! - RFC 6455 §7.4.1: the close code each failure answers with.
//! - RFC 6455 §10.4: "implementations will likely want to impose
//!   implementation-specific limits on frame size and total message size".
//!
//! [`MessageDecoder`] is sans-IO: the caller reads bytes from its socket, hands
//! them to [`MessageDecoder::step`] and gets back messages that borrow either those
//! bytes (the fast path, no copy) or the decoder's own message buffer.

use alloc::vec::Vec;
use core::fmt;

use super::close::{parse_close_payload, CloseCode, CloseError};
use super::frame::{decode_header, FrameError, FrameHeader, OpCode, Role};
use super::mask::apply_mask;
use super::utf8::Utf8Validator;

/// When a message delivered from the decoder's buffer is done with, a buffer
/// larger than this is freed rather than kept for the next message, so an idle
/// connection holds (almost) no heap. Small messages that arrive whole never
/// touch the buffer at all.
pub const RETAINED_BUFFER_BYTES: usize = 512;

/// How much of a frame's declared payload is reserved before it arrives. The
/// rest grows (by doubling, capped at the message limit) as bytes come in.
pub const RESERVE_AHEAD_BYTES: usize = 64 * 1024;

/// The receiver's limits (RFC 6455 §10.4), each checked against declared lengths
/// before any buffer grows. Every one crossed closes the connection with 1009.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageLimits {
    /// Payload bytes in one frame (control frames included).
    pub max_frame_bytes: usize,
    /// Payload bytes in one message, all its fragments together. Also the most
    /// the message buffer ever holds.
    pub max_message_bytes: usize,
    /// Frames in one fragmented message. Stops a flood of empty fragments, which
    /// would never reach the size limit.
    pub max_fragments: usize,
}

/// A message, or a control frame, from the peer.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message, valid UTF-8 (§5.6, §8.1).
    Text(&'a str),
    /// A binary message (§5.6).
    Binary(&'a [u8]),
    /// A ping (§5.5.2): answer with a pong carrying the same bytes.
    Ping(&'a [u8]),
    /// A pong (§5.5.3).
    Pong(&'a [u8]),
    /// A Close (§5.5.1), with the peer's code and reason if it gave them
    /// (`None` is reported as 1005, §7.1.5). Everything after it is ignored.
    Close(Option<(CloseCode, &'a str)>),
}

/// What one call to [`MessageDecoder::step`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// A whole message (or control frame) is ready; `used` input bytes were consumed.
    Message {
        /// The message, borrowing the input or the decoder's buffer.
        message: Message<'a>,
        /// Input bytes consumed (always more than 0).
        used: usize,
    },
    /// `used` > 0 bytes were consumed (payload copied into the message buffer, a
    /// non-final fragment done, ...), nothing to deliver yet. Call again.
    Progress {
        /// Input bytes consumed.
        used: usize,
    },
    /// Nothing consumed: the remaining input is an incomplete frame header or an
    /// incomplete control frame (or empty). Keep it and call again with more bytes
    /// appended.
    NeedMore,
}

/// Text or binary: the kind of data message being received (§5.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DataKind {
    Text,
    Binary,
}

/// A data frame whose payload is still arriving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PayloadInProgress {
    /// The message's kind, for the UTF-8 check.
    kind: DataKind,
    /// The frame's FIN bit: its last byte ends the message (§5.4).
    fin: bool,
    /// Payload bytes not yet received.
    remaining: usize,
    /// The masking key (§5.3).
    mask: Option<[u8; 4]>,
    /// Payload bytes received so far: where unmasking resumes in the key.
    received: usize,
}

/// A data message being gathered into the buffer: a fragmented one (§5.4), or a
/// single frame that arrived in pieces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MessageInProgress {
    kind: DataKind,
    /// Frames of this message so far, the first one included.
    frames: usize,
}

/// Where the receiver is in the byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Between frames: the next bytes are a frame header (§5.2).
    Header,
    /// Inside a data frame's payload, of which only part has arrived.
    Payload(PayloadInProgress),
    /// A message was delivered from the buffer; empty it before the next frame.
    Delivered,
    /// The peer's Close was delivered (§5.5.1): it sends nothing after it, and
    /// whatever it sends anyway is ignored.
    Closed,
    /// The peer broke the protocol; the connection is being failed (§7.1.7).
    Failed(MessageError),
}

/// What a step found. It borrows only the input, never the decoder, so that
/// [`MessageDecoder::step`] can still record a failure before lending out the buffer.
enum Found<'i> {
    NeedMore,
    Progress {
        used: usize,
    },
    /// A whole frame in the input, already unmasked and checked.
    InInput {
        message: Message<'i>,
        used: usize,
    },
    /// A message completed in the decoder's buffer.
    InBuffer {
        kind: DataKind,
        used: usize,
    },
}

/// Per-connection receiver: frames → messages (RFC 6455 §5.4–§5.6). Sans-IO; no
/// clock, no socket.
///
/// Drive it with the bytes read so far: call [`step`](Self::step) on the
/// unconsumed bytes, drop `used` bytes from the front, and go on until
/// [`Step::NeedMore`]. Keep what is left (at most
/// [`MAX_HEADER_LEN`](super::frame::MAX_HEADER_LEN) + 125 bytes: a partial header or
/// control frame) and put the next read after it. Calling again after a
/// [`Step::Message`] is also what lets the decoder free its message buffer.
///
/// ```
/// use pushloop_proto::ws::frame::{encode_frame, OpCode, Role};
/// use pushloop_proto::ws::message::{Message, MessageDecoder, MessageLimits, Step};
///
/// let limits = MessageLimits { max_frame_bytes: 1 << 16, max_message_bytes: 1 << 16, max_fragments: 64 };
/// let mut decoder = MessageDecoder::new(Role::Server, limits);
/// let mut input = Vec::new();
/// encode_frame(&mut input, false, OpCode::Text, Some([1, 2, 3, 4]), b"Hel");
/// encode_frame(&mut input, true, OpCode::Ping, Some([5, 6, 7, 8]), b"?");
/// encode_frame(&mut input, true, OpCode::Continuation, Some([9, 9, 9, 9]), b"lo");
///
/// let mut seen = Vec::new();
/// let mut start = 0;
/// loop {
///     match decoder.step(&mut input[start..]).unwrap() {
///         Step::Message { message, used } => {
///             seen.push(format!("{message:?}"));
///             start += used;
///         }
///         Step::Progress { used } => start += used,
///         Step::NeedMore => break,
///     }
/// }
/// assert_eq!(seen, ["Ping([63])", "Text(\"Hello\")"]);
/// ```
#[derive(Debug)]
pub struct MessageDecoder {
    role: Role,
    limits: MessageLimits,
    phase: Phase,
    /// The data message being gathered, if any; control frames may come between
    /// its frames (§5.4).
    message: Option<MessageInProgress>,
    /// The payload of `message` so far. Empty, and usually without an allocation,
    /// between messages.
    buffer: Vec<u8>,
    /// Validates `buffer`'s text as it arrives, to fail fast (§8.1).
    utf8: Utf8Validator,
    /// The header decoded by the current step, for [`MessageDecoder::step_observed`].
    observed: Option<(FrameHeader, usize)>,
}

impl MessageDecoder {
    /// A receiver for one connection, where we play `role`.
    pub fn new(role: Role, limits: MessageLimits) -> Self {
        Self {
            role,
            limits,
            phase: Phase::Header,
            message: None,
            buffer: Vec::new(),
            utf8: Utf8Validator::new(),
            observed: None,
        }
    }

    /// One step over `input` (the unconsumed bytes). Unmasks in place. Never panics.
    ///
    /// * A complete unfragmented data frame wholly inside `input` is delivered
    ///   zero-copy, borrowing `input` (unmasked in place; text validated with
    ///   `core::str::from_utf8`).
    /// * A data frame whose payload has only partly arrived is consumed as far as
    ///   it goes: the available bytes are unmasked (resuming the key offset),
    ///   UTF-8-checked for text (failing at once on an invalid sequence), and
    ///   appended to the decoder's message buffer. Fragments of a fragmented
    ///   message go to the buffer too. The completed message borrows the buffer.
    /// * Control frames are delivered only when whole (≤ 125 bytes payload),
    ///   borrowing `input`, also in the middle of a fragmented message.
    /// * Sizes are checked against declared lengths (message so far + this frame's
    ///   payload length > `max_message_bytes` → [`MessageError::TooBig`]) before the
    ///   buffer grows; the buffer reserves from declared lengths, never past the limit.
    /// * A message delivered from the buffer stays there until the next call, which
    ///   empties the buffer and frees it if it is larger than
    ///   [`RETAINED_BUFFER_BYTES`].
    /// * After an `Err` the decoder is poisoned: every further call returns the
    ///   same error. After a [`Message::Close`], all further input is consumed and
    ///   ignored (§5.5.1: the peer sends nothing after its Close; we answer with
    ///   ours and close TCP, §7.1.1).
    pub fn step<'a>(&'a mut self, input: &'a mut [u8]) -> Result<Step<'a>, MessageError> {
        self.step_observed(input, &mut None)
    }

    /// [`step`](Self::step), also handing out the header of the frame this step
    /// started on (with its length in bytes), once per frame: a protocol trace
    /// (`pushloop --trace`) prints each frame's fields from it.
    pub fn step_observed<'a>(
        &'a mut self,
        input: &'a mut [u8],
        header: &mut Option<(FrameHeader, usize)>,
    ) -> Result<Step<'a>, MessageError> {
        let found = self.advance(input);
        *header = self.observed.take();
        let found = match found {
            Ok(found) => found,
            Err(error) => {
                self.fail(error);
                return Err(error);
            }
        };
        let (kind, used) = match found {
            Found::NeedMore => {
                // A header seen but not consumed (an incomplete control frame)
                // will be seen again with more bytes.
                *header = None;
                return Ok(Step::NeedMore);
            }
            Found::Progress { used } => return Ok(Step::Progress { used }),
            Found::InInput { message, used } => return Ok(Step::Message { message, used }),
            Found::InBuffer { kind, used } => (kind, used),
        };
        let message = match kind {
            DataKind::Binary => Message::Binary(&self.buffer),
            // The text was checked as it arrived (§8.1); checking again is what
            // lends it out as `&str` without unsafe.
            DataKind::Text => match core::str::from_utf8(&self.buffer) {
                Ok(text) => Message::Text(text),
                Err(_) => {
                    self.phase = Phase::Failed(MessageError::InvalidUtf8);
                    return Err(MessageError::InvalidUtf8);
                }
            },
        };
        Ok(Step::Message { message, used })
    }

    /// The role we play: which masking the peer's frames must have (§5.1).
    pub fn role(&self) -> Role {
        self.role
    }

    /// Heap bytes the decoder holds now (the message buffer's capacity).
    pub fn buffered_bytes(&self) -> usize {
        self.buffer.capacity()
    }

    /// Moves the receiver along `input`; see [`step`](Self::step).
    fn advance<'i>(&mut self, input: &'i mut [u8]) -> Result<Found<'i>, MessageError> {
        match self.phase {
            Phase::Failed(error) => Err(error),
            // §5.5.1: nothing may follow the peer's Close; drop whatever does.
            Phase::Closed if input.is_empty() => Ok(Found::NeedMore),
            Phase::Closed => Ok(Found::Progress { used: input.len() }),
            Phase::Delivered => {
                self.release_buffer();
                self.phase = Phase::Header;
                self.next_frame(input)
            }
            Phase::Header => self.next_frame(input),
            Phase::Payload(payload) => self.receive_payload(payload, input, 0),
        }
    }

    /// Reads the frame header at the start of `input` and whatever of the frame
    /// follows it.
    fn next_frame<'i>(&mut self, input: &'i mut [u8]) -> Result<Found<'i>, MessageError> {
        let decoded = decode_header(input, self.role, self.limits.max_frame_bytes);
        let Some((header, header_len)) = decoded.map_err(MessageError::Frame)? else {
            return Ok(Found::NeedMore);
        };
        self.observed = Some((header, header_len));
        // decode_header refused every length above max_frame_bytes, a usize.
        let payload_len = usize::try_from(header.payload_len)
            .map_err(|_| MessageError::Frame(FrameError::TooBig))?;
        let frame_len = header_len.saturating_add(payload_len);
        let whole_frame_here = frame_len <= input.len();
        let kind = match header.opcode {
            // §5.5: control frames are at most 125 bytes and never fragmented, so
            // wait for the whole frame and deliver it from the input. §5.4: they
            // may come between the frames of a fragmented message.
            OpCode::Ping | OpCode::Pong | OpCode::Close => {
                if !whole_frame_here {
                    return Ok(Found::NeedMore);
                }
                let payload = input.get_mut(header_len..frame_len).unwrap_or_default();
                unmask(payload, header.mask, 0);
                let message = match header.opcode {
                    OpCode::Ping => Message::Ping(payload),
                    OpCode::Pong => Message::Pong(payload),
                    _ => {
                        let close = parse_close_payload(payload).map_err(MessageError::Close)?;
                        // §5.5.1: the peer sends nothing after its Close. A message
                        // it left unfinished never will be.
                        self.phase = Phase::Closed;
                        self.message = None;
                        self.buffer = Vec::new();
                        Message::Close(close)
                    }
                };
                return Ok(Found::InInput {
                    message,
                    used: frame_len,
                });
            }
            OpCode::Continuation => {
                // §5.4: a continuation only continues a message already started.
                let Some(message) = self.message.as_mut() else {
                    return Err(MessageError::ContinuationWithoutStart);
                };
                message.frames = message.frames.saturating_add(1);
                if message.frames > self.limits.max_fragments {
                    return Err(MessageError::TooManyFragments);
                }
                let kind = message.kind;
                self.check_message_size(payload_len)?;
                kind
            }
            OpCode::Text | OpCode::Binary => {
                // §5.4: "the fragments of one message MUST NOT be interleaved
                // between the fragments of another".
                if self.message.is_some() {
                    return Err(MessageError::NewMessageMidFragment);
                }
                self.check_message_size(payload_len)?;
                let kind = if header.opcode == OpCode::Text {
                    DataKind::Text
                } else {
                    DataKind::Binary
                };
                // The fast path: a whole message in one frame, all in the input.
                if header.fin && whole_frame_here {
                    let payload = input.get_mut(header_len..frame_len).unwrap_or_default();
                    unmask(payload, header.mask, 0);
                    let message = match kind {
                        DataKind::Binary => Message::Binary(payload),
                        // §8.1: text must be UTF-8.
                        DataKind::Text => Message::Text(
                            core::str::from_utf8(payload).map_err(|_| MessageError::InvalidUtf8)?,
                        ),
                    };
                    return Ok(Found::InInput {
                        message,
                        used: frame_len,
                    });
                }
                self.message = Some(MessageInProgress { kind, frames: 1 });
                self.utf8.reset();
                kind
            }
        };
        // Memory follows the bytes that arrive, not the length a peer declares:
        // a peer that announces a huge frame and then trickles it pins only
        // what it has actually sent (plus at most RESERVE_AHEAD_BYTES).
        self.reserve(payload_len.min(RESERVE_AHEAD_BYTES))?;
        let payload = PayloadInProgress {
            kind,
            fin: header.fin,
            remaining: payload_len,
            mask: header.mask,
            received: 0,
        };
        let rest = input.get_mut(header_len..).unwrap_or_default();
        self.receive_payload(payload, rest, header_len)
    }

    /// §10.4: the message so far plus this frame's declared payload must fit the
    /// message limit. Decided before any byte of the frame is buffered.
    fn check_message_size(&self, payload_len: usize) -> Result<(), MessageError> {
        let total = self.buffer.len().checked_add(payload_len);
        match total {
            Some(total) if total <= self.limits.max_message_bytes => Ok(()),
            _ => Err(MessageError::TooBig),
        }
    }

    /// Makes room for `payload_len` more bytes: doubling, so that many small
    /// fragments do not copy the message over and over, but never past the
    /// message limit (which the caller has checked the total against).
    fn reserve(&mut self, payload_len: usize) -> Result<(), MessageError> {
        let needed = self.buffer.len().saturating_add(payload_len);
        if needed <= self.buffer.capacity() {
            return Ok(());
        }
        let target = needed
            .max(self.buffer.capacity().saturating_mul(2))
            .min(self.limits.max_message_bytes)
            // Never below what is needed, even if a caller skipped the size check.
            .max(needed);
        self.buffer
            .try_reserve_exact(target.saturating_sub(self.buffer.len()))
            .map_err(|_| MessageError::TooBig)
    }

    /// Takes what has arrived of a data frame's payload into the buffer. `used`
    /// counts input bytes already consumed by this step (the header).
    fn receive_payload(
        &mut self,
        mut payload: PayloadInProgress,
        input: &mut [u8],
        used: usize,
    ) -> Result<Found<'static>, MessageError> {
        let take = payload.remaining.min(input.len());
        let (chunk, _) = input.split_at_mut(take);
        // §5.3: unmasking resumes at the key octet where the last piece stopped.
        unmask(chunk, payload.mask, payload.received);
        // §8.1, fail fast: reject invalid text in the piece where it appears.
        if payload.kind == DataKind::Text {
            self.utf8
                .feed(chunk)
                .map_err(|_| MessageError::InvalidUtf8)?;
        }
        self.reserve(take)?;
        self.buffer.extend_from_slice(chunk);
        payload.remaining -= take;
        payload.received += take;
        let used = used + take;
        if payload.remaining > 0 {
            self.phase = Phase::Payload(payload);
            return Ok(if used == 0 {
                Found::NeedMore
            } else {
                Found::Progress { used }
            });
        }
        if !payload.fin {
            // A non-final fragment is complete; the message goes on (§5.4).
            self.phase = Phase::Header;
            return Ok(Found::Progress { used });
        }
        // §5.4: the FIN frame ends the message. §8.1: it may not end mid-character.
        self.message = None;
        if payload.kind == DataKind::Text {
            self.utf8.finish().map_err(|_| MessageError::InvalidUtf8)?;
        }
        self.phase = Phase::Delivered;
        Ok(Found::InBuffer {
            kind: payload.kind,
            used,
        })
    }

    /// The peer broke the protocol: remember the error, and free the buffer now,
    /// since no message will ever come out of it.
    fn fail(&mut self, error: MessageError) {
        self.phase = Phase::Failed(error);
        self.message = None;
        self.buffer = Vec::new();
    }

    /// Empties the buffer after its message was delivered, freeing it if large.
    fn release_buffer(&mut self) {
        self.buffer.clear();
        if self.buffer.capacity() > RETAINED_BUFFER_BYTES {
            self.buffer = Vec::new();
        }
    }
}

/// §5.3: unmasks `payload`, whose first byte is payload byte `offset`.
fn unmask(payload: &mut [u8], mask: Option<[u8; 4]>, offset: usize) {
    if let Some(key) = mask {
        apply_mask(payload, key, offset);
    }
}

/// Why the peer's frames do not make a valid message stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageError {
    /// The peer sent a frame header that breaks §5.2 / §5.5, or over the frame limit.
    Frame(FrameError),
    /// The peer sent a continuation frame with no message to continue (§5.4).
    ContinuationWithoutStart,
    /// The peer started a new message before finishing the fragmented one (§5.4).
    NewMessageMidFragment,
    /// The peer declared a message longer than our message limit (§10.4).
    TooBig,
    /// The peer sent more fragments for one message than our limit (§10.4).
    TooManyFragments,
    /// The peer sent text that is not valid UTF-8 (§8.1).
    InvalidUtf8,
    /// The peer sent a Close frame with a payload that breaks §5.5.1.
    Close(CloseError),
}

impl MessageError {
    /// RFC 6455 §7.4.1: 1002 for protocol errors, 1007 for bad UTF-8 (including a
    /// close reason), 1009 for anything too big.
    pub fn close_code(self) -> CloseCode {
        match self {
            Self::Frame(error) => error.close_code(),
            Self::Close(error) => error.close_code(),
            Self::ContinuationWithoutStart | Self::NewMessageMidFragment => {
                CloseCode::PROTOCOL_ERROR
            }
            Self::TooBig | Self::TooManyFragments => CloseCode::MESSAGE_TOO_BIG,
            Self::InvalidUtf8 => CloseCode::INVALID_PAYLOAD,
        }
    }
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Frame(error) => error.fmt(f),
            Self::Close(error) => error.fmt(f),
            Self::ContinuationWithoutStart => {
                f.write_str("the peer sent a continuation frame with no message to continue")
            }
            Self::NewMessageMidFragment => {
                f.write_str("the peer started a new message inside a fragmented one")
            }
            Self::TooBig => f.write_str("the peer declared a message over the size limit"),
            Self::TooManyFragments => {
                f.write_str("the peer sent a message in more fragments than the limit")
            }
            Self::InvalidUtf8 => f.write_str("the peer sent text that is not valid UTF-8"),
        }
    }
}

impl core::error::Error for MessageError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::close::encode_close_payload;
    use crate::ws::frame::{encode_frame, MAX_HEADER_LEN};

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    const LIMITS: MessageLimits = MessageLimits {
        max_frame_bytes: 1 << 17,
        max_message_bytes: 1 << 17,
        max_fragments: 100,
    };

    /// A message with its own copy of the bytes, to compare across feeds.
    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Owned {
        Text(String),
        Binary(Vec<u8>),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<(CloseCode, String)>),
    }

    fn owned(message: &Message<'_>) -> Owned {
        match message {
            Message::Text(text) => Owned::Text(text.to_string()),
            Message::Binary(bytes) => Owned::Binary(bytes.to_vec()),
            Message::Ping(bytes) => Owned::Ping(bytes.to_vec()),
            Message::Pong(bytes) => Owned::Pong(bytes.to_vec()),
            Message::Close(close) => {
                Owned::Close(close.map(|(code, reason)| (code, reason.to_string())))
            }
        }
    }

    type Outcome = (Vec<Owned>, Option<MessageError>);

    /// Feeds `pieces` in turn as reads from a socket would deliver them: what a
    /// step leaves is kept, and the next piece is appended to it.
    fn decode_pieces(pieces: &[&[u8]], role: Role, limits: MessageLimits) -> Outcome {
        let mut decoder = MessageDecoder::new(role, limits);
        let mut pending = Vec::new();
        let mut messages = Vec::new();
        for piece in pieces {
            pending.extend_from_slice(piece);
            loop {
                let step = decoder.step(&mut pending);
                match step {
                    Ok(Step::Message { message, used }) => {
                        messages.push(owned(&message));
                        assert!(used > 0);
                        pending.drain(..used);
                    }
                    Ok(Step::Progress { used }) => {
                        assert!(used > 0);
                        pending.drain(..used);
                    }
                    Ok(Step::NeedMore) => {
                        assert!(
                            pending.len() <= MAX_HEADER_LEN + 125,
                            "kept {}",
                            pending.len()
                        );
                        break;
                    }
                    Err(error) => {
                        // Poisoned: the same error again, whatever comes next.
                        assert_eq!(decoder.step(&mut [0x81, 0x80, 0, 0, 0, 0]), Err(error));
                        return (messages, Some(error));
                    }
                }
                assert!(decoder.buffered_bytes() <= limits.max_message_bytes);
            }
        }
        (messages, None)
    }

    /// Decodes `stream` fed whole, byte by byte, and split at every index (every
    /// 997th index for long streams); all must agree. Returns the common outcome.
    fn decode_every_way(stream: &[u8], role: Role, limits: MessageLimits) -> Outcome {
        let whole = decode_pieces(&[stream], role, limits);
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(decode_pieces(&bytes, role, limits), whole, "byte by byte");
        let stride = if stream.len() > 4096 { 997 } else { 1 };
        for split in (0..=stream.len()).step_by(stride) {
            let (a, b) = stream.split_at(split);
            assert_eq!(
                decode_pieces(&[a, b], role, limits),
                whole,
                "split at {split}"
            );
        }
        whole
    }

    fn frame(fin: bool, opcode: OpCode, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, fin, opcode, mask, payload);
        out
    }

    /// A masked frame, as a client sends it.
    fn client(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        frame(fin, opcode, Some(KEY), payload)
    }

    fn text(s: &str) -> Owned {
        Owned::Text(s.to_string())
    }

    #[test]
    fn rfc6455_5_7_unmasked_hello_as_client() {
        let stream = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(
            decode_every_way(&stream, Role::Client, LIMITS),
            (vec![text("Hello")], None)
        );
    }

    #[test]
    fn rfc6455_5_7_masked_hello_as_server() {
        let stream = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(
            decode_every_way(&stream, Role::Server, LIMITS),
            (vec![text("Hello")], None)
        );
    }

    #[test]
    fn rfc6455_5_7_fragmented_hello() {
        let stream = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
        assert_eq!(
            decode_every_way(&stream, Role::Client, LIMITS),
            (vec![text("Hello")], None)
        );
    }

    #[test]
    fn rfc6455_5_7_ping_and_masked_pong() {
        let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let pong = [
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let hello = b"Hello".to_vec();
        assert_eq!(
            decode_every_way(&ping, Role::Client, LIMITS),
            (vec![Owned::Ping(hello.clone())], None)
        );
        assert_eq!(
            decode_every_way(&pong, Role::Server, LIMITS),
            (vec![Owned::Pong(hello)], None)
        );
    }

    #[test]
    fn rfc6455_5_7_256_byte_and_64_kib_binary() {
        for len in [256usize, 65536] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut stream = if len == 256 {
                vec![0x82, 0x7E, 0x01, 0x00]
            } else {
                vec![0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00]
            };
            stream.extend_from_slice(&payload);
            let expected = (vec![Owned::Binary(payload)], None);
            assert_eq!(decode_every_way(&stream, Role::Client, LIMITS), expected);
        }
    }

    #[test]
    fn round_trips_at_length_boundaries() {
        for len in [0usize, 125, 126, 127, 65535, 65536] {
            let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let text = String::from_utf8(payload.clone()).unwrap();
            for (role, mask) in [(Role::Server, Some(KEY)), (Role::Client, None)] {
                let mut stream = frame(true, OpCode::Text, mask, &payload);
                stream.extend(frame(true, OpCode::Binary, mask, &payload));
                let expected = vec![Owned::Text(text.clone()), Owned::Binary(payload.clone())];
                assert_eq!(
                    decode_every_way(&stream, role, LIMITS),
                    (expected, None),
                    "len {len}"
                );
            }
        }
    }

    #[test]
    fn delivers_whole_frame_zero_copy_from_input() {
        let mut decoder = MessageDecoder::new(Role::Server, LIMITS);
        let mut input = client(true, OpCode::Binary, b"in place");
        let input_range = input.as_ptr_range();
        match decoder.step(&mut input) {
            Ok(Step::Message {
                message: Message::Binary(bytes),
                used: 14,
            }) => {
                assert_eq!(bytes, b"in place");
                assert!(
                    input_range.contains(&bytes.as_ptr()),
                    "the message was copied"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(decoder.buffered_bytes(), 0);
    }

    #[test]
    fn delivers_ping_interleaved_in_fragmented_message() {
        let mut stream = client(false, OpCode::Text, b"Hel");
        stream.extend(client(true, OpCode::Ping, b"beat"));
        stream.extend(client(false, OpCode::Continuation, b""));
        stream.extend(client(true, OpCode::Pong, b""));
        stream.extend(client(true, OpCode::Continuation, b"lo"));
        let expected = vec![
            Owned::Ping(b"beat".to_vec()),
            Owned::Pong(vec![]),
            text("Hello"),
        ];
        assert_eq!(
            decode_every_way(&stream, Role::Server, LIMITS),
            (expected, None)
        );
    }

    #[test]
    fn rejects_continuation_without_start() {
        let stream = client(true, OpCode::Continuation, b"lo");
        let outcome = decode_every_way(&stream, Role::Server, LIMITS);
        assert_eq!(
            outcome,
            (vec![], Some(MessageError::ContinuationWithoutStart))
        );
        assert_eq!(
            MessageError::ContinuationWithoutStart.close_code(),
            CloseCode::PROTOCOL_ERROR
        );
    }

    #[test]
    fn rejects_continuation_after_finished_message() {
        let mut stream = client(true, OpCode::Text, b"done");
        stream.extend(client(true, OpCode::Continuation, b"more"));
        let outcome = decode_every_way(&stream, Role::Server, LIMITS);
        assert_eq!(
            outcome,
            (
                vec![text("done")],
                Some(MessageError::ContinuationWithoutStart)
            )
        );
    }

    #[test]
    fn rejects_new_message_mid_fragment() {
        let mut stream = client(false, OpCode::Binary, b"one");
        stream.extend(client(true, OpCode::Text, b"two"));
        let outcome = decode_every_way(&stream, Role::Server, LIMITS);
        assert_eq!(outcome, (vec![], Some(MessageError::NewMessageMidFragment)));
        assert_eq!(
            MessageError::NewMessageMidFragment.close_code(),
            CloseCode::PROTOCOL_ERROR
        );
    }

    #[test]
    fn rejects_invalid_utf8_in_the_fragment_where_it_appears() {
        // Autobahn 6.4.1: valid part, then 0x110000 (F4 90 80 80), then valid part.
        let mut stream = client(false, OpCode::Text, "κόσμε".as_bytes());
        stream.extend(client(false, OpCode::Continuation, b"\xf4\x90\x80\x80"));
        // The final fragment never arrives: the error must not wait for it.
        let outcome = decode_every_way(&stream, Role::Server, LIMITS);
        assert_eq!(outcome, (vec![], Some(MessageError::InvalidUtf8)));
        assert_eq!(
            MessageError::InvalidUtf8.close_code(),
            CloseCode::INVALID_PAYLOAD
        );
    }

    #[test]
    fn rejects_invalid_utf8_split_across_fragments() {
        // Autobahn 6.4.2: the bad sequence starts at the end of one fragment.
        let mut stream = client(false, OpCode::Text, b"\xce\xba\xf4");
        stream.extend(client(false, OpCode::Continuation, b"\x90"));
        let outcome = decode_every_way(&stream, Role::Server, LIMITS);
        assert_eq!(outcome, (vec![], Some(MessageError::InvalidUtf8)));
    }

    #[test]
    fn rejects_invalid_utf8_before_rest_of_frame_arrives() {
        // Autobahn 6.4.3/6.4.4: one frame, sent in chops; the server must fail as
        // soon as the chop with the bad bytes arrives.
        let payload = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80-edited-edited";
        let stream = client(true, OpCode::Text, payload);
        let header_len = 2 + 4;
        let bad_at = header_len + 12; // the 0x90 after F4
        for first_chop in header_len..=bad_at {
            let mut decoder = MessageDecoder::new(Role::Server, LIMITS);
            let mut first = stream[..first_chop].to_vec();
            let used = match decoder.step(&mut first) {
                Ok(Step::Progress { used }) => used,
                other => panic!("chop {first_chop}: {other:?}"),
            };
            assert_eq!(used, first_chop, "the partial payload is consumed");
            let mut second = stream[first_chop..bad_at + 1].to_vec();
            assert_eq!(decoder.step(&mut second), Err(MessageError::InvalidUtf8));
        }
    }

    #[test]
    fn accepts_code_point_split_across_fragments() {
        let mut stream = client(false, OpCode::Text, b"\xe2\x82");
        stream.extend(client(true, OpCode::Continuation, b"\xac"));
        assert_eq!(
            decode_every_way(&stream, Role::Server, LIMITS),
            (vec![text("€")], None)
        );
    }

    #[test]
    fn rejects_truncated_code_point_at_message_end() {
        let single = client(true, OpCode::Text, b"price \xe2\x82");
        let outcome = decode_every_way(&single, Role::Server, LIMITS);
        assert_eq!(outcome, (vec![], Some(MessageError::InvalidUtf8)));
        let mut fragmented = client(false, OpCode::Text, b"price ");
        fragmented.extend(client(true, OpCode::Continuation, b"\xe2\x82"));
        let outcome = decode_every_way(&fragmented, Role::Server, LIMITS);
        assert_eq!(outcome, (vec![], Some(MessageError::InvalidUtf8)));
    }

    #[test]
    fn accepts_invalid_utf8_in_binary() {
        let stream = client(true, OpCode::Binary, b"\xff\xfe");
        let expected = (vec![Owned::Binary(vec![0xff, 0xfe])], None);
        assert_eq!(decode_every_way(&stream, Role::Server, LIMITS), expected);
    }

    #[test]
    fn rejects_too_big_message_from_header_alone() {
        let limits = MessageLimits {
            max_message_bytes: 100,
            ..LIMITS
        };
        let stream = client(true, OpCode::Binary, &[0; 101]);
        let mut header_only = stream[..8].to_vec();
        let mut decoder = MessageDecoder::new(Role::Server, limits);
        assert_eq!(decoder.step(&mut header_only), Err(MessageError::TooBig));
        assert_eq!(decoder.buffered_bytes(), 0, "the buffer never grew");
        assert_eq!(
            MessageError::TooBig.close_code(),
            CloseCode::MESSAGE_TOO_BIG
        );
        let outcome = decode_every_way(&stream, Role::Server, limits);
        assert_eq!(outcome, (vec![], Some(MessageError::TooBig)));
    }

    #[test]
    fn rejects_too_big_frame_from_header_alone() {
        let limits = MessageLimits {
            max_frame_bytes: 100,
            ..LIMITS
        };
        // 2^62 bytes declared: refused without allocating anything.
        let mut header = vec![0x82, 0xFF, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        let mut decoder = MessageDecoder::new(Role::Server, limits);
        assert_eq!(
            decoder.step(&mut header),
            Err(MessageError::Frame(FrameError::TooBig))
        );
        assert_eq!(decoder.buffered_bytes(), 0);
        assert_eq!(
            MessageError::Frame(FrameError::TooBig).close_code(),
            CloseCode::MESSAGE_TOO_BIG
        );
    }

    #[test]
    fn rejects_fragments_adding_up_past_the_message_limit() {
        let limits = MessageLimits {
            max_message_bytes: 100,
            ..LIMITS
        };
        let mut stream = client(false, OpCode::Text, &[b'a'; 60]);
        stream.extend(client(false, OpCode::Continuation, &[b'b'; 40]));
        let at_limit_header = stream.len();
        stream.extend(client(true, OpCode::Continuation, &[b'c'; 1]));
        let mut decoder = MessageDecoder::new(Role::Server, limits);
        let mut input = stream[..at_limit_header + 6].to_vec(); // its header, no payload
        let mut start = 0;
        let error = loop {
            match decoder.step(&mut input[start..]) {
                Ok(Step::Progress { used }) => start += used,
                Ok(other) => panic!("{other:?}"),
                Err(error) => break error,
            }
        };
        assert_eq!(error, MessageError::TooBig);
        assert!(
            decoder.buffered_bytes() <= 100,
            "grew to {}",
            decoder.buffered_bytes()
        );
        assert_eq!(
            decode_every_way(&stream, Role::Server, limits).1,
            Some(MessageError::TooBig)
        );
    }

    #[test]
    fn accepts_message_exactly_at_the_limit() {
        let limits = MessageLimits {
            max_message_bytes: 100,
            ..LIMITS
        };
        let mut stream = client(false, OpCode::Binary, &[1; 60]);
        stream.extend(client(true, OpCode::Continuation, &[2; 40]));
        let mut expected = vec![1; 60];
        expected.extend([2; 40]);
        let outcome = decode_every_way(&stream, Role::Server, limits);
        assert_eq!(outcome, (vec![Owned::Binary(expected)], None));
    }

    #[test]
    fn stops_fragment_flood_at_max_fragments() {
        let limits = MessageLimits {
            max_fragments: 10,
            ..LIMITS
        };
        let mut within = client(false, OpCode::Text, b"");
        for _ in 0..8 {
            within.extend(client(false, OpCode::Continuation, b""));
        }
        let mut flood = within.clone();
        within.extend(client(true, OpCode::Continuation, b"ok"));
        assert_eq!(
            decode_every_way(&within, Role::Server, limits),
            (vec![text("ok")], None)
        );
        for _ in 0..5 {
            flood.extend(client(false, OpCode::Continuation, b""));
        }
        let outcome = decode_every_way(&flood, Role::Server, limits);
        assert_eq!(outcome, (vec![], Some(MessageError::TooManyFragments)));
        assert_eq!(
            MessageError::TooManyFragments.close_code(),
            CloseCode::MESSAGE_TOO_BIG
        );
    }

    #[test]
    fn delivers_close_and_ignores_everything_after_it() {
        let mut payload = [0u8; 125];
        let len = encode_close_payload(CloseCode::NORMAL, "bye", &mut payload);
        let mut stream = client(false, OpCode::Text, b"unfinished");
        stream.extend(client(true, OpCode::Close, &payload[..len]));
        stream.extend(client(true, OpCode::Ping, b"after"));
        stream.extend([0xff; 20]); // not even a valid frame: still ignored
        let expected = vec![Owned::Close(Some((CloseCode::NORMAL, "bye".to_string())))];
        assert_eq!(
            decode_every_way(&stream, Role::Server, LIMITS),
            (expected, None)
        );
    }

    #[test]
    fn close_payloads() {
        let close = |payload: &[u8]| {
            decode_every_way(&client(true, OpCode::Close, payload), Role::Server, LIMITS)
        };
        assert_eq!(close(b""), (vec![Owned::Close(None)], None));
        let one_byte = MessageError::Close(CloseError::OneBytePayload);
        assert_eq!(close(b"\x03"), (vec![], Some(one_byte)));
        assert_eq!(one_byte.close_code(), CloseCode::PROTOCOL_ERROR);
        for code in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            let not_allowed = MessageError::Close(CloseError::CodeNotAllowed);
            assert_eq!(
                close(&code.to_be_bytes()),
                (vec![], Some(not_allowed)),
                "{code}"
            );
        }
        let bad_reason = MessageError::Close(CloseError::ReasonNotUtf8);
        assert_eq!(
            close(b"\x03\xe8\xce\xba\xe1\xbd"),
            (vec![], Some(bad_reason))
        );
        assert_eq!(bad_reason.close_code(), CloseCode::INVALID_PAYLOAD);
        let mut longest = vec![0x0f, 0xa0];
        longest.extend([b'r'; 123]);
        let expected = Owned::Close(Some((CloseCode(4000), "r".repeat(123))));
        assert_eq!(close(&longest), (vec![expected], None));
    }

    #[test]
    fn a_declared_length_alone_reserves_at_most_the_read_ahead() {
        let limits = MessageLimits {
            max_frame_bytes: 16 << 20,
            max_message_bytes: 16 << 20,
            max_fragments: 8,
        };
        let mut decoder = MessageDecoder::new(Role::Server, limits);
        // Header of a 16 MiB masked binary frame, then 10 bytes of it.
        let mut input = vec![0x82, 0xFF, 0, 0, 0, 0, 0, 0x01, 0, 0, 1, 2, 3, 4];
        input.extend([0; 10]);
        assert_eq!(decoder.step(&mut input), Ok(Step::Progress { used: 24 }));
        assert!(
            decoder.buffered_bytes() <= RESERVE_AHEAD_BYTES,
            "{}",
            decoder.buffered_bytes()
        );
    }

    #[test]
    fn releases_large_buffer_after_message_is_consumed() {
        let payload = vec![7u8; 10_000];
        let stream = client(true, OpCode::Binary, &payload);
        let mut decoder = MessageDecoder::new(Role::Server, LIMITS);
        let (mut first, mut second) = (stream[..5000].to_vec(), stream[5000..].to_vec());
        assert_eq!(decoder.step(&mut first), Ok(Step::Progress { used: 5000 }));
        assert!(
            decoder.buffered_bytes() >= 10_000,
            "a small frame is reserved whole from its declared length"
        );
        let second_len = second.len();
        match decoder.step(&mut second) {
            Ok(Step::Message {
                message: Message::Binary(bytes),
                used,
            }) => {
                assert_eq!((bytes, used), (&payload[..], second_len));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(decoder.step(&mut []), Ok(Step::NeedMore));
        assert_eq!(decoder.buffered_bytes(), 0, "an idle decoder holds no heap");
    }

    #[test]
    fn frees_buffer_on_error_and_on_close() {
        for ending in [
            client(true, OpCode::Text, b"x"),
            client(true, OpCode::Close, b""),
        ] {
            let mut stream = client(false, OpCode::Binary, &[0; 2000]);
            stream.extend(ending);
            let mut decoder = MessageDecoder::new(Role::Server, LIMITS);
            let mut start = 0;
            while let Ok(Step::Progress { used }) = decoder.step(&mut stream[start..]) {
                assert!(decoder.buffered_bytes() >= 2000);
                start += used;
            }
            assert_eq!(decoder.buffered_bytes(), 0);
        }
    }

    #[test]
    fn keeps_small_buffer_between_messages() {
        let mut decoder = MessageDecoder::new(Role::Server, LIMITS);
        let mut stream = client(false, OpCode::Text, b"small");
        stream.extend(client(true, OpCode::Continuation, b" one"));
        let mut start = 0;
        while let Ok(Step::Progress { used }) = decoder.step(&mut stream[start..]) {
            start += used;
        }
        assert_eq!(decoder.step(&mut []), Ok(Step::NeedMore));
        assert!(decoder.buffered_bytes() <= RETAINED_BUFFER_BYTES);
    }

    #[test]
    fn buffer_grows_by_doubling_within_the_limit() {
        let limits = MessageLimits {
            max_message_bytes: 1000,
            max_fragments: 1000,
            ..LIMITS
        };
        let mut stream = client(false, OpCode::Binary, &[0; 10]);
        for _ in 0..98 {
            stream.extend(client(false, OpCode::Continuation, &[0; 10]));
        }
        stream.extend(client(true, OpCode::Continuation, &[0; 10]));
        let mut decoder = MessageDecoder::new(Role::Server, limits);
        let mut start = 0;
        let mut capacities = vec![];
        loop {
            match decoder.step(&mut stream[start..]) {
                Ok(Step::Progress { used }) => start += used,
                Ok(Step::Message {
                    message: Message::Binary(bytes),
                    ..
                }) => {
                    assert_eq!(bytes.len(), 1000);
                    break;
                }
                other => panic!("{other:?}"),
            }
            if capacities.last() != Some(&decoder.buffered_bytes()) {
                capacities.push(decoder.buffered_bytes());
            }
        }
        assert_eq!(capacities, [10, 20, 40, 80, 160, 320, 640, 1000]);
    }

    #[test]
    fn client_role_rejects_masked_frames() {
        let stream = client(true, OpCode::Text, b"Hello");
        let outcome = decode_every_way(&stream, Role::Client, LIMITS);
        assert_eq!(
            outcome,
            (
                vec![],
                Some(MessageError::Frame(FrameError::MaskedServerFrame))
            )
        );
    }

    #[test]
    fn server_role_rejects_unmasked_frames() {
        let stream = frame(true, OpCode::Text, None, b"Hello");
        let outcome = decode_every_way(&stream, Role::Server, LIMITS);
        assert_eq!(
            outcome,
            (
                vec![],
                Some(MessageError::Frame(FrameError::UnmaskedClientFrame))
            )
        );
    }

    #[test]
    fn stays_failed_after_an_error() {
        let mut decoder = MessageDecoder::new(Role::Server, LIMITS);
        let mut bad = [0x91, 0x80, 0, 0, 0, 0];
        let error = MessageError::Frame(FrameError::ReservedBits);
        assert_eq!(decoder.step(&mut bad), Err(error));
        assert_eq!(error.close_code(), CloseCode::PROTOCOL_ERROR);
        let mut good = client(true, OpCode::Text, b"ok");
        assert_eq!(decoder.step(&mut good), Err(error));
        assert_eq!(decoder.step(&mut []), Err(error));
    }

    #[test]
    fn needs_more_for_partial_control_frame_and_consumes_nothing() {
        let stream = client(true, OpCode::Ping, b"12345");
        let mut decoder = MessageDecoder::new(Role::Server, LIMITS);
        for cut in 0..stream.len() {
            let mut partial = stream[..cut].to_vec();
            assert_eq!(decoder.step(&mut partial), Ok(Step::NeedMore), "cut {cut}");
        }
    }

    #[test]
    fn error_messages_say_what_the_peer_did() {
        assert_eq!(
            MessageError::NewMessageMidFragment.to_string(),
            "the peer started a new message inside a fragmented one"
        );
        assert_eq!(
            MessageError::Frame(FrameError::ReservedOpcode).to_string(),
            "the peer used a reserved opcode"
        );
    }
}
