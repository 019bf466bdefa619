//! One connection: a socket, a small state machine, a write queue, deadlines.
//!
//! ```text
//!            ┌──────────────── keep-alive: next request ───────────────┐
//!            ▼                                                          │
//!  accept → Http ──(upgrade)──→ WebSocket ──(close handshake)──┐       │
//!            │ ├──(Reply::EventStream)──→ EventStream ─────────┤       │
//!            │ ├──(Reply::LongPoll, nothing new)──→ LongPoll ──┴───────┤
//!            │ └──(Reply::Response / Poll)──────────────────────────────┘
//!            └──(error, Connection: close, timeout, shutdown)──→ Closing → gone
//! ```
//!
//! Each state is a small type of its own; nothing here touches the socket.

use mio::net::TcpStream;

use crate::app::TopicId;
use crate::http::{BodyDecoder, HeadScanner};
use crate::server::timers::Deadlines;
use crate::server::write_queue::WriteQueue;
use crate::ws::close::{CloseCode, CloseState};
use crate::ws::message::MessageDecoder;

/// The per-transport bucket a connection's counters go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Plain HTTP responses (including errors and the demo page).
    Http,
    /// Long polls.
    LongPoll,
    /// Server-Sent Events streams.
    EventStream,
    /// WebSockets.
    WebSocket,
}

/// A connection's state.
pub enum State {
    /// Reading a request head (and maybe its body).
    Http(HttpState),
    /// An open (or closing) WebSocket.
    WebSocket(Box<WsState>),
    /// A `text/event-stream` response that never ends.
    EventStream(TopicId),
    /// A held long-poll request.
    LongPoll(LongPollState),
    /// Writing the last bytes, then a lingering close.
    Closing(ClosingStage),
}

/// Reading requests.
pub struct HttpState {
    /// Where the end-of-head search resumes.
    pub scanner: HeadScanner,
    /// A request whose body is still arriving.
    pub pending: Option<Box<PendingBody>>,
}

/// A request head kept until its body is complete.
pub struct PendingBody {
    /// The head's bytes (parsed again when the body is complete: cheap, and it
    /// keeps `Request` a borrowed view).
    pub head: Vec<u8>,
    /// The body decoder (length or chunked).
    pub decoder: BodyDecoder,
    /// The body so far.
    pub body: Vec<u8>,
}

/// An open WebSocket.
pub struct WsState {
    /// Frames → messages. Taken out while a batch of input is processed, so
    /// callbacks can act on this same connection.
    pub decoder: MessageDecoder,
    /// RFC 6455 §7.1: who has sent a Close frame.
    pub close: CloseState,
    /// A ping is out and its pong (or any byte) is awaited.
    pub awaiting_pong: bool,
    /// The topic this socket follows, if any.
    pub topic: Option<TopicId>,
    /// What [`crate::app::App::close`] will be told, once known.
    pub close_code: Option<CloseCode>,
    /// The peer's close reason, when its Close frame carried one.
    pub close_reason: Box<str>,
    /// `App::close` has been called.
    pub reported: bool,
}

/// A held long-poll.
pub struct LongPollState {
    /// The feed.
    pub topic: TopicId,
    /// The client's cursor.
    pub after: u64,
    /// Whether the connection stays open after the answer.
    pub keep_alive: bool,
}

/// The steps of closing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClosingStage {
    /// Writing what is queued. Then, with `linger`, a half-close and
    /// [`ClosingStage::Lingering`]; without it, the socket is closed at once.
    /// Lingering is skipped only when the peer has said its last word (its
    /// WebSocket Close frame, RFC 6455 §5.5.1: nothing may follow it), so no
    /// input of its can still arrive and reset our last bytes.
    Flushing {
        /// Wait for the peer's FIN before closing.
        linger: bool,
    },
    /// Our side is shut (FIN sent); reading and discarding until the peer's FIN,
    /// so unread input cannot turn our last bytes into a reset (RFC 9112 §9.6).
    Lingering,
}

/// One connection.
pub struct Connection {
    /// The socket.
    pub stream: TcpStream,
    /// What the connection is doing.
    pub state: State,
    /// Outgoing bytes the socket has not taken.
    pub queue: WriteQueue,
    /// Input not consumed yet: part of a head, a frame header, a control frame,
    /// or requests pipelined behind a held long-poll. Empty = no allocation.
    pub leftover: Vec<u8>,
    /// Handshake, idle, heartbeat, close and stream deadlines.
    pub deadlines: Deadlines,
    /// WRITABLE interest is registered.
    pub wants_writable: bool,
    /// Waiting in the loop's fan-out line (see [`crate::server::core`]).
    pub in_fanout: bool,
    /// Listed for the end-of-batch flush (so it is listed once).
    pub in_dirty: bool,
    /// Which counters this connection's traffic goes to.
    pub transport: Transport,
}

impl Connection {
    /// The open WebSocket state, if this is one.
    pub fn websocket(&mut self) -> Option<&mut WsState> {
        match &mut self.state {
            State::WebSocket(ws) => Some(ws),
            _ => None,
        }
    }

    /// True for a WebSocket that may still send data (RFC 6455 §5.5.1: no data
    /// frames after our Close frame).
    pub fn is_open_websocket(&self) -> bool {
        matches!(&self.state, State::WebSocket(ws) if ws.close == CloseState::Open)
    }
}
