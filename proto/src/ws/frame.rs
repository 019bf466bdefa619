//! The WebSocket frame header: decoding what the peer sent, encoding what we send.
//!
//! Reading list:
//! - RFC 6455 §5.2 "Base Framing Protocol": the header diagram below, the 7/16/64-bit
//!   payload length ("the minimal number of bytes MUST be used"; the 64-bit form's
//!   "most significant bit MUST be 0"), RSV1–3 ("MUST be 0 unless an extension is
//!   negotiated"), reserved opcodes ("MUST _Fail the WebSocket Connection_").
//! - RFC 6455 §5.1: a client masks every frame it sends, a server none; either side
//!   fails the connection on the wrong kind.
//! - RFC 6455 §5.5: control frames carry at most 125 payload bytes and are never
//!   fragmented.
//! - RFC 6455 §5.7: the example frames used in the tests.
//! - RFC 6455 §10.4: limits on frame size are the implementation's to set.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! | Masking-key (continued)       |          Payload Data         |
//! +-------------------------------- - - - - - - - - - - - - - - - +
//! ```

use alloc::vec::Vec;
use core::fmt;

use super::close::CloseCode;
use super::mask::apply_mask;

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
    /// RSV1, for an extension (always false here: none is negotiated).
    pub rsv1: bool,
    /// RSV2, for an extension (always false here).
    pub rsv2: bool,
    /// RSV3, for an extension (always false here).
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

/// Decodes a frame header from the start of `buf`, which may be partial.
///
/// `Ok(None)`: not enough bytes yet, nothing consumed; call again with more.
/// `Ok(Some((header, header_len)))`: the header, and how many bytes it took.
///
/// Refuses, before anything is allocated: RSV bits (no extension is negotiated),
/// reserved opcodes, wrong masking for the role, control payload > 125 or !fin,
/// a 64-bit length with the top bit set, non-minimal length encoding (§5.2 "the
/// minimal number of bytes MUST be used"), and `payload_len > max_payload`
/// (→ [`FrameError::TooBig`], 1009), which also covers every length that does not
/// fit `usize`. The first five are refused as soon as the byte that shows them
/// has arrived; the last two once the header is whole. Never panics.
///
/// ```
/// use pushloop_proto::ws::frame::{decode_header, OpCode, Role};
/// // RFC 6455 §5.7: a masked text frame "Hello" from a client.
/// let frame = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
/// let (header, header_len) = decode_header(&frame, Role::Server, 1 << 20).unwrap().unwrap();
/// assert_eq!((header.opcode, header.payload_len, header_len), (OpCode::Text, 5, 6));
/// assert_eq!(decode_header(&frame[..3], Role::Server, 1 << 20), Ok(None));
/// ```
pub fn decode_header(
    buf: &[u8],
    role: Role,
    max_payload: usize,
) -> Result<Option<(FrameHeader, usize)>, FrameError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let fin = first & 0x80 != 0;
    let (rsv1, rsv2, rsv3) = (first & 0x40 != 0, first & 0x20 != 0, first & 0x10 != 0);
    // §5.2: "MUST be 0 unless an extension is negotiated that defines meanings
    // for non-zero values"; we negotiate none.
    if rsv1 || rsv2 || rsv3 {
        return Err(FrameError::ReservedBits);
    }
    // §5.2: "If an unknown opcode is received, the receiving endpoint MUST _Fail
    // the WebSocket Connection_."
    let opcode = OpCode::from_u8(first & 0x0F).ok_or(FrameError::ReservedOpcode)?;
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

/// Writes a header (RSV bits clear) into `out` and returns its length (2..=14),
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
    /// The peer set RSV1, RSV2 or RSV3, but no extension was negotiated (§5.2).
    ReservedBits,
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

#[cfg(test)]
mod tests {
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
        let whole = decode_header(frame, role, LIMIT);
        let complete_at = match whole {
            Ok(Some((_, len))) => len,
            _ => frame.len(),
        };
        for cut in 0..=frame.len() {
            let prefix = decode_header(&frame[..cut], role, LIMIT);
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
        assert_eq!(decode_header(&[], Role::Server, LIMIT), Ok(None));
    }

    #[test]
    fn rejects_reserved_bits_from_the_first_byte() {
        for first in [0xC1, 0xA1, 0x91, 0xF1] {
            assert_eq!(
                decode_every_way(&[first, 0x80, 1, 2, 3, 4], Role::Server),
                Err(FrameError::ReservedBits)
            );
            assert_eq!(
                decode_header(&[first], Role::Server, LIMIT),
                Err(FrameError::ReservedBits)
            );
        }
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
            let at_limit = decode_header(&[opcode, 0xFD, 1, 2, 3, 4], Role::Server, LIMIT);
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
            decode_header(&frame[..3], Role::Server, usize::MAX),
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
            decode_header(&[0x82, 0x7E, 0x00, 0x7E], Role::Client, LIMIT),
            Ok(Some(_))
        ));
        let smallest_large = [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0];
        assert!(matches!(
            decode_header(&smallest_large, Role::Client, LIMIT),
            Ok(Some(_))
        ));
    }

    #[test]
    fn rejects_payload_over_limit_from_header_alone() {
        let frame = [0x82, 0x7E, 0x01, 0x00];
        assert_eq!(
            decode_header(&frame, Role::Client, 255),
            Err(FrameError::TooBig)
        );
        assert!(matches!(
            decode_header(&frame, Role::Client, 256),
            Ok(Some(_))
        ));
        // The largest legal 64-bit length: above every usize limit we can have.
        let huge = [0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
        assert_eq!(
            decode_header(&huge, Role::Client, 1 << 30),
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
                let (decoded, header_len) = decode_header(&out, role, LIMIT).unwrap().unwrap();
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
            let decoded = decode_header(&out[..written], role, usize::MAX);
            assert_eq!(
                decoded,
                Ok(Some((header(fin, opcode, mask, len as u64), written)))
            );
            // One byte short is never enough.
            assert_eq!(
                decode_header(&out[..written - 1], role, usize::MAX),
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
