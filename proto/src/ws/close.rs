//! Close codes, the Close frame's payload, and the closing handshake.
//!
//! Reading list:
//! - RFC 6455 §5.5.1 "Close": the payload is empty, or a 2-byte status code
//!   (network byte order) followed by a UTF-8 reason.
//! - RFC 6455 §7.1.2–§7.1.4: starting the closing handshake, the handshake being
//!   complete once both sides have sent and received a Close.
//! - RFC 6455 §7.1.5–§7.1.6: the status code and reason seen by each side.
//! - RFC 6455 §7.4.1–§7.4.2: the defined codes, which ones "MUST NOT be set as a
//!   status code in a Close control frame", and the reserved ranges.
//! - IANA "WebSocket Close Code Number Registry": 1012–1014 registered since the RFC.

use core::fmt;

/// A close status code (RFC 6455 §7.4). Any `u16` can be held; only some may
/// appear in a Close frame ([`CloseCode::is_allowed_on_wire`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection was fulfilled (§7.4.1).
    pub const NORMAL: Self = Self(1000);
    /// 1001: the endpoint is going away, e.g. a server shutting down (§7.4.1).
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: the peer broke the protocol (§7.4.1).
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: a kind of data the endpoint cannot accept, e.g. binary (§7.4.1).
    pub const UNSUPPORTED_DATA: Self = Self(1003);
    /// 1005: no status code was present. Reported locally, never sent (§7.4.1).
    pub const NO_STATUS: Self = Self(1005);
    /// 1006: the connection closed without a Close frame. Reported locally,
    /// never sent (§7.4.1).
    pub const ABNORMAL: Self = Self(1006);
    /// 1007: message data not consistent with its type, e.g. text that is not
    /// UTF-8 (§7.4.1, §8.1).
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: a message violates the endpoint's policy (§7.4.1).
    pub const POLICY_VIOLATION: Self = Self(1008);
    /// 1009: a message too big to process (§7.4.1, §10.4).
    pub const MESSAGE_TOO_BIG: Self = Self(1009);
    /// 1010: the client expected an extension the server did not negotiate (§7.4.1).
    pub const MANDATORY_EXTENSION: Self = Self(1010);
    /// 1011: the server met an unexpected condition (§7.4.1).
    pub const INTERNAL_ERROR: Self = Self(1011);
    /// 1012: the service is restarting (IANA registry).
    pub const SERVICE_RESTART: Self = Self(1012);
    /// 1013: try again later, e.g. the server is overloaded (IANA registry).
    pub const TRY_AGAIN_LATER: Self = Self(1013);
    /// 1014: a gateway got an invalid response upstream (IANA registry).
    pub const BAD_GATEWAY: Self = Self(1014);
    /// 1015: the TLS handshake failed. Reported locally, never sent (§7.4.1).
    pub const TLS_HANDSHAKE: Self = Self(1015);

    /// May this code appear in a Close frame on the wire (§7.4.1, §7.4.2, IANA
    /// registry)? Yes for 1000–1003, 1007–1014 and 3000–4999; no for 0–999
    /// (unused), 1004 (reserved), 1005, 1006 and 1015 (local-only, "MUST NOT be
    /// set as a status code in a Close control frame"), 1016–2999 (reserved for
    /// future revisions) and 5000 and up (undefined).
    pub fn is_allowed_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }

    /// A short English name: "normal closure", …, "application" (3000–3999,
    /// registered with IANA by libraries and frameworks), "private" (4000–4999).
    pub fn name(self) -> &'static str {
        match self.0 {
            1000 => "normal closure",
            1001 => "going away",
            1002 => "protocol error",
            1003 => "unsupported data",
            1004 => "reserved",
            1005 => "no status received",
            1006 => "abnormal closure",
            1007 => "invalid frame payload data",
            1008 => "policy violation",
            1009 => "message too big",
            1010 => "mandatory extension",
            1011 => "internal error",
            1012 => "service restart",
            1013 => "try again later",
            1014 => "bad gateway",
            1015 => "TLS handshake",
            3000..=3999 => "application",
            4000..=4999 => "private",
            0..=999 => "unused",
            1016..=2999 => "reserved for the protocol",
            _ => "undefined",
        }
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0, self.name())
    }
}

/// Reads a Close frame's payload (§5.5.1): empty → `Ok(None)`; otherwise a 2-byte
/// code that may appear on the wire and a UTF-8 reason.
///
/// The frame layer has already refused payloads over 125 bytes (§5.5), so the
/// reason is at most 123 bytes. Never panics.
///
/// ```
/// use pushloop_proto::ws::close::{parse_close_payload, CloseCode};
/// assert_eq!(parse_close_payload(b"\x03\xe8bye"), Ok(Some((CloseCode::NORMAL, "bye"))));
/// assert_eq!(parse_close_payload(b""), Ok(None));
/// ```
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<(CloseCode, &str)>, CloseError> {
    match payload {
        // §5.5.1: "The Close frame MAY contain a body".
        [] => Ok(None),
        // §5.5.1: "If there is a body, the first two bytes of the body MUST be a
        // 2-byte unsigned integer": one byte cannot be one.
        [_] => Err(CloseError::OneBytePayload),
        [high, low, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*high, *low]));
            // §7.4.1–§7.4.2: some codes are never sent; receiving one is a
            // protocol error.
            if !code.is_allowed_on_wire() {
                return Err(CloseError::CodeNotAllowed);
            }
            // §5.5.1: the reason "is not guaranteed to be human readable" but
            // is UTF-8; §8.1 makes invalid UTF-8 a 1007 failure.
            let reason = core::str::from_utf8(reason).map_err(|_| CloseError::ReasonNotUtf8)?;
            Ok(Some((code, reason)))
        }
    }
}

/// The longest reason that fits a Close frame: 125 payload bytes (§5.5) minus the
/// 2-byte code.
pub const MAX_REASON_LEN: usize = 123;

/// Writes `code` and `reason` as a Close payload (§5.5.1) into `out` and returns
/// its length (2..=125). A reason longer than [`MAX_REASON_LEN`] bytes is cut at
/// the last character boundary that fits, so the payload stays valid UTF-8.
///
/// The caller passes a code that may be sent ([`CloseCode::is_allowed_on_wire`]);
/// sending 1005, 1006 or 1015 would be our bug (§7.4.1), checked in debug builds.
///
/// ```
/// use pushloop_proto::ws::close::{encode_close_payload, parse_close_payload, CloseCode};
/// let mut out = [0u8; 125];
/// let len = encode_close_payload(CloseCode::GOING_AWAY, "restarting", &mut out);
/// assert_eq!(parse_close_payload(&out[..len]), Ok(Some((CloseCode::GOING_AWAY, "restarting"))));
/// ```
pub fn encode_close_payload(code: CloseCode, reason: &str, out: &mut [u8; 125]) -> usize {
    debug_assert!(code.is_allowed_on_wire(), "close code {code} is never sent");
    let mut reason_len = reason.len().min(MAX_REASON_LEN);
    while !reason.is_char_boundary(reason_len) {
        reason_len -= 1;
    }
    let (code_bytes, rest) = out.split_at_mut(2);
    code_bytes.copy_from_slice(&code.0.to_be_bytes());
    for (slot, byte) in rest
        .iter_mut()
        .zip(reason.as_bytes().iter().take(reason_len))
    {
        *slot = *byte;
    }
    2 + reason_len
}

/// A Close frame whose payload breaks §5.5.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseError {
    /// The peer sent a 1-byte payload: too long for "no code", too short for a code.
    OneBytePayload,
    /// The peer sent a code that must never appear on the wire (§7.4.1–§7.4.2).
    CodeNotAllowed,
    /// The peer sent a reason that is not valid UTF-8 (§5.5.1, §8.1).
    ReasonNotUtf8,
}

impl CloseError {
    /// The code we close with (§7.4.1): 1007 for a bad reason, else 1002.
    pub fn close_code(self) -> CloseCode {
        match self {
            Self::OneBytePayload | Self::CodeNotAllowed => CloseCode::PROTOCOL_ERROR,
            Self::ReasonNotUtf8 => CloseCode::INVALID_PAYLOAD,
        }
    }
}

impl fmt::Display for CloseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::OneBytePayload => "the peer sent a close payload of 1 byte",
            Self::CodeNotAllowed => "the peer sent a close code that is never sent",
            Self::ReasonNotUtf8 => "the peer sent a close reason that is not UTF-8",
        })
    }
}

impl core::error::Error for CloseError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_exactly_the_sendable_codes() {
        for code in 0..=u16::MAX {
            let expected = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            assert_eq!(CloseCode(code).is_allowed_on_wire(), expected, "{code}");
        }
        for never in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!CloseCode(never).is_allowed_on_wire(), "{never}");
        }
    }

    #[test]
    fn names_codes_and_ranges() {
        assert_eq!(CloseCode::NORMAL.name(), "normal closure");
        assert_eq!(CloseCode::MESSAGE_TOO_BIG.name(), "message too big");
        assert_eq!(CloseCode(3000).name(), "application");
        assert_eq!(CloseCode(4999).name(), "private");
        assert_eq!(CloseCode(1004).name(), "reserved");
        assert_eq!(CloseCode(5000).name(), "undefined");
        assert_eq!(
            CloseCode::PROTOCOL_ERROR.to_string(),
            "1002 (protocol error)"
        );
    }

    #[test]
    fn parses_empty_payload_as_no_status() {
        assert_eq!(parse_close_payload(b""), Ok(None));
    }

    #[test]
    fn rejects_one_byte_payload() {
        for byte in [0x00, 0x03, 0xff] {
            assert_eq!(
                parse_close_payload(&[byte]),
                Err(CloseError::OneBytePayload)
            );
        }
        assert_eq!(
            CloseError::OneBytePayload.close_code(),
            CloseCode::PROTOCOL_ERROR
        );
    }

    #[test]
    fn parses_code_and_reason() {
        assert_eq!(
            parse_close_payload(b"\x03\xe8"),
            Ok(Some((CloseCode::NORMAL, "")))
        );
        assert_eq!(
            parse_close_payload(b"\x0f\xa0h\xc3\xa9llo"),
            Ok(Some((CloseCode(4000), "héllo")))
        );
    }

    #[test]
    fn rejects_each_code_never_sent() {
        for code in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            let payload = code.to_be_bytes();
            assert_eq!(
                parse_close_payload(&payload),
                Err(CloseError::CodeNotAllowed),
                "{code}"
            );
        }
        for code in [
            1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
            4000, 4999,
        ] {
            assert!(parse_close_payload(&code.to_be_bytes()).is_ok(), "{code}");
        }
    }

    #[test]
    fn rejects_reason_that_is_not_utf8() {
        for reason in [&b"\xff"[..], b"ok\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82"] {
            let mut payload = vec![0x03, 0xe8];
            payload.extend_from_slice(reason);
            assert_eq!(
                parse_close_payload(&payload),
                Err(CloseError::ReasonNotUtf8)
            );
        }
        assert_eq!(
            CloseError::ReasonNotUtf8.close_code(),
            CloseCode::INVALID_PAYLOAD
        );
    }

    #[test]
    fn accepts_123_byte_reason() {
        let mut payload = vec![0x03, 0xe8];
        payload.extend_from_slice(&[b'x'; 123]);
        let parsed = parse_close_payload(&payload);
        assert_eq!(parsed, Ok(Some((CloseCode::NORMAL, &"x".repeat(123)[..]))));
    }

    #[test]
    fn encodes_into_poison_filled_buffer() {
        let mut out = [0xa5u8; 125];
        let len = encode_close_payload(CloseCode::NORMAL, "bye", &mut out);
        assert_eq!(&out[..len], b"\x03\xe8bye");
        assert!(
            out[len..].iter().all(|&b| b == 0xa5),
            "wrote past the payload"
        );
        let len = encode_close_payload(CloseCode(4999), "", &mut out);
        assert_eq!(&out[..len], b"\x13\x87");
    }

    #[test]
    fn truncates_long_reason_at_char_boundary() {
        let ascii = "a".repeat(200);
        let mut out = [0u8; 125];
        let len = encode_close_payload(CloseCode::GOING_AWAY, &ascii, &mut out);
        assert_eq!(len, 125);
        // 61 two-byte characters are 122 bytes; the 62nd would need bytes 123-124.
        let wide = "é".repeat(70);
        let len = encode_close_payload(CloseCode::GOING_AWAY, &wide, &mut out);
        assert_eq!(len, 2 + 122);
        let parsed = parse_close_payload(&out[..len]);
        assert_eq!(
            parsed,
            Ok(Some((CloseCode::GOING_AWAY, &"é".repeat(61)[..])))
        );
        // A 4-byte character straddling byte 123 is dropped whole.
        let straddle = format!("{}😀", "a".repeat(121));
        let len = encode_close_payload(CloseCode::NORMAL, &straddle, &mut out);
        assert_eq!(len, 2 + 121);
    }
}
