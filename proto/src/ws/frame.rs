//! The WebSocket wire format: frame headers (§5.2), masking (§5.3), and
//! frames → messages (§5.4-§5.6). Everything about bytes on the wire lives
//! here; what an endpoint *does* about them (pongs, closing, heartbeats) is
//! [`crate::ws::session`].
//!
//! The file reads in three parts, each with its reading list: **headers**
//! ([`decode_header`], [`encode_header`], [`encode_frame`]), **masking**
//! ([`apply_mask`], and [`apply_mask_bytewise`] as the RFC writes it), and
//! **messages** ([`MessageDecoder`]).
//!
//! ## Headers
//!
//!  The WebSocket frame header: decoding what the peer sent, encoding what we send.
//!
//!  Reading list:
//!  - RFC 6455 §5.2 "Base Framing Protocol": the header diagram below, the 7/16/64-bit
//!    payload length ("the minimal number of bytes MUST be used"; the 64-bit form's
//!    "most significant bit MUST be 0"), RSV1–3 ("MUST be 0 unless an extension is
//!    negotiated"), reserved opcodes ("MUST _Fail the WebSocket Connection_").
//!  - RFC 6455 §5.1: a client masks every frame it sends, a server none; either side
//!    fails the connection on the wrong kind.
//!  - RFC 6455 §5.5: control frames carry at most 125 payload bytes and are never
//!    fragmented.
//!  - RFC 6455 §5.7: the example frames used in the tests.
//!  - RFC 6455 §10.4: limits on frame size are the implementation's to set.
//!
//!  ```text
//!   0                   1                   2                   3
//!   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//!  +-+-+-+-+-------+-+-------------+-------------------------------+
//!  |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//!  |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//!  |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//!  | |1|2|3|       |K|             |                               |
//!  +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//!  |     Extended payload length continued, if payload len == 127  |
//!  + - - - - - - - - - - - - - - - +-------------------------------+
//!  |                               |Masking-key, if MASK set to 1  |
//!  +-------------------------------+-------------------------------+
//!  | Masking-key (continued)       |          Payload Data         |
//!  +-------------------------------- - - - - - - - - - - - - - - - +
//!  ```

use alloc::vec::Vec;
use core::fmt;

use super::close::{parse_close_payload, CloseCode, CloseError};
#[cfg(feature = "deflate")]
use super::deflate::{state::Receiving, Direction, InflateError, Shared};
use super::utf8::Utf8Validator;

/// The frame's opcode (§5.2); 0x3–0x7 and 0xB–0xF are reserved and refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OpCode {
    /// 0x0: the next fragment of a message (§5.4).
    Continuation = 0x0,
    /// 0x1: the first frame of a UTF-8 text message (§5.6).
    Text = 0x1,
    /// 0x2: the first frame of a binary message (§5.6).
    Binary = 0x2,
    /// 0x8: the closing handshake (§5.5.1).
    Close = 0x8,
    /// 0x9: a ping; the peer answers with a pong (§5.5.2).
    Ping = 0x9,
    /// 0xA: a pong, answering a ping or unsolicited as a heartbeat (§5.5.3).
    Pong = 0xA,
}

impl OpCode {
    /// Close, Ping and Pong are control frames: "opcodes where the most
    /// significant bit of the opcode is 1" (§5.5).
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }

    /// The opcode for a 4-bit value, or `None` for a reserved one.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0x0 => Some(Self::Continuation),
            0x1 => Some(Self::Text),
            0x2 => Some(Self::Binary),
            0x8 => Some(Self::Close),
            0x9 => Some(Self::Ping),
            0xA => Some(Self::Pong),
            _ => None,
        }
    }

    /// The opcode's name as the RFC writes it ("continuation", "text", …).
    pub fn name(self) -> &'static str {
        match self {
            Self::Continuation => "continuation",
            Self::Text => "text",
            Self::Binary => "binary",
            Self::Close => "close",
            Self::Ping => "ping",
            Self::Pong => "pong",
        }
    }
}

/// A decoded frame header (§5.2), field names as in the RFC's diagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this is the final fragment of a message.
    pub fin: bool,
    /// RSV1: with permessage-deflate negotiated, the "Per-Message Compressed"
    /// bit of a message's first frame (RFC 7692 §6); else always false.
    pub rsv1: bool,
    /// RSV2, for an extension (always false here: none defines it).
    pub rsv2: bool,
    /// RSV3, for an extension (always false here: none defines it).
    pub rsv3: bool,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, present when MASK is set (§5.3).
    pub mask: Option<[u8; 4]>,
    /// The payload length in bytes.
    pub payload_len: u64,
}

/// Which side of the connection WE are (§5.1). A `Server` decodes the frames a
/// client sends, which must be masked; a `Client` decodes unmasked server frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// We are the server: incoming frames must be masked.
    Server,
    /// We are the client: incoming frames must not be masked.
    Client,
}

/// The longest header: 2 bytes, an 8-byte extended length and a 4-byte key (§5.2).
pub const MAX_HEADER_LEN: usize = 14;

/// The largest control frame payload (§5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// RSV1 in a header's first byte (§5.2): the "Per-Message Compressed" bit
/// once permessage-deflate is negotiated (RFC 7692 §6).
pub const RSV1: u8 = 0x40;

/// Decodes a frame header from the start of `buf`, which may be partial.
///
/// `Ok(None)`: not enough bytes yet, nothing consumed; call again with more.
/// `Ok(Some((header, header_len)))`: the header, and how many bytes it took.
///
/// `rsv1_allowed`: permessage-deflate was negotiated, so RSV1 may mark the
/// first frame of a compressed data message (RFC 7692 §6).
///
/// Refuses, before anything is allocated: RSV bits no negotiated extension
/// defines, RSV1 on a control or continuation frame (RFC 7692 §6), reserved
/// opcodes, wrong masking for the role, control payload > 125 or !fin, a 64-bit
/// length with the top bit set, non-minimal length encoding (§5.2 "the minimal
/// number of bytes MUST be used"), and `payload_len > max_payload` (→
/// [`FrameError::TooBig`], 1009), which also covers every length that does not
/// fit `usize`. All but the last two are refused as soon as the byte that shows
/// them has arrived; the last two once the header is whole. Never panics.
///
/// ```
/// use pushloop_proto::ws::frame::{decode_header, FrameError, OpCode, Role};
/// // RFC 6455 §5.7: a masked text frame "Hello" from a client.
/// let frame = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
/// let (header, header_len) = decode_header(&frame, Role::Server, 1 << 20, false).unwrap().unwrap();
/// assert_eq!((header.opcode, header.payload_len, header_len), (OpCode::Text, 5, 6));
/// assert_eq!(decode_header(&frame[..3], Role::Server, 1 << 20, false), Ok(None));
/// // RFC 7692 §7.2.3.1: "Hello" compressed, RSV1 set: only with the extension.
/// let compressed = [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
/// assert!(decode_header(&compressed, Role::Client, 1024, true).unwrap().unwrap().0.rsv1);
/// assert_eq!(decode_header(&compressed, Role::Client, 1024, false), Err(FrameError::ReservedBits));
/// ```
pub fn decode_header(
    buf: &[u8],
    role: Role,
    max_payload: usize,
    rsv1_allowed: bool,
) -> Result<Option<(FrameHeader, usize)>, FrameError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let fin = first & 0x80 != 0;
    let (rsv1, rsv2, rsv3) = (first & RSV1 != 0, first & 0x20 != 0, first & 0x10 != 0);
    // §5.2: "MUST be 0 unless an extension is negotiated that defines meanings
    // for non-zero values"; permessage-deflate defines RSV1 only (RFC 7692 §6).
    if (rsv1 && !rsv1_allowed) || rsv2 || rsv3 {
        return Err(FrameError::ReservedBits);
    }
    // §5.2: "If an unknown opcode is received, the receiving endpoint MUST _Fail
    // the WebSocket Connection_."
    let opcode = OpCode::from_u8(first & 0x0F).ok_or(FrameError::ReservedOpcode)?;
    // RFC 7692 §6: "An endpoint MUST NOT set the "Per-Message Compressed" bit of
    // control frames and non-first fragments of a data message. An endpoint
    // receiving such a frame MUST _Fail the WebSocket Connection_."
    if rsv1 && opcode.is_control() {
        return Err(FrameError::CompressedControl);
    }
    if rsv1 && opcode == OpCode::Continuation {
        return Err(FrameError::CompressedContinuation);
    }
    // §5.5: "Control frames MUST NOT be fragmented."
    if opcode.is_control() && !fin {
        return Err(FrameError::FragmentedControl);
    }

    let Some(&second) = buf.get(1) else {
        return Ok(None);
    };
    let masked = second & 0x80 != 0;
    // §5.1: a server MUST close on an unmasked frame, a client on a masked one.
    match (role, masked) {
        (Role::Server, false) => return Err(FrameError::UnmaskedClientFrame),
        (Role::Client, true) => return Err(FrameError::MaskedServerFrame),
        _ => {}
    }
    let short_len = second & 0x7F;
    // §5.5: "All control frames MUST have a payload length of 125 bytes or less".
    if opcode.is_control() && usize::from(short_len) > MAX_CONTROL_PAYLOAD {
        return Err(FrameError::ControlTooLong);
    }
    // §5.2: 126 → a 16-bit length follows, 127 → a 64-bit length follows.
    let extended_len_bytes = match short_len {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    // §5.2: "the most significant bit MUST be 0": visible from the first length byte.
    if extended_len_bytes == 8 && buf.get(2).is_some_and(|&b| b & 0x80 != 0) {
        return Err(FrameError::LengthTopBitSet);
    }
    let mask_start = 2 + extended_len_bytes;
    let header_len = mask_start + if masked { 4 } else { 0 };
    let (Some(extended), Some(key)) = (buf.get(2..mask_start), buf.get(mask_start..header_len))
    else {
        return Ok(None);
    };
    let payload_len = match short_len {
        // §5.2: "the minimal number of bytes MUST be used to encode the length".
        126 => match big_endian(extended) {
            n if n < 126 => return Err(FrameError::NonMinimalLength),
            n => n,
        },
        127 => match big_endian(extended) {
            n if n <= 0xFFFF => return Err(FrameError::NonMinimalLength),
            n => n,
        },
        n => u64::from(n),
    };
    // §10.4: our limit, checked before a single payload byte is buffered. A length
    // that does not fit usize is always above a usize limit.
    if payload_len > u64::try_from(max_payload).unwrap_or(u64::MAX) {
        return Err(FrameError::TooBig);
    }
    let mask = match key {
        [a, b, c, d] => Some([*a, *b, *c, *d]),
        _ => None,
    };
    let header = FrameHeader {
        fin,
        rsv1,
        rsv2,
        rsv3,
        opcode,
        mask,
        payload_len,
    };
    Ok(Some((header, header_len)))
}

/// A network-byte-order (§5.2) unsigned integer of up to 8 bytes.
fn big_endian(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |n, &b| n << 8 | u64::from(b))
}

/// Writes a header (RSV bits clear; a compressed message sets [`RSV1`] on it
/// afterwards, RFC 7692 §6.1) into `out` and returns its length (2..=14),
/// using the shortest length encoding (§5.2).
///
/// The caller passes a frame that may be sent: a control frame (§5.5) is final
/// and carries at most 125 bytes, and `payload_len` is the length of a slice, so
/// at most `isize::MAX` and its top bit is clear. Both are checked in debug builds.
///
/// ```
/// use pushloop_proto::ws::frame::{encode_header, OpCode, MAX_HEADER_LEN};
/// let mut out = [0u8; MAX_HEADER_LEN];
/// let len = encode_header(&mut out, true, OpCode::Binary, None, 256);
/// assert_eq!(&out[..len], [0x82, 0x7E, 0x01, 0x00]); // RFC 6455 §5.7
/// ```
pub fn encode_header(
    out: &mut [u8; MAX_HEADER_LEN],
    fin: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    payload_len: usize,
) -> usize {
    debug_assert!(
        !opcode.is_control() || (fin && payload_len <= MAX_CONTROL_PAYLOAD),
        "a {} frame must be final and at most 125 bytes",
        opcode.name()
    );
    debug_assert!(payload_len <= isize::MAX as usize, "no slice is that long");
    out[0] = if fin { 0x80 } else { 0 } | opcode as u8;
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    // §5.2: the minimal number of bytes for the length.
    let mut len = match u16::try_from(payload_len) {
        Ok(short) if short <= 125 => {
            out[1] = mask_bit | short as u8;
            2
        }
        Ok(medium) => {
            out[1] = mask_bit | 126;
            out[2..4].copy_from_slice(&medium.to_be_bytes());
            4
        }
        Err(_) => {
            out[1] = mask_bit | 127;
            out[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
            10
        }
    };
    if let Some(key) = mask {
        out[len..len + 4].copy_from_slice(&key);
        len += 4;
    }
    len
}

/// Appends a whole frame to `out`: the header from [`encode_header`], then the
/// payload, masked with `mask` if it is `Some` (§5.3; a client must mask).
///
/// ```
/// use pushloop_proto::ws::frame::{encode_frame, OpCode};
/// let mut out = Vec::new();
/// encode_frame(&mut out, true, OpCode::Text, None, b"Hello");
/// assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]); // RFC 6455 §5.7
/// ```
pub fn encode_frame(
    out: &mut Vec<u8>,
    fin: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    payload: &[u8],
) {
    let mut header = [0u8; MAX_HEADER_LEN];
    let header_len = encode_header(&mut header, fin, opcode, mask, payload.len());
    out.reserve(header_len + payload.len());
    out.extend_from_slice(&header[..header_len]);
    let payload_start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[payload_start..], key, 0);
    }
}

/// A frame header that breaks §5.2 / §5.5, or a frame over our size limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The peer set RSV1, RSV2 or RSV3, and no negotiated extension defines it
    /// (§5.2).
    ReservedBits,
    /// The peer set RSV1 ("Per-Message Compressed") on a control frame (RFC
    /// 7692 §6).
    CompressedControl,
    /// The peer set RSV1 ("Per-Message Compressed") on a continuation frame:
    /// only a message's first frame carries it (RFC 7692 §6).
    CompressedContinuation,
    /// The peer used a reserved opcode, 0x3–0x7 or 0xB–0xF (§5.2).
    ReservedOpcode,
    /// A client sent an unmasked frame (§5.1).
    UnmaskedClientFrame,
    /// A server sent a masked frame (§5.1).
    MaskedServerFrame,
    /// The peer sent a control frame with more than 125 payload bytes (§5.5).
    ControlTooLong,
    /// The peer sent a control frame without FIN (§5.5).
    FragmentedControl,
    /// The peer sent a 64-bit length with its most significant bit set (§5.2).
    LengthTopBitSet,
    /// The peer encoded the length in more bytes than needed (§5.2).
    NonMinimalLength,
    /// The peer declared a payload longer than our frame limit (§10.4).
    TooBig,
}

impl FrameError {
    /// The code we close with (§7.4.1): 1009 for a frame over the limit, else 1002.
    pub fn close_code(self) -> CloseCode {
        match self {
            Self::TooBig => CloseCode::MESSAGE_TOO_BIG,
            Self::ReservedBits
            | Self::CompressedControl
            | Self::CompressedContinuation
            | Self::ReservedOpcode
            | Self::UnmaskedClientFrame
            | Self::MaskedServerFrame
            | Self::ControlTooLong
            | Self::FragmentedControl
            | Self::LengthTopBitSet
            | Self::NonMinimalLength => CloseCode::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ReservedBits => "the peer set a reserved bit (RSV1-3) without an extension",
            Self::CompressedControl => "the peer set RSV1 (compressed) on a control frame",
            Self::CompressedContinuation => {
                "the peer set RSV1 (compressed) on a continuation frame"
            }
            Self::ReservedOpcode => "the peer used a reserved opcode",
            Self::UnmaskedClientFrame => "the client sent an unmasked frame",
            Self::MaskedServerFrame => "the server sent a masked frame",
            Self::ControlTooLong => "the peer sent a control frame over 125 bytes",
            Self::FragmentedControl => "the peer sent a fragmented control frame",
            Self::LengthTopBitSet => "the peer sent a 64-bit length with the top bit set",
            Self::NonMinimalLength => "the peer encoded a length in more bytes than needed",
            Self::TooBig => "the peer declared a frame over the size limit",
        })
    }
}

impl core::error::Error for FrameError {}

// ---- Masking (RFC 6455 §5.3) -----------------------------------------------
//
//  Payload masking, RFC 6455 §5.3.
//
//  Reading list:
//  - RFC 6455 §5.3 "Client-to-Server Masking": the transform
//    `transformed-octet-i = original-octet-i XOR masking-key-octet-j`, `j = i MOD 4`.
//    Masking and unmasking are the same operation.
//  - RFC 6455 §10.3 for why clients mask at all (cache poisoning of intermediaries).
//
//  Two versions live here: [`apply_mask_bytewise`] is the transform exactly as the
//  RFC writes it, and [`apply_mask`] is the one the server uses. The fast one XORs
//  eight bytes at a time with the key repeated twice in a `u64`; the compiler turns
//  that loop into SIMD. The tests check the two against each other over lengths,
//  buffer alignments and key offsets.

/// XORs `buf` in place with `key`, where `buf[0]` is payload byte number `offset`
/// (so unmasking can resume in the middle of a payload that arrives in pieces).
///
/// Word-at-a-time: the same result as [`apply_mask_bytewise`] for every input,
/// without `unsafe`. Never panics.
///
/// ```
/// use pushloop_proto::ws::frame::apply_mask;
/// // RFC 6455 §5.7: "Hello" masked with the key 37 fa 21 3d.
/// let mut payload = *b"Hello";
/// apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
/// assert_eq!(payload, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
/// // Unmasking resumes mid-payload: the second half starts at payload byte 2.
/// let (first, second) = payload.split_at_mut(2);
/// apply_mask(first, [0x37, 0xfa, 0x21, 0x3d], 0);
/// apply_mask(second, [0x37, 0xfa, 0x21, 0x3d], 2);
/// assert_eq!(&payload, b"Hello");
/// ```
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    // RFC 6455 §5.3: byte i uses key octet (i MOD 4). Rotating the key by the
    // offset makes buf[0] line up with key octet 0 of the rotated key.
    let key = rotated(key, offset);
    let [k0, k1, k2, k3] = key;
    let key_word = u64::from_ne_bytes([k0, k1, k2, k3, k0, k1, k2, k3]);
    let mut words = buf.chunks_exact_mut(8);
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        word.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ key_word).to_ne_bytes());
    }
    // Each word is 8 bytes, a multiple of 4, so the tail starts at key octet 0 again.
    for (byte, k) in words.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}

/// The reference: RFC 6455 §5.3 one byte at a time, `buf[i] ^= key[(offset + i) % 4]`.
/// [`apply_mask`] must agree with it on every input.
pub fn apply_mask_bytewise(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (byte, k) in buf.iter_mut().zip(key.iter().cycle().skip(offset % 4)) {
        *byte ^= k;
    }
}

/// The key as seen from payload byte `offset`: `rotated(key, 1) == [k1, k2, k3, k0]`.
///
/// One 32-bit rotation: read little-endian, key octet 0 is the low byte, so
/// turning right by 8 bits moves octet 1 into its place. `<[u8]>::rotate_left`
/// with a count known only at run time calls out to `memmove` through a stack
/// buffer, which gave every `apply_mask` a 264-byte stack frame and six saved
/// registers, even at offset 0; now it is inlined whole (callgrind, 20 B echo:
/// 13 instructions fewer per message, 1 276 → 1 263).
fn rotated(key: [u8; 4], offset: usize) -> [u8; 4] {
    // `offset % 4` is below 4, so the shift is 0, 8, 16 or 24.
    let shift = 8 * (offset % 4) as u32;
    u32::from_le_bytes(key).rotate_right(shift).to_le_bytes()
}

// ---- Messages (RFC 6455 §5.4-§5.6) -----------------------------------------
//
//  From frames to messages: one receiver per connection.
//
//  Reading list:
//  - RFC 6455 §5.4 "Fragmentation": a message is one frame with FIN, or a Text/Binary
//    frame without FIN, Continuation frames, and a final Continuation with FIN.
//    "Control frames MAY be injected in the middle of a fragmented message."
//  - RFC 6455 §5.5 "Control Frames": Close (§5.5.1), Ping (§5.5.2), Pong (§5.5.3).
//  - RFC 6455 §5.6 "Data Frames": Text is UTF-8, Binary is anything.
//  - RFC 6455 §8.1: invalid UTF-8 fails the connection (1007).
//  - RFC 6455 §7.4.1: the close code each failure answers with.
//  - RFC 6455 §10.4: "implementations will likely want to impose
//    implementation-specific limits on frame size and total message size".
//  - RFC 7692 §6 (with permessage-deflate negotiated, RSV1 on a message's first
//    frame says it is compressed), §6.2 (gather the payloads, then inflate the
//    whole), §7.2.2 (the transform, in `ws::deflate`).
//
//  [`MessageDecoder`] is sans-IO: the caller reads bytes from its socket, hands
//  them to [`MessageDecoder::step`] and gets back messages that borrow either those
//  bytes (the fast path, no copy) or the decoder's own message buffer. A
//  compressed message is inflated into that buffer when its last frame is in,
//  before it is handed out, so it lives with the receiving half as any other.

/// When a message delivered from the decoder's buffer is done with, a buffer
/// larger than this is freed rather than kept for the next message, so an idle
/// connection holds (almost) no heap. Small messages that arrive whole never
/// touch the buffer at all.
pub const RETAINED_BUFFER_BYTES: usize = 512;

/// How much of a frame's declared payload is reserved before it arrives. The
/// rest grows (by doubling, capped at the message limit) as bytes come in.
pub const RESERVE_AHEAD_BYTES: usize = 64 * 1024;

/// Bytes a compressed message may carry beyond its inflated limit, besides
/// 1 per KiB: DEFLATE keeps data it cannot shrink in stored blocks with a
/// 5-byte header (RFC 1951 §3.2.4), and encoders cut blocks of 16 K symbols
/// or more (zlib), so an incompressible message grows by well under 1 per
/// KiB; this covers the first block, a final empty one, and a short message.
pub const DEFLATE_SLACK_BYTES: usize = 64;

/// The most payload bytes a compressed message (or frame) whose inflated size
/// is limited to `limit` may carry on the wire: `limit` plus 1 per KiB plus
/// [`DEFLATE_SLACK_BYTES`], so that a message at the limit that did not
/// compress still fits, and the bytes gathered before inflating stay bounded
/// (RFC 6455 §10.4). The inflated size is held to `limit` itself.
pub fn compressed_limit(limit: usize) -> usize {
    limit
        .saturating_add(limit / 1024)
        .saturating_add(DEFLATE_SLACK_BYTES)
}

/// The receiver's limits (RFC 6455 §10.4), each checked against declared lengths
/// before any buffer grows. Every one crossed closes the connection with 1009.
///
/// With permessage-deflate the byte limits count *inflated* bytes: a
/// compressed message may carry up to [`compressed_limit`] bytes on the wire,
/// and inflating it stops as soon as it passes `max_message_bytes` (or
/// `max_frame_bytes`, when it came in one frame).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageLimits {
    /// Payload bytes in one frame (control frames included).
    pub max_frame_bytes: usize,
    /// Payload bytes in one message, all its fragments together. Also the most
    /// the message buffer ever holds (a compressed message: the most it holds
    /// inflated; gathered, [`compressed_limit`] of it).
    pub max_message_bytes: usize,
    /// Frames in one fragmented message. Stops a flood of empty fragments, which
    /// would never reach the size limit.
    pub max_fragments: usize,
}

/// A message, or a control frame, from the peer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
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
        message: Decoded<'a>,
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
    /// The message is compressed (RSV1 on its first frame, RFC 7692 §6): its
    /// text is checked once inflated, not as it arrives.
    compressed: bool,
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
    /// RSV1 was set on its first frame (RFC 7692 §6).
    compressed: bool,
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
        message: Decoded<'i>,
        used: usize,
    },
    /// A message completed in the decoder's buffer.
    InBuffer {
        kind: DataKind,
        used: usize,
    },
    /// A compressed message is complete: its payload is the whole frame in
    /// `input` (`Some`), or the decoder's buffer (`None`). Inflate it.
    Compressed {
        kind: DataKind,
        payload: Option<&'i [u8]>,
        /// It came in one frame: `max_frame_bytes` bounds it too.
        one_frame: bool,
        used: usize,
    },
}

/// What a step observed besides its result, for a protocol trace
/// (`pushloop --trace`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// The header of the frame this step started on, with its length in
    /// bytes; once per frame.
    pub header: Option<(FrameHeader, usize)>,
    /// The message delivered was compressed (RFC 7692 §6): its payload bytes
    /// as received and once inflated.
    pub inflated: Option<(usize, usize)>,
}

/// What a step may borrow to inflate a message: the caller's shared state,
/// for a peer that keeps no context (RFC 7692 §7.1.1).
#[cfg(feature = "deflate")]
type Lent<'l> = Option<&'l mut Shared>;
/// Without permessage-deflate nothing is ever inflated.
#[cfg(not(feature = "deflate"))]
type Lent<'l> = core::marker::PhantomData<&'l ()>;

/// Per-connection receiver: frames → messages (RFC 6455 §5.4–§5.6). Sans-IO; no
/// clock, no socket.
///
/// Drive it with the bytes read so far: call [`step`](Self::step) on the
/// unconsumed bytes, drop `used` bytes from the front, and go on until
/// [`Step::NeedMore`]. Keep what is left (at most
/// [`MAX_HEADER_LEN`] + 125 bytes: a partial header or
/// control frame) and put the next read after it. Calling again after a
/// [`Step::Message`] is also what lets the decoder free its message buffer.
///
/// ```
/// use pushloop_proto::ws::frame::{encode_frame, OpCode, Role};
/// use pushloop_proto::ws::frame::{Decoded, MessageDecoder, MessageLimits, Step};
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
    /// permessage-deflate, when negotiated: RSV1 then marks a compressed
    /// message (RFC 7692 §6), and this inflates it.
    #[cfg(feature = "deflate")]
    inflate: Option<Receiving>,
}

impl MessageDecoder {
    /// A receiver for one connection, where we play `role`, without
    /// permessage-deflate: RSV1 fails the connection (§5.2).
    pub fn new(role: Role, limits: MessageLimits) -> Self {
        Self {
            role,
            limits,
            phase: Phase::Header,
            message: None,
            buffer: Vec::new(),
            utf8: Utf8Validator::new(),
            observed: None,
            #[cfg(feature = "deflate")]
            inflate: None,
        }
    }

    /// A receiver for a connection with permessage-deflate negotiated, whose
    /// peer compresses as `direction` says (`agreed.receiving(role)`, RFC 7692
    /// §7.1), with an inflater of its own made on the first compressed
    /// message. (A [`crate::ws::session::Session`] makes its decoder with
    /// [`crate::ws::session::Session::with_deflate`] instead, which borrows a
    /// shared inflater where the peer keeps no context.)
    ///
    /// ```
    /// use pushloop_proto::ws::deflate::Direction;
    /// use pushloop_proto::ws::frame::{Decoded, MessageDecoder, MessageLimits, Role, Step};
    /// let limits = MessageLimits { max_frame_bytes: 1024, max_message_bytes: 1024, max_fragments: 4 };
    /// let peer = Direction { window_bits: 15, context_takeover: false };
    /// let mut decoder = MessageDecoder::inflating(Role::Client, limits, peer);
    /// // RFC 7692 §7.2.3.1: "Hello" compressed, RSV1 set.
    /// let mut frame = [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    /// let step = decoder.step(&mut frame).unwrap();
    /// assert_eq!(step, Step::Message { message: Decoded::Text("Hello"), used: 9 });
    /// ```
    #[cfg(feature = "deflate")]
    pub fn inflating(role: Role, limits: MessageLimits, direction: Direction) -> Self {
        Self::receiving(
            role,
            limits,
            Receiving::Own {
                direction,
                inflater: None,
            },
        )
    }

    /// A receiver for a negotiated connection, its inflater where `receiving`
    /// says.
    #[cfg(feature = "deflate")]
    pub(crate) fn receiving(role: Role, limits: MessageLimits, receiving: Receiving) -> Self {
        Self {
            inflate: Some(receiving),
            ..Self::new(role, limits)
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
    ///   same error. After a [`Decoded::Close`], all further input is consumed and
    ///   ignored (§5.5.1: the peer sends nothing after its Close; we answer with
    ///   ours and close TCP, §7.1.1).
    pub fn step<'a>(&'a mut self, input: &'a mut [u8]) -> Result<Step<'a>, MessageError> {
        self.step_observed(input, &mut Observed::default())
    }

    /// [`step`](Self::step), also handing out the header of the frame this step
    /// started on (with its length in bytes), once per frame, and the sizes of
    /// a compressed message: a protocol trace (`pushloop --trace`) prints them.
    pub fn step_observed<'a>(
        &'a mut self,
        input: &'a mut [u8],
        observed: &mut Observed,
    ) -> Result<Step<'a>, MessageError> {
        self.step_lent(input, observed, Lent::default())
    }

    /// [`step_observed`](Self::step_observed), inflating with `shared` where
    /// the peer keeps no context (what a session does).
    #[cfg(feature = "deflate")]
    pub(crate) fn step_inflating<'a>(
        &'a mut self,
        input: &'a mut [u8],
        observed: &mut Observed,
        shared: &mut Shared,
    ) -> Result<Step<'a>, MessageError> {
        self.step_lent(input, observed, Some(shared))
    }

    fn step_lent<'a>(
        &'a mut self,
        input: &'a mut [u8],
        observed: &mut Observed,
        lent: Lent<'_>,
    ) -> Result<Step<'a>, MessageError> {
        let found = self.advance(input);
        *observed = Observed {
            header: self.observed.take(),
            inflated: None,
        };
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
                observed.header = None;
                return Ok(Step::NeedMore);
            }
            Found::Progress { used } => return Ok(Step::Progress { used }),
            Found::InInput { message, used } => return Ok(Step::Message { message, used }),
            Found::InBuffer { kind, used } => (kind, used),
            Found::Compressed {
                kind,
                payload,
                one_frame,
                used,
            } => {
                let received = payload.map_or(self.buffer.len(), <[u8]>::len);
                // §8.1: compressed text is checked once inflated, here, where
                // a failure can still free the buffer.
                let inflated = self.inflate(payload, one_frame, lent).and_then(|()| {
                    match kind == DataKind::Text && core::str::from_utf8(&self.buffer).is_err() {
                        true => Err(MessageError::InvalidUtf8),
                        false => Ok(()),
                    }
                });
                if let Err(error) = inflated {
                    self.fail(error);
                    return Err(error);
                }
                self.phase = Phase::Delivered;
                observed.inflated = Some((received, self.buffer.len()));
                (kind, used)
            }
        };
        let message = match kind {
            DataKind::Binary => Decoded::Binary(&self.buffer),
            // The text was checked as it arrived (§8.1); checking again is what
            // lends it out as `&str` without unsafe.
            DataKind::Text => match core::str::from_utf8(&self.buffer) {
                Ok(text) => Decoded::Text(text),
                Err(_) => {
                    self.phase = Phase::Failed(MessageError::InvalidUtf8);
                    return Err(MessageError::InvalidUtf8);
                }
            },
        };
        Ok(Step::Message { message, used })
    }

    /// The message the last step handed out is done with: empty the buffer
    /// now (freeing it if larger than [`RETAINED_BUFFER_BYTES`]) rather than
    /// at the next step, so that a connection that goes quiet after a message
    /// gathered or inflated in the buffer holds none. Call it after a batch of
    /// input.
    pub fn release(&mut self) {
        if self.phase == Phase::Delivered {
            self.release_buffer();
            self.phase = Phase::Header;
        }
    }

    /// Between messages and holding nothing that a decoder made afresh the
    /// same way would not: no frame or message under way, no buffer, no
    /// inflater context of its own, not closed or failed. A server may then
    /// drop it and make it again when input comes
    /// ([`crate::ws::session::Session::fresh_decoder`]): an idle socket then
    /// keeps no decoder at all.
    pub fn is_fresh(&self) -> bool {
        #[cfg(feature = "deflate")]
        let inflater_fresh = match &self.inflate {
            None | Some(Receiving::Shared) => true,
            Some(Receiving::Own { inflater, .. }) => inflater.is_none(),
        };
        #[cfg(not(feature = "deflate"))]
        let inflater_fresh = true;
        self.phase == Phase::Header
            && self.message.is_none()
            && self.buffer.capacity() == 0
            && self.observed.is_none()
            && inflater_fresh
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

    /// permessage-deflate is negotiated: RSV1 marks a compressed message.
    fn rsv1_allowed(&self) -> bool {
        #[cfg(feature = "deflate")]
        return self.inflate.is_some();
        #[cfg(not(feature = "deflate"))]
        false
    }

    /// Inflates the message just completed (in `payload`, or gathered in the
    /// buffer) into the buffer (RFC 7692 §6.2, §7.2.2), at most the limit
    /// that applies: `max_message_bytes`, and `max_frame_bytes` too for a
    /// message in one frame.
    #[cfg(feature = "deflate")]
    fn inflate(
        &mut self,
        payload: Option<&[u8]>,
        one_frame: bool,
        lent: Lent<'_>,
    ) -> Result<(), MessageError> {
        let limit = match one_frame {
            true => self
                .limits
                .max_frame_bytes
                .min(self.limits.max_message_bytes),
            false => self.limits.max_message_bytes,
        };
        let Self {
            inflate, buffer, ..
        } = self;
        // RSV1 got through decode_header only with an inflater (§5.2).
        let receiving = inflate
            .as_mut()
            .ok_or(MessageError::Frame(FrameError::ReservedBits))?;
        let inflated = match payload {
            Some(payload) => {
                buffer.clear();
                receiving.inflate(lent, payload, limit, buffer)
            }
            None => {
                let compressed = core::mem::take(buffer);
                receiving.inflate(lent, &compressed, limit, buffer)
            }
        };
        inflated.map_err(|error| match error {
            // RFC 6455 §7.4.1: 1009, a message too big to process.
            InflateError::TooBig => MessageError::InflatesTooBig,
            // RFC 6455 §7.4.1: 1007, data inconsistent with the message's type.
            InflateError::Corrupt => MessageError::BadCompressedData,
        })
    }

    /// Without permessage-deflate no message is ever compressed: RSV1 never
    /// gets past [`decode_header`] (§5.2).
    #[cfg(not(feature = "deflate"))]
    fn inflate(&mut self, _: Option<&[u8]>, _: bool, _: Lent<'_>) -> Result<(), MessageError> {
        Err(MessageError::Frame(FrameError::ReservedBits))
    }

    /// Reads the frame header at the start of `input` and whatever of the frame
    /// follows it.
    fn next_frame<'i>(&mut self, input: &'i mut [u8]) -> Result<Found<'i>, MessageError> {
        let rsv1_allowed = self.rsv1_allowed();
        // A compressed frame may be a little longer than it inflates to; the
        // exact limit for an uncompressed one is checked below.
        let on_the_wire = match rsv1_allowed {
            true => compressed_limit(self.limits.max_frame_bytes),
            false => self.limits.max_frame_bytes,
        };
        let decoded = decode_header(input, self.role, on_the_wire, rsv1_allowed);
        let Some((header, header_len)) = decoded.map_err(MessageError::Frame)? else {
            return Ok(Found::NeedMore);
        };
        self.observed = Some((header, header_len));
        // decode_header refused every length above max_frame_bytes, a usize.
        let payload_len = usize::try_from(header.payload_len)
            .map_err(|_| MessageError::Frame(FrameError::TooBig))?;
        let frame_len = header_len.saturating_add(payload_len);
        let whole_frame_here = frame_len <= input.len();
        let (kind, compressed) = match header.opcode {
            // §5.5: control frames are at most 125 bytes and never fragmented, so
            // wait for the whole frame and deliver it from the input. §5.4: they
            // may come between the frames of a fragmented message.
            OpCode::Ping | OpCode::Pong | OpCode::Close => {
                // Never compressed (RFC 7692 §6): the exact frame limit.
                if payload_len > self.limits.max_frame_bytes {
                    return Err(MessageError::Frame(FrameError::TooBig));
                }
                if !whole_frame_here {
                    return Ok(Found::NeedMore);
                }
                let payload = input.get_mut(header_len..frame_len).unwrap_or_default();
                unmask(payload, header.mask, 0);
                let message = match header.opcode {
                    OpCode::Ping => Decoded::Ping(payload),
                    OpCode::Pong => Decoded::Pong(payload),
                    _ => {
                        let close = parse_close_payload(payload).map_err(MessageError::Close)?;
                        // §5.5.1: the peer sends nothing after its Close. A message
                        // it left unfinished never will be.
                        self.phase = Phase::Closed;
                        self.message = None;
                        self.buffer = Vec::new();
                        Decoded::Close(close)
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
                // RFC 7692 §6: a continuation of a compressed message is
                // compressed too, though its RSV1 is clear.
                let (kind, compressed) = (message.kind, message.compressed);
                self.check_sizes(payload_len, compressed)?;
                (kind, compressed)
            }
            OpCode::Text | OpCode::Binary => {
                // §5.4: "the fragments of one message MUST NOT be interleaved
                // between the fragments of another".
                if self.message.is_some() {
                    return Err(MessageError::NewMessageMidFragment);
                }
                // RFC 7692 §6: RSV1 on the first frame: a compressed message.
                let compressed = header.rsv1;
                self.check_sizes(payload_len, compressed)?;
                let kind = if header.opcode == OpCode::Text {
                    DataKind::Text
                } else {
                    DataKind::Binary
                };
                // The fast path: a whole message in one frame, all in the input.
                if header.fin && whole_frame_here {
                    let payload = input.get_mut(header_len..frame_len).unwrap_or_default();
                    unmask(payload, header.mask, 0);
                    if compressed {
                        return Ok(Found::Compressed {
                            kind,
                            payload: Some(payload),
                            one_frame: true,
                            used: frame_len,
                        });
                    }
                    let message = match kind {
                        DataKind::Binary => Decoded::Binary(payload),
                        // §8.1: text must be UTF-8.
                        DataKind::Text => Decoded::Text(
                            core::str::from_utf8(payload).map_err(|_| MessageError::InvalidUtf8)?,
                        ),
                    };
                    return Ok(Found::InInput {
                        message,
                        used: frame_len,
                    });
                }
                self.message = Some(MessageInProgress {
                    kind,
                    frames: 1,
                    compressed,
                });
                self.utf8.reset();
                (kind, compressed)
            }
        };
        // Memory follows the bytes that arrive, not the length a peer declares:
        // a peer that announces a huge frame and then trickles it pins only
        // what it has actually sent (plus at most RESERVE_AHEAD_BYTES).
        self.reserve(payload_len.min(RESERVE_AHEAD_BYTES), compressed)?;
        let payload = PayloadInProgress {
            kind,
            compressed,
            fin: header.fin,
            remaining: payload_len,
            mask: header.mask,
            received: 0,
        };
        let rest = input.get_mut(header_len..).unwrap_or_default();
        self.receive_payload(payload, rest, header_len)
    }

    /// §10.4: this frame's declared payload must fit the frame limit, and the
    /// message so far plus it the message limit; for a compressed message, the
    /// [`compressed_limit`] of each. Decided before any byte of the frame is
    /// buffered.
    fn check_sizes(&self, payload_len: usize, compressed: bool) -> Result<(), MessageError> {
        let on_the_wire = |limit| match compressed {
            true => compressed_limit(limit),
            false => limit,
        };
        if payload_len > on_the_wire(self.limits.max_frame_bytes) {
            return Err(MessageError::Frame(FrameError::TooBig));
        }
        let total = self.buffer.len().checked_add(payload_len);
        match total {
            Some(total) if total <= on_the_wire(self.limits.max_message_bytes) => Ok(()),
            _ => Err(MessageError::TooBig),
        }
    }

    /// Makes room for `payload_len` more bytes: doubling, so that many small
    /// fragments do not copy the message over and over, but never past the
    /// message limit, or the [`compressed_limit`] of a compressed message
    /// (which the caller has checked the total against).
    fn reserve(&mut self, payload_len: usize, compressed: bool) -> Result<(), MessageError> {
        let needed = self.buffer.len().saturating_add(payload_len);
        if needed <= self.buffer.capacity() {
            return Ok(());
        }
        let most = match compressed {
            true => compressed_limit(self.limits.max_message_bytes),
            false => self.limits.max_message_bytes,
        };
        let target = needed
            .max(self.buffer.capacity().saturating_mul(2))
            .min(most)
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
        // Compressed text is checked once inflated.
        if payload.kind == DataKind::Text && !payload.compressed {
            self.utf8
                .feed(chunk)
                .map_err(|_| MessageError::InvalidUtf8)?;
        }
        self.reserve(take, payload.compressed)?;
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
        let frames = self.message.take().map_or(1, |message| message.frames);
        self.phase = Phase::Delivered;
        if payload.compressed {
            // RFC 7692 §6.2: the whole message's payload is here; inflate it.
            return Ok(Found::Compressed {
                kind: payload.kind,
                payload: None,
                one_frame: frames == 1,
                used,
            });
        }
        if payload.kind == DataKind::Text {
            self.utf8.finish().map_err(|_| MessageError::InvalidUtf8)?;
        }
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
    /// The peer sent text that is not valid UTF-8 (§8.1); compressed text is
    /// checked once inflated.
    InvalidUtf8,
    /// The peer sent a Close frame with a payload that breaks §5.5.1.
    Close(CloseError),
    /// The peer sent a compressed message that inflates past our limit (RFC
    /// 7692 §6.2, §10.4); inflating stopped there.
    InflatesTooBig,
    /// The peer sent a compressed message that is not valid DEFLATE data, or
    /// that refers back past its window (RFC 7692 §7.2.2).
    BadCompressedData,
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
            Self::TooBig | Self::TooManyFragments | Self::InflatesTooBig => {
                CloseCode::MESSAGE_TOO_BIG
            }
            // §7.4.1: 1007, "data within a message that was not consistent
            // with the type of the message": RSV1 said DEFLATE, it was not.
            Self::InvalidUtf8 | Self::BadCompressedData => CloseCode::INVALID_PAYLOAD,
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
            Self::InflatesTooBig => {
                f.write_str("the peer sent a compressed message that inflates past the size limit")
            }
            Self::BadCompressedData => {
                f.write_str("the peer sent a compressed message that is not valid DEFLATE data")
            }
        }
    }
}

impl core::error::Error for MessageError {}

#[cfg(test)]
mod header_tests {
    use super::*;

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    const LIMIT: usize = 1 << 20;

    /// Decodes `frame`'s header fed whole, byte by byte, and split at every index
    /// (a prefix must be `Ok(None)` until the header is complete) and checks each
    /// way gives the same answer.
    fn decode_every_way(
        frame: &[u8],
        role: Role,
    ) -> Result<Option<(FrameHeader, usize)>, FrameError> {
        decode_every_way_with(frame, role, false)
    }

    /// [`decode_every_way`] with permessage-deflate negotiated or not.
    fn decode_every_way_with(
        frame: &[u8],
        role: Role,
        rsv1_allowed: bool,
    ) -> Result<Option<(FrameHeader, usize)>, FrameError> {
        let whole = decode_header(frame, role, LIMIT, rsv1_allowed);
        let complete_at = match whole {
            Ok(Some((_, len))) => len,
            _ => frame.len(),
        };
        for cut in 0..=frame.len() {
            let prefix = decode_header(&frame[..cut], role, LIMIT, rsv1_allowed);
            match prefix {
                Ok(None) => assert!(cut < complete_at, "{frame:x?}: no header at {cut}"),
                other if cut >= complete_at => assert_eq!(other, whole, "{frame:x?} at {cut}"),
                // An error may show before the header is complete, but it must be
                // the error the whole header gives.
                Err(e) => assert_eq!(Err(e), whole, "{frame:x?} at {cut}"),
                Ok(Some(_)) => panic!("{frame:x?}: header before {complete_at} at {cut}"),
            }
        }
        whole
    }

    fn header(fin: bool, opcode: OpCode, mask: Option<[u8; 4]>, payload_len: u64) -> FrameHeader {
        FrameHeader {
            fin,
            rsv1: false,
            rsv2: false,
            rsv3: false,
            opcode,
            mask,
            payload_len,
        }
    }

    #[test]
    fn rfc6455_5_7_unmasked_hello() {
        let frame = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let decoded = decode_every_way(&frame, Role::Client);
        assert_eq!(decoded, Ok(Some((header(true, OpCode::Text, None, 5), 2))));
    }

    #[test]
    fn rfc6455_5_7_masked_hello() {
        let frame = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let decoded = decode_every_way(&frame, Role::Server);
        assert_eq!(
            decoded,
            Ok(Some((header(true, OpCode::Text, Some(KEY), 5), 6)))
        );
    }

    #[test]
    fn rfc6455_5_7_fragmented_hello() {
        let first = [0x01, 0x03, 0x48, 0x65, 0x6c];
        let last = [0x80, 0x02, 0x6c, 0x6f];
        assert_eq!(
            decode_every_way(&first, Role::Client),
            Ok(Some((header(false, OpCode::Text, None, 3), 2)))
        );
        assert_eq!(
            decode_every_way(&last, Role::Client),
            Ok(Some((header(true, OpCode::Continuation, None, 2), 2)))
        );
    }

    #[test]
    fn rfc6455_5_7_ping_and_masked_pong() {
        let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let pong = [
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(
            decode_every_way(&ping, Role::Client),
            Ok(Some((header(true, OpCode::Ping, None, 5), 2)))
        );
        assert_eq!(
            decode_every_way(&pong, Role::Server),
            Ok(Some((header(true, OpCode::Pong, Some(KEY), 5), 6)))
        );
    }

    #[test]
    fn rfc6455_5_7_256_byte_and_64_kib_binary_headers() {
        let medium = [0x82, 0x7E, 0x01, 0x00];
        let large = [0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00];
        assert_eq!(
            decode_every_way(&medium, Role::Client),
            Ok(Some((header(true, OpCode::Binary, None, 256), 4)))
        );
        assert_eq!(
            decode_every_way(&large, Role::Client),
            Ok(Some((header(true, OpCode::Binary, None, 65536), 10)))
        );
        let mut out = [0u8; MAX_HEADER_LEN];
        let len = encode_header(&mut out, true, OpCode::Binary, None, 256);
        assert_eq!(&out[..len], medium);
        let len = encode_header(&mut out, true, OpCode::Binary, None, 65536);
        assert_eq!(&out[..len], large);
    }

    #[test]
    fn needs_more_on_empty_input() {
        assert_eq!(decode_header(&[], Role::Server, LIMIT, false), Ok(None));
    }

    #[test]
    fn rejects_reserved_bits_from_the_first_byte() {
        for first in [0xC1, 0xA1, 0x91, 0xF1] {
            assert_eq!(
                decode_every_way(&[first, 0x80, 1, 2, 3, 4], Role::Server),
                Err(FrameError::ReservedBits)
            );
            assert_eq!(
                decode_header(&[first], Role::Server, LIMIT, false),
                Err(FrameError::ReservedBits)
            );
        }
    }

    #[test]
    fn rfc7692_7_2_3_1_compressed_hello_has_rsv1_with_the_extension() {
        // RFC 7692 §7.2.3.1: "Hello" compressed, in one unmasked frame.
        let frame = [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let (header, header_len) = decode_every_way_with(&frame, Role::Client, true)
            .unwrap()
            .unwrap();
        assert!(header.rsv1 && header.fin && !header.rsv2 && !header.rsv3);
        assert_eq!(
            (header.opcode, header.payload_len, header_len),
            (OpCode::Text, 7, 2)
        );
        // Without the extension RSV1 means nothing: §5.2 fails the connection.
        assert_eq!(
            decode_every_way(&frame, Role::Client),
            Err(FrameError::ReservedBits)
        );
    }

    #[test]
    fn rejects_rsv2_and_rsv3_even_with_the_extension() {
        for first in [0xA1, 0x91, 0xE1, 0xF1] {
            assert_eq!(
                decode_every_way_with(&[first, 0x80, 1, 2, 3, 4], Role::Server, true),
                Err(FrameError::ReservedBits)
            );
        }
    }

    #[test]
    fn rejects_rsv1_on_a_control_frame_from_the_first_byte() {
        // RFC 7692 §6: control frames are never compressed.
        for opcode in [0x8, 0x9, 0xA] {
            let first = 0x80 | RSV1 | opcode;
            assert_eq!(
                decode_every_way_with(&[first, 0x80, 1, 2, 3, 4], Role::Server, true),
                Err(FrameError::CompressedControl)
            );
            assert_eq!(
                decode_header(&[first], Role::Server, LIMIT, true),
                Err(FrameError::CompressedControl)
            );
            assert_eq!(FrameError::CompressedControl.close_code().0, 1002);
        }
    }

    #[test]
    fn rejects_rsv1_on_a_continuation_frame_from_the_first_byte() {
        // RFC 7692 §6: only the first frame of a message carries RSV1.
        for first in [RSV1, 0x80 | RSV1] {
            assert_eq!(
                decode_every_way_with(&[first, 0x80, 1, 2, 3, 4], Role::Server, true),
                Err(FrameError::CompressedContinuation)
            );
        }
        assert_eq!(FrameError::CompressedContinuation.close_code().0, 1002);
    }

    #[test]
    fn rejects_reserved_opcodes() {
        for opcode in [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(OpCode::from_u8(opcode), None);
            let frame = [0x80 | opcode, 0x80, 1, 2, 3, 4];
            assert_eq!(
                decode_every_way(&frame, Role::Server),
                Err(FrameError::ReservedOpcode)
            );
        }
    }

    #[test]
    fn rejects_unmasked_client_frame() {
        let frame = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(
            decode_every_way(&frame, Role::Server),
            Err(FrameError::UnmaskedClientFrame)
        );
    }

    #[test]
    fn rejects_masked_server_frame() {
        let frame = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d];
        assert_eq!(
            decode_every_way(&frame, Role::Client),
            Err(FrameError::MaskedServerFrame)
        );
    }

    #[test]
    fn rejects_control_frame_over_125_bytes() {
        for opcode in [0x88, 0x89, 0x8A] {
            assert_eq!(
                decode_every_way(&[opcode, 0xFE, 0, 126], Role::Server),
                Err(FrameError::ControlTooLong)
            );
            assert_eq!(
                decode_every_way(&[opcode, 0x7F], Role::Client),
                Err(FrameError::ControlTooLong)
            );
            let at_limit = decode_header(&[opcode, 0xFD, 1, 2, 3, 4], Role::Server, LIMIT, false);
            assert!(matches!(at_limit, Ok(Some((h, 6))) if h.payload_len == 125));
        }
    }

    #[test]
    fn rejects_fragmented_control_frame() {
        for opcode in [0x08, 0x09, 0x0A] {
            assert_eq!(
                decode_every_way(&[opcode, 0x80, 1, 2, 3, 4], Role::Server),
                Err(FrameError::FragmentedControl)
            );
        }
    }

    #[test]
    fn rejects_64_bit_length_with_top_bit_set() {
        let frame = [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        assert_eq!(
            decode_every_way(&frame, Role::Server),
            Err(FrameError::LengthTopBitSet)
        );
        assert_eq!(
            decode_header(&frame[..3], Role::Server, usize::MAX, false),
            Err(FrameError::LengthTopBitSet)
        );
    }

    #[test]
    fn rejects_non_minimal_lengths() {
        // 125 in the 16-bit form, 65535 in the 64-bit form.
        let medium = [0x82, 0x7E, 0x00, 0x7D];
        let large = [0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF];
        assert_eq!(
            decode_every_way(&medium, Role::Client),
            Err(FrameError::NonMinimalLength)
        );
        assert_eq!(
            decode_every_way(&large, Role::Client),
            Err(FrameError::NonMinimalLength)
        );
        // The smallest lengths of each form are fine.
        assert!(matches!(
            decode_header(&[0x82, 0x7E, 0x00, 0x7E], Role::Client, LIMIT, false),
            Ok(Some(_))
        ));
        let smallest_large = [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0];
        assert!(matches!(
            decode_header(&smallest_large, Role::Client, LIMIT, false),
            Ok(Some(_))
        ));
    }

    #[test]
    fn rejects_payload_over_limit_from_header_alone() {
        let frame = [0x82, 0x7E, 0x01, 0x00];
        assert_eq!(
            decode_header(&frame, Role::Client, 255, false),
            Err(FrameError::TooBig)
        );
        assert!(matches!(
            decode_header(&frame, Role::Client, 256, false),
            Ok(Some(_))
        ));
        // The largest legal 64-bit length: above every usize limit we can have.
        let huge = [0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
        assert_eq!(
            decode_header(&huge, Role::Client, 1 << 30, false),
            Err(FrameError::TooBig)
        );
        assert_eq!(FrameError::TooBig.close_code(), CloseCode::MESSAGE_TOO_BIG);
        assert_eq!(
            FrameError::ReservedBits.close_code(),
            CloseCode::PROTOCOL_ERROR
        );
    }

    #[test]
    fn opcode_properties() {
        for v in 0..16u8 {
            if let Some(op) = OpCode::from_u8(v) {
                assert_eq!(op as u8, v);
                assert_eq!(op.is_control(), v >= 8);
            }
        }
        assert_eq!(OpCode::Pong.name(), "pong");
        assert_eq!(OpCode::Continuation.name(), "continuation");
    }

    #[test]
    fn encode_decode_round_trip_at_length_boundaries() {
        for len in [0usize, 1, 125, 126, 127, 65535, 65536, 70000] {
            for mask in [None, Some(KEY)] {
                let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let mut out = Vec::new();
                encode_frame(&mut out, true, OpCode::Binary, mask, &payload);
                let role = if mask.is_some() {
                    Role::Server
                } else {
                    Role::Client
                };
                let (decoded, header_len) =
                    decode_header(&out, role, LIMIT, false).unwrap().unwrap();
                assert_eq!(decoded, header(true, OpCode::Binary, mask, len as u64));
                let extended_len = match len {
                    0..=125 => 0,
                    126..=65535 => 2,
                    _ => 8,
                };
                let expected_len = 2 + extended_len + if mask.is_some() { 4 } else { 0 };
                assert_eq!(header_len, expected_len, "len {len}");
                assert_eq!(out.len(), header_len + len);
                let mut body = out[header_len..].to_vec();
                if let Some(key) = mask {
                    apply_mask(&mut body, key, 0);
                }
                assert_eq!(body, payload);
            }
        }
    }

    #[test]
    fn encode_header_into_poison_filled_buffer() {
        for (len, expected) in [(5usize, 2usize), (300, 4), (70000, 10)] {
            let mut out = [0xA5u8; MAX_HEADER_LEN];
            let written = encode_header(&mut out, false, OpCode::Continuation, None, len);
            assert_eq!(written, expected);
            assert!(
                out[written..].iter().all(|&b| b == 0xA5),
                "wrote past the header"
            );
            let mut out = [0xA5u8; MAX_HEADER_LEN];
            let written = encode_header(&mut out, true, OpCode::Text, Some(KEY), len);
            assert_eq!(written, expected + 4);
            assert_eq!(&out[expected..written], KEY);
            assert!(
                out[written..].iter().all(|&b| b == 0xA5),
                "wrote past the header"
            );
        }
    }

    #[test]
    fn encode_frame_appends_to_existing_bytes() {
        let mut out = vec![0xEE];
        encode_frame(&mut out, true, OpCode::Pong, Some(KEY), b"Hello");
        assert_eq!(
            out,
            [0xEE, 0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
    }

    #[test]
    fn pseudo_random_headers_round_trip() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let opcodes = [
            OpCode::Continuation,
            OpCode::Text,
            OpCode::Binary,
            OpCode::Close,
            OpCode::Ping,
            OpCode::Pong,
        ];
        for _ in 0..10_000 {
            let r = next();
            let opcode = opcodes[(r % 6) as usize];
            let fin = opcode.is_control() || r & 0x100 != 0;
            let len = match (opcode.is_control(), (r >> 9) % 4) {
                (true, _) => (r >> 12) as usize % 126,
                (false, 0) => (r >> 12) as usize % 126,
                (false, 1) => 126 + (r >> 12) as usize % (65536 - 126),
                (false, _) => 65536 + ((r >> 12) % (1 << 40)) as usize,
            };
            let mask = (r & 0x200 != 0).then(|| (next() as u32).to_be_bytes());
            let role = if mask.is_some() {
                Role::Server
            } else {
                Role::Client
            };
            let mut out = [0u8; MAX_HEADER_LEN];
            let written = encode_header(&mut out, fin, opcode, mask, len);
            let decoded = decode_header(&out[..written], role, usize::MAX, false);
            assert_eq!(
                decoded,
                Ok(Some((header(fin, opcode, mask, len as u64), written)))
            );
            // One byte short is never enough.
            assert_eq!(
                decode_header(&out[..written - 1], role, usize::MAX, false),
                Ok(None)
            );
        }
    }

    #[test]
    fn error_messages_say_what_the_peer_did() {
        assert_eq!(
            FrameError::UnmaskedClientFrame.to_string(),
            "the client sent an unmasked frame"
        );
    }
}

#[cfg(test)]
mod mask_tests {
    use super::*;

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    #[test]
    fn rfc6455_5_7_masked_hello() {
        let mut payload = *b"Hello";
        apply_mask(&mut payload, KEY, 0);
        assert_eq!(payload, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
        apply_mask(&mut payload, KEY, 0);
        assert_eq!(&payload, b"Hello");
    }

    #[test]
    fn bytewise_reference_follows_rfc_formula() {
        let mut payload = [0u8; 9];
        apply_mask_bytewise(&mut payload, KEY, 3);
        for (i, byte) in payload.iter().enumerate() {
            assert_eq!(*byte, KEY[(3 + i) % 4]);
        }
    }

    #[test]
    fn fast_mask_matches_bytewise_over_lengths_alignments_and_offsets() {
        // A backing store large enough for every (alignment, length) pair; the
        // slice start moves through all 8 alignments of a u64.
        let source: Vec<u8> = (0..100u32).map(|i| (i * 151 + 7) as u8).collect();
        for len in 0..=70 {
            for align in 0..8 {
                for offset in 0..4 {
                    for key in [KEY, [0xff, 0x00, 0xa5, 0x5a], [1, 2, 3, 4]] {
                        let mut fast = source.clone();
                        let mut slow = source.clone();
                        apply_mask(&mut fast[align..align + len], key, offset);
                        apply_mask_bytewise(&mut slow[align..align + len], key, offset);
                        assert_eq!(fast, slow, "len {len} align {align} offset {offset}");
                    }
                }
            }
        }
    }

    #[test]
    fn rotated_key_starts_at_the_octet_of_the_offset() {
        let [k0, k1, k2, k3] = KEY;
        assert_eq!(rotated(KEY, 0), [k0, k1, k2, k3]);
        assert_eq!(rotated(KEY, 1), [k1, k2, k3, k0]);
        assert_eq!(rotated(KEY, 2), [k2, k3, k0, k1]);
        assert_eq!(rotated(KEY, 7), [k3, k0, k1, k2]);
    }

    #[test]
    fn mask_resumes_at_any_split_point() {
        let original: Vec<u8> = (0..=255u8).collect();
        let mut whole = original.clone();
        apply_mask(&mut whole, KEY, 0);
        for split in 0..=original.len() {
            let mut pieces = original.clone();
            let (first, second) = pieces.split_at_mut(split);
            apply_mask(first, KEY, 0);
            apply_mask(second, KEY, split);
            assert_eq!(pieces, whole, "split at {split}");
        }
    }

    #[test]
    fn offsets_beyond_four_wrap() {
        let mut a = *b"abcdefghijk";
        let mut b = a;
        apply_mask(&mut a, KEY, 1);
        apply_mask(&mut b, KEY, 4 * 1000 + 1);
        assert_eq!(a, b);
        apply_mask(&mut a, KEY, usize::MAX);
        apply_mask_bytewise(&mut b, KEY, usize::MAX);
        assert_eq!(a, b);
    }
}

#[cfg(test)]
mod message_tests {
    use super::*;
    use crate::ws::close::encode_close_payload;

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

    fn owned(message: &Decoded<'_>) -> Owned {
        match message {
            Decoded::Text(text) => Owned::Text(text.to_string()),
            Decoded::Binary(bytes) => Owned::Binary(bytes.to_vec()),
            Decoded::Ping(bytes) => Owned::Ping(bytes.to_vec()),
            Decoded::Pong(bytes) => Owned::Pong(bytes.to_vec()),
            Decoded::Close(close) => {
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
                message: Decoded::Binary(bytes),
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
                message: Decoded::Binary(bytes),
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
                    message: Decoded::Binary(bytes),
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

#[cfg(all(test, feature = "deflate"))]
mod compressed_tests {
    //! Compressed messages (RFC 7692 §6, §7.2.2), the §7.2.3 examples first.
    use super::*;
    use crate::ws::deflate::vectors::{CONTEXT, HELLO, NO_CONTEXT};
    use crate::ws::deflate::{Deflater, Direction};

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    const LIMITS: MessageLimits = MessageLimits {
        max_frame_bytes: 64 * 1024,
        max_message_bytes: 64 * 1024,
        max_fragments: 100,
    };

    #[derive(Debug, PartialEq, Eq)]
    enum Seen {
        Text(String),
        Binary(Vec<u8>),
        Ping(Vec<u8>),
        /// A message delivered compressed: (bytes received, inflated).
        Inflated(usize, usize),
    }

    type Outcome = (Vec<Seen>, Option<MessageError>);

    /// Feeds `pieces` in turn into `decoder` as socket reads would.
    fn feed(decoder: &mut MessageDecoder, pieces: &[&[u8]]) -> Outcome {
        let mut pending = Vec::new();
        let mut seen = Vec::new();
        for piece in pieces {
            pending.extend_from_slice(piece);
            loop {
                let mut observed = Observed::default();
                match decoder.step_observed(&mut pending, &mut observed) {
                    Ok(Step::Message { message, used }) => {
                        if let Some((received, inflated)) = observed.inflated {
                            seen.push(Seen::Inflated(received, inflated));
                        }
                        seen.push(match message {
                            Decoded::Text(text) => Seen::Text(text.into()),
                            Decoded::Binary(bytes) => Seen::Binary(bytes.into()),
                            Decoded::Ping(bytes) => Seen::Ping(bytes.into()),
                            other => panic!("unexpected {other:?}"),
                        });
                        pending.drain(..used);
                    }
                    Ok(Step::Progress { used }) => {
                        pending.drain(..used);
                    }
                    Ok(Step::NeedMore) => break,
                    Err(error) => {
                        assert_eq!(decoder.buffered_bytes(), 0, "freed on error");
                        return (seen, Some(error));
                    }
                }
            }
        }
        (seen, None)
    }

    /// Decodes `stream` whole, byte by byte and split at every index (every
    /// 997th for long streams), each with a fresh inflating decoder.
    fn every_way(stream: &[u8], role: Role, peer: Direction, limits: MessageLimits) -> Outcome {
        let fresh = || MessageDecoder::inflating(role, limits, peer);
        let whole = feed(&mut fresh(), &[stream]);
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(feed(&mut fresh(), &bytes), whole, "byte by byte");
        let stride = if stream.len() > 4096 { 997 } else { 1 };
        for split in (0..=stream.len()).step_by(stride) {
            let (a, b) = stream.split_at(split);
            assert_eq!(feed(&mut fresh(), &[a, b]), whole, "split at {split}");
        }
        whole
    }

    /// A frame with RSV1 set when `rsv1`.
    fn frame(
        fin: bool,
        rsv1: bool,
        opcode: OpCode,
        mask: Option<[u8; 4]>,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, fin, opcode, mask, payload);
        if rsv1 {
            out[0] |= RSV1;
        }
        out
    }

    fn compress(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Deflater::new(NO_CONTEXT).compress_message(payload, &mut out);
        out
    }

    fn text(s: &str) -> Seen {
        Seen::Text(s.into())
    }

    #[test]
    fn rfc7692_7_2_3_1_hello_in_one_frame() {
        let stream = [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(
            every_way(&stream, Role::Client, NO_CONTEXT, LIMITS),
            (vec![Seen::Inflated(7, 5), text("Hello")], None)
        );
        // The same from a client, masked (RFC 6455 §5.3).
        let masked = frame(true, true, OpCode::Text, Some(KEY), &HELLO);
        assert_eq!(
            every_way(&masked, Role::Server, NO_CONTEXT, LIMITS),
            (vec![Seen::Inflated(7, 5), text("Hello")], None)
        );
    }

    #[test]
    fn rfc7692_7_2_3_1_hello_in_two_fragments() {
        // RSV1 on the first frame only (§6).
        let stream = [
            0x41, 0x03, 0xf2, 0x48, 0xcd, 0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00,
        ];
        assert_eq!(
            every_way(&stream, Role::Client, NO_CONTEXT, LIMITS),
            (vec![Seen::Inflated(7, 5), text("Hello")], None)
        );
    }

    #[test]
    fn rfc7692_7_2_3_2_the_second_hello_uses_the_kept_window() {
        let first = [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let second = [0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00];
        let stream = [&first[..], &second[..]].concat();
        assert_eq!(
            every_way(&stream, Role::Client, CONTEXT, LIMITS),
            (
                vec![
                    Seen::Inflated(7, 5),
                    text("Hello"),
                    Seen::Inflated(5, 5),
                    text("Hello")
                ],
                None
            )
        );
        // A peer that promised no context takeover may not refer back: 1007.
        let (seen, error) = every_way(&stream, Role::Client, NO_CONTEXT, LIMITS);
        assert_eq!(seen, [Seen::Inflated(7, 5), text("Hello")]);
        assert_eq!(error, Some(MessageError::BadCompressedData));
        assert_eq!(MessageError::BadCompressedData.close_code().0, 1007);
    }

    #[test]
    fn rfc7692_7_2_3_3_a_stored_block() {
        let stream = [
            0xc1, 0x0b, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        assert_eq!(
            every_way(&stream, Role::Client, NO_CONTEXT, LIMITS),
            (vec![Seen::Inflated(11, 5), text("Hello")], None)
        );
    }

    #[test]
    fn rfc7692_7_2_3_4_a_bfinal_block() {
        let stream = [0xc1, 0x06, 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07];
        assert_eq!(
            every_way(&stream, Role::Client, NO_CONTEXT, LIMITS).0,
            [Seen::Inflated(6, 5), text("Hello")]
        );
    }

    #[test]
    fn rfc7692_7_2_3_6_an_empty_message_is_one_zero_byte() {
        assert_eq!(
            every_way(&[0xc2, 0x01, 0x00], Role::Client, NO_CONTEXT, LIMITS),
            (vec![Seen::Inflated(1, 0), Seen::Binary(Vec::new())], None)
        );
    }

    #[test]
    fn a_ping_between_compressed_fragments_is_delivered_first() {
        let payload = compress(b"fragmented and compressed");
        let (a, b) = payload.split_at(payload.len() / 2);
        let stream = [
            frame(false, true, OpCode::Binary, Some(KEY), a),
            frame(true, false, OpCode::Ping, Some(KEY), b"?"),
            frame(true, false, OpCode::Continuation, Some(KEY), b),
        ]
        .concat();
        let (seen, error) = every_way(&stream, Role::Server, NO_CONTEXT, LIMITS);
        assert_eq!(error, None);
        assert_eq!(
            seen,
            [
                Seen::Ping(b"?".to_vec()),
                Seen::Inflated(payload.len(), 25),
                Seen::Binary(b"fragmented and compressed".to_vec())
            ]
        );
    }

    #[test]
    fn rsv1_on_a_continuation_fails_with_1002() {
        let payload = compress(b"Hello");
        let stream = [
            frame(false, true, OpCode::Text, Some(KEY), &payload[..2]),
            frame(true, true, OpCode::Continuation, Some(KEY), &payload[2..]),
        ]
        .concat();
        let error = MessageError::Frame(FrameError::CompressedContinuation);
        assert_eq!(
            every_way(&stream, Role::Server, NO_CONTEXT, LIMITS),
            (vec![], Some(error))
        );
        assert_eq!(error.close_code().0, 1002);
    }

    #[test]
    fn rsv1_on_a_control_frame_fails_with_1002() {
        let stream = frame(true, true, OpCode::Ping, Some(KEY), &HELLO);
        let error = MessageError::Frame(FrameError::CompressedControl);
        assert_eq!(
            every_way(&stream, Role::Server, NO_CONTEXT, LIMITS),
            (vec![], Some(error))
        );
    }

    #[test]
    fn rsv1_without_the_extension_fails_with_1002() {
        let mut stream = frame(true, true, OpCode::Text, Some(KEY), &HELLO);
        let mut decoder = MessageDecoder::new(Role::Server, LIMITS);
        let error = MessageError::Frame(FrameError::ReservedBits);
        assert_eq!(decoder.step(&mut stream), Err(error));
        assert_eq!(error.close_code().0, 1002);
    }

    /// `len` zero bytes compressed: DEFLATE's best case, ~1 KB per MiB.
    fn zero_bomb(len: usize) -> Vec<u8> {
        compress(&alloc::vec![0; len])
    }

    #[test]
    fn a_kib_frame_that_inflates_to_a_mib_stops_at_the_limit_with_1009() {
        let bomb = zero_bomb(1 << 20);
        assert!(bomb.len() < 1100, "{} bytes", bomb.len());
        let stream = frame(true, true, OpCode::Binary, Some(KEY), &bomb);
        let mut decoder = MessageDecoder::inflating(Role::Server, LIMITS, NO_CONTEXT);
        // The limit is 64 KiB: inflating stops one byte past it.
        assert_eq!(
            feed(&mut decoder, &[&stream]),
            (vec![], Some(MessageError::InflatesTooBig))
        );
        assert_eq!(MessageError::InflatesTooBig.close_code().0, 1009);
    }

    #[test]
    fn a_fragmented_bomb_is_bounded_by_the_message_limit() {
        // 16 frames of ~1 KiB, together 16 MiB of zeros.
        let bomb = zero_bomb(16 << 20);
        let mut stream = Vec::new();
        let pieces: Vec<&[u8]> = bomb.chunks(1024).collect();
        for (i, piece) in pieces.iter().enumerate() {
            let opcode = if i == 0 {
                OpCode::Binary
            } else {
                OpCode::Continuation
            };
            stream.extend(frame(
                i + 1 == pieces.len(),
                i == 0,
                opcode,
                Some(KEY),
                piece,
            ));
        }
        let mut decoder = MessageDecoder::inflating(Role::Server, LIMITS, NO_CONTEXT);
        assert_eq!(
            feed(&mut decoder, &[&stream]),
            (vec![], Some(MessageError::InflatesTooBig))
        );
    }

    #[test]
    fn a_message_in_one_frame_is_held_to_the_frame_limit_too() {
        let limits = MessageLimits {
            max_frame_bytes: 1024,
            max_message_bytes: 64 * 1024,
            max_fragments: 100,
        };
        let compressed = zero_bomb(4096);
        assert!(compressed.len() < 1024);
        // One frame: 4096 inflated bytes pass the frame limit.
        let whole = frame(true, true, OpCode::Binary, Some(KEY), &compressed);
        let mut decoder = MessageDecoder::inflating(Role::Server, limits, NO_CONTEXT);
        assert_eq!(
            feed(&mut decoder, &[&whole]).1,
            Some(MessageError::InflatesTooBig)
        );
        // In two frames only the message limit applies to what they inflate to.
        let (a, b) = compressed.split_at(compressed.len() / 2);
        let fragmented = [
            frame(false, true, OpCode::Binary, Some(KEY), a),
            frame(true, false, OpCode::Continuation, Some(KEY), b),
        ]
        .concat();
        let mut decoder = MessageDecoder::inflating(Role::Server, limits, NO_CONTEXT);
        assert_eq!(
            feed(&mut decoder, &[&fragmented]),
            (
                vec![
                    Seen::Inflated(compressed.len(), 4096),
                    Seen::Binary(alloc::vec![0; 4096])
                ],
                None
            )
        );
    }

    /// Bytes with nothing to compress in them.
    fn noise(len: usize) -> Vec<u8> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    #[test]
    fn an_incompressible_message_at_the_limit_still_fits() {
        let message = noise(LIMITS.max_message_bytes);
        let compressed = compress(&message);
        assert!(compressed.len() > message.len(), "it grew: stored blocks");
        assert!(compressed.len() <= compressed_limit(LIMITS.max_message_bytes));
        let stream = frame(true, true, OpCode::Binary, Some(KEY), &compressed);
        let mut decoder = MessageDecoder::inflating(Role::Server, LIMITS, NO_CONTEXT);
        let (seen, error) = feed(&mut decoder, &[&stream]);
        assert_eq!(error, None);
        assert_eq!(seen[1], Seen::Binary(message));
    }

    #[test]
    fn a_compressed_frame_past_its_wire_limit_fails_from_the_header() {
        let over = compressed_limit(LIMITS.max_frame_bytes) + 1;
        // The header alone, with a 64-bit length: nothing else has arrived.
        let mut header = [0u8; MAX_HEADER_LEN];
        let len = encode_header(&mut header, true, OpCode::Binary, Some(KEY), over);
        header[0] |= RSV1;
        let mut decoder = MessageDecoder::inflating(Role::Server, LIMITS, NO_CONTEXT);
        assert_eq!(
            decoder.step(&mut header[..len]),
            Err(MessageError::Frame(FrameError::TooBig))
        );
        // An uncompressed frame keeps its exact limit.
        let len = encode_header(
            &mut header,
            true,
            OpCode::Binary,
            Some(KEY),
            LIMITS.max_frame_bytes + 1,
        );
        let mut decoder = MessageDecoder::inflating(Role::Server, LIMITS, NO_CONTEXT);
        assert_eq!(
            decoder.step(&mut header[..len]),
            Err(MessageError::Frame(FrameError::TooBig))
        );
    }

    #[test]
    fn compressed_fragments_past_the_wire_limit_of_the_message_fail() {
        let limits = MessageLimits {
            max_frame_bytes: 64 * 1024,
            max_message_bytes: 4096,
            max_fragments: 100,
        };
        let chunk = noise(compressed_limit(4096) / 2 + 1);
        let stream = [
            frame(false, true, OpCode::Binary, Some(KEY), &chunk),
            frame(true, false, OpCode::Continuation, Some(KEY), &chunk),
        ]
        .concat();
        let mut decoder = MessageDecoder::inflating(Role::Server, limits, NO_CONTEXT);
        assert_eq!(feed(&mut decoder, &[&stream]).1, Some(MessageError::TooBig));
    }

    #[test]
    fn text_that_inflates_to_invalid_utf8_fails_with_1007() {
        let stream = frame(
            true,
            true,
            OpCode::Text,
            Some(KEY),
            &compress(b"ok \xff\xfe"),
        );
        assert_eq!(
            every_way(&stream, Role::Server, NO_CONTEXT, LIMITS),
            (vec![], Some(MessageError::InvalidUtf8))
        );
        // Split across fragments, a code point is checked once inflated.
        let payload = compress("é".repeat(600).as_bytes());
        let (a, b) = payload.split_at(3);
        let stream = [
            frame(false, true, OpCode::Text, Some(KEY), a),
            frame(true, false, OpCode::Continuation, Some(KEY), b),
        ]
        .concat();
        assert_eq!(
            every_way(&stream, Role::Server, NO_CONTEXT, LIMITS).0[1],
            Seen::Text("é".repeat(600))
        );
    }

    #[test]
    fn bytes_that_are_not_deflate_fail_with_1007() {
        // RFC 1951 §3.2.3: block type 11 is reserved.
        let stream = frame(true, true, OpCode::Binary, Some(KEY), &[0x06]);
        assert_eq!(
            every_way(&stream, Role::Server, NO_CONTEXT, LIMITS),
            (vec![], Some(MessageError::BadCompressedData))
        );
    }

    #[test]
    fn an_inflated_message_is_freed_on_the_next_step() {
        let message = alloc::vec![7u8; 20_000];
        let mut stream = frame(true, true, OpCode::Binary, Some(KEY), &compress(&message));
        stream.extend(frame(true, false, OpCode::Text, Some(KEY), b"small"));
        let mut decoder = MessageDecoder::inflating(Role::Server, LIMITS, NO_CONTEXT);
        let used = match decoder.step(&mut stream) {
            Ok(Step::Message {
                message: Decoded::Binary(bytes),
                used,
            }) => {
                assert_eq!(bytes, &message[..]);
                used
            }
            other => panic!("{other:?}"),
        };
        assert!(decoder.buffered_bytes() >= 20_000);
        let rest = &mut stream[used..];
        assert!(matches!(decoder.step(rest), Ok(Step::Message { .. })));
        assert_eq!(
            decoder.buffered_bytes(),
            0,
            "freed: past RETAINED_BUFFER_BYTES"
        );
    }

    #[test]
    fn release_frees_an_inflated_message_before_the_next_one() {
        // An idle connection after one compressed message holds no buffer.
        let mut stream = frame(
            true,
            true,
            OpCode::Text,
            Some(KEY),
            &compress(&[b'j'; 1024]),
        );
        let mut decoder = MessageDecoder::inflating(Role::Server, LIMITS, NO_CONTEXT);
        assert!(matches!(
            decoder.step(&mut stream),
            Ok(Step::Message { .. })
        ));
        assert!(decoder.buffered_bytes() >= 1024);
        decoder.release();
        assert_eq!(decoder.buffered_bytes(), 0);
        decoder.release();
        let mut next = frame(true, false, OpCode::Text, Some(KEY), b"next");
        assert!(matches!(
            decoder.step(&mut next),
            Ok(Step::Message {
                message: Decoded::Text("next"),
                ..
            })
        ));
    }

    #[test]
    fn uncompressed_messages_still_pass_on_a_negotiated_connection() {
        // RSV1 clear: a message sent as it is (RFC 7692 §6).
        let stream = frame(true, false, OpCode::Text, Some(KEY), b"plain");
        assert_eq!(
            every_way(&stream, Role::Server, NO_CONTEXT, LIMITS),
            (vec![text("plain")], None)
        );
    }
}
