//! A blocking Server-Sent Events client: what a browser's `EventSource` does,
//! for programs and devices.
//!
//! Reading list (WHATWG HTML Living Standard, §9.2 "Server-sent events"):
//! - §9.2.2 (the `EventSource`: connecting, open, reconnecting, closed),
//!   §9.2.3 (processing model: "announce the connection" on `200
//!   text/event-stream`, "fail the connection" on any other status or type,
//!   "reestablish the connection" when the body ends or the network fails;
//!   §9.2.1's authoring note: "a client can be told to stop reconnecting using
//!   the HTTP 204 No Content response code").
//! - §9.2.4 (`Last-Event-ID` on reconnection), §9.2.6 (`retry:`; the parser is
//!   [`crate::sse::StreamParser`]), §9.2.7 (keep-alive comments every 15 s).
//! - RFC 9112 §6.3 (response body length), §7.1 (chunked).
//!
//! Two layers, like the server's: a private `Reader` turns one connection's
//! bytes into events without touching a socket or a clock; [`SseClient`] is
//! the blocking driver that connects, writes the request, reads, sleeps and
//! reconnects.
//!
//! ```no_run
//! use pushloop::client::sse::{ClientEvent, SseClient};
//! let mut client = SseClient::new("http://127.0.0.1:6788/events?topics=demo")?;
//! for item in client.events() {
//!     match item? {
//!         ClientEvent::Event(event) => println!("{} {}: {}", event.last_event_id, event.event_type, event.data),
//!         state => println!("{state:?}"),
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use crate::client::backoff::{Backoff, ReconnectPolicy};
use crate::client::random::{OsRandom, Random};
use crate::client::transport::{Connect, TcpConnector};
use crate::client::url::{Scheme, Url, UrlError};
use crate::http::httparse;
use crate::http::response_head::{
    parse_response, ResponseError, ResponseFraming, ResponseHeadScanner,
};
use crate::http::syntax::is_token;
use crate::http::BodyDecoder;
use crate::sse::{ParsedEvent, StreamError, StreamParser};

/// Bytes asked of the stream per read. Not a limit: a buffer size, allocated
/// once per client. 8 KiB holds a typical burst of events in one read.
const READ_BYTES: usize = 8 * 1024;

/// How an [`SseClient`] reads: its limits, its reconnect policy, and what it
/// sends. Start from [`SseConfig::default`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseConfig {
    /// Bytes in the response head. Default 8 KiB, the server's own head
    /// limit; pushloop's event-stream head is about 150 bytes. Past it:
    /// [`ResponseError::HeadTooLarge`], and no reconnect.
    pub max_head_bytes: usize,
    /// Header fields in the response head. Default 64, as the server's.
    /// Past it: [`ResponseError::TooManyHeaders`].
    pub max_headers: usize,
    /// Bytes in one field line, and in one event's data. Default 1 MiB: a
    /// default pushloop server accepts publishes of up to 1 MiB, so every
    /// event it can send fits. Past it: [`StreamError::LineTooLong`] or
    /// [`StreamError::DataTooLong`], never unbounded memory.
    pub max_line_bytes: usize,
    /// When to reconnect, and when to give up.
    pub reconnect: ReconnectPolicy,
    /// More request fields (`Authorization`, `Cookie`, ...). `Host`,
    /// `Accept`, `Cache-Control` and `Last-Event-ID` are the client's own.
    pub headers: Vec<(String, String)>,
    /// Where to resume from on the first connection: an id kept from an
    /// earlier run. Empty: from now.
    pub last_event_id: String,
}

impl Default for SseConfig {
    fn default() -> Self {
        SseConfig {
            max_head_bytes: 8 * 1024,
            max_headers: 64,
            max_line_bytes: 1 << 20,
            reconnect: ReconnectPolicy::default(),
            headers: Vec::new(),
            last_event_id: String::new(),
        }
    }
}

/// What [`SseClient::events`] yields: the stream's events and the
/// connection's changes of state, in the order they happened.
///
/// A pushloop feed says "you missed events" with an ordinary event of type
/// `resync`; it arrives as an [`ClientEvent::Event`] like any other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// The server answered `200 text/event-stream`: the stream is open
    /// (§9.2.3 "announce the connection", the browser's `open` event).
    Connected,
    /// An event (§9.2.6 "dispatch the event"). Its `last_event_id` is the id
    /// to resume after it.
    Event(ParsedEvent),
    /// The connection was lost, or an attempt failed; the next attempt starts
    /// after `delay` (the server's `retry:` plus backoff). The browser's
    /// `error` event with `readyState` CONNECTING.
    Reconnecting {
        /// How long the client waits before connecting again.
        delay: Duration,
        /// Which retry in a row this is (1 for the first).
        attempt: u32,
        /// What happened.
        cause: Disconnect,
    },
    /// The server answered `204 No Content`: it wants no more reconnects.
    /// The last item; the iterator ends after it.
    Stopped,
}

/// Why a connection ended or an attempt failed; all are followed by a
/// reconnect (§9.2.3: a network error "reestablishes the connection").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disconnect {
    /// Connecting failed: the name did not resolve, the server refused,
    /// the address did not answer in time.
    Connect(io::ErrorKind),
    /// The server closed the connection, or ended the response body (its
    /// last chunk, or its `Content-Length`).
    Closed,
    /// Nothing arrived for the transport's read timeout: the connection is
    /// presumed dead.
    TimedOut,
    /// Reading or writing failed (e.g. a reset).
    Io(io::ErrorKind),
}

impl fmt::Display for Disconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Disconnect::Connect(kind) => write!(f, "could not connect ({kind})"),
            Disconnect::Closed => f.write_str("the server closed the stream"),
            Disconnect::TimedOut => f.write_str("the server went silent"),
            Disconnect::Io(kind) => write!(f, "the connection failed ({kind})"),
        }
    }
}

/// Why an [`SseClient`] stopped for good. Each variant says what the server
/// did; after any of them the iterator ends (§9.2.3 "fail the connection": no
/// reconnect, the browser's `readyState` CLOSED).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SseError {
    /// Answered with a status other than 200 and 204 (§9.2.3): 404, 500, a
    /// redirect (not followed), ...
    Status(u16),
    /// Answered 200 with a `Content-Type` other than `text/event-stream`
    /// (§9.2.3): an HTML page, JSON, or none at all.
    NotEventStream,
    /// Sent a response that is not valid HTTP/1.x (garbage, another
    /// protocol), or a broken chunked body.
    Response(ResponseError),
    /// Sent a line or an event longer than [`SseConfig::max_line_bytes`].
    Stream(StreamError),
    /// Could not be reached, or kept, within the [`ReconnectPolicy`]'s
    /// give-up rules: `attempts` retries in a row, the last lost to `last`.
    GaveUp {
        /// Retries in a row before giving up.
        attempts: u32,
        /// How the last connection or attempt ended.
        last: Disconnect,
    },
}

impl fmt::Display for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SseError::Status(status) => write!(f, "the server answered {status}, not 200"),
            SseError::NotEventStream => {
                f.write_str("the server's answer is not Content-Type: text/event-stream")
            }
            SseError::Response(error) => write!(f, "bad response: {error}"),
            SseError::Stream(error) => write!(f, "bad event stream: {error}"),
            SseError::GaveUp { attempts, last } => {
                write!(f, "gave up after {attempts} retries; the last: {last}")
            }
        }
    }
}

impl std::error::Error for SseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SseError::Response(error) => Some(error),
            SseError::Stream(error) => Some(error),
            _ => None,
        }
    }
}

/// Why an [`SseClient`] cannot be built. Nothing was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetupError {
    /// The URL does not parse.
    Url(UrlError),
    /// The URL is `ws://` or `wss://`: an event stream is read over HTTP.
    NotHttp,
    /// The URL is `https://`, and the plain-TCP connector has no TLS: build
    /// the client with [`SseClient::with_parts`] and a TLS [`Connect`].
    NeedsTls,
    /// An extra header's name is not a token, or is one the client sends
    /// itself, or its value holds a control byte (RFC 9110 §5.5).
    BadHeader,
    /// The last event id holds a control byte, which cannot be sent in
    /// `Last-Event-ID` (§9.2.4, RFC 9110 §5.5).
    BadLastEventId,
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Url(error) => write!(f, "bad URL: {error}"),
            SetupError::NotHttp => f.write_str("an event stream needs an http:// URL"),
            SetupError::NeedsTls => f.write_str("https:// needs a TLS connector"),
            SetupError::BadHeader => f.write_str("an extra header is malformed or reserved"),
            SetupError::BadLastEventId => f.write_str("the last event id holds a control byte"),
        }
    }
}

impl std::error::Error for SetupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SetupError::Url(error) => Some(error),
            _ => None,
        }
    }
}

/// The fields the client writes itself, which [`SseConfig::headers`] may not
/// repeat.
const OWN_FIELDS: [&str; 4] = ["host", "accept", "cache-control", "last-event-id"];

/// A blocking event-stream client. It connects, reads, and reconnects on its
/// own; [`SseClient::events`] hands out what happens.
///
/// `C` opens the byte stream ([`TcpConnector`] by default, or a TLS one);
/// `R` is the randomness of the reconnect jitter ([`OsRandom`] by default).
pub struct SseClient<C: Connect = TcpConnector, R: Random = OsRandom> {
    url: Url,
    config: SseConfig,
    connector: C,
    backoff: Backoff<R>,
    /// What outlives one connection.
    resume: Resume,
    state: State<C::Stream>,
    /// Yielded before anything else happens.
    queue: VecDeque<ClientEvent>,
    /// Yielded once `queue` is empty; then the iterator ends.
    failure: Option<SseError>,
    /// One read's bytes.
    buf: Vec<u8>,
}

/// Where the client is (§9.2.2 `readyState`).
enum State<S> {
    /// CONNECTING: the next attempt starts `delay` after `since`.
    Waiting { since: Instant, delay: Duration },
    /// CONNECTING until the head is in, then OPEN.
    Connected { stream: S, reader: Reader },
    /// CLOSED, for good.
    Done,
}

impl SseClient {
    /// A client for an `http://` URL with the default [`SseConfig`], plain
    /// TCP with [`TcpConnector`]'s timeouts, and OS randomness. Nothing
    /// happens until [`SseClient::events`] is iterated.
    pub fn new(url: &str) -> Result<SseClient, SetupError> {
        SseClient::with_config(url, SseConfig::default())
    }

    /// [`SseClient::new`] with this configuration.
    pub fn with_config(url: &str, config: SseConfig) -> Result<SseClient, SetupError> {
        let url = Url::parse(url).map_err(SetupError::Url)?;
        if url.scheme().is_tls() {
            return Err(SetupError::NeedsTls);
        }
        SseClient::with_parts(url, config, TcpConnector::default(), OsRandom::new())
    }
}

impl<C: Connect, R: Random> SseClient<C, R> {
    /// A client with its own connector (TLS, a test transport) and randomness.
    pub fn with_parts(
        url: Url,
        config: SseConfig,
        connector: C,
        random: R,
    ) -> Result<Self, SetupError> {
        if !matches!(url.scheme(), Scheme::Http | Scheme::Https) {
            return Err(SetupError::NotHttp);
        }
        for (name, value) in &config.headers {
            let own = OWN_FIELDS.iter().any(|own| own.eq_ignore_ascii_case(name));
            if own || !is_token(name.as_bytes()) || !is_field_value(value) {
                return Err(SetupError::BadHeader);
            }
        }
        if !is_field_value(&config.last_event_id) {
            return Err(SetupError::BadLastEventId);
        }
        Ok(SseClient {
            backoff: Backoff::new(config.reconnect, random),
            resume: Resume {
                last_event_id: config.last_event_id.clone(),
                retry: None,
            },
            url,
            config,
            connector,
            state: State::Waiting {
                since: Instant::now(),
                delay: Duration::ZERO,
            },
            queue: VecDeque::new(),
            failure: None,
            buf: vec![0; READ_BYTES],
        })
    }

    /// The id to resume from: the last event ID string (§9.2.6), as of the
    /// bytes read so far. Events still queued in the iterator are already
    /// counted; to persist progress, store each handled event's
    /// `last_event_id` instead.
    pub fn last_event_id(&self) -> &str {
        &self.resume.last_event_id
    }

    /// The server's reconnection time, once a `retry:` field set it.
    pub fn retry(&self) -> Option<Duration> {
        self.resume.retry
    }

    /// The stream, as a blocking iterator: connects on the first call, then
    /// yields events and state changes, reconnecting as needed. Ends after
    /// [`ClientEvent::Stopped`] or an [`SseError`]. Each call blocks until
    /// something happens: a read, a timeout, or the end of a reconnect delay.
    pub fn events(&mut self) -> Events<'_, C, R> {
        Events { client: self }
    }

    /// The next item, driving the connection until there is one.
    fn next_item(&mut self) -> Option<Result<ClientEvent, SseError>> {
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
                    std::thread::sleep(delay.saturating_sub(since.elapsed()));
                    match self.open() {
                        Ok(stream) => State::Connected {
                            stream,
                            reader: Reader::new(&self.config),
                        },
                        Err(cause) => self.retry_after(cause),
                    }
                }
                State::Connected { stream, reader } => self.read(stream, reader),
            };
        }
    }

    /// Connects and sends the request.
    fn open(&mut self) -> Result<C::Stream, Disconnect> {
        let mut stream = self
            .connector
            .connect(&self.url)
            .map_err(|error| Disconnect::Connect(error.kind()))?;
        let request = self.request();
        stream
            .write_all(&request)
            .and_then(|()| stream.flush())
            .map_err(lost)?;
        Ok(stream)
    }

    /// The request head (§9.2.2 steps 7-9, §9.2.4).
    fn request(&self) -> Vec<u8> {
        let mut head = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n",
            self.url.target(),
            self.url.authority()
        );
        // §9.2.4: "If the EventSource object's last event ID string is not the
        // empty string", send it. An id from the stream can hold a control
        // byte (the parser only refuses NUL); no server would accept that
        // field, so it is left out, and the server sends what it has.
        let id = &self.resume.last_event_id;
        if !id.is_empty() && is_field_value(id) {
            head.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        for (name, value) in &self.config.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        head.into_bytes()
    }

    /// One read on an open connection, and what follows from it.
    fn read(&mut self, mut stream: C::Stream, mut reader: Reader) -> State<C::Stream> {
        let read = stream.read(&mut self.buf);
        let bytes = match read {
            Ok(0) => return self.retry_after(Disconnect::Closed),
            Ok(n) => self.buf.get(..n).unwrap_or_default(),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {
                return State::Connected { stream, reader };
            }
            Err(error) => return self.retry_after(lost(error)),
        };
        let was_open = reader.is_open();
        let received = reader.receive(bytes, &mut self.resume, &mut self.queue);
        if !was_open && reader.is_open() {
            self.backoff.connected(Instant::now());
        }
        match received {
            Ok(None) => State::Connected { stream, reader },
            Ok(Some(End::Body)) => self.retry_after(Disconnect::Closed),
            Ok(Some(End::NoContent)) => {
                self.queue.push_back(ClientEvent::Stopped);
                State::Done
            }
            Err(error) => {
                self.failure = Some(error);
                State::Done
            }
        }
    }

    /// §9.2.3 "reestablish the connection": wait the reconnection time plus
    /// backoff, or give up as the policy says.
    fn retry_after(&mut self, cause: Disconnect) -> State<C::Stream> {
        let now = Instant::now();
        let floor = self.resume.retry.unwrap_or_default();
        match self.backoff.next_delay(now, floor) {
            Some(delay) => {
                self.queue.push_back(ClientEvent::Reconnecting {
                    delay,
                    attempt: self.backoff.attempts(),
                    cause,
                });
                State::Waiting { since: now, delay }
            }
            None => {
                self.failure = Some(SseError::GaveUp {
                    attempts: self.backoff.attempts(),
                    last: cause,
                });
                State::Done
            }
        }
    }
}

impl<C: Connect, R: Random> fmt::Debug for SseClient<C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseClient")
            .field("url", &self.url)
            .field("last_event_id", &self.resume.last_event_id)
            .field("retry", &self.resume.retry)
            .finish_non_exhaustive()
    }
}

/// The blocking iterator of [`SseClient::events`].
#[derive(Debug)]
pub struct Events<'c, C: Connect, R: Random> {
    client: &'c mut SseClient<C, R>,
}

impl<C: Connect, R: Random> Iterator for Events<'_, C, R> {
    type Item = Result<ClientEvent, SseError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.client.next_item()
    }
}

/// A read or write error on an open connection, as a [`Disconnect`]. A timed
/// out read returns `WouldBlock` on Unix and `TimedOut` on Windows.
fn lost(error: io::Error) -> Disconnect {
    match error.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Disconnect::TimedOut,
        kind => Disconnect::Io(kind),
    }
}

/// Is `value` safe as a field value: no control byte but HTAB (RFC 9110 §5.5)?
fn is_field_value(value: &str) -> bool {
    value.bytes().all(|b| b == b'\t' || !b.is_ascii_control())
}

/// What outlives one connection: the `EventSource`'s last event ID string
/// and reconnection time (§9.2.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Resume {
    last_event_id: String,
    retry: Option<Duration>,
}

/// How a response ended, when it did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// `204 No Content`: stop for good.
    NoContent,
    /// The body ended (last chunk, or `Content-Length` reached): reconnect.
    Body,
}

/// One connection's response, read as its bytes arrive: the head, then the
/// event stream. Sans-IO: bytes in, [`ClientEvent`]s out.
struct Reader {
    max_headers: usize,
    max_line_bytes: usize,
    phase: Phase,
}

enum Phase {
    /// The head so far.
    Head {
        buf: Vec<u8>,
        scanner: ResponseHeadScanner,
    },
    /// The stream is open (boxed: a parser is several buffers, a head one).
    Open(Box<Open>),
}

/// An open stream: its body's framing and the event-stream parser.
struct Open {
    body: Body,
    parser: StreamParser,
}

/// How the body's bytes become stream bytes (RFC 9112 §6.3).
enum Body {
    /// `Content-Length` or chunked. `carry` holds bytes the decoder left
    /// unconsumed (a chunk-size line cut by a read, bounded by the decoder's
    /// budgets); `decoded` one read's stream bytes.
    Delimited {
        decoder: BodyDecoder,
        carry: Vec<u8>,
        decoded: Vec<u8>,
    },
    /// Every byte until the server closes.
    UntilClose,
}

impl Reader {
    fn new(config: &SseConfig) -> Reader {
        Reader {
            max_headers: config.max_headers,
            max_line_bytes: config.max_line_bytes,
            phase: Phase::Head {
                buf: Vec::new(),
                scanner: ResponseHeadScanner::new(config.max_head_bytes),
            },
        }
    }

    fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open(_))
    }

    /// Takes the next bytes of the connection. Events (and `Connected`) go to
    /// `out`; ids and `retry` to `resume`. `Ok(Some(end))` when the response
    /// is over; after an error the connection must be dropped.
    fn receive(
        &mut self,
        bytes: &[u8],
        resume: &mut Resume,
        out: &mut VecDeque<ClientEvent>,
    ) -> Result<Option<End>, SseError> {
        let body_bytes;
        let bytes = match &mut self.phase {
            Phase::Head { buf, scanner } => {
                buf.extend_from_slice(bytes);
                let Some(head_len) = scanner.scan(buf).map_err(SseError::Response)? else {
                    return Ok(None);
                };
                let head = buf.get(..head_len).unwrap_or_default();
                let body = match judge(head, self.max_headers)? {
                    None => return Ok(Some(End::NoContent)),
                    Some(ResponseFraming::Delimited(framing)) => Body::Delimited {
                        // The stream has no length limit of its own: lines and
                        // events are bounded by the parser instead.
                        decoder: BodyDecoder::new(framing, usize::MAX),
                        carry: Vec::new(),
                        decoded: Vec::new(),
                    },
                    Some(ResponseFraming::UntilClose) => Body::UntilClose,
                };
                body_bytes = buf.split_off(head_len);
                self.phase = Phase::Open(Box::new(Open {
                    body,
                    // The id of the previous connection stands until this
                    // stream sets another, as in a browser.
                    parser: StreamParser::resuming(self.max_line_bytes, &resume.last_event_id),
                }));
                // §9.2.3 "announce the connection".
                out.push_back(ClientEvent::Connected);
                &body_bytes[..]
            }
            Phase::Open(_) => bytes,
        };
        let Phase::Open(open) = &mut self.phase else {
            return Ok(None);
        };
        let Open { body, parser } = &mut **open;
        let (stream_bytes, ended) = body.decode(bytes)?;
        let events = parser.feed(stream_bytes).map_err(SseError::Stream)?;
        out.extend(events.into_iter().map(ClientEvent::Event));
        // §9.2.6: `id` fields (even in blocks that dispatched nothing) set the
        // last event ID string; `retry` sets the reconnection time.
        if resume.last_event_id != parser.last_event_id() {
            resume.last_event_id.clear();
            resume.last_event_id.push_str(parser.last_event_id());
        }
        if let Some(ms) = parser.retry() {
            resume.retry = Some(Duration::from_millis(u64::from(ms)));
        }
        // The parser hands out the events before a limit was crossed and keeps
        // the error for its next call: collect it now, behind those events.
        parser.feed(&[]).map_err(SseError::Stream)?;
        Ok(ended.then_some(End::Body))
    }
}

impl Body {
    /// One read's body bytes → the stream bytes they carry, and whether the
    /// body is complete.
    fn decode<'b>(&'b mut self, bytes: &'b [u8]) -> Result<(&'b [u8], bool), SseError> {
        let Body::Delimited {
            decoder,
            carry,
            decoded,
        } = self
        else {
            return Ok((bytes, false));
        };
        decoded.clear();
        // The decoder leaves a cut-off chunk-size or trailer line unconsumed,
        // to be passed again in front of the next bytes.
        let broken = |_| SseError::Response(ResponseError::BadChunkedBody);
        let progress = if carry.is_empty() {
            let progress = decoder.decode(bytes, decoded).map_err(broken)?;
            carry.extend_from_slice(bytes.get(progress.used..).unwrap_or_default());
            progress
        } else {
            carry.extend_from_slice(bytes);
            let progress = decoder.decode(carry, decoded).map_err(broken)?;
            carry.drain(..progress.used.min(carry.len()));
            progress
        };
        if progress.done {
            // Bytes after the body are not ours: the server never sends a
            // second response to a request we did not make.
            carry.clear();
        }
        Ok((decoded, progress.done))
    }
}

/// §9.2.3, on the response head (`max_headers` fields at most):
/// `Ok(Some(framing))` to announce the connection, `Ok(None)` to stop for
/// good (204), `Err` to fail it.
fn judge(head: &[u8], max_headers: usize) -> Result<Option<ResponseFraming>, SseError> {
    let mut headers = vec![httparse::EMPTY_HEADER; max_headers];
    let head = parse_response(head, &mut headers).map_err(SseError::Response)?;
    match head.status() {
        200 => {}
        // §9.2.1: "a client can be told to stop reconnecting using the HTTP
        // 204 No Content response code".
        204 => return Ok(None),
        // "if res's status is not 200 ... fail the connection".
        status => return Err(SseError::Status(status)),
    }
    // "... or if res's `Content-Type` is not `text/event-stream`": the MIME
    // type's essence, parameters ignored, compared case-insensitively.
    let essence = head
        .header_str("content-type")
        .and_then(|value| value.split(';').next())
        .map(str::trim);
    if !essence.is_some_and(|essence| essence.eq_ignore_ascii_case("text/event-stream")) {
        return Err(SseError::NotEventStream);
    }
    head.body_framing().map(Some).map_err(SseError::Response)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n";

    fn config() -> SseConfig {
        SseConfig {
            max_line_bytes: 64,
            ..SseConfig::default()
        }
    }

    /// Feeds `chunks` to a fresh reader and returns what came out: the items,
    /// and how the response ended or failed.
    fn read_all(
        chunks: &[&[u8]],
        resume: &mut Resume,
    ) -> (Vec<ClientEvent>, Result<Option<End>, SseError>) {
        let mut reader = Reader::new(&config());
        let mut out = VecDeque::new();
        let mut result = Ok(None);
        for chunk in chunks {
            result = reader.receive(chunk, resume, &mut out);
            if !matches!(result, Ok(None)) {
                break;
            }
        }
        (out.into(), result)
    }

    /// Reads `response` whole, byte by byte, and split at every index; all
    /// must agree, and the answer is returned with the `Resume` it left.
    fn read_every_way(
        response: &[u8],
        resume: &Resume,
    ) -> (Vec<ClientEvent>, Result<Option<End>, SseError>, Resume) {
        let mut whole_resume = resume.clone();
        let whole = read_all(&[response], &mut whole_resume);
        let bytes: Vec<&[u8]> = response.chunks(1).collect();
        let mut bytewise_resume = resume.clone();
        assert_eq!(
            read_all(&bytes, &mut bytewise_resume),
            whole,
            "byte by byte"
        );
        assert_eq!(bytewise_resume, whole_resume);
        for split in 0..=response.len() {
            let (a, b) = response.split_at(split);
            let mut split_resume = resume.clone();
            assert_eq!(
                read_all(&[a, b], &mut split_resume),
                whole,
                "split at {split}"
            );
            assert_eq!(split_resume, whole_resume, "split at {split}");
        }
        (whole.0, whole.1, whole_resume)
    }

    fn event(event_type: &str, data: &str, id: &str) -> ClientEvent {
        ClientEvent::Event(ParsedEvent {
            event_type: event_type.into(),
            data: data.into(),
            last_event_id: id.into(),
        })
    }

    #[test]
    fn reads_a_chunked_stream_split_at_every_byte() {
        // Chunk boundaries fall inside lines, inside a field name and between
        // the CR and LF of nothing in particular; one chunk has an extension.
        let chunks = [
            "retry: 2500\nid: 7",
            "\n\nevent: tick\ndata: a\nda",
            "ta:  b\n",
            "\n",
        ];
        let mut response = format!("{HEAD}Transfer-Encoding: chunked\r\n\r\n");
        for (i, chunk) in chunks.iter().enumerate() {
            let extension = if i == 2 { ";ext=1" } else { "" };
            response.push_str(&format!("{:x}{extension}\r\n{chunk}\r\n", chunk.len()));
        }
        response.push_str("0\r\n\r\n");
        let (events, end, resume) = read_every_way(response.as_bytes(), &Resume::default());
        assert_eq!(
            events,
            [ClientEvent::Connected, event("tick", "a\n b", "7")]
        );
        assert_eq!(end, Ok(Some(End::Body)));
        assert_eq!(resume.last_event_id, "7");
        assert_eq!(resume.retry, Some(Duration::from_millis(2500)));
    }

    #[test]
    fn reads_a_content_length_stream_and_ends_at_its_length() {
        let body = "data: one\n\ndata: two\n\n";
        let response = format!("{HEAD}Content-Length: {}\r\n\r\n{body}junk", body.len());
        let (events, end, _) = read_every_way(response.as_bytes(), &Resume::default());
        assert_eq!(
            events,
            [
                ClientEvent::Connected,
                event("message", "one", ""),
                event("message", "two", "")
            ]
        );
        assert_eq!(end, Ok(Some(End::Body)));
    }

    #[test]
    fn reads_a_stream_until_close_without_framing() {
        let response = format!("{HEAD}\r\n: keep-alive\n\ndata: x\n\ndata: unfinished");
        let (events, end, _) = read_every_way(response.as_bytes(), &Resume::default());
        assert_eq!(events, [ClientEvent::Connected, event("message", "x", "")]);
        assert_eq!(end, Ok(None));
    }

    #[test]
    fn keeps_the_previous_connections_id_until_the_stream_sets_one() {
        let resumed = Resume {
            last_event_id: "41".into(),
            retry: None,
        };
        let response = format!("{HEAD}\r\ndata: a\n\nid: 42\ndata: b\n\ndata: c\n\n");
        let (events, _, resume) = read_every_way(response.as_bytes(), &resumed);
        assert_eq!(
            &events[1..],
            [
                event("message", "a", "41"),
                event("message", "b", "42"),
                event("message", "c", "42")
            ]
        );
        assert_eq!(resume.last_event_id, "42");

        // An id-only block moves the id too; an empty `id:` clears it.
        let response = format!("{HEAD}\r\nid: 43\n\n");
        assert_eq!(
            read_every_way(response.as_bytes(), &resumed)
                .2
                .last_event_id,
            "43"
        );
        let response = format!("{HEAD}\r\nid: 43\n\nid\ndata: d\n\n");
        let (events, _, resume) = read_every_way(response.as_bytes(), &resumed);
        assert_eq!(events[1], event("message", "d", ""));
        assert_eq!(resume.last_event_id, "");
    }

    #[test]
    fn judges_the_head_by_whatwg_section_9_2_3() {
        let cases: [(&str, Result<Option<End>, SseError>); 9] = [
            ("HTTP/1.1 204 No Content\r\n\r\n", Ok(Some(End::NoContent))),
            (
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
                Err(SseError::Status(404)),
            ),
            (
                "HTTP/1.1 301 Moved\r\nLocation: /x\r\n\r\n",
                Err(SseError::Status(301)),
            ),
            ("HTTP/1.1 500 Oops\r\n\r\n", Err(SseError::Status(500))),
            (
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n",
                Err(SseError::NotEventStream),
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", Err(SseError::NotEventStream)),
            (
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-streams\r\n\r\n",
                Err(SseError::NotEventStream),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Type: Text/Event-Stream; charset=utf-8\r\n\r\n",
                Ok(None),
            ),
            (
                "<!doctype html>\n<title>404</title>\n\n",
                Err(SseError::Response(ResponseError::NotHttp1)),
            ),
        ];
        for (response, expected) in cases {
            let (_, end, _) = read_every_way(response.as_bytes(), &Resume::default());
            assert_eq!(end, expected, "{response}");
        }
    }

    #[test]
    fn refuses_a_broken_chunked_body() {
        let response = format!("{HEAD}Transfer-Encoding: chunked\r\n\r\n5\r\ndata: x\n\n\r\n");
        let (events, end, _) = read_every_way(response.as_bytes(), &Resume::default());
        assert_eq!(events, [ClientEvent::Connected]);
        assert_eq!(end, Err(SseError::Response(ResponseError::BadChunkedBody)));
    }

    #[test]
    fn an_over_long_line_fails_after_the_events_before_it() {
        let response = format!("{HEAD}\r\ndata: ok\n\ndata: {}", "x".repeat(100));
        let (events, end, _) = read_every_way(response.as_bytes(), &Resume::default());
        assert_eq!(events, [ClientEvent::Connected, event("message", "ok", "")]);
        assert_eq!(end, Err(SseError::Stream(StreamError::LineTooLong)));
    }

    #[test]
    fn an_over_long_head_fails() {
        let response = format!("{HEAD}X-Pad: {}\r\n\r\n", "p".repeat(9000));
        let (events, end, _) = read_every_way(response.as_bytes(), &Resume::default());
        assert!(events.is_empty());
        assert_eq!(end, Err(SseError::Response(ResponseError::HeadTooLarge)));
    }

    #[test]
    fn more_header_fields_than_max_headers_fail() {
        let mut resume = Resume::default();
        let limited = SseConfig {
            max_headers: 2,
            ..config()
        };
        let response = format!("{HEAD}X-A: 1\r\nX-B: 2\r\n\r\n");
        let mut out = VecDeque::new();
        let result = Reader::new(&limited).receive(response.as_bytes(), &mut resume, &mut out);
        assert_eq!(
            result,
            Err(SseError::Response(ResponseError::TooManyHeaders))
        );
        let response = format!("{HEAD}X-A: 1\r\n\r\n");
        let result = Reader::new(&limited).receive(response.as_bytes(), &mut resume, &mut out);
        assert_eq!(result, Ok(None));
    }

    #[test]
    fn setup_refuses_what_cannot_be_sent() {
        let url = |s: &str| Url::parse(s).unwrap();
        let with = |config: SseConfig| {
            SseClient::with_parts(url("http://a/"), config, TcpConnector::default(), || 0u64)
                .map(|_| ())
        };
        assert_eq!(
            SseClient::new("ftp://a/").map(|_| ()),
            Err(SetupError::Url(UrlError::UnsupportedScheme))
        );
        assert_eq!(
            SseClient::new("https://a/").map(|_| ()),
            Err(SetupError::NeedsTls)
        );
        assert_eq!(
            SseClient::new("ws://a/").map(|_| ()),
            Err(SetupError::NotHttp)
        );
        for headers in [
            vec![("Accept".into(), "*/*".into())],
            vec![("last-event-id".into(), "1".into())],
            vec![("X Y".into(), "1".into())],
            vec![("X".into(), "a\r\nY: b".into())],
        ] {
            let config = SseConfig {
                headers,
                ..SseConfig::default()
            };
            assert_eq!(with(config), Err(SetupError::BadHeader));
        }
        let config = SseConfig {
            last_event_id: "7\r\nX: y".into(),
            ..SseConfig::default()
        };
        assert_eq!(with(config), Err(SetupError::BadLastEventId));
    }

    #[test]
    fn request_asks_for_an_event_stream_and_resumes_with_the_id() {
        let config = SseConfig {
            headers: vec![("Authorization".into(), "Bearer x".into())],
            last_event_id: "17".into(),
            ..SseConfig::default()
        };
        let mut client =
            SseClient::with_config("http://[::1]:8080/events?topics=a", config).unwrap();
        assert_eq!(
            String::from_utf8(client.request()).unwrap(),
            "GET /events?topics=a HTTP/1.1\r\nHost: [::1]:8080\r\nAccept: text/event-stream\r\n\
             Cache-Control: no-cache\r\nLast-Event-ID: 17\r\nAuthorization: Bearer x\r\n\r\n"
        );
        // An id with a control byte (the parser allows it) is not sent.
        client.resume.last_event_id = "1\u{1}".into();
        assert!(!String::from_utf8(client.request())
            .unwrap()
            .contains("Last-Event-ID"));
        client.resume.last_event_id.clear();
        assert!(!String::from_utf8(client.request())
            .unwrap()
            .contains("Last-Event-ID"));
    }

    #[test]
    fn errors_say_what_happened() {
        let errors = [
            SseError::Status(404).to_string(),
            SseError::NotEventStream.to_string(),
            SseError::Response(ResponseError::NotHttp1).to_string(),
            SseError::Stream(StreamError::LineTooLong).to_string(),
            SseError::GaveUp {
                attempts: 3,
                last: Disconnect::Connect(io::ErrorKind::ConnectionRefused),
            }
            .to_string(),
        ];
        assert!(errors[0].contains("404"));
        assert!(errors[4].contains('3') && errors[4].contains("refused"));
        for (i, error) in errors.iter().enumerate() {
            assert!(!errors[..i].contains(error));
        }
        assert!(std::error::Error::source(&SseError::Stream(StreamError::LineTooLong)).is_some());
    }
}
