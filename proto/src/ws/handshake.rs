//! The WebSocket opening handshake, server side: a parsed request in, a 101
//! Switching Protocols response or a refusal out.
//!
//! Reading list:
//! - RFC 6455 §1.3 (the handshake and its worked example), §4.2.1 (what the
//!   client's request must hold), §4.2.2 (the server's answer, the accept key,
//!   426 for a version we do not speak), §9.1 (extensions: a server never
//!   accepts one it does not implement), §10.2 (Origin), §11.3 (the
//!   `Sec-WebSocket-*` fields).
//! - RFC 7936 §2 (subprotocol names match case-sensitively).
//! - RFC 9110 §7.8 (Upgrade), §15.5.6 (405 needs Allow), §15.5.22 (426 needs
//!   Upgrade).
//! - RFC 6454 §7 (the Origin field).

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha1::{Digest, Sha1};

use crate::http::syntax::list_elements;
use crate::http::{write_head, Request};

/// The GUID appended to the client's key before hashing (RFC 6455 §1.3,
/// §4.2.2 step 5.4).
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The protocol version pushloop speaks (RFC 6455 §4.2.1 item 6, §11.3.5).
const VERSION: &str = "13";

/// Does this request ask for a WebSocket: an `Upgrade` list holding
/// `websocket` in any case (RFC 6455 §4.2.1 item 3, RFC 9110 §7.8)? Routing
/// uses this to hand the request to [`check`] rather than to an HTTP route.
pub fn is_upgrade_request(req: &Request) -> bool {
    req.has_token("upgrade", "websocket")
}

/// Validates the client's opening handshake (RFC 6455 §4.2.1). Does not look
/// at `Origin`: apply an [`OriginPolicy`] with [`Upgrade::check_origin`].
///
/// The client's `Sec-WebSocket-Extensions` offers are the caller's to answer
/// ([`Upgrade::offered_extensions`], e.g. with permessage-deflate's
/// `ws::deflate::accept_offer`); a 101 that names none declines them all
/// (RFC 6455 §9.1).
///
/// ```
/// use pushloop_proto::http::{httparse, parse_request};
/// use pushloop_proto::ws::handshake;
/// let head = b"GET /echo HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\
///     Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
///     Sec-WebSocket-Version: 13\r\n\r\n";
/// let mut headers = [httparse::EMPTY_HEADER; 16];
/// let req = parse_request(head, &mut headers).unwrap();
/// let upgrade = handshake::check(&req).unwrap();
/// let mut out = Vec::new();
/// upgrade.write_accept(None, None, &mut out).unwrap();
/// assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
/// ```
pub fn check<'a>(req: &Request<'a>) -> Result<Upgrade<'a>, HandshakeError> {
    // §4.2.1 item 1: "An HTTP/1.1 or higher GET request". Methods are
    // case-sensitive (RFC 9110 §9.1).
    if req.method() != "GET" {
        return Err(HandshakeError::NotGet);
    }
    // §4.2.1 item 2: a Host field. parse_request already refuses an HTTP/1.1
    // request without one (RFC 9112 §3.2), so this catches HTTP/1.0 requests,
    // which are refused for their version next anyway.
    if req.header("host").is_none() {
        return Err(HandshakeError::MissingHost);
    }
    if req.minor_version() != 1 {
        return Err(HandshakeError::NotHttp11);
    }
    // §4.2.1 item 3: `Upgrade` holding "websocket", ASCII case-insensitive.
    if !is_upgrade_request(req) {
        return Err(HandshakeError::MissingUpgrade);
    }
    // §4.2.1 item 4: `Connection` holding "Upgrade", ASCII case-insensitive.
    if !req.has_token("connection", "upgrade") {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    // §4.2.1 item 6, §11.3.5: exactly one `Sec-WebSocket-Version`, equal to 13.
    // Checked before the key so that a client of another version learns
    // which one we speak (§4.2.2 step 4) even if its key is odd too.
    let mut versions = req.header_all("sec-websocket-version");
    match (versions.next(), versions.next()) {
        (Some(version), None) if version == VERSION.as_bytes() => {}
        _ => return Err(HandshakeError::UnsupportedVersion),
    }
    // §4.2.1 item 5, §11.3.1: exactly one `Sec-WebSocket-Key`, base64 of 16
    // bytes.
    let mut keys = req.header_all("sec-websocket-key");
    let key = match (keys.next(), keys.next()) {
        (Some(key), None) => key,
        _ => return Err(HandshakeError::BadKey),
    };
    let key = core::str::from_utf8(key).map_err(|_| HandshakeError::BadKey)?;
    if !is_valid_key(key) {
        return Err(HandshakeError::BadKey);
    }
    Ok(Upgrade { req: *req, key })
}

/// Does `key` base64-decode (RFC 4648 §4, with padding) to exactly 16 bytes
/// (RFC 6455 §4.2.1 item 5)? That is always 24 characters ending in `==`.
fn is_valid_key(key: &str) -> bool {
    // 18 bytes: what 24 base64 characters could decode to before padding is
    // taken off; the check below asks for 16.
    let mut decoded = [0u8; 18];
    key.len() == 24 && BASE64.decode_slice(key, &mut decoded) == Ok(16)
}

/// `base64(SHA-1(key ++ GUID))`, the `Sec-WebSocket-Accept` value (RFC 6455
/// §4.2.2 step 5.4): 28 ASCII bytes. `key` is the client's key as sent, not
/// decoded.
///
/// ```
/// // RFC 6455 §1.3
/// let accept = pushloop_proto::ws::handshake::accept_key(b"dGhlIHNhbXBsZSBub25jZQ==");
/// assert_eq!(&accept, b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(GUID.as_bytes());
    let digest = sha1.finalize();
    let mut accept = [0u8; 28];
    // 20 bytes always encode to exactly 28 base64 bytes (RFC 4648 §4: 7 groups
    // of 3, the last one padded), so this cannot fail.
    let written = BASE64.encode_slice(digest, &mut accept);
    debug_assert_eq!(written, Ok(28));
    accept
}

/// A valid opening handshake, ready to be accepted.
#[derive(Clone, Copy, Debug)]
pub struct Upgrade<'a> {
    req: Request<'a>,
    key: &'a str,
}

impl<'a> Upgrade<'a> {
    /// The client's `Sec-WebSocket-Key`, as sent.
    pub fn key(&self) -> &'a str {
        self.key
    }

    /// The `Origin` field (RFC 6455 §4.2.1 item 8, RFC 6454 §7), if sent and
    /// UTF-8. Browsers always send it; other clients may not.
    pub fn origin(&self) -> Option<&'a str> {
        self.req.header_str("origin")
    }

    /// The subprotocols the client offered, in its order of preference: every
    /// `Sec-WebSocket-Protocol` field line, each a comma-separated list
    /// (RFC 6455 §4.2.1 item 10, §11.3.4).
    pub fn offered_protocols(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.req
            .header_all("sec-websocket-protocol")
            .flat_map(list_elements)
            .filter_map(|protocol| core::str::from_utf8(protocol).ok())
    }

    /// The client's `Sec-WebSocket-Extensions` field values, each line as sent,
    /// in order (RFC 6455 §4.2.1 item 9, §9.1: offers in order of preference,
    /// possibly on several lines); what `ws::deflate::accept_offer` reads.
    pub fn offered_extensions(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.req.header_all("sec-websocket-extensions")
    }

    /// Did the client offer subprotocol `protocol`? Case-sensitive: RFC 6455
    /// §4.2.2 step 5.4 has the server select "one of the values" the client
    /// sent, and RFC 7936 §2 says subprotocol names "are matched using
    /// case-sensitive string match" (browsers fail the connection otherwise).
    pub fn offers_protocol(&self, protocol: &str) -> bool {
        self.offered_protocols().any(|offered| offered == protocol)
    }

    /// Applies an Origin policy (RFC 6455 §10.2): `Err(ForbiddenOrigin)` (403)
    /// when the policy refuses this request's `Origin`.
    pub fn check_origin(&self, policy: &OriginPolicy) -> Result<(), HandshakeError> {
        if policy.allows(self.origin()) {
            Ok(())
        } else {
            Err(HandshakeError::ForbiddenOrigin)
        }
    }

    /// Appends the `101 Switching Protocols` response (RFC 6455 §4.2.2 step 5):
    /// `Upgrade: websocket`, `Connection: Upgrade`, `Sec-WebSocket-Accept`,
    /// `Sec-WebSocket-Protocol` when `protocol` is chosen, and
    /// `Sec-WebSocket-Extensions` when `extensions` accepts some (§9.1: only
    /// extensions the client offered, as the negotiation wrote them).
    ///
    /// `protocol` must be one the client offered ([`Upgrade::offers_protocol`]):
    /// otherwise nothing is written and `Err(ProtocolNotOffered)` is returned,
    /// because the browser would fail the connection (§4.1).
    pub fn write_accept(
        &self,
        protocol: Option<&str>,
        extensions: Option<&str>,
        out: &mut Vec<u8>,
    ) -> Result<(), HandshakeError> {
        if protocol.is_some_and(|protocol| !self.offers_protocol(protocol)) {
            return Err(HandshakeError::ProtocolNotOffered);
        }
        let accept = accept_key(self.key.as_bytes());
        // base64 output is ASCII, so this is never the fallback.
        let accept = core::str::from_utf8(&accept).unwrap_or_default();
        let protocol = protocol.map(|protocol| ("Sec-WebSocket-Protocol", protocol));
        let extensions = extensions.map(|extensions| ("Sec-WebSocket-Extensions", extensions));
        let fields = [
            Some(("Upgrade", "websocket")),
            Some(("Connection", "Upgrade")),
            Some(("Sec-WebSocket-Accept", accept)),
            protocol,
            extensions,
        ];
        let mut present = [("", ""); 5];
        let mut count = 0;
        for field in fields.into_iter().flatten() {
            present[count] = field;
            count += 1;
        }
        write_head(out, 101, &present[..count], None);
        Ok(())
    }
}

/// The callback of [`OriginPolicy::Check`]: given the `Origin` value (`None`
/// when absent), `true` allows the handshake. Shared (`Arc`), so a server
/// with several loops hands each loop the same policy.
pub type OriginCheck = Arc<dyn Fn(Option<&str>) -> bool + Send + Sync>;

/// Who may open a WebSocket, judged by the `Origin` field (RFC 6455 §10.2).
///
/// Browsers let any page open a WebSocket to any server, with the user's
/// cookies, and always say which page in `Origin`. A server that trusts
/// cookies must therefore check `Origin`, or any site can act as the user
/// (cross-site WebSocket hijacking). Non-browser clients may send no `Origin`
/// at all (and can send any `Origin` they like, so the check protects users'
/// browsers, not the server).
#[derive(Clone, Default)]
pub enum OriginPolicy {
    /// Every origin, and requests without `Origin`. Fine for public data that
    /// needs no cookie. The default.
    #[default]
    Any,
    /// Only these origins (`scheme://host[:port]`, e.g.
    /// `https://example.com`), compared exactly but ASCII case-insensitively.
    /// A request **without** `Origin` is refused: an allow-list means "only
    /// these pages", and a missing origin is none of them. Use
    /// [`OriginPolicy::Check`] to also admit non-browser clients. The opaque
    /// origin `null` (sandboxed frames, `file:` pages) is refused unless listed.
    AllowList(Vec<String>),
    /// A callback given the `Origin` value (`None` when absent); `true` allows.
    Check(OriginCheck),
}

impl OriginPolicy {
    /// Does the policy let a request with this `Origin` (or none) through?
    pub fn allows(&self, origin: Option<&str>) -> bool {
        match self {
            OriginPolicy::Any => true,
            OriginPolicy::AllowList(allowed) => origin.is_some_and(|origin| {
                allowed
                    .iter()
                    .any(|allowed| allowed.eq_ignore_ascii_case(origin))
            }),
            OriginPolicy::Check(check) => check(origin),
        }
    }
}

impl fmt::Debug for OriginPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OriginPolicy::Any => f.write_str("Any"),
            OriginPolicy::AllowList(allowed) => f.debug_tuple("AllowList").field(allowed).finish(),
            OriginPolicy::Check(_) => f.write_str("Check(..)"),
        }
    }
}

/// Every way an opening handshake can be refused. Each variant says what the
/// peer did (or, for `ProtocolNotOffered`, what our own code did);
/// [`HandshakeError::status`] is the answer on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// Asked for a WebSocket with a method other than GET (RFC 6455 §4.2.1
    /// item 1). 405 with `Allow: GET` (RFC 9110 §15.5.6).
    NotGet,
    /// Asked for a WebSocket over HTTP/1.0 (RFC 6455 §4.2.1 item 1). 400.
    NotHttp11,
    /// Sent no Host field (RFC 6455 §4.2.1 item 2). 400.
    MissingHost,
    /// Sent no `Upgrade` field holding `websocket` (RFC 6455 §4.2.1 item 3). 400.
    MissingUpgrade,
    /// Sent no `Connection` field holding `Upgrade` (RFC 6455 §4.2.1 item 4). 400.
    MissingConnectionUpgrade,
    /// Sent no `Sec-WebSocket-Key`, more than one, or one that is not the
    /// base64 of 16 bytes (RFC 6455 §4.2.1 item 5, §11.3.1). 400.
    BadKey,
    /// Sent no `Sec-WebSocket-Version: 13`, or more than one version field
    /// (RFC 6455 §4.2.1 item 6, §11.3.5). 426 with `Sec-WebSocket-Version: 13`
    /// (§4.2.2 step 4).
    UnsupportedVersion,
    /// Sent an `Origin` the server's [`OriginPolicy`] refuses (RFC 6455
    /// §10.2). 403.
    ForbiddenOrigin,
    /// Our bug, not the peer's: the server tried to accept a subprotocol the
    /// client did not offer (RFC 6455 §4.2.2 step 5.4). 500.
    ProtocolNotOffered,
}

impl HandshakeError {
    /// The status code that answers this error: 405, 400, 426 or 403 for the
    /// peer's faults, 500 for `ProtocolNotOffered`.
    pub fn status(self) -> u16 {
        match self {
            HandshakeError::NotGet => 405,
            HandshakeError::UnsupportedVersion => 426,
            HandshakeError::ForbiddenOrigin => 403,
            HandshakeError::ProtocolNotOffered => 500,
            HandshakeError::NotHttp11
            | HandshakeError::MissingHost
            | HandshakeError::MissingUpgrade
            | HandshakeError::MissingConnectionUpgrade
            | HandshakeError::BadKey => 400,
        }
    }

    /// Appends a complete refusal: status line, `Content-Type: text/plain;
    /// charset=utf-8`, `Connection: close`, `Content-Length` and a one-line
    /// body naming the problem. A 405 adds `Allow: GET` (RFC 9110 §15.5.6). A
    /// 426 adds `Sec-WebSocket-Version: 13` (RFC 6455 §4.2.2 step 4) and
    /// `Upgrade: websocket` (RFC 9110 §15.5.22), and lists `Upgrade` in
    /// `Connection` as RFC 9110 §7.8 requires of any message with `Upgrade`.
    pub fn write_response(self, out: &mut Vec<u8>) {
        const TEXT: (&str, &str) = ("Content-Type", "text/plain; charset=utf-8");
        const CLOSE: (&str, &str) = ("Connection", "close");
        let body = self.message();
        let length = Some(body.len() + 1);
        match self {
            HandshakeError::NotGet => {
                write_head(out, 405, &[TEXT, ("Allow", "GET"), CLOSE], length)
            }
            HandshakeError::UnsupportedVersion => {
                let fields = [
                    TEXT,
                    ("Upgrade", "websocket"),
                    ("Sec-WebSocket-Version", VERSION),
                    ("Connection", "Upgrade, close"),
                ];
                write_head(out, 426, &fields, length);
            }
            _ => write_head(out, self.status(), &[TEXT, CLOSE], length),
        }
        out.extend_from_slice(body.as_bytes());
        out.push(b'\n');
    }

    fn message(self) -> &'static str {
        match self {
            HandshakeError::NotGet => "a WebSocket handshake must use GET",
            HandshakeError::NotHttp11 => "a WebSocket handshake must use HTTP/1.1",
            HandshakeError::MissingHost => "missing Host header field",
            HandshakeError::MissingUpgrade => "missing Upgrade: websocket",
            HandshakeError::MissingConnectionUpgrade => "missing Connection: Upgrade",
            HandshakeError::BadKey => "missing or malformed Sec-WebSocket-Key",
            HandshakeError::UnsupportedVersion => "unsupported Sec-WebSocket-Version",
            HandshakeError::ForbiddenOrigin => "origin not allowed",
            HandshakeError::ProtocolNotOffered => {
                "server chose a subprotocol the client did not offer"
            }
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message(), self.status())
    }
}

impl core::error::Error for HandshakeError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{httparse, parse_request};

    /// RFC 6455 §1.3: the client's handshake.
    const RFC6455_REQUEST: &str = "GET /chat HTTP/1.1\r\n\
        Host: server.example.com\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Origin: http://example.com\r\n\
        Sec-WebSocket-Protocol: chat, superchat\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    /// RFC 6455 §1.3: the server's handshake, choosing `chat`.
    const RFC6455_RESPONSE: &str = "HTTP/1.1 101 Switching Protocols\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
        Sec-WebSocket-Protocol: chat\r\n\r\n";

    /// Parses `head` and runs `f` on the handshake check's result.
    fn with_check<T>(head: &str, f: impl FnOnce(Result<Upgrade<'_>, HandshakeError>) -> T) -> T {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let req = parse_request(head.as_bytes(), &mut headers).unwrap();
        f(check(&req))
    }

    fn check_error(head: &str) -> Option<HandshakeError> {
        with_check(head, |result| result.err())
    }

    /// The §1.3 request with `from` replaced by `to`.
    fn sample_with(from: &str, to: &str) -> String {
        assert!(RFC6455_REQUEST.contains(from), "{from}");
        RFC6455_REQUEST.replacen(from, to, 1)
    }

    #[test]
    fn accept_key_matches_rfc6455_section_1_3() {
        assert_eq!(
            &accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn accepts_rfc6455_sample_with_its_exact_response() {
        with_check(RFC6455_REQUEST, |result| {
            let upgrade = result.unwrap();
            assert_eq!(upgrade.key(), "dGhlIHNhbXBsZSBub25jZQ==");
            assert_eq!(upgrade.origin(), Some("http://example.com"));
            assert_eq!(
                upgrade.offered_protocols().collect::<Vec<_>>(),
                ["chat", "superchat"]
            );
            let mut out = Vec::new();
            upgrade.write_accept(Some("chat"), None, &mut out).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), RFC6455_RESPONSE);
        });
    }

    #[test]
    fn accepts_without_subprotocol_and_declines_extensions_by_naming_none() {
        let head = sample_with(
            "Origin",
            "Sec-WebSocket-Extensions: permessage-deflate\r\nOrigin",
        );
        with_check(&head, |result| {
            let mut out = Vec::new();
            result.unwrap().write_accept(None, None, &mut out).unwrap();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
            );
        });
    }

    #[test]
    fn hands_out_every_extension_line_and_names_what_was_accepted() {
        let head = sample_with(
            "Origin",
            "Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\nOrigin",
        );
        with_check(&head, |result| {
            let upgrade = result.unwrap();
            assert_eq!(
                upgrade.offered_extensions().collect::<Vec<_>>(),
                [
                    &b"x-webkit-deflate-frame"[..],
                    b"permessage-deflate; client_max_window_bits"
                ]
            );
            let mut out = Vec::new();
            let accepted = "permessage-deflate; server_no_context_takeover";
            upgrade
                .write_accept(Some("chat"), Some(accepted), &mut out)
                .unwrap();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
                 Sec-WebSocket-Protocol: chat\r\n\
                 Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n"
            );
        });
    }

    #[test]
    fn refuses_to_accept_a_protocol_not_offered() {
        with_check(RFC6455_REQUEST, |result| {
            let upgrade = result.unwrap();
            let mut out = Vec::new();
            for protocol in ["Chat", "mqtt", "chat, superchat", ""] {
                assert_eq!(
                    upgrade.write_accept(Some(protocol), None, &mut out),
                    Err(HandshakeError::ProtocolNotOffered)
                );
            }
            assert!(out.is_empty());
            assert_eq!(HandshakeError::ProtocolNotOffered.status(), 500);
        });
    }

    #[test]
    fn subprotocols_come_from_every_field_line_and_match_case_sensitively() {
        let head = sample_with(
            "Sec-WebSocket-Protocol: chat, superchat",
            "Sec-WebSocket-Protocol: chat, ,superchat\r\nsec-websocket-protocol:\tv2.Proto ",
        );
        with_check(&head, |result| {
            let upgrade = result.unwrap();
            assert_eq!(
                upgrade.offered_protocols().collect::<Vec<_>>(),
                ["chat", "superchat", "v2.Proto"]
            );
            assert!(upgrade.offers_protocol("v2.Proto"));
            assert!(!upgrade.offers_protocol("v2.proto"));
            assert!(!upgrade.offers_protocol("CHAT"));
        });
    }

    #[test]
    fn accepts_upgrade_and_connection_tokens_in_any_case_and_position() {
        let head = sample_with("Upgrade: websocket", "upgrade: h2c, WebSocket").replacen(
            "Connection: Upgrade",
            "connection: keep-alive\r\nCONNECTION: x, UPGRADE",
            1,
        );
        with_check(&head, |result| assert!(result.is_ok()));
    }

    #[test]
    fn rejects_each_bad_handshake() {
        let cases = [
            (sample_with("GET /chat", "POST /chat"), HandshakeError::NotGet),
            (sample_with("GET /chat", "get /chat"), HandshakeError::NotGet),
            (sample_with("HTTP/1.1", "HTTP/1.0"), HandshakeError::NotHttp11),
            (
                sample_with("HTTP/1.1", "HTTP/1.0").replacen("Host: server.example.com\r\n", "", 1),
                HandshakeError::MissingHost,
            ),
            (sample_with("Upgrade: websocket\r\n", ""), HandshakeError::MissingUpgrade),
            (sample_with("Upgrade: websocket", "Upgrade: websockets"), HandshakeError::MissingUpgrade),
            (sample_with("Connection: Upgrade\r\n", ""), HandshakeError::MissingConnectionUpgrade),
            (
                sample_with("Connection: Upgrade", "Connection: keep-alive"),
                HandshakeError::MissingConnectionUpgrade,
            ),
            (
                sample_with("Connection: Upgrade", "Connection: Upgrade-Insecure"),
                HandshakeError::MissingConnectionUpgrade,
            ),
            (
                sample_with("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
                HandshakeError::BadKey,
            ),
            (
                sample_with(
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                ),
                HandshakeError::BadKey,
            ),
            (sample_with("Sec-WebSocket-Version: 13\r\n", ""), HandshakeError::UnsupportedVersion),
            (sample_with("Version: 13", "Version: 8"), HandshakeError::UnsupportedVersion),
            (sample_with("Version: 13", "Version: 13, 8"), HandshakeError::UnsupportedVersion),
            (
                sample_with("Version: 13", "Version: 13\r\nSec-WebSocket-Version: 13"),
                HandshakeError::UnsupportedVersion,
            ),
        ];
        for (head, error) in cases {
            assert_eq!(check_error(&head), Some(error), "{head}");
        }
    }

    #[test]
    fn rejects_keys_that_are_not_base64_of_16_bytes() {
        for key in [
            "",
            "dGhlIHNhbXBsZSBub25jZQ",       // no padding
            "dGhlIHNhbXBsZSBub25jZQ=",      // short padding
            "dGhlIHNhbXBsZSBub25jZQ===",    // extra padding
            "dGhlIHNhbXBsZSBub25jZR==",     // non-canonical trailing bits
            "dGhlIHNhbXBsZSBub25jZ!==",     // not base64
            "dGhlIHNhbXBsZSBub25jZWVl",     // 18 bytes
            "dGhlIHNhbXBsZSBub25j",         // 15 bytes
            "dGhlIHNhbXBsZSBub25jZQ==AAAA", // 19 bytes
            "dGhlIHNhbXBs ZSBub25jZQ==",    // inner space
        ] {
            let head = sample_with("dGhlIHNhbXBsZSBub25jZQ==", key);
            assert_eq!(check_error(&head), Some(HandshakeError::BadKey), "{key:?}");
        }
        // OWS around the value is not part of it (RFC 9110 §5.5).
        let head = sample_with(
            "Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Key:  dGhlIHNhbXBsZSBub25jZQ==\t",
        );
        assert_eq!(check_error(&head), None);
    }

    #[test]
    fn is_upgrade_request_spots_websocket_in_upgrade_list() {
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let req = parse_request(
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: foo, WEBSOCKET\r\n\r\n",
            &mut headers,
        )
        .unwrap();
        assert!(is_upgrade_request(&req));
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let req = parse_request(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: websocket\r\n\r\n",
            &mut headers,
        )
        .unwrap();
        assert!(!is_upgrade_request(&req));
    }

    #[test]
    fn origin_policies() {
        assert!(OriginPolicy::default().allows(None));
        assert!(OriginPolicy::Any.allows(Some("https://evil.example")));

        let list = OriginPolicy::AllowList(vec![
            "https://example.com".into(),
            "http://localhost:6788".into(),
        ]);
        assert!(list.allows(Some("https://example.com")));
        assert!(list.allows(Some("HTTPS://EXAMPLE.COM")));
        assert!(list.allows(Some("http://localhost:6788")));
        assert!(!list.allows(Some("https://example.com.evil.example")));
        assert!(!list.allows(Some("https://example.co")));
        assert!(!list.allows(Some("http://example.com")));
        assert!(!list.allows(Some("null")));
        assert!(!list.allows(None));

        let check = OriginPolicy::Check(Arc::new(|origin| {
            origin.is_none_or(|o| o.ends_with(".example.com"))
        }));
        assert!(check.allows(None));
        assert!(check.allows(Some("https://app.example.com")));
        assert!(!check.allows(Some("https://evil.example")));

        assert_eq!(format!("{:?}", OriginPolicy::Any), "Any");
        assert_eq!(format!("{check:?}"), "Check(..)");
        assert_eq!(
            format!("{list:?}"),
            r#"AllowList(["https://example.com", "http://localhost:6788"])"#
        );
    }

    #[test]
    fn check_origin_refuses_cross_site_request_with_403() {
        let policy = OriginPolicy::AllowList(vec!["http://example.com".into()]);
        with_check(RFC6455_REQUEST, |result| {
            assert_eq!(result.unwrap().check_origin(&policy), Ok(()))
        });
        let evil = sample_with("Origin: http://example.com", "Origin: https://evil.example");
        with_check(&evil, |result| {
            assert_eq!(
                result.unwrap().check_origin(&policy),
                Err(HandshakeError::ForbiddenOrigin)
            );
        });
        let absent = sample_with("Origin: http://example.com\r\n", "");
        with_check(&absent, |result| {
            let upgrade = result.unwrap();
            assert_eq!(upgrade.origin(), None);
            assert_eq!(
                upgrade.check_origin(&policy),
                Err(HandshakeError::ForbiddenOrigin)
            );
            assert_eq!(upgrade.check_origin(&OriginPolicy::Any), Ok(()));
        });
        assert_eq!(HandshakeError::ForbiddenOrigin.status(), 403);
    }

    #[test]
    fn rejection_responses() {
        let mut out = Vec::new();
        HandshakeError::UnsupportedVersion.write_response(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 426 Upgrade Required\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nConnection: Upgrade, close\r\n\
             Content-Length: 34\r\n\r\nunsupported Sec-WebSocket-Version\n"
        );
        let mut out = Vec::new();
        HandshakeError::NotGet.write_response(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Allow: GET\r\nConnection: close\r\n\
             Content-Length: 35\r\n\r\na WebSocket handshake must use GET\n"
        );
    }

    #[test]
    fn every_error_writes_a_parseable_closing_response() {
        for error in [
            HandshakeError::NotGet,
            HandshakeError::NotHttp11,
            HandshakeError::MissingHost,
            HandshakeError::MissingUpgrade,
            HandshakeError::MissingConnectionUpgrade,
            HandshakeError::BadKey,
            HandshakeError::UnsupportedVersion,
            HandshakeError::ForbiddenOrigin,
            HandshakeError::ProtocolNotOffered,
        ] {
            let mut out = Vec::new();
            error.write_response(&mut out);
            let mut headers = [httparse::EMPTY_HEADER; 8];
            let mut response = httparse::Response::new(&mut headers);
            let Ok(httparse::Status::Complete(head_len)) = response.parse(&out) else {
                panic!("unparseable response for {error:?}");
            };
            assert_eq!(response.code, Some(error.status()));
            let close = response
                .headers
                .iter()
                .find(|h| h.name == "Connection")
                .unwrap();
            assert!(close.value.ends_with(b"close"));
            let length = response
                .headers
                .iter()
                .find(|h| h.name == "Content-Length")
                .unwrap();
            assert_eq!(length.value, (out.len() - head_len).to_string().as_bytes());
            assert!(error.to_string().contains(&error.status().to_string()));
        }
    }
}
