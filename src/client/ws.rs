//! A blocking WebSocket client: one connection ([`WebSocket`]), and a client
//! that reconnects and resumes a pushloop feed ([`WsClient`]).
//!
//! Reading list (RFC 6455):
//! - §4.1 (the client's opening handshake and the checks on the server's
//!   answer: [`crate::ws::handshake_client`]), §3 (`ws://` and `wss://`).
//! - §5.3 (every client frame is masked with "a fresh masking key", from "a
//!   strong source of entropy": [`OsRandom`]), §10.3 (why).
//! - §5.5 (control frames: pings answered, a Close echoed), §7.1.1 ("the
//!   server closes the TCP connection first"; the client waits for it),
//!   §7.1.5 (1006 when TCP ends without a Close), §7.1.7 (failing the
//!   connection), §7.4.1 (close codes).
//! - RFC 7692 (permessage-deflate, feature `deflate`, offered by default):
//!   §5 (the offer, and failing on an answer the client cannot honour, with
//!   [`crate::ws::deflate::accept_response`]), §6 (RSV1), §7.1 (the agreed
//!   parameters, honoured by the session), §8 (inflated bytes count against
//!   the message limit).
//!
//! Every rule of the conversation lives in the sans-IO
//! [`crate::ws::session::Session`], the same one the server runs: it answers
//! pings, echoes a Close, fails the connection with the right code, pings a
//! silent server and gives up on one that stops answering. This file is its
//! blocking driver: it writes the request, reads the answer, then moves bytes
//! between a stream and the session, and time into it. Deadlines (a ping
//! falls due, a Close goes unanswered) are kept while the caller waits in
//! [`WebSocket::recv`]; each read's timeout is the time left to the next one.
//!
//! ```no_run
//! use pushloop::client::ws::{Message, WebSocket};
//! use pushloop::ws::close::CloseCode;
//! let mut ws = WebSocket::connect("ws://127.0.0.1:6788/echo")?;
//! ws.send_text("hello")?;
//! if let Message::Text(echo) = ws.recv()? {
//!     println!("{echo}");
//! }
//! ws.close(CloseCode::NORMAL, "bye")?;
//! # Ok::<(), pushloop::client::ws::WsError>(())
//! ```
//!
//! ## Timeouts
//!
//! Connecting: `connect_timeout` bounds the TCP connect (per address) and
//! then the whole opening handshake until the `101` is read. Writing:
//! `write_timeout` bounds each write (a server that stops reading). Reading
//! is bounded by the heartbeat: after `ping_interval` without a byte from
//! the server the client pings, and `pong_timeout` later, still without a
//! byte, the connection is taken for gone. Closing: `close_timeout` bounds
//! the wait for the server's Close, and again for its TCP close.
//!
//! Pings are answered and deadlines kept only while the caller reads (in
//! [`WebSocket::recv`], [`WebSocket::recv_timeout`] or the iterator): call
//! one of them regularly, as with every blocking client.

use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::client::backoff::ReconnectPolicy;
use crate::client::random::OsRandom;
use crate::client::transport::{Connect, ReadTimeout, TcpConnector};
use crate::client::url::{Scheme, Url, UrlError};
use crate::http::httparse;
use crate::http::response_head::ResponseHeadScanner;
use crate::time::Instant as SessionInstant;
use crate::ws::close::CloseCode;
#[cfg(feature = "deflate")]
use crate::ws::deflate::{
    accept_response, write_offer, AgreedParams, ClientConfig as DeflateParams, Counters,
    NegotiationError, Shared, DEFAULT_THRESHOLD,
};
use crate::ws::frame::MessageDecoder;
use crate::ws::frame::{MessageError, MessageLimits, OpCode, Role};
use crate::ws::handshake_client::{AcceptError, ClientKey, ClientRequest, RequestError};
use crate::ws::session::{Env, Event, SendError, Session, SessionConfig, Step, Timeout};

mod reconnect;

pub(crate) use reconnect::{comes_back_after, retry_cause, retry_delay, FeedCursor};
pub use reconnect::{feed_event_id, ClientEvent, Disconnect, Events, WsClient};

/// Bytes asked of the stream per read. Not a limit: a buffer size. 16 KiB
/// is the largest plaintext of one TLS record, what a `wss://` read returns
/// at most.
const READ_BYTES: usize = 16 * 1024;

/// After a large message went out, an output buffer larger than this is
/// freed rather than kept, so a client that once sent 16 MiB does not hold
/// 16 MiB for good.
const RETAINED_OUT_BYTES: usize = 64 * 1024;

/// The shortest read timeout: a deadline that passed less than this ago is
/// acted on after one more short read, never by a busy loop (a zero timeout
/// is refused by `set_read_timeout`).
const MIN_READ_WAIT: Duration = Duration::from_millis(1);

/// How a WebSocket client connects and plays: what it asks for, its limits
/// and timeouts, and (for [`WsClient`], and the loop's own links of
/// [`crate::app::Context::connect`]) how it reconnects. Start from
/// [`WsConfig::default`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsConfig {
    /// Subprotocols to offer, in order of preference (RFC 6455 §4.1 item
    /// 10): tokens, no two equal. The server's choice is
    /// [`WebSocket::protocol`]; a choice that was not offered fails the
    /// handshake ([`AcceptError::ProtocolNotOffered`]).
    pub protocols: Vec<String>,
    /// The `Origin` to send (§4.1 item 8, §10.2); browsers always send one,
    /// and a server with an Origin policy may require it. Default: none.
    pub origin: Option<String>,
    /// More request fields (`Authorization`, `Cookie`, `User-Agent`, ...).
    /// The handshake's own fields (`Host`, `Upgrade`, `Sec-WebSocket-*`,
    /// `Origin`, ...) are refused here.
    pub headers: Vec<(String, String)>,
    /// The TCP connect, per resolved address, and then the whole opening
    /// handshake, until the `101` is read. Default 10 s, as the server's
    /// `handshake_timeout`: a server that accepts and never answers is given
    /// up on. Past it: [`Lost::HandshakeTimeout`] (or
    /// [`WsError::Connect`] with `TimedOut`).
    pub connect_timeout: Duration,
    /// One write. Default 10 s: a server that stops reading for that long is
    /// not coming back. Past it: [`Lost::WriteTimeout`]. (Not in the loop,
    /// which never blocks on a write: a link's queue is bounded by the
    /// loop's `max_queued_bytes` like any connection's.)
    pub write_timeout: Duration,
    /// Ping the server after this much silence from it. Default 25 s, as the
    /// server (socket.io's `pingInterval`): a pushloop server pings every
    /// 25 s itself, so its pings usually keep the client from pinging.
    /// `None`: never ping (then a server that vanishes without a FIN leaves
    /// [`WebSocket::recv`] waiting until TCP notices).
    pub ping_interval: Option<Duration>,
    /// How long a ping may go unanswered, by the pong or any other byte.
    /// Default 20 s (socket.io's `pingTimeout`). Past it: [`Lost::PongTimeout`].
    pub pong_timeout: Duration,
    /// Close with `1001` when the server has sent nothing at all for this
    /// long. Default `None`: the heartbeat already notices a dead server.
    pub idle_timeout: Option<Duration>,
    /// How long [`WebSocket::close`] waits for the server's Close, and,
    /// after any closing handshake, for the server to close TCP (§7.1.1).
    /// Default 5 s, as the server. Past it: [`Lost::CloseTimeout`], or TCP
    /// closed by the client.
    pub close_timeout: Duration,
    /// Size limits on what the server sends (§10.4), checked against the
    /// declared lengths before anything is buffered. Default 1 MiB per frame
    /// and per message, 131 072 fragments, as the server's own limits. Past
    /// them: the client closes with `1009` ([`MessageError::TooBig`],
    /// [`MessageError::TooManyFragments`]).
    pub limits: MessageLimits,
    /// Bytes in the server's handshake response head. Default 8 KiB, the
    /// server's own head limit; pushloop's `101` is about 130 bytes. Past it:
    /// [`AcceptError::Response`] with `HeadTooLarge`.
    pub max_head_bytes: usize,
    /// Header fields in that head. Default 64, as the server's. Past it:
    /// [`AcceptError::Response`] with `TooManyHeaders`.
    pub max_headers: usize,
    /// When [`WsClient`] (and a link of the loop) reconnects, and when it
    /// gives up. (A [`WebSocket`] is one connection and never reconnects.)
    pub reconnect: ReconnectPolicy,
    /// [`WsClient`] and the loop's links: resume a pushloop feed across
    /// reconnects. Default
    /// off. When on, every text message that is a feed event moves the
    /// cursor — the JSON object `{"id":N,…}` that pushloop's `/chat` (and any
    /// socket subscribed with [`crate::app::Accept::subscribe`]) sends, `id`
    /// first, as [`crate::feeds::Entry`] encodes it; a `resync` notice
    /// carries an id too, the position the server can serve from. Each
    /// reconnect then asks for `?after=N` (replacing an `after` already in
    /// the URL), and the server replays what was published meanwhile.
    /// [`feed_event_id`] reads the id.
    pub resume_feed: bool,
    /// [`WsClient`] with `resume_feed`: the cursor of the first connection,
    /// e.g. kept from an earlier run (`?after=N` is sent from the start).
    /// Default `None`: the URL as given.
    pub after: Option<u64>,
    /// permessage-deflate (RFC 7692, feature `deflate`): what this client
    /// offers, or `None` to offer nothing. Default
    /// [`DeflateOffer::default`]: `permessage-deflate; client_max_window_bits`,
    /// as browsers and Python's `websockets` offer. The server may decline
    /// (messages then go as they are) or accept ([`WebSocket::deflate`] says
    /// what was agreed). An answer naming an extension or a parameter this
    /// client did not offer, or one it cannot honour, fails the handshake
    /// (RFC 6455 §4.1, RFC 7692 §5): [`WsError::Handshake`] with
    /// [`AcceptError::ExtensionNotOffered`], or [`WsError::Negotiation`].
    #[cfg(feature = "deflate")]
    pub deflate: Option<DeflateOffer>,
}

/// The permessage-deflate offer of a client (RFC 7692 §5, §7.1; feature
/// `deflate`), and when it compresses once the server accepted.
#[cfg(feature = "deflate")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateOffer {
    /// The offer's parameters (RFC 7692 §7.1). The default offers
    /// `client_max_window_bits` without a value: this client compresses
    /// within any window the server asks for (below 32 KiB its compressor
    /// encodes runs only, which fit every window: [`crate::ws::deflate`]),
    /// and inflates within any window the server keeps.
    pub params: DeflateParams,
    /// Messages shorter than this go uncompressed (RFC 7692 §7.2.1 leaves
    /// the choice to the sender). Default [`DEFAULT_THRESHOLD`] (1 KiB, as
    /// the server and Node `ws`). The loop's links
    /// ([`crate::app::Context::connect`]) use the loop's compressor and its
    /// threshold (`Config::deflate`) instead.
    pub threshold: usize,
}

#[cfg(feature = "deflate")]
impl Default for DeflateOffer {
    fn default() -> Self {
        DeflateOffer {
            params: DeflateParams::default(),
            threshold: DEFAULT_THRESHOLD,
        }
    }
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            protocols: Vec::new(),
            origin: None,
            headers: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            ping_interval: Some(Duration::from_secs(25)),
            pong_timeout: Duration::from_secs(20),
            idle_timeout: None,
            close_timeout: Duration::from_secs(5),
            limits: MessageLimits {
                max_frame_bytes: 1 << 20,
                max_message_bytes: 1 << 20,
                max_fragments: 1 << 17,
            },
            max_head_bytes: 8 * 1024,
            max_headers: 64,
            reconnect: ReconnectPolicy::default(),
            resume_feed: false,
            after: None,
            #[cfg(feature = "deflate")]
            deflate: Some(DeflateOffer::default()),
        }
    }
}

impl WsConfig {
    /// The rules the session plays by.
    pub(crate) fn session(&self) -> SessionConfig {
        SessionConfig {
            limits: self.limits,
            idle_timeout: self.idle_timeout,
            ping_interval: self.ping_interval,
            pong_timeout: self.pong_timeout,
            close_timeout: self.close_timeout,
        }
    }

    /// Plain TCP with this configuration's connect and write timeouts (the
    /// read timeout is set before each read).
    pub fn tcp_connector(&self) -> TcpConnector {
        TcpConnector {
            connect_timeout: self.connect_timeout,
            read_timeout: self.connect_timeout,
            write_timeout: self.write_timeout,
        }
    }
}

/// A message from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A text message (§5.6), valid UTF-8 (§8.1).
    Text(String),
    /// A binary message (§5.6).
    Binary(Vec<u8>),
    /// A ping (§5.5.2), already answered with its pong.
    Ping(Vec<u8>),
    /// A pong (§5.5.3): the answer to [`WebSocket::ping`], or to the
    /// heartbeat's ping.
    Pong(Vec<u8>),
    /// The server's Close (§5.5.1): the closing handshake is complete (our
    /// Close answered it) and the server has closed TCP, or `close_timeout`
    /// passed and the client closed it. The last message.
    Close(CloseFrame),
}

/// A Close frame's code and reason (§5.5.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseFrame {
    /// The code; 1005 when the frame had none (§7.1.5).
    pub code: CloseCode,
    /// The reason, maybe empty.
    pub reason: String,
}

/// Why a WebSocket cannot be opened, or is not open any more. Each variant
/// says what the server (or the network) did, and
/// [`WsError::close_code`] gives the connection's close code as a browser
/// would report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsError {
    /// The URL or the options cannot make a request; nothing was sent.
    Setup(SetupError),
    /// Connecting failed: the name did not resolve, the server refused, the
    /// address did not answer within `connect_timeout`, or (with TLS) the
    /// TLS handshake failed (`InvalidData`: e.g. a certificate not trusted).
    Connect(io::ErrorKind),
    /// The server's answer to the opening handshake fails RFC 6455 §4.1: not
    /// `101`, a wrong `Sec-WebSocket-Accept`, a subprotocol or extension we
    /// did not offer, not HTTP at all. No WebSocket was opened; TCP is closed
    /// without a Close frame.
    Handshake(AcceptError),
    /// The server accepted permessage-deflate with a parameter this client
    /// did not offer, an invalid one, or one it cannot honour (RFC 7692 §5,
    /// §7.1; feature `deflate`). As with [`WsError::Handshake`], no
    /// WebSocket was opened; TCP is closed without a Close frame.
    #[cfg(feature = "deflate")]
    Negotiation(NegotiationError),
    /// The connection ended without a closing handshake (§7.1.5: code 1006).
    Lost(Lost),
    /// The server broke the protocol (§7.1.7): our Close with
    /// [`MessageError::close_code`] (1002, 1007 or 1009) went out, and TCP
    /// is closed.
    Protocol(MessageError),
    /// The connection is closing or over (its end was already reported): no
    /// more messages either way (§5.5.1). Our bug, not the server's.
    NotOpen,
    /// A ping payload over 125 bytes (§5.5). Our bug; nothing was sent.
    PingTooLong,
    /// The OS random source failed, so no unpredictable masking key could
    /// be had (§5.3); nothing more was sent and TCP is closed.
    Random(io::ErrorKind),
    /// [`WsClient`] gave up under its [`ReconnectPolicy`]: `attempts`
    /// retries in a row, the last lost to `last`.
    GaveUp {
        /// Retries in a row before giving up.
        attempts: u32,
        /// How the last connection or attempt ended.
        last: Disconnect,
    },
}

impl WsError {
    /// The close code of the connection (§7.1.5, §7.4.1): the code our Close
    /// carried after a protocol error, 1006 when a connection or attempt
    /// ended without a Close frame (a browser reports a refused handshake
    /// as 1006 too), `None` when there was no connection.
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            WsError::Protocol(error) => Some(error.close_code()),
            WsError::Connect(_) | WsError::Handshake(_) | WsError::Lost(_) | WsError::Random(_) => {
                Some(CloseCode::ABNORMAL)
            }
            #[cfg(feature = "deflate")]
            WsError::Negotiation(error) => Some(error.close_code()),
            WsError::Setup(_)
            | WsError::NotOpen
            | WsError::PingTooLong
            | WsError::GaveUp { .. } => None,
        }
    }
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WsError::Setup(error) => error.fmt(f),
            WsError::Connect(kind) => write!(f, "could not connect ({kind})"),
            WsError::Handshake(error) => write!(f, "no WebSocket: {error}"),
            #[cfg(feature = "deflate")]
            WsError::Negotiation(error) => write!(f, "no WebSocket: {error}"),
            WsError::Lost(lost) => lost.fmt(f),
            WsError::Protocol(error) => write!(
                f,
                "the server broke the protocol: {error}; closed with {}",
                error.close_code().0
            ),
            WsError::NotOpen => f.write_str("the WebSocket is closing or closed"),
            WsError::PingTooLong => f.write_str("a ping payload is at most 125 bytes"),
            WsError::Random(kind) => write!(
                f,
                "the OS random source failed ({kind}): no masking key, nothing sent"
            ),
            WsError::GaveUp { attempts, last } => {
                write!(f, "gave up after {attempts} retries; the last: {last}")
            }
        }
    }
}

impl std::error::Error for WsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WsError::Setup(error) => Some(error),
            WsError::Handshake(error) => Some(error),
            #[cfg(feature = "deflate")]
            WsError::Negotiation(error) => Some(error),
            WsError::Protocol(error) => Some(error),
            _ => None,
        }
    }
}

/// How a connection ended without a closing handshake (§7.1.5: code 1006).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lost {
    /// The server closed TCP before its Close frame (or before its
    /// handshake answer).
    Eof,
    /// A read or write failed (a reset, a broken pipe, ...).
    Io(io::ErrorKind),
    /// The server took none of our bytes for `write_timeout`.
    WriteTimeout,
    /// The server's `101` did not arrive within `connect_timeout`.
    HandshakeTimeout,
    /// The server sent nothing for `pong_timeout` after our heartbeat ping.
    PongTimeout,
    /// The server did not answer our Close within `close_timeout` (§7.1.2).
    CloseTimeout,
}

impl fmt::Display for Lost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lost::Eof => f.write_str("the server closed the connection without a Close frame"),
            Lost::Io(kind) => write!(f, "the connection failed ({kind})"),
            Lost::WriteTimeout => f.write_str("the server stopped taking our bytes"),
            Lost::HandshakeTimeout => f.write_str("the server did not answer the handshake"),
            Lost::PongTimeout => f.write_str("the server did not answer a ping"),
            Lost::CloseTimeout => f.write_str("the server did not answer our Close"),
        }
    }
}

/// Why no request can be made; nothing was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetupError {
    /// The URL does not parse.
    Url(UrlError),
    /// The URL is `http://` or `https://`: a WebSocket needs `ws://` or
    /// `wss://` (RFC 6455 §3).
    NotWebSocket,
    /// The URL is `wss://`, and plain TCP has no TLS: connect through a TLS
    /// [`Connect`] (`client::tls::TlsConnector`, feature `tls`).
    NeedsTls,
    /// The URL is `wss://`, given to [`crate::app::Context::connect`]: the
    /// loop has no client side of TLS yet (its TLS machinery serves only
    /// the server's side), with or without the `tls` feature. Open it with
    /// the blocking [`WebSocket`] or [`WsClient`] over
    /// `client::tls::TlsConnector` (feature `tls`) instead.
    TlsNotInLoop,
    /// An option cannot be written into the request: a subprotocol that is
    /// not a token or is repeated, a reserved or malformed extra field, an
    /// Origin with a control byte.
    Request(RequestError),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Url(error) => write!(f, "bad URL: {error}"),
            SetupError::NotWebSocket => f.write_str("a WebSocket needs a ws:// or wss:// URL"),
            SetupError::NeedsTls => f.write_str("wss:// needs a TLS connector"),
            SetupError::TlsNotInLoop => f.write_str(
                "wss:// cannot be opened from inside the loop yet; use the blocking client with a TLS connector",
            ),
            SetupError::Request(error) => write!(f, "bad request: {error}"),
        }
    }
}

impl std::error::Error for SetupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SetupError::Url(error) => Some(error),
            SetupError::Request(error) => Some(error),
            _ => None,
        }
    }
}

/// What the client offers in its opening handshake, owned by the caller of
/// [`ClientRequest`], which borrows it. The blocking client and the loop's
/// outbound WebSockets (`Context::connect`) write and check the handshake
/// through it.
pub(crate) struct Offer<'c> {
    host: String,
    protocols: Vec<&'c str>,
    headers: Vec<(&'c str, &'c str)>,
    /// The `Sec-WebSocket-Extensions` value, when an extension is offered.
    extensions: Option<String>,
}

/// What the server's answer settled (RFC 6455 §4.1): the subprotocol it
/// chose and, with permessage-deflate, what was agreed.
pub(crate) struct Settled {
    pub(crate) protocol: Option<String>,
    /// `None`: not offered, or declined; messages go as they are.
    #[cfg(feature = "deflate")]
    pub(crate) deflate: Option<AgreedParams>,
}

impl Settled {
    /// A session in the client role for what was settled (RFC 7692 §7.1:
    /// compressing and inflating under the agreed parameters).
    pub(crate) fn session(
        &self,
        limits: MessageLimits,
        now: SessionInstant,
    ) -> (Session, MessageDecoder) {
        #[cfg(feature = "deflate")]
        if let Some(agreed) = self.deflate {
            return Session::with_deflate(Role::Client, limits, now, agreed);
        }
        Session::new(Role::Client, limits, now)
    }
}

impl<'c> Offer<'c> {
    /// Checks the URL's scheme and gathers what the request is made of.
    pub(crate) fn new(url: &Url, config: &'c WsConfig) -> Result<Offer<'c>, SetupError> {
        if !matches!(url.scheme(), Scheme::Ws | Scheme::Wss) {
            return Err(SetupError::NotWebSocket);
        }
        Ok(Offer {
            host: url.authority(),
            protocols: config.protocols.iter().map(String::as_str).collect(),
            headers: config
                .headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str()))
                .collect(),
            extensions: extension_offer(config),
        })
    }

    /// The request (RFC 6455 §4.1).
    fn request<'r>(&'r self, url: &'r Url, config: &'r WsConfig) -> ClientRequest<'r> {
        ClientRequest {
            host: &self.host,
            target: url.target(),
            origin: config.origin.as_deref(),
            protocols: &self.protocols,
            // §4.1 item 11; any other extension the server names fails item 5.
            extensions: self.extensions.as_deref(),
            headers: &self.headers,
        }
    }

    /// The request head (§4.1) with `key`.
    pub(crate) fn head(
        &self,
        url: &Url,
        config: &WsConfig,
        key: &ClientKey,
    ) -> Result<Vec<u8>, SetupError> {
        let mut head = Vec::with_capacity(256);
        self.request(url, config)
            .write(key, &mut head)
            .map_err(SetupError::Request)?;
        Ok(head)
    }

    /// Checks the server's complete answer head (§4.1) to the request made
    /// with `key`; returns the subprotocol it chose and what was agreed on
    /// permessage-deflate.
    pub(crate) fn check_answer(
        &self,
        url: &Url,
        config: &WsConfig,
        key: &ClientKey,
        head: &[u8],
    ) -> Result<Settled, WsError> {
        let mut headers = vec![httparse::EMPTY_HEADER; config.max_headers];
        let accepted = self
            .request(url, config)
            .read_response(key, head, &mut headers)
            .map_err(WsError::Handshake)?;
        // §4.1 item 5 held: every extension named was offered. Its parameters
        // are the extension's to check (§9.1; RFC 7692 §5: "the client MUST
        // _Fail the WebSocket Connection_" on a response it cannot honour).
        #[cfg(feature = "deflate")]
        let deflate = match config.deflate {
            Some(offer) => accept_response(
                accepted.response().header_all("sec-websocket-extensions"),
                offer.params,
            )
            .map_err(WsError::Negotiation)?,
            None => None,
        };
        Ok(Settled {
            protocol: accepted.protocol().map(str::to_owned),
            #[cfg(feature = "deflate")]
            deflate,
        })
    }
}

/// The `Sec-WebSocket-Extensions` offer (RFC 6455 §4.1 item 11, §9.1):
/// permessage-deflate when the configuration asks for it (RFC 7692 §5).
fn extension_offer(config: &WsConfig) -> Option<String> {
    #[cfg(feature = "deflate")]
    if let Some(offer) = config.deflate {
        let mut value = Vec::new();
        write_offer(offer.params, &mut value);
        // write_offer writes tokens, `;`, `=`, spaces and digits: ASCII.
        return String::from_utf8(value).ok();
    }
    #[cfg(not(feature = "deflate"))]
    let _ = config;
    None
}

/// A fresh `Sec-WebSocket-Key`: §4.1 item 7, "a nonce consisting of a
/// randomly selected 16-byte value ... selected randomly for each
/// connection", from the OS.
pub(crate) fn fresh_key() -> Result<ClientKey, WsError> {
    let mut nonce = [0; 16];
    OsRandom::fill(&mut nonce).map_err(|error| WsError::Random(error.kind()))?;
    Ok(ClientKey::new(nonce))
}

/// Everything that can go wrong before a byte is sent: the scheme, and each
/// option as the request would carry it.
pub(crate) fn check_setup(url: &Url, config: &WsConfig) -> Result<(), SetupError> {
    Offer::new(url, config)?
        .head(url, config, &ClientKey::new([0; 16]))
        .map(|_| ())
}

/// One WebSocket connection, client side, over a blocking stream `S` (plain
/// TCP by default; anything [`Connect`] opens).
///
/// Open it with [`WebSocket::connect`] (or [`WebSocket::connect_with`],
/// [`WebSocket::connect_via`]); send with [`WebSocket::send_text`],
/// [`WebSocket::send_binary`] and [`WebSocket::ping`]; read with
/// [`WebSocket::recv`], [`WebSocket::recv_timeout`] or
/// [`WebSocket::messages`]; end with [`WebSocket::close`]. Every frame is
/// masked with a fresh key from [`OsRandom`] (§5.3).
///
/// Memory: a 16 KiB read buffer, the message being gathered (at most
/// `limits.max_message_bytes`), and the frame being written (freed after a
/// large one). A message is handed out as an owned copy. With
/// permessage-deflate, once used: a compressor (~312 KiB) and an inflater
/// (~10 KiB, or up to ~43 KiB when the server keeps context), the figures of
/// [`crate::ws::deflate`]; a compressed message is gathered within a bound a
/// little above the message limit and inflated up to the limit (past it:
/// 1009, counted in inflated bytes).
pub struct WebSocket<S> {
    /// `None` once TCP is closed: the end was reported.
    stream: Option<S>,
    session: Session,
    decoder: MessageDecoder,
    /// Received bytes; `input[start..]` are not consumed yet.
    input: Vec<u8>,
    start: usize,
    wire: Wire,
    protocol: Option<String>,
    /// What was agreed on permessage-deflate, if it was.
    #[cfg(feature = "deflate")]
    deflate: Option<AgreedParams>,
}

/// What the session is lent on each call: the rules, the output, the keys,
/// and the clock's origin.
struct Wire {
    config: SessionConfig,
    out: Vec<u8>,
    keys: OsRandom,
    origin: Instant,
    /// What the session's [`Env`] lends for permessage-deflate: the
    /// compressor and inflater of the directions without context takeover
    /// (RFC 7692 §7.1.1), made on first use, and the threshold.
    #[cfg(feature = "deflate")]
    deflate: Shared,
}

impl Wire {
    fn now(&self) -> SessionInstant {
        SessionInstant::from_duration(self.origin.elapsed())
    }

    fn env(&mut self) -> Env<'_> {
        Env {
            now: self.now(),
            config: &self.config,
            out: &mut self.out,
            keys: Some(&mut self.keys),
            // Every frame is written at once, blocking: the output never backs
            // up, so each ping gets its pong (§5.5.3's coalescing is not needed).
            backed_up: false,
            #[cfg(feature = "deflate")]
            deflate: &mut self.deflate,
        }
    }
}

/// What one step of the session meant, owned, so the driver can act on it.
enum Happened {
    Message(Message),
    Closed(CloseFrame),
    Failed(MessageError),
}

impl Happened {
    fn from_event(event: Event<'_>) -> Happened {
        match event {
            Event::Text(text) => Happened::Message(Message::Text(text.to_owned())),
            Event::Binary(bytes) => Happened::Message(Message::Binary(bytes.to_vec())),
            Event::Ping(payload) => Happened::Message(Message::Ping(payload.to_vec())),
            Event::Pong(payload) => Happened::Message(Message::Pong(payload.to_vec())),
            Event::Closed { code, reason } => Happened::Closed(CloseFrame {
                code,
                reason: reason.to_owned(),
            }),
            Event::Failed(error) => Happened::Failed(error),
        }
    }
}

impl WebSocket<TcpStream> {
    /// Opens a WebSocket to a `ws://` URL with the default [`WsConfig`]
    /// over plain TCP.
    pub fn connect(url: &str) -> Result<WebSocket<TcpStream>, WsError> {
        WebSocket::connect_with(url, &WsConfig::default())
    }

    /// [`WebSocket::connect`] with this configuration.
    pub fn connect_with(url: &str, config: &WsConfig) -> Result<WebSocket<TcpStream>, WsError> {
        let url = Url::parse(url).map_err(|error| WsError::Setup(SetupError::Url(error)))?;
        if url.scheme() == Scheme::Wss {
            return Err(WsError::Setup(SetupError::NeedsTls));
        }
        WebSocket::connect_via(&url, config, &mut config.tcp_connector())
    }
}

impl<S: Read + Write + ReadTimeout> WebSocket<S> {
    /// Opens a WebSocket through `connector` (TLS, a test transport): checks
    /// the options, connects, sends the opening handshake and checks the
    /// server's answer (§4.1).
    pub fn connect_via<C>(url: &Url, config: &WsConfig, connector: &mut C) -> Result<Self, WsError>
    where
        C: Connect<Stream = S>,
    {
        let key = fresh_key()?;
        let offer = Offer::new(url, config).map_err(WsError::Setup)?;
        let head = offer.head(url, config, &key).map_err(WsError::Setup)?;
        let deadline = Instant::now() + config.connect_timeout;
        let mut stream = connector
            .connect(url)
            .map_err(|error| WsError::Connect(error.kind()))?;
        stream
            .write_all(&head)
            .and_then(|()| stream.flush())
            .map_err(|error| WsError::Lost(lost_writing(error)))?;
        let (settled, rest) = read_answer(&mut stream, &offer, url, &key, config, deadline)?;
        let origin = Instant::now();
        let (session, decoder) = settled.session(config.limits, SessionInstant::ZERO);
        Ok(WebSocket {
            stream: Some(stream),
            session,
            decoder,
            input: rest,
            start: 0,
            wire: Wire {
                config: config.session(),
                out: Vec::new(),
                keys: OsRandom::new(),
                origin,
                #[cfg(feature = "deflate")]
                deflate: Shared::new(
                    config
                        .deflate
                        .map_or(DEFAULT_THRESHOLD, |offer| offer.threshold),
                ),
            },
            protocol: settled.protocol,
            #[cfg(feature = "deflate")]
            deflate: settled.deflate,
        })
    }

    /// What was agreed on permessage-deflate (RFC 7692 §7.1), `None` when it
    /// was not offered or the server declined it.
    #[cfg(feature = "deflate")]
    pub fn deflate(&self) -> Option<AgreedParams> {
        self.deflate
    }

    /// What went through this connection's compressor and inflater: messages
    /// sent compressed and received compressed, and their bytes before and
    /// after.
    #[cfg(feature = "deflate")]
    pub fn deflate_counters(&self) -> Counters {
        self.wire.deflate.counters
    }

    /// The subprotocol the server chose, one we offered; `None` when it
    /// chose none (§4.1 item 6).
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// Data may still be sent: no Close has gone out and the connection has
    /// not ended.
    pub fn is_open(&self) -> bool {
        self.stream.is_some() && self.session.can_send()
    }

    /// The stream, while TCP is open (e.g. for its `peer_addr`).
    pub fn get_ref(&self) -> Option<&S> {
        self.stream.as_ref()
    }

    /// Sends a text message, in one frame.
    pub fn send_text(&mut self, text: &str) -> Result<(), WsError> {
        self.send(OpCode::Text, text.as_bytes())
    }

    /// Sends a binary message, in one frame.
    pub fn send_binary(&mut self, bytes: &[u8]) -> Result<(), WsError> {
        self.send(OpCode::Binary, bytes)
    }

    /// Sends a ping with `payload` (at most 125 bytes, §5.5); its pong comes
    /// back through [`WebSocket::recv`] as [`Message::Pong`].
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), WsError> {
        self.ensure_open()?;
        let result = self.session.ping(payload, &mut self.wire.env());
        result.map_err(refused)?;
        self.flush()
    }

    fn send(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), WsError> {
        self.ensure_open()?;
        let result = self.session.send(opcode, payload, &mut self.wire.env());
        result.map_err(refused)?;
        self.flush()
    }

    /// Waits for the next message. After [`Message::Close`] or an error the
    /// connection is over, and every later call is [`WsError::NotOpen`].
    pub fn recv(&mut self) -> Result<Message, WsError> {
        loop {
            if let Some(message) = self.receive(None)? {
                return Ok(message);
            }
        }
    }

    /// Waits for the next message at most `timeout`: `Ok(None)` when none
    /// came. The connection stays usable.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Message>, WsError> {
        self.receive(Some(Instant::now() + timeout))
    }

    /// The messages, as a blocking iterator that ends after the Close or the
    /// first error.
    pub fn messages(&mut self) -> Messages<'_, S> {
        Messages { socket: self }
    }

    /// The closing handshake (§7.1.2), started by us: sends our Close with
    /// `code` and `reason` (a code that may not be sent, such as 1005 or
    /// 1006, is left out, §7.4.1; the reason is cut to 123 bytes), drops
    /// what the server still sends until its Close, then waits for it to
    /// close TCP (§7.1.1) — each wait at most `close_timeout`. Returns the
    /// server's Close.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<CloseFrame, WsError> {
        self.ensure_open()?;
        if !self.session.close(code, reason, &mut self.wire.env()) {
            return Err(WsError::NotOpen);
        }
        self.flush()?;
        loop {
            // §5.5.1: the session drops the server's data after our Close;
            // what still comes through here is its pings and pongs.
            if let Some(Message::Close(frame)) = self.receive(None)? {
                return Ok(frame);
            }
        }
    }

    fn ensure_open(&self) -> Result<(), WsError> {
        match self.stream {
            Some(_) => Ok(()),
            None => Err(WsError::NotOpen),
        }
    }

    /// The driver, one numbered turn at a time, until a message, an end, or
    /// `until` passes (`Ok(None)`).
    fn receive(&mut self, until: Option<Instant>) -> Result<Option<Message>, WsError> {
        self.ensure_open()?;
        loop {
            // 1. What was read already: the session turns it into messages.
            if let Some(message) = self.step_input()? {
                return Ok(Some(message));
            }
            // 2. Deadlines that passed: a heartbeat ping, giving up.
            self.run_timers()?;
            // 3. The caller's own deadline.
            if until.is_some_and(|until| Instant::now() >= until) {
                return Ok(None);
            }
            // 4. Read, waiting at most until the earliest deadline.
            let next = self
                .session
                .poll_timeout(&self.wire.config)
                .map(|at| self.wire.origin + Duration::from_micros(at.as_micros()));
            let wake = match (next, until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            self.read_input(wake)?;
        }
    }

    /// Steps the session over the unconsumed input until it needs more,
    /// acting on what it reports.
    fn step_input(&mut self) -> Result<Option<Message>, WsError> {
        loop {
            let input = self.input.get_mut(self.start..).unwrap_or_default();
            let mut env = self.wire.env();
            let step = match self.session.step(&mut self.decoder, input, &mut env) {
                Step::NeedMore => None,
                Step::Progress { used } => Some((used, None)),
                Step::Event { event, used } => Some((used, Some(Happened::from_event(event)))),
            };
            let Some((used, happened)) = step else {
                // What is left is a partial header or control frame (at
                // most 139 bytes): move it to the front for the next read.
                self.input.drain(..self.start.min(self.input.len()));
                self.start = 0;
                return Ok(None);
            };
            self.start += used;
            match happened {
                None => {}
                // A ping's pong was written by the session: it goes now.
                Some(Happened::Message(message)) => {
                    self.flush()?;
                    return Ok(Some(message));
                }
                Some(Happened::Closed(frame)) => {
                    // §5.5.1: our echo of the Close. Should the server have
                    // closed TCP already, its Close still stands.
                    let _ = self.flush();
                    self.linger();
                    return Ok(Some(Message::Close(frame)));
                }
                Some(Happened::Failed(error)) => {
                    // §7.1.7: our Close with the error's code, then TCP goes.
                    let _ = self.flush();
                    self.linger();
                    return Err(WsError::Protocol(error));
                }
            }
        }
    }

    /// Acts on the session's deadlines that have passed.
    fn run_timers(&mut self) -> Result<(), WsError> {
        let timeout = self.session.handle_timeout(&mut self.wire.env());
        // A heartbeat ping, or our Close 1001 after idle_timeout.
        self.flush()?;
        match timeout {
            None | Some(Timeout::Idle) => Ok(()),
            Some(Timeout::Pong) => Err(self.abandon(Lost::PongTimeout)),
            Some(Timeout::Close) => Err(self.abandon(Lost::CloseTimeout)),
        }
    }

    /// One read into the input, waiting at most until `wake`.
    fn read_input(&mut self, wake: Option<Instant>) -> Result<(), WsError> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(WsError::NotOpen);
        };
        let timeout = wake.map(|at| {
            at.saturating_duration_since(Instant::now())
                .max(MIN_READ_WAIT)
        });
        if let Err(error) = stream.set_read_timeout(timeout) {
            return Err(self.abandon(Lost::Io(error.kind())));
        }
        let filled = self.input.len();
        self.input.resize(filled + READ_BYTES, 0);
        let read = stream.read(self.input.get_mut(filled..).unwrap_or_default());
        self.input
            .truncate(filled + read.as_ref().map_or(0, |&n| n.min(READ_BYTES)));
        match read {
            Ok(0) => Err(self.abandon(Lost::Eof)),
            Ok(_) => Ok(()),
            // The read timed out (a deadline is due) or a signal came.
            Err(error)
                if matches!(
                    error.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                Ok(())
            }
            // TLS without close_notify: TCP ended all the same.
            Err(error) if error.kind() == ErrorKind::UnexpectedEof => Err(self.abandon(Lost::Eof)),
            Err(error) => Err(self.abandon(Lost::Io(error.kind()))),
        }
    }

    /// Writes what the session wrote, whole. Before anything masked leaves,
    /// the key source is asked whether every key was fresh (§5.3): if not,
    /// nothing is sent and the connection is dropped.
    fn flush(&mut self) -> Result<(), WsError> {
        if let Some(kind) = self.wire.keys.take_failure() {
            self.wire.out.clear();
            self.abandon(Lost::Io(kind));
            return Err(WsError::Random(kind));
        }
        if self.wire.out.is_empty() {
            return Ok(());
        }
        let Some(stream) = self.stream.as_mut() else {
            self.wire.out.clear();
            return Err(WsError::NotOpen);
        };
        let written = stream
            .write_all(&self.wire.out)
            .and_then(|()| stream.flush());
        self.wire.out.clear();
        if self.wire.out.capacity() > RETAINED_OUT_BYTES {
            self.wire.out = Vec::new();
        }
        // A frame cut short leaves the stream unusable: the next byte the
        // server reads would be taken for a header.
        written.map_err(|error| self.abandon(lost_writing(error)))
    }

    /// §7.1.1: after a closing handshake (or after failing it), "the client
    /// SHOULD wait for the server to close the connection" — so the server
    /// holds TIME_WAIT, and our last frame is not lost to a reset from our
    /// own early close. At most `close_timeout`; anything read is dropped
    /// (the session ignores all after a Close). Then TCP is closed.
    fn linger(&mut self) {
        let deadline = Instant::now() + self.wire.config.close_timeout;
        if let Some(stream) = self.stream.as_mut() {
            let mut scratch = [0u8; 512];
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
                    break;
                }
                match stream.read(&mut scratch) {
                    Ok(0) => break,
                    Ok(_) => {}
                    // Timed out (the loop's check ends it) or a signal.
                    Err(error)
                        if matches!(
                            error.kind(),
                            ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                        ) => {}
                    Err(_) => break,
                }
            }
        }
        self.stream = None;
        self.input = Vec::new();
        self.start = 0;
    }

    /// Drops the connection without a closing handshake; `lost` is why.
    fn abandon(&mut self, lost: Lost) -> WsError {
        self.stream = None;
        self.session.on_eof();
        self.input = Vec::new();
        self.start = 0;
        WsError::Lost(lost)
    }
}

/// Reads the server's answer to the opening handshake until its head is
/// complete, before `deadline`, and checks it (§4.1). Returns what it
/// settled (the subprotocol, permessage-deflate) and the bytes that came
/// after the head: the first frames, which a server may send at once.
fn read_answer<S: Read + ReadTimeout>(
    stream: &mut S,
    offer: &Offer<'_>,
    url: &Url,
    key: &ClientKey,
    config: &WsConfig,
    deadline: Instant,
) -> Result<(Settled, Vec<u8>), WsError> {
    let mut received = Vec::new();
    let mut scanner = ResponseHeadScanner::new(config.max_head_bytes);
    let head_len = loop {
        let scanned = scanner.scan(&received);
        let response = |error| WsError::Handshake(AcceptError::Response(error));
        if let Some(head_len) = scanned.map_err(response)? {
            break head_len;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(WsError::Lost(Lost::HandshakeTimeout));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|error| WsError::Lost(Lost::Io(error.kind())))?;
        let filled = received.len();
        received.resize(filled + READ_BYTES, 0);
        let read = stream.read(received.get_mut(filled..).unwrap_or_default());
        received.truncate(filled + read.as_ref().map_or(0, |&n| n.min(READ_BYTES)));
        match read {
            Ok(0) => return Err(WsError::Lost(Lost::Eof)),
            Ok(_) => {}
            Err(error)
                if matches!(
                    error.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(error) if error.kind() == ErrorKind::UnexpectedEof => {
                return Err(WsError::Lost(Lost::Eof))
            }
            Err(error) => return Err(WsError::Lost(Lost::Io(error.kind()))),
        }
    };
    let head = received.get(..head_len).unwrap_or_default();
    let settled = offer.check_answer(url, config, key, head)?;
    let rest = received.split_off(head_len.min(received.len()));
    Ok((settled, rest))
}

/// A write error as the way the connection was lost. A timed-out write
/// returns `WouldBlock` on Unix and `TimedOut` on Windows.
fn lost_writing(error: io::Error) -> Lost {
    match error.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => Lost::WriteTimeout,
        kind => Lost::Io(kind),
    }
}

/// Why the session wrote nothing, as the caller's error.
fn refused(error: SendError) -> WsError {
    match error {
        SendError::ControlTooLong => WsError::PingTooLong,
        // Keys are always lent (`Wire::env`), so `NoMaskKeys` never comes.
        SendError::Closing | SendError::NoMaskKeys => WsError::NotOpen,
    }
}

impl<S> fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket")
            .field("state", &self.session.state())
            .field("tcp_open", &self.stream.is_some())
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

/// The blocking iterator of [`WebSocket::messages`]: each item is one
/// [`WebSocket::recv`]; it ends after [`Message::Close`] or an error.
#[derive(Debug)]
pub struct Messages<'s, S> {
    socket: &'s mut WebSocket<S>,
}

impl<S: Read + Write + ReadTimeout> Iterator for Messages<'_, S> {
    type Item = Result<Message, WsError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.socket.stream.as_ref()?;
        Some(self.socket.recv())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::response_head::ResponseError;
    use crate::limits::Limits;
    use crate::ws::frame::FrameError;

    #[test]
    fn the_defaults_are_the_servers_own() {
        let config = WsConfig::default();
        let server = Limits::default().websocket();
        assert_eq!(config.limits, server.limits);
        assert_eq!(config.ping_interval, server.ping_interval);
        assert_eq!(config.pong_timeout, server.pong_timeout);
        assert_eq!(config.close_timeout, server.close_timeout);
        assert_eq!(config.max_head_bytes, Limits::default().max_head_bytes);
        assert_eq!(config.max_headers, Limits::default().max_headers);
        let session = config.session();
        assert_eq!(session.idle_timeout, None);
        assert_eq!(
            config.tcp_connector().connect_timeout,
            config.connect_timeout
        );
    }

    #[test]
    fn errors_say_what_happened_and_know_their_close_code() {
        let cases = [
            (WsError::Setup(SetupError::NeedsTls), None),
            (WsError::Connect(ErrorKind::ConnectionRefused), Some(1006)),
            (WsError::Handshake(AcceptError::Status(404)), Some(1006)),
            (
                WsError::Handshake(AcceptError::Response(ResponseError::NotHttp1)),
                Some(1006),
            ),
            (WsError::Lost(Lost::Eof), Some(1006)),
            (WsError::Lost(Lost::PongTimeout), Some(1006)),
            (
                WsError::Protocol(MessageError::Frame(FrameError::MaskedServerFrame)),
                Some(1002),
            ),
            (WsError::Protocol(MessageError::InvalidUtf8), Some(1007)),
            (WsError::Protocol(MessageError::TooBig), Some(1009)),
            (WsError::NotOpen, None),
            (WsError::PingTooLong, None),
            (WsError::Random(ErrorKind::Unsupported), Some(1006)),
            (
                WsError::GaveUp {
                    attempts: 3,
                    last: Disconnect::Lost(Lost::Eof),
                },
                None,
            ),
            (WsError::Setup(SetupError::TlsNotInLoop), None),
        ];
        let mut texts = Vec::new();
        for (error, code) in cases {
            assert_eq!(error.close_code().map(|code| code.0), code, "{error:?}");
            let text = error.to_string();
            assert!(!texts.contains(&text), "{text}");
            texts.push(text);
        }
        assert!(texts[2].contains("404"));
        assert!(texts[7].contains("1007"));
        assert!(std::error::Error::source(&WsError::Protocol(MessageError::InvalidUtf8)).is_some());
    }

    #[test]
    fn setup_is_checked_before_anything_is_sent() {
        let url = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            WebSocket::connect("ftp://a/").map(|_| ()),
            Err(WsError::Setup(SetupError::Url(UrlError::UnsupportedScheme)))
        );
        assert_eq!(
            WebSocket::connect("wss://a/").map(|_| ()),
            Err(WsError::Setup(SetupError::NeedsTls))
        );
        assert_eq!(
            WebSocket::connect("http://a/").map(|_| ()),
            Err(WsError::Setup(SetupError::NotWebSocket))
        );
        for config in [
            WsConfig {
                protocols: vec!["a".into(), "a".into()],
                ..WsConfig::default()
            },
            WsConfig {
                origin: Some("x\r\ny".into()),
                ..WsConfig::default()
            },
            WsConfig {
                headers: vec![("Host".into(), "x".into())],
                ..WsConfig::default()
            },
        ] {
            assert!(matches!(
                check_setup(&url("ws://a/"), &config),
                Err(SetupError::Request(_))
            ));
        }
        assert_eq!(
            check_setup(&url("wss://a/x?y"), &WsConfig::default()),
            Ok(())
        );
    }
}
