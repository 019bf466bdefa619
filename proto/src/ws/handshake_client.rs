//! The WebSocket opening handshake, client side: the request head out, the
//! server's response head in, and the checks RFC 6455 makes the client apply
//! before the connection counts as open.
//!
//! Reading list:
//! - RFC 6455 §1.3 (the handshake and its worked example), §4.1 (the client's
//!   requirements, and the six "the client MUST _Fail the WebSocket
//!   Connection_" checks on the response), §9.1 (extension negotiation), §11.3
//!   (the `Sec-WebSocket-*` fields; §11.3.3 and §11.3.4: `Sec-WebSocket-Accept`
//!   and `Sec-WebSocket-Protocol` appear at most once in a response).
//! - RFC 7936 §2 (subprotocol names match case-sensitively).
//! - RFC 9112 §3.2.1 (origin-form request targets), RFC 9110 §5.5 (field
//!   values), §5.6.2 (tokens).
//!
//! How to drive it (the caller owns the socket and the randomness):
//!
//! ```text
//! 16 random bytes ─→ ClientKey::new ─→ ClientRequest::write ─→ bytes to send
//! bytes received ─→ http::response_head::ResponseHeadScanner ─→ head_len
//! &buf[..head_len] ─→ ClientRequest::read_response ─→ Accepted | AcceptError
//! &buf[head_len..] ─→ the first WebSocket frames (a server may send at once)
//! ```
//!
//! Failing the connection at this stage (§7.1.7) sends nothing: there is no
//! WebSocket yet to send a Close frame on, so the client closes TCP.

use alloc::vec::Vec;
use core::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::http::httparse;
use crate::http::response_head::{parse_response, ResponseError, ResponseHead};
use crate::http::syntax::{is_token, list_elements, trim_ows};
use crate::ws::handshake::accept_key;

/// A `Sec-WebSocket-Key`: the base64 of a 16-byte nonce (RFC 6455 §4.1 item
/// 7), always 24 ASCII bytes.
///
/// The nonce "MUST be selected randomly for each connection": this crate has
/// no randomness, so the caller passes 16 fresh random bytes (pushloop's
/// client takes them from the OS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientKey([u8; 24]);

impl ClientKey {
    /// The key for this nonce.
    ///
    /// ```
    /// use pushloop_proto::ws::handshake_client::ClientKey;
    /// // RFC 6455 §4.1: "the nonce ... 'the sample nonce'"
    /// assert_eq!(ClientKey::new(*b"the sample nonce").as_str(), "dGhlIHNhbXBsZSBub25jZQ==");
    /// ```
    pub fn new(nonce: [u8; 16]) -> ClientKey {
        let mut key = [0u8; 24];
        // 16 bytes always encode to exactly 24 base64 bytes (RFC 4648 §4: five
        // groups of 3 and one padded group), so this cannot fail.
        let written = BASE64.encode_slice(nonce, &mut key);
        debug_assert_eq!(written, Ok(24));
        ClientKey(key)
    }

    /// The key as sent in the request.
    pub fn as_str(&self) -> &str {
        // base64 output is ASCII, so this is never the fallback.
        core::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// What the client asks for. Build one with [`ClientRequest::new`] and set
/// the optional fields directly.
#[derive(Clone, Copy, Debug)]
pub struct ClientRequest<'a> {
    /// The `Host` value: the URL's host, with its port unless it is the
    /// scheme's default, IPv6 literals in brackets (RFC 6455 §4.1 item 4).
    pub host: &'a str,
    /// The request target in origin-form: the URL's path and query, e.g.
    /// `/chat?topics=a` (RFC 6455 §4.1 item 3, RFC 9112 §3.2.1).
    pub target: &'a str,
    /// The `Origin` field: browsers always send it, other clients may (RFC 6455
    /// §4.1 item 8, §10.2).
    pub origin: Option<&'a str>,
    /// Subprotocols in order of preference, each a token, no two equal (RFC
    /// 6455 §4.1 item 10). Empty: no `Sec-WebSocket-Protocol` field.
    pub protocols: &'a [&'a str],
    /// The `Sec-WebSocket-Extensions` offer, as written by the extension's own
    /// negotiation code (e.g. `permessage-deflate; client_max_window_bits`);
    /// carried opaquely (RFC 6455 §4.1 item 11, §9.1).
    pub extensions: Option<&'a str>,
    /// More fields (`Authorization`, `Cookie`, `User-Agent`...), written after
    /// the handshake's own. A field the handshake writes itself is refused.
    pub headers: &'a [(&'a str, &'a str)],
}

/// The fields the handshake writes itself, which [`ClientRequest::headers`]
/// may not repeat (a second `Host` is refused by servers, RFC 9112 §3.2; a
/// second key or version by RFC 6455 §4.2.1).
const HANDSHAKE_FIELDS: [&str; 8] = [
    "host",
    "upgrade",
    "connection",
    "origin",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
];

impl<'a> ClientRequest<'a> {
    /// A request for `target` on `host`, with no Origin, no subprotocol, no
    /// extension and no extra field.
    pub fn new(host: &'a str, target: &'a str) -> ClientRequest<'a> {
        ClientRequest {
            host,
            target,
            origin: None,
            protocols: &[],
            extensions: None,
            headers: &[],
        }
    }

    /// Appends the request head (RFC 6455 §4.1 items 1-11), in the order of
    /// the §1.3 example:
    ///
    /// ```text
    /// GET {target} HTTP/1.1               ; item 2: HTTP/1.1 GET, origin-form
    /// Host: {host}                        ; item 4
    /// Upgrade: websocket                  ; item 5
    /// Connection: Upgrade                 ; item 6
    /// Sec-WebSocket-Key: {key}            ; item 7
    /// Origin: {origin}                    ; item 8, when set
    /// Sec-WebSocket-Protocol: {a}, {b}    ; item 10, when any
    /// Sec-WebSocket-Version: 13           ; item 9
    /// Sec-WebSocket-Extensions: {offer}   ; item 11, when set
    /// {headers}                           ; item 12
    /// ```
    ///
    /// Nothing is written when a part would break the head (a CR or LF
    /// anywhere, a target that is not origin-form, a subprotocol that is not a
    /// token): that is the caller's bug, reported as a [`RequestError`].
    ///
    /// ```
    /// use pushloop_proto::ws::handshake_client::{ClientKey, ClientRequest};
    /// let mut out = Vec::new();
    /// let key = ClientKey::new([7; 16]);
    /// ClientRequest::new("127.0.0.1:6788", "/echo").write(&key, &mut out)?;
    /// assert!(out.starts_with(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1:6788\r\n"));
    /// # Ok::<(), pushloop_proto::ws::handshake_client::RequestError>(())
    /// ```
    pub fn write(&self, key: &ClientKey, out: &mut Vec<u8>) -> Result<(), RequestError> {
        self.validate()?;
        out.extend_from_slice(b"GET ");
        out.extend_from_slice(self.target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        write_field(out, "Host", &[self.host]);
        write_field(out, "Upgrade", &["websocket"]);
        write_field(out, "Connection", &["Upgrade"]);
        write_field(out, "Sec-WebSocket-Key", &[key.as_str()]);
        if let Some(origin) = self.origin {
            write_field(out, "Origin", &[origin]);
        }
        if !self.protocols.is_empty() {
            write_field(out, "Sec-WebSocket-Protocol", self.protocols);
        }
        write_field(out, "Sec-WebSocket-Version", &["13"]);
        if let Some(offer) = self.extensions {
            write_field(out, "Sec-WebSocket-Extensions", &[offer]);
        }
        for (name, value) in self.headers {
            write_field(out, name, &[value]);
        }
        out.extend_from_slice(b"\r\n");
        Ok(())
    }

    /// Checks every part [`ClientRequest::write`] would write.
    fn validate(&self) -> Result<(), RequestError> {
        // RFC 9112 §3.2.1: origin-form = absolute-path [ "?" query ], whose
        // characters are all visible ASCII (RFC 3986 §3.3, §3.4).
        let visible = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
        if !self.target.starts_with('/') || !visible(self.target) {
            return Err(RequestError::BadTarget);
        }
        // RFC 9110 §7.2: Host = uri-host [ ":" port ], visible ASCII.
        if self.host.is_empty() || !visible(self.host) {
            return Err(RequestError::BadHost);
        }
        if self.origin.is_some_and(|origin| !is_field_value(origin)) {
            return Err(RequestError::BadOrigin);
        }
        // RFC 6455 §4.1 item 10: "non-empty strings with characters in the
        // range U+0021 to U+007E not including separator characters ... and
        // MUST all be unique strings" — tokens (RFC 9110 §5.6.2), no repeats.
        for (i, protocol) in self.protocols.iter().enumerate() {
            let repeated = self
                .protocols
                .get(..i)
                .unwrap_or_default()
                .contains(protocol);
            if !is_token(protocol.as_bytes()) || repeated {
                return Err(RequestError::BadProtocol);
            }
        }
        if self.extensions.is_some_and(|offer| !is_field_value(offer)) {
            return Err(RequestError::BadExtensions);
        }
        for (name, value) in self.headers {
            let ours = HANDSHAKE_FIELDS
                .iter()
                .any(|field| field.eq_ignore_ascii_case(name));
            if ours || !is_token(name.as_bytes()) || !is_field_value(value) {
                return Err(RequestError::BadHeader);
            }
        }
        Ok(())
    }

    /// Parses a complete response head (as delimited by
    /// [`crate::http::response_head::ResponseHeadScanner`]) with `headers` as
    /// its header slots, and checks it with [`ClientRequest::check_response`].
    pub fn read_response<'r>(
        &self,
        key: &ClientKey,
        head: &'r [u8],
        headers: &'r mut [httparse::Header<'r>],
    ) -> Result<Accepted<'r>, AcceptError> {
        let response = parse_response(head, headers).map_err(AcceptError::Response)?;
        self.check_response(key, &response)
    }

    /// The client's checks on the server's handshake (RFC 6455 §4.1, "If the
    /// server's response does not conform to the requirements ... the client
    /// MUST _Fail the WebSocket Connection_"), in the RFC's order.
    ///
    /// On success the connection is open: the protocol chosen, and the
    /// extensions the server accepted — each one offered, its parameters left
    /// to the extension's negotiation code to validate (§9.1).
    pub fn check_response<'r>(
        &self,
        key: &ClientKey,
        response: &ResponseHead<'r>,
    ) -> Result<Accepted<'r>, AcceptError> {
        // §4.1 item 1: "If the status code received from the server is not
        // 101, the client handles the response per HTTP procedures" — a
        // refusal, a redirect, an authentication challenge: no WebSocket.
        if response.status() != 101 {
            return Err(AcceptError::Status(response.status()));
        }
        // §4.1 item 2: an `Upgrade` field whose value is "websocket", ASCII
        // case-insensitively. One field line holding exactly that value.
        let mut upgrades = response.header_all("upgrade");
        match (upgrades.next(), upgrades.next()) {
            (Some(value), None) if trim_ows(value).eq_ignore_ascii_case(b"websocket") => {}
            _ => return Err(AcceptError::MissingUpgrade),
        }
        // §4.1 item 3: a `Connection` field holding "Upgrade", ASCII
        // case-insensitively (a list, RFC 9110 §7.6.1).
        if !response.has_token("connection", "upgrade") {
            return Err(AcceptError::MissingConnectionUpgrade);
        }
        // §4.1 item 4: `Sec-WebSocket-Accept` is base64(SHA-1(key ++ GUID)),
        // compared exactly (it is not case-insensitive); §11.3.3: one field.
        let mut accepts = response.header_all("sec-websocket-accept");
        match (accepts.next(), accepts.next()) {
            (Some(accept), None) if trim_ows(accept) == accept_key(&key.0) => {}
            _ => return Err(AcceptError::BadAccept),
        }
        // §4.1 item 5: every extension in use must have been offered.
        for extension in response
            .header_all("sec-websocket-extensions")
            .flat_map(list_elements)
        {
            let offered = extension_name(extension)
                .is_some_and(|name| self.offered_extensions().any(|offer| offer == name));
            if !offered {
                return Err(AcceptError::ExtensionNotOffered);
            }
        }
        // §4.1 item 6: a subprotocol only if offered, matched case-sensitively
        // (RFC 7936 §2); §11.3.4: at most one field, one value.
        let mut protocols = response.header_all("sec-websocket-protocol");
        let protocol = match (protocols.next(), protocols.next()) {
            (None, _) => None,
            (Some(value), None) => {
                let value = core::str::from_utf8(trim_ows(value)).ok();
                match value.filter(|value| self.protocols.contains(value)) {
                    Some(protocol) => Some(protocol),
                    None => return Err(AcceptError::ProtocolNotOffered),
                }
            }
            (Some(_), Some(_)) => return Err(AcceptError::ProtocolNotOffered),
        };
        Ok(Accepted {
            protocol,
            response: *response,
        })
    }

    /// The names of the extensions offered (§9.1: `extension-token` before any
    /// `;` parameters).
    fn offered_extensions(&self) -> impl Iterator<Item = &'a [u8]> {
        self.extensions
            .map(str::as_bytes)
            .into_iter()
            .flat_map(list_elements)
            .filter_map(extension_name)
    }
}

/// The name of one extension of a `Sec-WebSocket-Extensions` list (RFC 6455
/// §9.1), if it is a token:
///
/// ```text
/// extension = extension-token *( ";" extension-param )
/// ```
fn extension_name(extension: &[u8]) -> Option<&[u8]> {
    let name = trim_ows(extension.split(|&b| b == b';').next()?);
    is_token(name).then_some(name)
}

/// Is `value` safe as a field value: no control byte but HTAB (RFC 9110 §5.5:
/// CR, LF and NUL are "invalid and dangerous")?
fn is_field_value(value: &str) -> bool {
    value.bytes().all(|b| b == b'\t' || !b.is_ascii_control())
}

/// Appends `name: v1, v2, ...\r\n`.
fn write_field(out: &mut Vec<u8>, name: &str, values: &[&str]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// A server's handshake that passed every check of RFC 6455 §4.1: the
/// WebSocket connection is established.
#[derive(Clone, Copy, Debug)]
pub struct Accepted<'r> {
    protocol: Option<&'r str>,
    response: ResponseHead<'r>,
}

impl<'r> Accepted<'r> {
    /// The subprotocol the server chose, one the client offered; `None` when it
    /// chose none (allowed even when some were offered, RFC 6455 §4.1 item 6).
    pub fn protocol(&self) -> Option<&'r str> {
        self.protocol
    }

    /// The extensions the server accepted, one item per extension with its
    /// parameters (`permessage-deflate; server_no_context_takeover`), across
    /// every `Sec-WebSocket-Extensions` field line (§9.1 lets them be split or
    /// combined). Each was offered; whether its parameters are acceptable is
    /// for the extension's negotiation to decide, which must fail the
    /// connection if they are not. Values that are not UTF-8 are skipped.
    pub fn extensions(&self) -> impl Iterator<Item = &'r str> {
        self.response
            .header_all("sec-websocket-extensions")
            .flat_map(list_elements)
            .filter_map(|extension| core::str::from_utf8(extension).ok())
    }

    /// The whole response head, for other fields (`Set-Cookie`, ...).
    pub fn response(&self) -> &ResponseHead<'r> {
        &self.response
    }
}

/// Every way a server's opening handshake fails the connection on the client
/// (RFC 6455 §4.1). Each variant says what the server did. The wire answer is
/// always to close TCP without a Close frame (§7.1.7: the WebSocket never
/// opened).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptError {
    /// Sent a response head that is not valid HTTP/1.x.
    Response(ResponseError),
    /// Answered with this status instead of 101 Switching Protocols (§4.1
    /// item 1): refused (e.g. 404, or 426 with the versions it speaks), asked
    /// for credentials (401), or redirected (3xx, not followed here).
    Status(u16),
    /// Sent no `Upgrade: websocket`, or more than one `Upgrade` field (§4.1
    /// item 2).
    MissingUpgrade,
    /// Sent no `Connection` field holding `Upgrade` (§4.1 item 3).
    MissingConnectionUpgrade,
    /// Sent no `Sec-WebSocket-Accept`, more than one, or one that is not
    /// base64(SHA-1(key ++ GUID)) of our key (§4.1 item 4, §11.3.3): it did not
    /// read our handshake, or a cache or proxy answered.
    BadAccept,
    /// Accepted an extension we did not offer (§4.1 item 5).
    ExtensionNotOffered,
    /// Chose a subprotocol we did not offer (case-sensitively, RFC 7936 §2), or
    /// sent more than one (§4.1 item 6, §11.3.4).
    ProtocolNotOffered,
}

impl fmt::Display for AcceptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcceptError::Response(error) => write!(f, "bad handshake response: {error}"),
            AcceptError::Status(status) => {
                write!(f, "the server answered {status} instead of 101")
            }
            AcceptError::MissingUpgrade => f.write_str("the server sent no Upgrade: websocket"),
            AcceptError::MissingConnectionUpgrade => {
                f.write_str("the server sent no Connection: Upgrade")
            }
            AcceptError::BadAccept => {
                f.write_str("the server's Sec-WebSocket-Accept does not match our key")
            }
            AcceptError::ExtensionNotOffered => {
                f.write_str("the server accepted an extension we did not offer")
            }
            AcceptError::ProtocolNotOffered => {
                f.write_str("the server chose a subprotocol we did not offer")
            }
        }
    }
}

impl core::error::Error for AcceptError {}

/// A request [`ClientRequest::write`] refuses to write: the caller's bug, not
/// the server's (nothing was sent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// The target is not origin-form: it must start with `/` and hold only
    /// visible ASCII (RFC 9112 §3.2.1; percent-encode the rest).
    BadTarget,
    /// The host is empty or holds a byte that is not visible ASCII.
    BadHost,
    /// The Origin holds a control byte (RFC 9110 §5.5).
    BadOrigin,
    /// A subprotocol is not a token, or is listed twice (RFC 6455 §4.1 item 10).
    BadProtocol,
    /// The extension offer holds a control byte (RFC 9110 §5.5).
    BadExtensions,
    /// An extra field's name is not a token or is one the handshake writes
    /// itself, or its value holds a control byte.
    BadHeader,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RequestError::BadTarget => "the request target is not an origin-form path",
            RequestError::BadHost => "the host is empty or not visible ASCII",
            RequestError::BadOrigin => "the Origin holds a control byte",
            RequestError::BadProtocol => "a subprotocol is not a token or is repeated",
            RequestError::BadExtensions => "the extension offer holds a control byte",
            RequestError::BadHeader => "an extra header field is malformed or reserved",
        })
    }
}

impl core::error::Error for RequestError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::response_head::ResponseHeadScanner;
    use alloc::string::{String, ToString};

    /// RFC 6455 §1.3: the client's handshake. Its key is §4.1's example,
    /// the base64 of "the sample nonce".
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

    const SAMPLE_NONCE: [u8; 16] = *b"the sample nonce";

    /// The §1.3 client: its host, target, Origin and subprotocols.
    fn rfc6455_client() -> ClientRequest<'static> {
        ClientRequest {
            origin: Some("http://example.com"),
            protocols: &["chat", "superchat"],
            ..ClientRequest::new("server.example.com", "/chat")
        }
    }

    /// The §1.3 response with `from` replaced by `to`.
    fn response_with(from: &str, to: &str) -> String {
        assert!(RFC6455_RESPONSE.contains(from), "{from}");
        RFC6455_RESPONSE.replacen(from, to, 1)
    }

    /// Runs `request`'s checks on `response` (a whole head) and returns the
    /// protocol and extensions accepted.
    fn check(
        request: &ClientRequest<'_>,
        response: &str,
    ) -> Result<(Option<String>, Vec<String>), AcceptError> {
        let key = ClientKey::new(SAMPLE_NONCE);
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let accepted = request.read_response(&key, response.as_bytes(), &mut headers)?;
        Ok((
            accepted.protocol().map(String::from),
            accepted.extensions().map(String::from).collect(),
        ))
    }

    #[test]
    fn key_and_accept_match_rfc6455_sections_1_3_and_4_1() {
        let key = ClientKey::new(SAMPLE_NONCE);
        assert_eq!(key.as_str(), "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(&accept_key(&key.0), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn writes_rfc6455_section_1_3_request_exactly() {
        let mut out = Vec::new();
        rfc6455_client()
            .write(&ClientKey::new(SAMPLE_NONCE), &mut out)
            .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), RFC6455_REQUEST);
    }

    #[test]
    fn written_request_passes_the_server_side_check() {
        use crate::http::parse_request;
        use crate::ws::handshake;
        let request = ClientRequest {
            extensions: Some("permessage-deflate; client_max_window_bits"),
            headers: &[
                ("Authorization", "Bearer t0k3n"),
                ("User-Agent", "pushloop"),
            ],
            ..rfc6455_client()
        };
        let mut out = Vec::new();
        request
            .write(&ClientKey::new([0xA5; 16]), &mut out)
            .unwrap();
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let parsed = parse_request(&out, &mut headers).unwrap();
        assert_eq!(parsed.header_str("authorization"), Some("Bearer t0k3n"));
        assert_eq!(
            parsed.header_str("sec-websocket-extensions"),
            Some("permessage-deflate; client_max_window_bits")
        );
        let upgrade = handshake::check(&parsed).unwrap();
        assert_eq!(upgrade.key(), ClientKey::new([0xA5; 16]).as_str());
        assert_eq!(upgrade.offered_protocols().count(), 2);
    }

    #[test]
    fn minimal_request_has_no_optional_fields() {
        let mut out = Vec::new();
        ClientRequest::new("[::1]:6788", "/echo?x=1")
            .write(&ClientKey::new(SAMPLE_NONCE), &mut out)
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /echo?x=1 HTTP/1.1\r\nHost: [::1]:6788\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
    }

    #[test]
    fn refuses_to_write_a_request_that_would_break_the_head() {
        let base = ClientRequest::new("example.com", "/chat");
        let cases = [
            (
                ClientRequest {
                    target: "chat",
                    ..base
                },
                RequestError::BadTarget,
            ),
            (
                ClientRequest {
                    target: "/a b",
                    ..base
                },
                RequestError::BadTarget,
            ),
            (
                ClientRequest {
                    target: "/a\r\nX: y",
                    ..base
                },
                RequestError::BadTarget,
            ),
            (
                ClientRequest {
                    target: "/caf\u{e9}",
                    ..base
                },
                RequestError::BadTarget,
            ),
            (ClientRequest { host: "", ..base }, RequestError::BadHost),
            (
                ClientRequest {
                    host: "a\r\nX: y",
                    ..base
                },
                RequestError::BadHost,
            ),
            (
                ClientRequest {
                    origin: Some("http://a\n"),
                    ..base
                },
                RequestError::BadOrigin,
            ),
            (
                ClientRequest {
                    protocols: &["a b"],
                    ..base
                },
                RequestError::BadProtocol,
            ),
            (
                ClientRequest {
                    protocols: &[""],
                    ..base
                },
                RequestError::BadProtocol,
            ),
            (
                ClientRequest {
                    protocols: &["chat", "chat"],
                    ..base
                },
                RequestError::BadProtocol,
            ),
            (
                ClientRequest {
                    extensions: Some("x\r\n"),
                    ..base
                },
                RequestError::BadExtensions,
            ),
            (
                ClientRequest {
                    headers: &[("X Y", "z")],
                    ..base
                },
                RequestError::BadHeader,
            ),
            (
                ClientRequest {
                    headers: &[("X", "a\0")],
                    ..base
                },
                RequestError::BadHeader,
            ),
            (
                ClientRequest {
                    headers: &[("host", "evil")],
                    ..base
                },
                RequestError::BadHeader,
            ),
            (
                ClientRequest {
                    headers: &[("Sec-WebSocket-Version", "8")],
                    ..base
                },
                RequestError::BadHeader,
            ),
        ];
        for (request, error) in cases {
            let mut out = Vec::new();
            assert_eq!(
                request.write(&ClientKey::new(SAMPLE_NONCE), &mut out),
                Err(error),
                "{request:?}"
            );
            assert!(out.is_empty());
        }
    }

    #[test]
    fn accepts_rfc6455_section_1_3_response() {
        assert_eq!(
            check(&rfc6455_client(), RFC6455_RESPONSE),
            Ok((Some("chat".into()), Vec::new()))
        );
    }

    #[test]
    fn accepts_frames_right_after_the_head() {
        // A server may send its first frame in the same segment as the 101.
        let mut buf = RFC6455_RESPONSE.as_bytes().to_vec();
        buf.extend_from_slice(b"\x81\x05Hello");
        let head_len = ResponseHeadScanner::new(1024).scan(&buf).unwrap().unwrap();
        assert_eq!(&buf[head_len..], b"\x81\x05Hello");
        let key = ClientKey::new(SAMPLE_NONCE);
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let accepted = rfc6455_client()
            .read_response(&key, &buf[..head_len], &mut headers)
            .unwrap();
        assert_eq!(accepted.protocol(), Some("chat"));
        assert_eq!(accepted.response().status(), 101);
    }

    #[test]
    fn accepts_no_subprotocol_and_tokens_in_any_case() {
        let response = response_with("Sec-WebSocket-Protocol: chat\r\n", "")
            .replacen("Upgrade: websocket", "upgrade:  WebSocket ", 1)
            .replacen("Connection: Upgrade", "connection: keep-alive, UPGRADE", 1);
        assert_eq!(check(&rfc6455_client(), &response), Ok((None, Vec::new())));
    }

    #[test]
    fn hands_back_offered_extensions_with_their_parameters() {
        let request = ClientRequest {
            extensions: Some("permessage-deflate; client_max_window_bits, x-webkit-deflate-frame"),
            ..rfc6455_client()
        };
        let response = response_with(
            "Sec-WebSocket-Protocol",
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\
             sec-websocket-extensions: x-webkit-deflate-frame\r\nSec-WebSocket-Protocol",
        );
        assert_eq!(
            check(&request, &response),
            Ok((
                Some("chat".into()),
                [
                    "permessage-deflate; server_no_context_takeover",
                    "x-webkit-deflate-frame"
                ]
                .map(String::from)
                .to_vec()
            ))
        );
    }

    #[test]
    fn fails_the_connection_on_each_rfc6455_section_4_1_violation() {
        let deflate = ClientRequest {
            extensions: Some("permessage-deflate"),
            ..rfc6455_client()
        };
        let cases = [
            // item 1
            (
                response_with("101 Switching Protocols", "200 OK"),
                AcceptError::Status(200),
            ),
            (
                "HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n\r\n".into(),
                AcceptError::Status(426),
            ),
            // item 2
            (
                response_with("Upgrade: websocket\r\n", ""),
                AcceptError::MissingUpgrade,
            ),
            (
                response_with("Upgrade: websocket", "Upgrade: h2c"),
                AcceptError::MissingUpgrade,
            ),
            (
                response_with("Upgrade: websocket", "Upgrade: websocket, h2c"),
                AcceptError::MissingUpgrade,
            ),
            (
                response_with(
                    "Upgrade: websocket",
                    "Upgrade: websocket\r\nUpgrade: websocket",
                ),
                AcceptError::MissingUpgrade,
            ),
            // item 3
            (
                response_with("Connection: Upgrade\r\n", ""),
                AcceptError::MissingConnectionUpgrade,
            ),
            (
                response_with("Connection: Upgrade", "Connection: keep-alive"),
                AcceptError::MissingConnectionUpgrade,
            ),
            // item 4
            (
                response_with("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", ""),
                AcceptError::BadAccept,
            ),
            (
                response_with(
                    "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
                    "S3PPLMBITXAQ9KYGZZHZRBK+XOO=",
                ),
                AcceptError::BadAccept,
            ),
            (
                response_with("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "dGhlIHNhbXBsZSBub25jZQ=="),
                AcceptError::BadAccept,
            ),
            (
                response_with(
                    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
                    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
                     Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
                ),
                AcceptError::BadAccept,
            ),
            // item 5 (rfc6455_client offers no extension)
            (
                response_with(
                    "Sec-WebSocket-Protocol",
                    "Sec-WebSocket-Extensions: permessage-deflate\r\nSec-WebSocket-Protocol",
                ),
                AcceptError::ExtensionNotOffered,
            ),
            // item 6
            (
                response_with("Protocol: chat", "Protocol: mqtt"),
                AcceptError::ProtocolNotOffered,
            ),
            (
                response_with("Protocol: chat", "Protocol: Chat"),
                AcceptError::ProtocolNotOffered,
            ),
            (
                response_with("Protocol: chat", "Protocol: chat, superchat"),
                AcceptError::ProtocolNotOffered,
            ),
            (
                response_with(
                    "Protocol: chat",
                    "Protocol: chat\r\nSec-WebSocket-Protocol: chat",
                ),
                AcceptError::ProtocolNotOffered,
            ),
            (
                response_with("Protocol: chat", "Protocol: "),
                AcceptError::ProtocolNotOffered,
            ),
            // not HTTP at all
            (
                "<html>hello</html>\r\n\r\n".into(),
                AcceptError::Response(ResponseError::NotHttp1),
            ),
        ];
        for (response, error) in cases {
            assert_eq!(
                check(&rfc6455_client(), &response),
                Err(error),
                "{response}"
            );
        }
        // An extension other than the one offered, or a malformed name.
        for accepted in [
            "permessage-bzip2",
            "permessage-deflate2",
            "; x=1",
            "\"permessage-deflate\"",
        ] {
            let response = response_with(
                "Sec-WebSocket-Protocol",
                &[
                    "Sec-WebSocket-Extensions: ",
                    accepted,
                    "\r\nSec-WebSocket-Protocol",
                ]
                .concat(),
            );
            assert_eq!(
                check(&deflate, &response),
                Err(AcceptError::ExtensionNotOffered),
                "{accepted}"
            );
        }
    }

    #[test]
    fn every_error_says_what_went_wrong() {
        let accept_errors = [
            AcceptError::Response(ResponseError::NotHttp1),
            AcceptError::Status(404),
            AcceptError::MissingUpgrade,
            AcceptError::MissingConnectionUpgrade,
            AcceptError::BadAccept,
            AcceptError::ExtensionNotOffered,
            AcceptError::ProtocolNotOffered,
        ];
        let request_errors = [
            RequestError::BadTarget,
            RequestError::BadHost,
            RequestError::BadOrigin,
            RequestError::BadProtocol,
            RequestError::BadExtensions,
            RequestError::BadHeader,
        ];
        let messages: Vec<String> = accept_errors
            .iter()
            .map(ToString::to_string)
            .chain(request_errors.iter().map(ToString::to_string))
            .collect();
        for (i, message) in messages.iter().enumerate() {
            assert!(!messages[..i].contains(message), "{message}");
        }
        assert!(AcceptError::Status(404).to_string().contains("404"));
    }
}
