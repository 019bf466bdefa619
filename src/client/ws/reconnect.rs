//! A WebSocket client that stays connected: it reconnects under the same
//! [`ReconnectPolicy`](crate::client::backoff::ReconnectPolicy) as the SSE client (exponential backoff, full jitter,
//! give-up rules) and, on a pushloop feed, resumes after the last event it
//! saw (`?after=ID`), so nothing published while it was away is lost.
//!
//! ```no_run
//! use pushloop::client::ws::{ClientEvent, Message, WsClient, WsConfig};
//! let config = WsConfig { resume_feed: true, ..WsConfig::default() };
//! let mut client = WsClient::with_config("ws://127.0.0.1:6788/chat?topics=demo", config)?;
//! while let Some(item) = client.next_event() {
//!     match item? {
//!         ClientEvent::Message(Message::Text(json)) => println!("{json}"),
//!         ClientEvent::Connected { .. } => client.send_text("hello again")?,
//!         other => println!("{other:?}"),
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use super::{check_setup, CloseFrame, Lost, Message, SetupError, WebSocket, WsConfig, WsError};
use crate::client::backoff::{Backoff, Clock, SystemClock};
use crate::client::random::{OsRandom, Random};
use crate::client::transport::{Connect, ReadTimeout, TcpConnector};
use crate::client::url::{Scheme, Url};
use crate::ws::close::CloseCode;
use crate::ws::handshake_client::AcceptError;

/// What [`WsClient::next_event`] yields: messages and the connection's
/// changes of state, in the order they happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// The handshake succeeded: a connection is open.
    Connected {
        /// The subprotocol the server chose, if any.
        protocol: Option<String>,
    },
    /// A message from the server (never [`Message::Close`]: a Close ends in
    /// [`ClientEvent::Reconnecting`] or [`ClientEvent::Closed`]).
    Message(Message),
    /// The connection was lost, or an attempt failed; the next attempt starts
    /// after `delay`.
    Reconnecting {
        /// How long the client waits before connecting again.
        delay: Duration,
        /// Which retry in a row this is (1 for the first).
        attempt: u32,
        /// What happened.
        cause: Disconnect,
    },
    /// The closing handshake is complete and the client stops: the server
    /// closed with a code that says not to come back (see
    /// [`WsClient::next_event`]). The last item.
    Closed(CloseFrame),
}

/// Why a connection ended or an attempt failed, when a reconnect follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disconnect {
    /// Connecting failed: the name did not resolve, the server refused, the
    /// address did not answer in time.
    Connect(io::ErrorKind),
    /// The server (or a proxy in front of it) answered the handshake with a
    /// 5xx status: it is there, but not ready.
    Status(u16),
    /// The server closed with this code: going away (1001), restarting
    /// (1012), overloaded (1013), ...
    Closed(CloseCode),
    /// The connection ended without a closing handshake (1006).
    Lost(Lost),
}

impl fmt::Display for Disconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Disconnect::Connect(kind) => write!(f, "could not connect ({kind})"),
            Disconnect::Status(status) => write!(f, "the server answered {status}"),
            Disconnect::Closed(code) => write!(f, "the server closed with {}", code.0),
            Disconnect::Lost(lost) => lost.fmt(f),
        }
    }
}

/// A reconnecting WebSocket client. It connects, reads and reconnects on its
/// own; [`WsClient::next_event`] (or the iterator [`WsClient::events`])
/// hands out what happens, and [`WsClient::send_text`] sends on the open
/// connection.
///
/// `C` opens the byte stream ([`TcpConnector`], or a TLS one), `R` is the
/// randomness of the reconnect jitter, `K` the clock that waits out the
/// delays ([`SystemClock`]; a test passes one that records them).
pub struct WsClient<C: Connect = TcpConnector, R: Random = OsRandom, K: Clock = SystemClock> {
    url: Url,
    config: WsConfig,
    connector: C,
    backoff: Backoff<R>,
    clock: K,
    /// The feed cursor: the id of the last event seen (`resume_feed`).
    after: Option<u64>,
    state: State<C::Stream>,
    /// Yielded before anything else happens.
    queue: VecDeque<ClientEvent>,
    /// Yielded once `queue` is empty; then the client is done.
    failure: Option<WsError>,
}

/// Where the client is.
enum State<S> {
    /// The next attempt starts `delay` after `since` (on the client's clock).
    Waiting { since: Instant, delay: Duration },
    /// A connection is open (boxed: a socket is some 600 bytes, most of
    /// them its pool of masking keys).
    Open(Box<WebSocket<S>>),
    /// For good: closed, failed, or gave up.
    Done,
}

impl WsClient {
    /// A client for a `ws://` URL with the default [`WsConfig`], plain TCP
    /// and OS randomness. Nothing happens until [`WsClient::next_event`].
    pub fn new(url: &str) -> Result<WsClient, SetupError> {
        WsClient::with_config(url, WsConfig::default())
    }

    /// [`WsClient::new`] with this configuration.
    pub fn with_config(url: &str, config: WsConfig) -> Result<WsClient, SetupError> {
        let url = Url::parse(url).map_err(SetupError::Url)?;
        if url.scheme() == Scheme::Wss {
            return Err(SetupError::NeedsTls);
        }
        let connector = config.tcp_connector();
        WsClient::with_parts(url, config, connector, OsRandom::new())
    }
}

impl<C, R: Random> WsClient<C, R, SystemClock>
where
    C: Connect,
    C::Stream: Read + Write + ReadTimeout,
{
    /// A client with its own connector (TLS, a test transport) and jitter.
    /// Checks every option now, so that the first connect cannot fail on
    /// them.
    pub fn with_parts(
        url: Url,
        config: WsConfig,
        connector: C,
        random: R,
    ) -> Result<Self, SetupError> {
        check_setup(&url, &config)?;
        Ok(WsClient {
            backoff: Backoff::new(config.reconnect, random),
            after: config.after,
            url,
            config,
            connector,
            clock: SystemClock,
            state: State::Waiting {
                since: Instant::now(),
                delay: Duration::ZERO,
            },
            queue: VecDeque::new(),
            failure: None,
        })
    }
}

impl<C, R: Random, K: Clock> WsClient<C, R, K>
where
    C: Connect,
    C::Stream: Read + Write + ReadTimeout,
{
    /// The same client on another clock (e.g. one that records the waits).
    pub fn with_clock<K2: Clock>(self, clock: K2) -> WsClient<C, R, K2> {
        let state = match self.state {
            State::Waiting { delay, .. } => State::Waiting {
                since: clock.now(),
                delay,
            },
            other => other,
        };
        WsClient {
            url: self.url,
            config: self.config,
            connector: self.connector,
            backoff: self.backoff,
            clock,
            after: self.after,
            state,
            queue: self.queue,
            failure: self.failure,
        }
    }

    /// The feed cursor: the id of the last feed event received (with
    /// `resume_feed`), or the configured `after` until one arrives.
    pub fn last_event_id(&self) -> Option<u64> {
        self.after
    }

    /// The open connection, if there is one.
    pub fn socket(&self) -> Option<&WebSocket<C::Stream>> {
        match &self.state {
            State::Open(socket) => Some(socket),
            State::Waiting { .. } | State::Done => None,
        }
    }

    /// Sends a text message on the open connection; [`WsError::NotOpen`]
    /// while there is none. Should the send find the connection lost, the
    /// error is returned and the next event is the reconnect (or the end).
    pub fn send_text(&mut self, text: &str) -> Result<(), WsError> {
        self.on_open(|socket| socket.send_text(text))
    }

    /// Sends a binary message on the open connection (see
    /// [`WsClient::send_text`]).
    pub fn send_binary(&mut self, bytes: &[u8]) -> Result<(), WsError> {
        self.on_open(|socket| socket.send_binary(bytes))
    }

    /// Sends a ping on the open connection (see [`WebSocket::ping`]).
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), WsError> {
        self.on_open(|socket| socket.ping(payload))
    }

    /// Closes the open connection with the closing handshake
    /// ([`WebSocket::close`]) and stops: no more reconnects, and the events
    /// end. Returns the server's Close; [`WsError::NotOpen`] if no connection
    /// was open (the client stops all the same).
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<CloseFrame, WsError> {
        self.queue.clear();
        match std::mem::replace(&mut self.state, State::Done) {
            State::Open(mut socket) => socket.close(code, reason),
            State::Waiting { .. } | State::Done => Err(WsError::NotOpen),
        }
    }

    fn on_open(
        &mut self,
        act: impl FnOnce(&mut WebSocket<C::Stream>) -> Result<(), WsError>,
    ) -> Result<(), WsError> {
        let State::Open(socket) = &mut self.state else {
            return Err(WsError::NotOpen);
        };
        let result = act(socket);
        // A send that found the connection gone (lost, or no masking key to
        // be had) ends it here too: the next event says what follows.
        if let Err(error) = result {
            if socket.get_ref().is_none() {
                self.state = self.after_failure(error);
            }
        }
        result
    }

    /// The events, as a blocking iterator (see [`WsClient::next_event`]).
    pub fn events(&mut self) -> Events<'_, C, R, K> {
        Events { client: self }
    }

    /// The next event: connects on the first call, then yields messages and
    /// state changes, reconnecting as needed. Blocks until something
    /// happens: a message, a timeout, the end of a reconnect delay. `None`
    /// once the client is done.
    ///
    /// What ends a connection decides what follows:
    ///
    /// | end | then |
    /// |---|---|
    /// | TCP lost, pong or handshake timeout, refused connect | reconnect |
    /// | the handshake answered with a 5xx status | reconnect |
    /// | the server's Close with 1000 (done) | [`ClientEvent::Closed`], stop |
    /// | its Close with 1002, 1003, 1007, 1008, 1009 or 1010 (our fault: coming back would repeat it) | [`ClientEvent::Closed`], stop |
    /// | its Close with any other code (1001 going away, 1005, 1011-1014, ...) | reconnect |
    /// | any other refused handshake, a protocol error, a TLS certificate error | the error, stop |
    /// | the [`ReconnectPolicy`](crate::client::backoff::ReconnectPolicy) gives up | [`WsError::GaveUp`], stop |
    pub fn next_event(&mut self) -> Option<Result<ClientEvent, WsError>> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some(Ok(event));
            }
            if let Some(error) = self.failure.take() {
                return Some(Err(error));
            }
            self.state = match std::mem::replace(&mut self.state, State::Done) {
                State::Done => return None,
                State::Waiting { since, delay } => {
                    let waited = self.clock.now().saturating_duration_since(since);
                    self.clock.sleep(delay.saturating_sub(waited));
                    self.open()
                }
                State::Open(socket) => self.read(socket),
            };
        }
    }

    /// One attempt to connect.
    fn open(&mut self) -> State<C::Stream> {
        let url = match (self.config.resume_feed, self.after) {
            (true, Some(after)) => self.url.with_query_param("after", &after.to_string()),
            _ => self.url.clone(),
        };
        match WebSocket::connect_via(&url, &self.config, &mut self.connector) {
            Ok(socket) => {
                self.backoff.connected(self.clock.now());
                self.queue.push_back(ClientEvent::Connected {
                    protocol: socket.protocol().map(str::to_owned),
                });
                State::Open(Box::new(socket))
            }
            Err(error) => self.after_failure(error),
        }
    }

    /// One message from the open connection, and what follows from it.
    fn read(&mut self, mut socket: Box<WebSocket<C::Stream>>) -> State<C::Stream> {
        match socket.recv() {
            Ok(Message::Close(frame)) if comes_back_after(frame.code) => {
                self.retry_after(Disconnect::Closed(frame.code))
            }
            Ok(Message::Close(frame)) => {
                self.queue.push_back(ClientEvent::Closed(frame));
                State::Done
            }
            Ok(message) => {
                if let Message::Text(text) = &message {
                    if let Some(id) = feed_event_id(text).filter(|_| self.config.resume_feed) {
                        self.after = Some(id);
                    }
                }
                self.queue.push_back(ClientEvent::Message(message));
                State::Open(socket)
            }
            Err(error) => self.after_failure(error),
        }
    }

    /// A failed attempt or a lost connection: a reconnect, or the end.
    fn after_failure(&mut self, error: WsError) -> State<C::Stream> {
        let cause = match error {
            // `InvalidData` from a connector is a TLS handshake that failed
            // (an untrusted certificate, no common version): it would fail
            // again.
            WsError::Connect(kind) if kind != io::ErrorKind::InvalidData => {
                Disconnect::Connect(kind)
            }
            WsError::Lost(lost) => Disconnect::Lost(lost),
            WsError::Handshake(AcceptError::Status(status)) if (500..600).contains(&status) => {
                Disconnect::Status(status)
            }
            error => {
                self.failure = Some(error);
                return State::Done;
            }
        };
        self.retry_after(cause)
    }

    /// Waits as the policy says, or gives up.
    fn retry_after(&mut self, cause: Disconnect) -> State<C::Stream> {
        let now = self.clock.now();
        match self.backoff.next_delay(now, Duration::ZERO) {
            Some(delay) => {
                self.queue.push_back(ClientEvent::Reconnecting {
                    delay,
                    attempt: self.backoff.attempts(),
                    cause,
                });
                State::Waiting { since: now, delay }
            }
            None => {
                self.failure = Some(WsError::GaveUp {
                    attempts: self.backoff.attempts(),
                    last: cause,
                });
                State::Done
            }
        }
    }
}

/// Is a server's Close with `code` worth coming back after? Not after 1000
/// (RFC 6455 §7.4.1: "the purpose for which the connection was established
/// has been fulfilled"), nor after the codes that blame the client (1002
/// protocol error, 1003 unacceptable data, 1007 invalid data, 1008 policy,
/// 1009 too big, 1010 a missing extension): the same client would get the
/// same answer. Anything else — 1001 going away, 1005 no code, 1011
/// internal error, 1012 restart, 1013 try again later, 1014 bad gateway,
/// private codes — is.
fn comes_back_after(code: CloseCode) -> bool {
    !matches!(code.0, 1000 | 1002 | 1003 | 1007 | 1008 | 1009 | 1010)
}

/// The id of a pushloop feed event: `N` of a text message that starts
/// `{"id":N,` (or is `{"id":N}`), the way pushloop's feeds write every event
/// and `resync` notice, id first. `None` for anything else, so a chat line
/// or another server's JSON never moves the cursor.
///
/// ```
/// use pushloop::client::ws::feed_event_id;
/// assert_eq!(feed_event_id(r#"{"id":42,"topic":"a","event":"message","data":"x"}"#), Some(42));
/// assert_eq!(feed_event_id(r#"{"data":{"id":1}}"#), None);
/// assert_eq!(feed_event_id("hello"), None);
/// ```
pub fn feed_event_id(text: &str) -> Option<u64> {
    let rest = text.strip_prefix("{\"id\":")?;
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (digits, after) = rest.split_at(end);
    if !(after.starts_with(',') || after.starts_with('}')) {
        return None;
    }
    digits.parse().ok()
}

impl<C: Connect, R: Random, K: Clock> fmt::Debug for WsClient<C, R, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Waiting { .. } => "waiting",
            State::Open(_) => "open",
            State::Done => "done",
        };
        f.debug_struct("WsClient")
            .field("url", &self.url)
            .field("state", &state)
            .field("after", &self.after)
            .finish_non_exhaustive()
    }
}

/// The blocking iterator of [`WsClient::events`].
#[derive(Debug)]
pub struct Events<'c, C: Connect, R: Random, K: Clock> {
    client: &'c mut WsClient<C, R, K>,
}

impl<C, R: Random, K: Clock> Iterator for Events<'_, C, R, K>
where
    C: Connect,
    C::Stream: Read + Write + ReadTimeout,
{
    type Item = Result<ClientEvent, WsError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.client.next_event()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_feed_id_is_read_only_from_pushloops_event_shape() {
        let cases = [
            (
                r#"{"id":7,"topic":"a","event":"message","data":"x"}"#,
                Some(7),
            ),
            (
                r#"{"id":999,"topic":"","event":"resync","data":{}}"#,
                Some(999),
            ),
            (r#"{"id":3}"#, Some(3)),
            (r#"{"id":18446744073709551615,"x":1}"#, Some(u64::MAX)),
            (r#"{"id":18446744073709551616,"x":1}"#, None),
            (r#"{"id":,"x":1}"#, None),
            (r#"{"id":"7","x":1}"#, None),
            (r#"{"id":7.5,"x":1}"#, None),
            (r#"{"id":-7,"x":1}"#, None),
            (r#"{"id":7"#, None),
            (r#" {"id":7,"x":1}"#, None),
            (r#"{"topic":"a","id":7}"#, None),
            ("", None),
        ];
        for (text, id) in cases {
            assert_eq!(feed_event_id(text), id, "{text}");
        }
    }

    #[test]
    fn a_close_that_blames_us_or_says_done_is_not_come_back_after() {
        for code in [1000, 1002, 1003, 1007, 1008, 1009, 1010] {
            assert!(!comes_back_after(CloseCode(code)), "{code}");
        }
        for code in [1001, 1005, 1011, 1012, 1013, 1014, 4000] {
            assert!(comes_back_after(CloseCode(code)), "{code}");
        }
    }

    #[test]
    fn setup_refuses_what_cannot_be_sent() {
        let parts = |url: &str, config: WsConfig| {
            let url = Url::parse(url).unwrap();
            WsClient::with_parts(url, config, TcpConnector::default(), || 0u64).map(|_| ())
        };
        assert_eq!(
            WsClient::new("wss://a/").map(|_| ()),
            Err(SetupError::NeedsTls)
        );
        assert_eq!(
            parts("http://a/", WsConfig::default()),
            Err(SetupError::NotWebSocket)
        );
        let bad_protocol = WsConfig {
            protocols: vec!["a b".into()],
            ..WsConfig::default()
        };
        assert!(matches!(
            parts("ws://a/", bad_protocol),
            Err(SetupError::Request(_))
        ));
        let reserved = WsConfig {
            headers: vec![("Sec-WebSocket-Key".into(), "x".into())],
            ..WsConfig::default()
        };
        assert!(matches!(
            parts("ws://a/", reserved),
            Err(SetupError::Request(_))
        ));
        assert!(parts("wss://a/", WsConfig::default()).is_ok());
    }

    #[test]
    fn disconnects_say_what_happened() {
        let texts = [
            Disconnect::Connect(io::ErrorKind::ConnectionRefused).to_string(),
            Disconnect::Status(503).to_string(),
            Disconnect::Closed(CloseCode::SERVICE_RESTART).to_string(),
            Disconnect::Lost(Lost::PongTimeout).to_string(),
        ];
        assert!(texts[1].contains("503") && texts[2].contains("1012"));
        for (i, text) in texts.iter().enumerate() {
            assert!(!texts[..i].contains(text));
        }
    }
}
