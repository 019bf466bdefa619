//! Negotiating permessage-deflate in the opening handshake: the server picks
//! an offer and answers it, the client offers and checks the answer.
//!
//! Reading list:
//! - RFC 6455 §9.1 (the `Sec-WebSocket-Extensions` grammar, below; offers in
//!   order of preference; the field may be split across several lines), §4.1
//!   (a client fails the connection on an extension it did not offer), §4.2.2
//!   (a server answers with the extensions it accepts).
//! - RFC 7692 §5 (offers and responses: a server declines an offer it cannot
//!   honour and may accept a later one; a client fails on a response it cannot
//!   honour; unknown, repeated or invalid parameters), §7.1.1.1-§7.1.1.2
//!   (`server_no_context_takeover`, `client_no_context_takeover`),
//!   §7.1.2.1-§7.1.2.2 (`server_max_window_bits`, `client_max_window_bits`).
//! - RFC 9110 §5.6.1 (lists and empty elements), §5.6.2 (tokens), §5.6.4
//!   (quoted strings), §5.3 (several field lines are one comma-separated list).
//!
//! ```text
//! Sec-WebSocket-Extensions = extension-list
//! extension-list = 1#extension
//! extension      = extension-token *( ";" extension-param )
//! extension-param = token [ "=" (token | quoted-string) ]
//!     ; a quoted-string, once unescaped, MUST be a token
//! ```

use alloc::vec::Vec;
use core::fmt;

use super::codec::{bounded_window_bits as bounded, Direction, MAX_WINDOW_BITS, MIN_WINDOW_BITS};
use crate::http::syntax::{is_token, trim_ows, write_decimal};
use crate::ws::close::CloseCode;
use crate::ws::frame::Role;

/// The extension's registered name (RFC 7692 §7, §9).
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// What both ends agreed on: the "agreed parameters" of RFC 7692 §7.1, with
/// an absent window-bits parameter read as 15.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgreedParams {
    /// The server starts every message from an empty window (§7.1.1.1).
    pub server_no_context_takeover: bool,
    /// The client starts every message from an empty window (§7.1.1.2).
    pub client_no_context_takeover: bool,
    /// The server's window, log2, 8..=15 (§7.1.2.1).
    pub server_max_window_bits: u8,
    /// The client's window, log2, 8..=15 (§7.1.2.2).
    pub client_max_window_bits: u8,
}

impl AgreedParams {
    /// How `role` compresses what it sends: a [`super::Deflater`]'s direction.
    pub fn sending(self, role: Role) -> Direction {
        match role {
            Role::Server => self.server_side(),
            Role::Client => self.client_side(),
        }
    }

    /// How the peer of `role` compresses what `role` receives: an
    /// [`super::Inflater`]'s direction.
    pub fn receiving(self, role: Role) -> Direction {
        match role {
            Role::Server => self.client_side(),
            Role::Client => self.server_side(),
        }
    }

    fn server_side(self) -> Direction {
        Direction {
            window_bits: self.server_max_window_bits,
            context_takeover: !self.server_no_context_takeover,
        }
    }

    fn client_side(self) -> Direction {
        Direction {
            window_bits: self.client_max_window_bits,
            context_takeover: !self.client_no_context_takeover,
        }
    }
}

/// How a server keeps compression state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServerMode {
    /// No context takeover in either direction: the server answers
    /// `server_no_context_takeover; client_no_context_takeover` to every offer,
    /// so one [`super::Deflater`] and one [`super::Inflater`] serve every
    /// connection of a loop, and a message published to many is compressed once.
    #[default]
    Shared,
    /// Context takeover where the client allows it: better compression for
    /// connections that send many similar messages, at the price of a
    /// compressor and a window per connection.
    ContextTakeover,
}

/// What a server accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Shared state (the default) or state per connection.
    pub mode: ServerMode,
    /// The largest LZ77 window the server will use, log2, 8..=15 (nearer
    /// values are taken otherwise). Its own compressor uses no more, announced
    /// as `server_max_window_bits` when below 15 (§7.1.2.1). In
    /// [`ServerMode::ContextTakeover`] it also bounds the window the server
    /// keeps for the client's messages: a client that keeps context is asked
    /// for `client_max_window_bits` (§7.1.2.2), and an offer that does not let
    /// the server ask is declined. Default 15.
    pub max_window_bits: u8,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            mode: ServerMode::Shared,
            max_window_bits: MAX_WINDOW_BITS,
        }
    }
}

/// Server side (RFC 7692 §5): accepts the first offer of `permessage-deflate`
/// in the request's `Sec-WebSocket-Extensions` field lines (`header_values`,
/// in order) that `config` can honour, appends the response's field value to
/// `response` and returns what was agreed. `None`, with `response` untouched,
/// when no offer can be accepted: the handshake then goes on without
/// compression, and the response names no extension (RFC 6455 §9.1).
///
/// Offers of other extensions are passed over; an offer with an unknown,
/// repeated or invalid parameter, or one breaking the §9.1 grammar, is
/// declined and the next one considered. Never panics.
///
/// ```
/// use pushloop_proto::ws::deflate::{accept_offer, ServerConfig};
/// let offer: &[u8] = b"permessage-deflate; client_max_window_bits";
/// let mut response = Vec::new();
/// let agreed = accept_offer([offer], ServerConfig::default(), &mut response).unwrap();
/// assert_eq!(response, b"permessage-deflate; server_no_context_takeover; client_no_context_takeover");
/// assert!(agreed.server_no_context_takeover && agreed.client_no_context_takeover);
/// ```
pub fn accept_offer<'h>(
    header_values: impl IntoIterator<Item = &'h [u8]>,
    config: ServerConfig,
    response: &mut Vec<u8>,
) -> Option<AgreedParams> {
    for value in header_values {
        for element in list_elements(value) {
            let mut pieces = Pieces::new(element, b';');
            if !pieces.next().is_some_and(is_deflate) {
                continue;
            }
            // RFC 7692 §5: an offer whose parameters we cannot read is declined.
            let Ok(offer) = parse_params(pieces) else {
                continue;
            };
            if let Some(answer) = answer(offer, config) {
                answer.write(response);
                return Some(answer.agreed);
            }
        }
    }
    None
}

/// The response to one acceptable offer.
struct Answer {
    agreed: AgreedParams,
    /// Does the response carry `server_max_window_bits=N`?
    names_server_window: bool,
    /// Does the response carry `client_max_window_bits=N`?
    names_client_window: bool,
}

impl Answer {
    /// The response's field value: the name, then only the parameters that
    /// §7.1 requires or the server's config asks for.
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(EXTENSION_NAME.as_bytes());
        if self.agreed.server_no_context_takeover {
            out.extend_from_slice(b"; server_no_context_takeover");
        }
        if self.agreed.client_no_context_takeover {
            out.extend_from_slice(b"; client_no_context_takeover");
        }
        if self.names_server_window {
            out.extend_from_slice(b"; server_max_window_bits=");
            write_decimal(out, self.agreed.server_max_window_bits.into());
        }
        if self.names_client_window {
            out.extend_from_slice(b"; client_max_window_bits=");
            write_decimal(out, self.agreed.client_max_window_bits.into());
        }
    }
}

/// The server's answer to one well-formed offer, or `None` to decline it.
fn answer(offer: Element, config: ServerConfig) -> Option<Answer> {
    let largest = bounded(config.max_window_bits);
    let shared = config.mode == ServerMode::Shared;
    // §7.1.2.1: the server's window is at most what the client offered; the
    // server may choose a smaller one. Every size 8..=15 can be honoured.
    let server_max_window_bits = offer
        .server_max_window_bits
        .unwrap_or(MAX_WINDOW_BITS)
        .min(largest);
    // §7.1.2.1: a server accepting the parameter "MUST include" it, with the
    // same or a smaller value; it "MAY include" it unasked (to use less).
    let names_server_window =
        offer.server_max_window_bits.is_some() || server_max_window_bits < MAX_WINDOW_BITS;
    // §7.1.1.1: offered, it "MUST" be in the response; unasked, "MAY" — the
    // shared mode always says it.
    let server_no_context_takeover = offer.server_no_context_takeover || shared;
    // §7.1.1.2: a server "MAY include" it in any response. The shared mode
    // always does; otherwise echoing the client's hint makes it binding, so no
    // window is kept for that client.
    let client_no_context_takeover = shared || offer.client_no_context_takeover;
    // §7.1.2.2: with a value in the offer, the client already promises to stay
    // within it; without the parameter, it may use up to 15.
    let client_promise = offer.client_max_window_bits.flatten();
    let client_window = client_promise.unwrap_or(MAX_WINDOW_BITS);
    let (client_max_window_bits, names_client_window) = if client_no_context_takeover {
        // No context: inflating writes straight into the message and keeps no
        // window, so the client's window size costs the server nothing.
        (client_window, false)
    } else if largest < client_window {
        // §7.1.2.2: "If a received extension negotiation offer doesn't have the
        // client_max_window_bits extension parameter, the corresponding
        // extension negotiation response to the offer MUST NOT include" it:
        // the server cannot bound that client's window, so it declines.
        offer.client_max_window_bits?;
        (largest, true)
    } else {
        (client_window, false)
    };
    Some(Answer {
        agreed: AgreedParams {
            server_no_context_takeover,
            client_no_context_takeover,
            server_max_window_bits,
            client_max_window_bits,
        },
        names_server_window,
        names_client_window,
    })
}

/// What a client offers (RFC 7692 §7.1). The default offers
/// `permessage-deflate; client_max_window_bits`, as browsers do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientConfig {
    /// Ask the server to start every message from an empty window, so the
    /// client keeps no window between messages (§7.1.1.1).
    pub server_no_context_takeover: bool,
    /// Tell the server this client will keep no context (§7.1.1.2).
    pub client_no_context_takeover: bool,
    /// Ask the server for a window of at most `2^bits` bytes, 8..=15 (§7.1.2.1).
    pub server_max_window_bits: Option<u8>,
    /// Promise a window of at most `2^bits` bytes (§7.1.2.2). `None` offers the
    /// parameter without a value: this client can compress within any window
    /// the server asks for, so the parameter is always offered.
    pub client_max_window_bits: Option<u8>,
}

/// Client side: appends the `Sec-WebSocket-Extensions` field value offering
/// permessage-deflate with `config` (RFC 7692 §5, §7.1).
///
/// ```
/// use pushloop_proto::ws::deflate::{write_offer, ClientConfig};
/// let mut offer = Vec::new();
/// write_offer(ClientConfig::default(), &mut offer);
/// assert_eq!(offer, b"permessage-deflate; client_max_window_bits");
/// ```
pub fn write_offer(config: ClientConfig, out: &mut Vec<u8>) {
    out.extend_from_slice(EXTENSION_NAME.as_bytes());
    if config.server_no_context_takeover {
        out.extend_from_slice(b"; server_no_context_takeover");
    }
    if config.client_no_context_takeover {
        out.extend_from_slice(b"; client_no_context_takeover");
    }
    if let Some(bits) = config.server_max_window_bits {
        out.extend_from_slice(b"; server_max_window_bits=");
        write_decimal(out, bounded(bits).into());
    }
    out.extend_from_slice(b"; client_max_window_bits");
    if let Some(bits) = config.client_max_window_bits {
        out.push(b'=');
        write_decimal(out, bounded(bits).into());
    }
}

/// Client side: checks the server's `Sec-WebSocket-Extensions` field lines
/// (`header_values`, in order) against the offer [`write_offer`] made from
/// `config`. `Ok(None)`: the server declined, no compression. `Ok(Some(_))`:
/// what was agreed. `Err`: the client must fail the connection (RFC 6455
/// §4.1, RFC 7692 §5). Never panics.
///
/// ```
/// use pushloop_proto::ws::deflate::{accept_response, ClientConfig};
/// let answer: &[u8] = b"permessage-deflate; server_max_window_bits=10";
/// let agreed = accept_response([answer], ClientConfig::default()).unwrap().unwrap();
/// assert_eq!(agreed.server_max_window_bits, 10);
/// let unasked: &[u8] = b"x-webkit-deflate-frame";
/// assert!(accept_response([unasked], ClientConfig::default()).is_err());
/// ```
pub fn accept_response<'h>(
    header_values: impl IntoIterator<Item = &'h [u8]>,
    config: ClientConfig,
) -> Result<Option<AgreedParams>, NegotiationError> {
    let mut agreed = None;
    for value in header_values {
        for element in list_elements(value) {
            let mut pieces = Pieces::new(element, b';');
            let name = pieces.next().unwrap_or_default();
            // RFC 6455 §4.1: an extension "not present in the client's
            // handshake" fails the connection; this client offers only one.
            if !is_deflate(name) {
                return Err(if is_token(trim_ows(name)) {
                    NegotiationError::NotOffered
                } else {
                    NegotiationError::Malformed
                });
            }
            // RFC 6455 §9.1: the server answers with the offer it accepts, once.
            if agreed.is_some() {
                return Err(NegotiationError::Repeated);
            }
            agreed = Some(check_response(parse_params(pieces)?, config)?);
        }
    }
    Ok(agreed)
}

/// The agreed parameters of a well-formed response, or why the client cannot
/// honour it (RFC 7692 §5: "the client does not support the configuration
/// that the response represents").
fn check_response(
    response: Element,
    config: ClientConfig,
) -> Result<AgreedParams, NegotiationError> {
    // §7.1.1.1: a server accepting an offer with server_no_context_takeover
    // "MUST include" it in the response.
    if config.server_no_context_takeover && !response.server_no_context_takeover {
        return Err(NegotiationError::ServerContextKept);
    }
    // §7.1.2.1: a server accepting server_max_window_bits "MUST include" it
    // "with the same or smaller value as the offer".
    let server_max_window_bits = match (
        config.server_max_window_bits,
        response.server_max_window_bits,
    ) {
        (Some(_), None) => return Err(NegotiationError::ServerWindowTooLarge),
        (Some(asked), Some(answered)) if answered > bounded(asked) => {
            return Err(NegotiationError::ServerWindowTooLarge)
        }
        (_, answered) => answered.unwrap_or(MAX_WINDOW_BITS),
    };
    // §7.1.2.2: in a response the parameter limits the client's window, so it
    // carries a value; a larger one than promised leaves the promise standing.
    let promised = config
        .client_max_window_bits
        .map_or(MAX_WINDOW_BITS, bounded);
    let client_max_window_bits = match response.client_max_window_bits {
        Some(None) => return Err(NegotiationError::InvalidValue),
        Some(Some(limit)) => limit.min(promised),
        None => promised,
    };
    Ok(AgreedParams {
        server_no_context_takeover: response.server_no_context_takeover,
        // §7.1.1.2: the server may forbid context; the client may forgo it.
        client_no_context_takeover: response.client_no_context_takeover
            || config.client_no_context_takeover,
        server_max_window_bits,
        client_max_window_bits,
    })
}

/// Why a client must fail the connection over the server's answer.
///
/// The wire answer is the same for all: the opening handshake did not
/// complete, so the client closes the TCP connection without a Close frame
/// (RFC 6455 §4.1, §7.1.7) and reports 1006 ([`NegotiationError::close_code`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NegotiationError {
    /// The server sent a field value that breaks the RFC 6455 §9.1 grammar.
    Malformed,
    /// The server accepted an extension the client did not offer (RFC 6455 §4.1).
    NotOffered,
    /// The server named permessage-deflate more than once (RFC 6455 §9.1).
    Repeated,
    /// The server sent a parameter permessage-deflate does not define (RFC 7692 §7.1).
    UnknownParameter,
    /// The server sent one parameter twice (RFC 7692 §5).
    DuplicateParameter,
    /// The server sent a parameter with a value where none belongs, without
    /// one where one is needed, or outside 8..=15 (RFC 7692 §7.1).
    InvalidValue,
    /// The server left out `server_no_context_takeover`, which the client
    /// asked for (RFC 7692 §7.1.1.1).
    ServerContextKept,
    /// The server did not answer the client's `server_max_window_bits` with
    /// the same or a smaller value (RFC 7692 §7.1.2.1).
    ServerWindowTooLarge,
}

impl NegotiationError {
    /// RFC 6455 §7.4.1: 1006, "closed abnormally, e.g., without sending or
    /// receiving a Close control frame" — reported locally, never sent.
    pub fn close_code(self) -> CloseCode {
        CloseCode::ABNORMAL
    }
}

impl fmt::Display for NegotiationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "the server sent a malformed Sec-WebSocket-Extensions value",
            Self::NotOffered => "the server accepted an extension the client did not offer",
            Self::Repeated => "the server accepted permessage-deflate more than once",
            Self::UnknownParameter => "the server sent an unknown permessage-deflate parameter",
            Self::DuplicateParameter => "the server sent a permessage-deflate parameter twice",
            Self::InvalidValue => "the server sent an invalid permessage-deflate parameter value",
            Self::ServerContextKept => {
                "the server left out the server_no_context_takeover asked for"
            }
            Self::ServerWindowTooLarge => {
                "the server did not honour the server_max_window_bits asked for"
            }
        })
    }
}

impl core::error::Error for NegotiationError {}

/// Is this list element's name (before any `;`) permessage-deflate?
/// Compared without regard to case, as HTTP compares tokens.
fn is_deflate(name: &[u8]) -> bool {
    trim_ows(name).eq_ignore_ascii_case(EXTENSION_NAME.as_bytes())
}

/// The four parameters as one element of the list sets them (RFC 7692 §7.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Element {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value, as an offer may say it (§7.1.2.2).
    client_max_window_bits: Option<Option<u8>>,
}

/// Reads the `;`-separated parameters after an element's name.
fn parse_params<'a>(pieces: impl Iterator<Item = &'a [u8]>) -> Result<Element, NegotiationError> {
    let mut element = Element::default();
    for piece in pieces {
        let (name, value) = parse_param(piece)?;
        // RFC 7692 §5: "multiple extension parameters with the same name" and
        // parameters "not defined for use" make an offer declined, a response failed.
        if name.eq_ignore_ascii_case(b"server_no_context_takeover") {
            set_flag(&mut element.server_no_context_takeover, value)?;
        } else if name.eq_ignore_ascii_case(b"client_no_context_takeover") {
            set_flag(&mut element.client_no_context_takeover, value)?;
        } else if name.eq_ignore_ascii_case(b"server_max_window_bits") {
            if element.server_max_window_bits.is_some() {
                return Err(NegotiationError::DuplicateParameter);
            }
            // §7.1.2.1: this one always has a value.
            let value = value.ok_or(NegotiationError::InvalidValue)?;
            element.server_max_window_bits = Some(window_bits(value)?);
        } else if name.eq_ignore_ascii_case(b"client_max_window_bits") {
            if element.client_max_window_bits.is_some() {
                return Err(NegotiationError::DuplicateParameter);
            }
            // §7.1.2.2: "no value or a decimal integer value" in an offer.
            element.client_max_window_bits = Some(value.map(window_bits).transpose()?);
        } else {
            return Err(NegotiationError::UnknownParameter);
        }
    }
    Ok(element)
}

/// §7.1.1.1-§7.1.1.2: the context-takeover parameters have no value.
fn set_flag(flag: &mut bool, value: Option<Value<'_>>) -> Result<(), NegotiationError> {
    if *flag {
        return Err(NegotiationError::DuplicateParameter);
    }
    if value.is_some() {
        return Err(NegotiationError::InvalidValue);
    }
    *flag = true;
    Ok(())
}

/// A window-bits value (RFC 7692 §7.1.2.1-§7.1.2.2): "a decimal integer value
/// without leading zeroes between 8 to 15, inclusive", after unquoting
/// (RFC 6455 §9.1).
///
/// ```text
/// server-max-window-bits = 1*DIGIT
/// client-max-window-bits = 1*DIGIT
/// ```
fn window_bits(value: Value<'_>) -> Result<u8, NegotiationError> {
    let mut bits: u8 = 0;
    for (digits, byte) in value.unescaped().enumerate() {
        // A leading zero, a third digit or a non-digit: never 8..=15.
        if !byte.is_ascii_digit() || (digits == 0 && byte == b'0') || digits == 2 {
            return Err(NegotiationError::InvalidValue);
        }
        bits = bits * 10 + (byte - b'0');
    }
    if (MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(&bits) {
        Ok(bits)
    } else {
        Err(NegotiationError::InvalidValue)
    }
}

/// A parameter value as written: a token, or the inside of a quoted-string
/// with its escapes still in (RFC 9110 §5.6.4).
#[derive(Clone, Copy, Debug)]
struct Value<'a> {
    raw: &'a [u8],
    quoted: bool,
}

impl<'a> Value<'a> {
    /// The value's bytes with quoted-pairs unescaped (`\x` → `x`).
    fn unescaped(self) -> impl Iterator<Item = u8> + 'a {
        let mut escaped = false;
        self.raw.iter().copied().filter(move |&byte| {
            if self.quoted && !escaped && byte == b'\\' {
                escaped = true;
                return false;
            }
            escaped = false;
            true
        })
    }
}

/// One `extension-param` (RFC 6455 §9.1): `token [ "=" (token | quoted-string) ]`,
/// with optional whitespace around the `=`.
fn parse_param(piece: &[u8]) -> Result<(&[u8], Option<Value<'_>>), NegotiationError> {
    let piece = trim_ows(piece);
    let (name, value) = match piece.iter().position(|&b| b == b'=') {
        None => (piece, None),
        Some(at) => (
            trim_ows(&piece[..at]),
            Some(parse_value(trim_ows(&piece[at + 1..]))?),
        ),
    };
    if !is_token(name) {
        return Err(NegotiationError::Malformed);
    }
    Ok((name, value))
}

/// A token, or a quoted-string (RFC 9110 §5.6.4):
///
/// ```text
/// quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE
/// qdtext        = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
/// quoted-pair   = "\" ( HTAB / SP / VCHAR / obs-text )
/// ```
fn parse_value(value: &[u8]) -> Result<Value<'_>, NegotiationError> {
    if is_token(value) {
        return Ok(Value {
            raw: value,
            quoted: false,
        });
    }
    let [b'"', inside @ .., b'"'] = value else {
        return Err(NegotiationError::Malformed);
    };
    let mut escaped = false;
    for &byte in inside {
        let visible =
            byte == b'\t' || byte == b' ' || (0x21..=0x7e).contains(&byte) || byte >= 0x80;
        if !visible || (!escaped && byte == b'"') {
            return Err(NegotiationError::Malformed);
        }
        escaped = !escaped && byte == b'\\';
    }
    // A final backslash escapes the closing quote: the string never ends.
    if escaped {
        return Err(NegotiationError::Malformed);
    }
    Ok(Value {
        raw: inside,
        quoted: true,
    })
}

/// The elements of one field line's list (RFC 9110 §5.6.1), split at commas
/// outside quoted-strings, trimmed, empty ones skipped.
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    Pieces::new(value, b',')
        .map(trim_ows)
        .filter(|element| !element.is_empty())
}

/// `bytes` split at each `separator` that is not inside a quoted-string.
struct Pieces<'a> {
    rest: Option<&'a [u8]>,
    separator: u8,
}

impl<'a> Pieces<'a> {
    fn new(bytes: &'a [u8], separator: u8) -> Self {
        Self {
            rest: Some(bytes),
            separator,
        }
    }
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        let mut quoted = false;
        let mut escaped = false;
        for (at, &byte) in rest.iter().enumerate() {
            if escaped {
                escaped = false;
            } else if quoted {
                escaped = byte == b'\\';
                quoted = byte != b'"';
            } else if byte == b'"' {
                quoted = true;
            } else if byte == self.separator {
                self.rest = Some(&rest[at + 1..]);
                return Some(&rest[..at]);
            }
        }
        self.rest = None;
        Some(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAKEOVER: ServerConfig = ServerConfig {
        mode: ServerMode::ContextTakeover,
        max_window_bits: MAX_WINDOW_BITS,
    };

    /// The server's answer to `lines`: the response value and what was agreed.
    fn server(lines: &[&str], config: ServerConfig) -> Option<(String, AgreedParams)> {
        let mut response = Vec::new();
        let agreed = accept_offer(
            lines.iter().map(|line| line.as_bytes()),
            config,
            &mut response,
        );
        match agreed {
            Some(agreed) => Some((String::from_utf8(response).expect("ASCII"), agreed)),
            None => {
                assert!(response.is_empty(), "a decline writes nothing");
                None
            }
        }
    }

    fn response_to(offer: &str, config: ServerConfig) -> Option<String> {
        server(&[offer], config).map(|(response, _)| response)
    }

    fn agreed(
        server_nct: bool,
        client_nct: bool,
        server_bits: u8,
        client_bits: u8,
    ) -> AgreedParams {
        AgreedParams {
            server_no_context_takeover: server_nct,
            client_no_context_takeover: client_nct,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
        }
    }

    use alloc::string::String;

    // --- RFC 7692 §7.1.3 and the offers browsers send ---

    #[test]
    fn answers_a_browser_offer_with_no_context_either_way_by_default() {
        let (response, params) = server(
            &["permessage-deflate; client_max_window_bits"],
            ServerConfig::default(),
        )
        .expect("accepted");
        assert_eq!(
            response,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        assert_eq!(params, agreed(true, true, 15, 15));
    }

    #[test]
    fn accepts_the_first_of_the_rfc_fallback_offers() {
        // RFC 7692 §7.1.3: a small server window if possible, else without.
        let offer = "permessage-deflate; client_max_window_bits; server_max_window_bits=10, \
                     permessage-deflate; client_max_window_bits";
        let (response, params) = server(&[offer], TAKEOVER).expect("accepted");
        assert_eq!(response, "permessage-deflate; server_max_window_bits=10");
        assert_eq!(params, agreed(false, false, 10, 15));
        let (response, _) = server(&[offer], ServerConfig::default()).expect("accepted");
        assert_eq!(
            response,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10"
        );
    }

    #[test]
    fn answers_a_bare_offer_with_a_bare_response_in_takeover_mode() {
        let (response, params) = server(&["permessage-deflate"], TAKEOVER).expect("accepted");
        assert_eq!(response, "permessage-deflate");
        assert_eq!(params, agreed(false, false, 15, 15));
    }

    // --- §7.1.1: context takeover ---

    #[test]
    fn echoes_server_no_context_takeover_in_takeover_mode() {
        let response = response_to("permessage-deflate; server_no_context_takeover", TAKEOVER);
        assert_eq!(
            response.as_deref(),
            Some("permessage-deflate; server_no_context_takeover")
        );
    }

    #[test]
    fn makes_the_client_hint_binding_in_takeover_mode() {
        let (response, params) = server(
            &["permessage-deflate; client_no_context_takeover"],
            TAKEOVER,
        )
        .expect("accepted");
        assert_eq!(response, "permessage-deflate; client_no_context_takeover");
        assert_eq!(params, agreed(false, true, 15, 15));
    }

    // --- §7.1.2: window bits ---

    #[test]
    fn honours_every_server_window_the_client_asks_for() {
        for bits in 8..=15u8 {
            let offer = std::format!("permessage-deflate; server_max_window_bits={bits}");
            let (response, params) = server(&[&offer], TAKEOVER).expect("accepted");
            assert_eq!(
                response,
                std::format!("permessage-deflate; server_max_window_bits={bits}")
            );
            assert_eq!(params.server_max_window_bits, bits);
        }
    }

    #[test]
    fn announces_its_own_smaller_window_unasked() {
        let config = ServerConfig {
            max_window_bits: 12,
            ..ServerConfig::default()
        };
        let (response, params) = server(&["permessage-deflate"], config).expect("accepted");
        assert!(
            response.ends_with("; server_max_window_bits=12"),
            "{response}"
        );
        assert_eq!(params.server_max_window_bits, 12);
        // Asked for more than it keeps: the smaller wins (§7.1.2.1 "same or smaller").
        let response = response_to("permessage-deflate; server_max_window_bits=14", config);
        assert!(response
            .expect("accepted")
            .ends_with("; server_max_window_bits=12"));
    }

    #[test]
    fn limits_the_client_window_in_takeover_mode_when_the_offer_allows() {
        let config = ServerConfig {
            max_window_bits: 10,
            ..TAKEOVER
        };
        let (response, params) =
            server(&["permessage-deflate; client_max_window_bits"], config).expect("accepted");
        assert_eq!(
            response,
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=10"
        );
        assert_eq!(params, agreed(false, false, 10, 10));
        // The client already promised less: nothing to ask.
        let (response, params) =
            server(&["permessage-deflate; client_max_window_bits=9"], config).expect("accepted");
        assert_eq!(response, "permessage-deflate; server_max_window_bits=10");
        assert_eq!(params.client_max_window_bits, 9);
    }

    #[test]
    fn declines_a_client_it_cannot_limit_in_takeover_mode() {
        let config = ServerConfig {
            max_window_bits: 10,
            ..TAKEOVER
        };
        assert_eq!(response_to("permessage-deflate", config), None);
        // Unless the client keeps no context: then its window costs nothing.
        let response = response_to("permessage-deflate; client_no_context_takeover", config);
        assert_eq!(
            response.as_deref(),
            Some("permessage-deflate; client_no_context_takeover; server_max_window_bits=10")
        );
    }

    #[test]
    fn does_not_ask_for_a_client_window_in_shared_mode() {
        let config = ServerConfig {
            max_window_bits: 9,
            ..ServerConfig::default()
        };
        let response =
            response_to("permessage-deflate; client_max_window_bits", config).expect("accepted");
        assert!(!response.contains("client_max_window_bits"), "{response}");
    }

    // --- §5: declining, and the §9.1 grammar ---

    #[test]
    fn declines_an_offer_with_a_bad_parameter_and_accepts_the_next() {
        for first in [
            "permessage-deflate; foo",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover=\"\"",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=08",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=1a",
            "permessage-deflate; server_max_window_bits=-9",
            "permessage-deflate; client_max_window_bits=0",
            "permessage-deflate; client_max_window_bits=255",
            "permessage-deflate; server_max_window_bits=\"1\"0",
            "permessage-deflate;",
            "permessage-deflate; ; server_no_context_takeover",
            "permessage-deflate; =10",
            "permessage-deflate; server_max_window_bits=10=10",
        ] {
            let offer = std::format!("{first}, permessage-deflate");
            let (response, _) = server(&[&offer], TAKEOVER).unwrap_or_else(|| panic!("{first}"));
            assert_eq!(response, "permessage-deflate", "{first}");
        }
    }

    #[test]
    fn an_unterminated_quote_spoils_the_rest_of_its_line_only() {
        for line in [
            "permessage-deflate; server_max_window_bits=\"10, permessage-deflate",
            "permessage-deflate; server_max_window_bits=\"10\\\", permessage-deflate",
        ] {
            assert_eq!(server(&[line], TAKEOVER), None, "{line}");
            let (response, _) = server(&[line, "permessage-deflate"], TAKEOVER).expect("next line");
            assert_eq!(response, "permessage-deflate");
        }
    }

    #[test]
    fn reads_quoted_values() {
        for value in ["\"10\"", "\"1\\0\"", "\"\\1\\0\""] {
            let offer = std::format!("permessage-deflate; server_max_window_bits = {value}");
            let (_, params) = server(&[&offer], TAKEOVER).unwrap_or_else(|| panic!("{value}"));
            assert_eq!(params.server_max_window_bits, 10, "{value}");
        }
    }

    #[test]
    fn splits_offers_only_outside_quoted_strings() {
        let offer = "permessage-deflate; x=\"a, permessage-deflate; y\", permessage-deflate; client_no_context_takeover";
        let (response, _) = server(&[offer], TAKEOVER).expect("accepted");
        assert_eq!(response, "permessage-deflate; client_no_context_takeover");
    }

    #[test]
    fn reads_offers_across_several_header_lines() {
        let lines = [
            "x-webkit-deflate-frame",
            "foo; bar=\"baz\", permessage-deflate; server_no_context_takeover",
        ];
        let (response, _) = server(&lines, TAKEOVER).expect("accepted");
        assert_eq!(response, "permessage-deflate; server_no_context_takeover");
    }

    #[test]
    fn skips_empty_list_elements_and_whitespace() {
        let (response, _) = server(
            &[" , ,\tpermessage-deflate \t;\tclient_max_window_bits ,"],
            TAKEOVER,
        )
        .expect("accepted");
        assert_eq!(response, "permessage-deflate");
    }

    #[test]
    fn compares_names_without_regard_to_case() {
        let response = response_to("PerMessage-Deflate; Server_No_Context_Takeover", TAKEOVER);
        assert_eq!(
            response.as_deref(),
            Some("permessage-deflate; server_no_context_takeover")
        );
    }

    #[test]
    fn declines_when_nothing_is_offered() {
        assert_eq!(server(&[], ServerConfig::default()), None);
        assert_eq!(
            server(&["", "x-foo, permessage-deflater"], ServerConfig::default()),
            None
        );
    }

    // --- the client side ---

    fn offer(config: ClientConfig) -> String {
        let mut out = Vec::new();
        write_offer(config, &mut out);
        String::from_utf8(out).expect("ASCII")
    }

    fn client(
        response: &str,
        config: ClientConfig,
    ) -> Result<Option<AgreedParams>, NegotiationError> {
        accept_response([response.as_bytes()], config)
    }

    const EVERYTHING: ClientConfig = ClientConfig {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        server_max_window_bits: Some(10),
        client_max_window_bits: Some(12),
    };

    #[test]
    fn offers_what_browsers_offer_by_default() {
        assert_eq!(
            offer(ClientConfig::default()),
            "permessage-deflate; client_max_window_bits"
        );
    }

    #[test]
    fn offers_every_parameter_asked_for() {
        assert_eq!(
            offer(EVERYTHING),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=12"
        );
    }

    #[test]
    fn agrees_with_every_answer_the_server_gives() {
        let clients = [
            ClientConfig::default(),
            EVERYTHING,
            ClientConfig {
                server_max_window_bits: Some(8),
                ..ClientConfig::default()
            },
            ClientConfig {
                client_max_window_bits: Some(9),
                client_no_context_takeover: true,
                ..ClientConfig::default()
            },
        ];
        for client_config in clients {
            for mode in [ServerMode::Shared, ServerMode::ContextTakeover] {
                for max_window_bits in 8..=15 {
                    let config = ServerConfig {
                        mode,
                        max_window_bits,
                    };
                    let Some((response, server_view)) = server(&[&offer(client_config)], config)
                    else {
                        continue;
                    };
                    let client_view = client(&response, client_config);
                    assert_eq!(
                        client_view,
                        Ok(Some(server_view)),
                        "{client_config:?} / {config:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_response_without_the_extension_means_no_compression() {
        assert_eq!(accept_response([], ClientConfig::default()), Ok(None));
        assert_eq!(client("", ClientConfig::default()), Ok(None));
    }

    #[test]
    fn uses_the_smaller_of_its_promise_and_the_server_limit() {
        let config = ClientConfig {
            client_max_window_bits: Some(10),
            ..ClientConfig::default()
        };
        let params = client("permessage-deflate; client_max_window_bits=12", config);
        assert_eq!(
            params
                .expect("valid")
                .expect("accepted")
                .client_max_window_bits,
            10
        );
        let params = client("permessage-deflate; client_max_window_bits=9", config);
        assert_eq!(
            params
                .expect("valid")
                .expect("accepted")
                .client_max_window_bits,
            9
        );
    }

    #[test]
    fn fails_on_a_response_it_cannot_honour() {
        use NegotiationError::*;
        let cases: [(&str, ClientConfig, NegotiationError); 13] = [
            (
                "x-webkit-deflate-frame",
                ClientConfig::default(),
                NotOffered,
            ),
            (
                "permessage-deflate, x-foo",
                ClientConfig::default(),
                NotOffered,
            ),
            ("\"permessage-deflate\"", ClientConfig::default(), Malformed),
            (
                "permessage-deflate; x=\"1",
                ClientConfig::default(),
                Malformed,
            ),
            (
                "permessage-deflate, permessage-deflate",
                ClientConfig::default(),
                Repeated,
            ),
            (
                "permessage-deflate; foo",
                ClientConfig::default(),
                UnknownParameter,
            ),
            (
                "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
                ClientConfig::default(),
                DuplicateParameter,
            ),
            // §7.1.2.2: in a response it limits the client, so it has a value.
            (
                "permessage-deflate; client_max_window_bits",
                ClientConfig::default(),
                InvalidValue,
            ),
            (
                "permessage-deflate; server_max_window_bits=16",
                ClientConfig::default(),
                InvalidValue,
            ),
            ("permessage-deflate", EVERYTHING, ServerContextKept),
            (
                "permessage-deflate; server_no_context_takeover",
                EVERYTHING,
                ServerWindowTooLarge,
            ),
            (
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=11",
                EVERYTHING,
                ServerWindowTooLarge,
            ),
            (
                "permessage-deflate; server_max_window_bits=",
                ClientConfig::default(),
                Malformed,
            ),
        ];
        for (response, config, error) in cases {
            assert_eq!(client(response, config), Err(error), "{response}");
            assert_eq!(error.close_code(), CloseCode::ABNORMAL);
        }
    }

    #[test]
    fn fails_on_a_second_acceptance_on_another_line() {
        let lines: [&[u8]; 2] = [b"permessage-deflate", b"permessage-deflate"];
        assert_eq!(
            accept_response(lines, ClientConfig::default()),
            Err(NegotiationError::Repeated)
        );
    }

    // --- the agreed parameters, per role ---

    #[test]
    fn each_role_sends_with_its_own_parameters() {
        let params = agreed(true, false, 10, 12);
        let server_side = Direction {
            window_bits: 10,
            context_takeover: false,
        };
        let client_side = Direction {
            window_bits: 12,
            context_takeover: true,
        };
        assert_eq!(params.sending(Role::Server), server_side);
        assert_eq!(params.receiving(Role::Client), server_side);
        assert_eq!(params.sending(Role::Client), client_side);
        assert_eq!(params.receiving(Role::Server), client_side);
    }
}
