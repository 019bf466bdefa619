//! Acting on the loop from other threads.
//!
//! A [`Handle`] is `Send + Clone`. Each call puts a command on a bounded
//! channel and wakes the loop through a `mio::Waker`; the loop runs the
//! commands in order at its next turn. Most calls never block: a full channel
//! is reported as [`HandleError::Full`] (so a sensor thread can decide to drop
//! or retry), and an argument the loop would refuse is reported at once
//! (an event name with a line break, JSON that is not JSON, a topic name that
//! is not one). The calls that need an answer from the loop — the id of a
//! publish, a new topic — say so in their name (`…_and_wait`, [`Handle::topic`])
//! and block until the loop has handled them; called from the loop's own
//! thread they fail at once ([`HandleError::OnLoopThread`]) instead of
//! waiting for themselves.
//!
//! With several loops ([`crate::server::Server::run_threads`]) every handle
//! reaches all of them, even one cloned before they started: a command for
//! one connection goes to the loop its [`ConnId`] names, a broadcast and a
//! shutdown to every loop, a publish or a topic to the handle's own loop
//! (the topics are shared, so any loop will do). A loop runs its commands
//! after the events other loops published before the commands were sent.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::ThreadId;
use std::time::Duration;

use mio::Waker;

use crate::engine::stats::Stats;
use crate::feeds::{
    is_topic_name, Entry, HistoryLimits, Payload, PublishError, TopicError, MAX_TOPIC_NAME_BYTES,
};
use crate::http::Response;
use crate::ids::{ConnId, TopicId};
use crate::ws::close::CloseCode;

/// What a publish from another thread carries (owned: it crosses threads).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnedPayload {
    /// Text (see [`Payload::Text`]).
    Text(String),
    /// A JSON value (see [`Payload::Json`]).
    Json(String),
    /// Bytes (see [`Payload::Binary`]).
    Binary(Vec<u8>),
}

impl OwnedPayload {
    /// A copy of a borrowed payload, to cross threads.
    pub fn from_payload(payload: Payload) -> OwnedPayload {
        match payload {
            Payload::Text(text) => OwnedPayload::Text(text.to_owned()),
            Payload::Json(json) => OwnedPayload::Json(json.to_owned()),
            Payload::Binary(bytes) => OwnedPayload::Binary(bytes.to_vec()),
        }
    }

    /// The borrowed form the feeds take.
    pub fn as_payload(&self) -> Payload<'_> {
        match self {
            OwnedPayload::Text(text) => Payload::Text(text),
            OwnedPayload::Json(json) => Payload::Json(json),
            OwnedPayload::Binary(bytes) => Payload::Binary(bytes),
        }
    }
}

/// Who hears how a publish that is answered later went (the Redis
/// backend: see `engine::store`).
#[derive(Debug)]
pub enum Waiter {
    /// No one (`Context::publish_later`, `Handle::publish`): a failure is
    /// counted in the stats.
    Nobody,
    /// An HTTP request held for the answer (`Context::publish_for`):
    /// `200 {"id":N}`, or the error's status (`503` with `Retry-After`).
    Request(ConnId),
    /// A thread in `Handle::publish_and_wait`.
    Thread(std::sync::mpsc::SyncSender<Result<u64, PublishError>>),
}

/// A page of the stream for a parked cursor, or why there is none (what
/// [`Command::StoreFetched`] carries back to the cursor's loop).
#[cfg(feature = "redis")]
pub type Fetched = Result<crate::storage::redis::Page, crate::storage::redis::Failure>;
/// Without the `redis` feature no page is ever fetched.
#[cfg(not(feature = "redis"))]
pub type Fetched = std::convert::Infallible;

/// A command for the loop, as a [`Handle`] sends it.
#[derive(Debug)]
pub enum Command {
    /// Send a text message to one connection.
    SendText(ConnId, String),
    /// Send a binary message to one connection.
    SendBinary(ConnId, Vec<u8>),
    /// Send a text message to every open WebSocket of the loop but one.
    BroadcastText {
        /// The message.
        text: String,
        /// The connection that must not get it.
        except: Option<ConnId>,
    },
    /// Send a binary message to every open WebSocket of the loop but one.
    BroadcastBinary {
        /// The message.
        bytes: Vec<u8>,
        /// The connection that must not get it.
        except: Option<ConnId>,
    },
    /// Publish an event on a topic.
    Publish {
        /// The topic.
        topic: TopicId,
        /// The event type (`None`: `message`).
        event: Option<String>,
        /// The event data.
        payload: OwnedPayload,
        /// Where the loop sends the new id (or why it refused), if anyone waits.
        reply: Option<SyncSender<Result<u64, PublishError>>>,
    },
    /// Find or create a topic.
    Topic {
        /// Its name.
        name: String,
        /// Where the loop sends the topic (or why it refused).
        reply: SyncSender<Result<TopicId, TopicError>>,
    },
    /// Close a connection.
    Close(ConnId, CloseCode, String),
    /// Answer a request the app deferred (`Reply::Later`).
    Respond(ConnId, Response),
    /// Serve a connection another loop accepted (when loops share a port
    /// through one acceptor rather than `SO_REUSEPORT`).
    Adopt(mio::net::TcpStream),
    /// The addresses of an outbound WebSocket's host, looked up on a helper
    /// thread so the loop never waits for a resolver (feature `client`; see
    /// `engine::outbound`).
    #[cfg(feature = "client")]
    Resolved {
        /// The link's token.
        link: mio::Token,
        /// Which attempt of the link asked (a late answer is dropped).
        attempt: u64,
        /// The addresses, or why there are none.
        addrs: Result<Vec<std::net::SocketAddr>, std::io::ErrorKind>,
    },
    /// Publish through Redis, for another loop: loop 0 holds the link (see
    /// [`crate::engine::store`]).
    #[cfg(feature = "redis")]
    StorePublish {
        /// The topic.
        topic: TopicId,
        /// The event type (`None`: `message`).
        event: Option<String>,
        /// The event data.
        payload: OwnedPayload,
        /// Who hears how it went.
        waiter: Waiter,
    },
    /// Ask Redis for the events after a cursor older than history, for a
    /// connection of another loop.
    #[cfg(feature = "redis")]
    StoreFetch {
        /// The connection whose cursor it is.
        conn: ConnId,
        /// The cursor.
        after: u64,
    },
    /// A page of the stream for a connection of this loop (loop 0's answer
    /// to [`Command::StoreFetch`]).
    #[cfg(feature = "redis")]
    StoreFetched {
        /// The connection whose cursor it was.
        conn: ConnId,
        /// The page, or why there is none.
        page: Fetched,
    },
    /// [`Command::Adopt`] for a connection accepted on a TLS listener
    /// (feature `tls`): it starts with a TLS handshake.
    #[cfg(feature = "tls")]
    AdoptTls(mio::net::TcpStream),
    /// Serve this certificate to the TLS handshakes that start from now on
    /// (feature `tls`); open connections keep theirs.
    #[cfg(feature = "tls")]
    ReloadTls(crate::tls::TlsConfig),
}

/// Why a command was not taken, or what the loop said to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandleError {
    /// `Config::handle_capacity` commands are already waiting.
    Full,
    /// The loop has ended.
    Closed,
    /// The publish would be refused (checked before it was sent, or by the
    /// loop for the calls that wait).
    Refused(PublishError),
    /// The topic name is not one, or no more topics may be made.
    BadTopic(TopicError),
    /// A call that waits for the loop was made from the loop's own thread
    /// (a callback): it would wait for itself. Use the `Context` there.
    OnLoopThread,
    /// The loop did not answer within the wait's timeout.
    NoAnswer,
}

impl fmt::Display for HandleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandleError::Full => f.write_str("the loop's command queue is full"),
            HandleError::Closed => f.write_str("the loop has ended"),
            HandleError::Refused(why) => write!(f, "publish refused: {why}"),
            HandleError::BadTopic(why) => write!(f, "topic refused: {why}"),
            HandleError::OnLoopThread => {
                f.write_str("a waiting call was made on the loop's own thread; use the Context")
            }
            HandleError::NoAnswer => f.write_str("the loop did not answer in time"),
        }
    }
}

impl std::error::Error for HandleError {}

/// How long the waiting calls wait for the loop before [`HandleError::NoAnswer`].
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// One loop's end of the command channel.
#[derive(Debug)]
pub(crate) struct Port {
    commands: SyncSender<Command>,
    waker: Arc<Waker>,
    /// The loop's thread, once it runs (a waiting call from it would deadlock).
    thread: OnceLock<ThreadId>,
}

impl Port {
    pub(crate) fn new(commands: SyncSender<Command>, waker: Arc<Waker>) -> Port {
        Port {
            commands,
            waker,
            thread: OnceLock::new(),
        }
    }

    fn command(&self, command: Command) -> Result<(), HandleError> {
        match self.commands.try_send(command) {
            Ok(()) => self.waker.wake().map_err(|_| HandleError::Closed),
            Err(TrySendError::Full(_)) => Err(HandleError::Full),
            Err(TrySendError::Disconnected(_)) => Err(HandleError::Closed),
        }
    }
}

/// What every handle of a server shares: the loops' ports, the shutdown
/// flag, the counters each loop last published.
#[derive(Debug)]
struct Loops {
    first: Port,
    /// Loops 1 and up, once several run ([`crate::server::Server::run_threads`]).
    /// Set once, so a handle cloned before the loops started reaches them too.
    others: OnceLock<Vec<Port>>,
    shutdown: AtomicBool,
    /// Each loop's counters, as it last published them (several loops only).
    snapshots: Mutex<Vec<Stats>>,
}

impl Loops {
    fn port(&self, index: usize) -> Option<&Port> {
        match index {
            0 => Some(&self.first),
            index => self.others.get()?.get(index - 1),
        }
    }

    fn ports(&self) -> impl Iterator<Item = &Port> {
        std::iter::once(&self.first).chain(self.others.get().into_iter().flatten())
    }
}

/// Sends commands to a running loop from any thread.
#[derive(Clone, Debug)]
pub struct Handle {
    loops: Arc<Loops>,
    /// The loop that takes the commands not meant for one connection.
    home: usize,
    /// The feeds' limits, to refuse a publish here rather than in the loop.
    history: HistoryLimits,
}

impl Handle {
    pub(crate) fn new(first: Port, history: HistoryLimits) -> Handle {
        Handle {
            loops: Arc::new(Loops {
                first,
                others: OnceLock::new(),
                shutdown: AtomicBool::new(false),
                snapshots: Mutex::new(Vec::new()),
            }),
            home: 0,
            history,
        }
    }

    /// Adds the ports of loops 1 and up (once), and returns each new loop's
    /// own handle.
    pub(crate) fn add_loops(&self, others: Vec<Port>) -> Vec<Handle> {
        let count = others.len();
        if self.loops.others.set(others).is_err() {
            return Vec::new();
        }
        let mut snapshots = self
            .loops
            .snapshots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *snapshots = vec![Stats::default(); count + 1];
        (1..=count)
            .map(|home| Handle {
                home,
                ..self.clone()
            })
            .collect()
    }

    /// How many loops run (1 until [`crate::server::Server::run_threads`]
    /// starts more).
    pub fn loops(&self) -> usize {
        1 + self.loops.others.get().map_or(0, Vec::len)
    }

    /// Records the thread the handle's loop runs on.
    pub(crate) fn set_loop_thread(&self) {
        if let Some(port) = self.loops.port(self.home) {
            let _ = port.thread.set(std::thread::current().id());
        }
    }

    /// Queues a command for the handle's loop and wakes it.
    pub fn command(&self, command: Command) -> Result<(), HandleError> {
        self.command_to(self.home, command)
    }

    /// Queues a command for loop 0, which holds the Redis link; gives it
    /// back if that loop cannot take it now.
    #[cfg(feature = "redis")]
    pub(crate) fn to_first_loop(&self, command: Command) -> Result<(), Command> {
        match self.loops.first.commands.try_send(command) {
            Ok(()) => {
                let _ = self.loops.first.waker.wake();
                Ok(())
            }
            Err(TrySendError::Full(command)) | Err(TrySendError::Disconnected(command)) => {
                Err(command)
            }
        }
    }

    /// Queues a command for loop `index` and wakes it.
    #[cfg(feature = "redis")]
    pub(crate) fn command_to_loop(
        &self,
        index: usize,
        command: Command,
    ) -> Result<(), HandleError> {
        self.command_to(index, command)
    }

    /// Queues a command for loop `index` and wakes it.
    fn command_to(&self, index: usize, command: Command) -> Result<(), HandleError> {
        self.loops
            .port(index)
            .ok_or(HandleError::Closed)?
            .command(command)
    }

    /// Queues a command for the handle's own loop, waiting for room: for the
    /// loop's helper threads (a resolver, feature `client`), which may wait
    /// where a caller of the `Handle` may not.
    #[cfg(feature = "client")]
    pub(crate) fn command_waiting(&self, command: Command) -> Result<(), HandleError> {
        let port = self.loops.port(self.home).ok_or(HandleError::Closed)?;
        port.commands
            .send(command)
            .map_err(|_| HandleError::Closed)?;
        port.waker.wake().map_err(|_| HandleError::Closed)
    }

    /// Hands an accepted connection to loop `index` (the one-acceptor way of
    /// sharing a port); gives it back if that loop cannot take it now.
    pub(crate) fn adopt(
        &self,
        index: usize,
        stream: mio::net::TcpStream,
    ) -> Result<(), mio::net::TcpStream> {
        self.hand_over(index, Command::Adopt(stream))
    }

    /// [`Handle::adopt`] for a connection of a TLS listener (feature `tls`).
    #[cfg(feature = "tls")]
    pub(crate) fn adopt_tls(
        &self,
        index: usize,
        stream: mio::net::TcpStream,
    ) -> Result<(), mio::net::TcpStream> {
        self.hand_over(index, Command::AdoptTls(stream))
    }

    /// Sends an `Adopt` command to loop `index`; the stream back if it
    /// cannot take it now.
    fn hand_over(&self, index: usize, command: Command) -> Result<(), mio::net::TcpStream> {
        let give_back = |command: Command| match command {
            Command::Adopt(stream) => Err(stream),
            #[cfg(feature = "tls")]
            Command::AdoptTls(stream) => Err(stream),
            _ => Ok(()),
        };
        let Some(port) = self.loops.port(index) else {
            return give_back(command);
        };
        match port.commands.try_send(command) {
            Ok(()) => {
                let _ = port.waker.wake();
                Ok(())
            }
            Err(TrySendError::Full(command) | TrySendError::Disconnected(command)) => {
                give_back(command)
            }
        }
    }

    /// Publishes this loop's counters for the others to add up; false if
    /// they had not changed since the last time.
    pub(crate) fn publish_stats(&self, stats: &Stats) -> bool {
        let mut snapshots = self
            .loops
            .snapshots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match snapshots.get_mut(self.home) {
            Some(slot) if slot != stats => {
                slot.clone_from(stats);
                true
            }
            _ => false,
        }
    }

    /// Every loop's counters: `own` (the calling loop's, live) in its place,
    /// the others as they last published them.
    pub(crate) fn every_loop_stats(&self, own: &Stats) -> Vec<Stats> {
        let snapshots = self
            .loops
            .snapshots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if snapshots.is_empty() {
            return vec![own.clone()];
        }
        let mut all = snapshots.clone();
        if let Some(slot) = all.get_mut(self.home) {
            slot.clone_from(own);
        }
        all
    }

    /// Sends a text message to one connection (see `Context::send`).
    pub fn send_text(&self, id: ConnId, text: impl Into<String>) -> Result<(), HandleError> {
        self.command_to(id.loop_index(), Command::SendText(id, text.into()))
    }

    /// Sends a binary message to one connection (see `Context::send`).
    pub fn send_binary(&self, id: ConnId, bytes: impl Into<Vec<u8>>) -> Result<(), HandleError> {
        self.command_to(id.loop_index(), Command::SendBinary(id, bytes.into()))
    }

    /// Sends a text message to every open WebSocket (of every loop; `Full`
    /// if a loop could not take it).
    pub fn broadcast_text(&self, text: impl Into<String>) -> Result<(), HandleError> {
        let text = text.into();
        self.to_every_loop(|| Command::BroadcastText {
            text: text.clone(),
            except: None,
        })
    }

    /// Sends a binary message to every open WebSocket (of every loop).
    pub fn broadcast_binary(&self, bytes: impl Into<Vec<u8>>) -> Result<(), HandleError> {
        let bytes = bytes.into();
        self.to_every_loop(|| Command::BroadcastBinary {
            bytes: bytes.clone(),
            except: None,
        })
    }

    /// Sends a command to every loop: the first error, after trying all.
    fn to_every_loop(&self, make: impl Fn() -> Command) -> Result<(), HandleError> {
        self.loops
            .ports()
            .map(|port| port.command(make()))
            .fold(Ok(()), Result::and)
    }

    /// Sends a broadcast made on this loop to every other loop (see
    /// [`crate::app::Context::broadcast`]).
    pub(crate) fn broadcast_to_others(
        &self,
        make: impl Fn() -> Command,
    ) -> Result<(), HandleError> {
        self.loops
            .ports()
            .enumerate()
            .filter(|(index, _)| *index != self.home)
            .map(|(_, port)| port.command(make()))
            .fold(Ok(()), Result::and)
    }

    /// Publishes a text event on a topic (`event` `None` is the `message`
    /// type). An event the loop would refuse is refused here, at once.
    pub fn publish(
        &self,
        topic: TopicId,
        event: Option<&str>,
        data: impl Into<String>,
    ) -> Result<(), HandleError> {
        self.publish_payload(topic, event, OwnedPayload::Text(data.into()))
    }

    /// Publishes any payload (text, JSON, bytes); refused here, at once, if
    /// the loop would refuse it.
    pub fn publish_payload(
        &self,
        topic: TopicId,
        event: Option<&str>,
        payload: OwnedPayload,
    ) -> Result<(), HandleError> {
        self.check(event, &payload)?;
        self.command(Command::Publish {
            topic,
            event: event.map(str::to_owned),
            payload,
            reply: None,
        })
    }

    /// Publishes and waits for the loop to give the event its id (blocks
    /// until the loop's next turn, at most 10 s).
    pub fn publish_and_wait(
        &self,
        topic: TopicId,
        event: Option<&str>,
        payload: OwnedPayload,
    ) -> Result<u64, HandleError> {
        self.check(event, &payload)?;
        let (reply, answer) = self.waiting_call()?;
        self.command(Command::Publish {
            topic,
            event: event.map(str::to_owned),
            payload,
            reply: Some(reply),
        })?;
        wait(answer)?.map_err(HandleError::Refused)
    }

    /// The topic of that name, created on first use (blocks until the loop's
    /// next turn, at most 10 s).
    pub fn topic(&self, name: &str) -> Result<TopicId, HandleError> {
        if !is_topic_name(name) {
            return Err(HandleError::BadTopic(TopicError::BadName));
        }
        let (reply, answer) = self.waiting_call()?;
        self.command(Command::Topic {
            name: name.to_owned(),
            reply,
        })?;
        wait(answer)?.map_err(HandleError::BadTopic)
    }

    /// Closes a connection (WebSockets with `code` and `reason`).
    pub fn close(
        &self,
        id: ConnId,
        code: CloseCode,
        reason: impl Into<String>,
    ) -> Result<(), HandleError> {
        self.command_to(id.loop_index(), Command::Close(id, code, reason.into()))
    }

    /// Answers a request the app deferred with `Reply::Later` (see
    /// [`crate::app::Context::respond`]).
    pub fn respond(&self, id: ConnId, response: Response) -> Result<(), HandleError> {
        self.command_to(id.loop_index(), Command::Respond(id, response))
    }

    /// Replaces the certificate and key of the TLS listeners (feature `tls`):
    /// handshakes that start after a loop takes the command use `config` (every
    /// loop gets it),
    /// connections already open keep the keys they have. Build `config` off
    /// the loop (for example with [`crate::tls::TlsConfig::reload_from_files`],
    /// which reads files), then hand it over here.
    #[cfg(feature = "tls")]
    pub fn reload_tls(&self, config: crate::tls::TlsConfig) -> Result<(), HandleError> {
        self.to_every_loop(|| Command::ReloadTls(config.clone()))
    }

    /// Starts a graceful shutdown of every loop. Never blocked by a full queue.
    pub fn shutdown(&self) {
        self.loops.shutdown.store(true, Ordering::Release);
        for port in self.loops.ports() {
            // A loop that has already ended needs no wake-up.
            let _ = port.waker.wake();
        }
    }

    pub(crate) fn shutdown_requested(&self) -> bool {
        self.loops.shutdown.load(Ordering::Acquire)
    }

    /// Refuses, before anything is sent, a publish the loop would refuse:
    /// encoding it here is the loop's own check, made with the longest id and
    /// topic name there can be, so what passes here passes there. (It costs
    /// one encoding on the calling thread, not on the loop's.)
    fn check(&self, event: Option<&str>, payload: &OwnedPayload) -> Result<(), HandleError> {
        let any_topic = TopicId {
            index: 0,
            generation: 0,
        };
        let longest_name = "x".repeat(MAX_TOPIC_NAME_BYTES);
        Entry::encode(
            u64::MAX,
            any_topic,
            &longest_name,
            event.unwrap_or(crate::feeds::DEFAULT_EVENT),
            payload.as_payload(),
            self.history.max_event_bytes,
        )
        .map(|_| ())
        .map_err(HandleError::Refused)
    }

    /// A one-answer channel for a call that waits, unless this is the loop's
    /// own thread.
    fn waiting_call<T>(&self) -> Result<(SyncSender<T>, Receiver<T>), HandleError> {
        let here = std::thread::current().id();
        if self
            .loops
            .ports()
            .any(|port| port.thread.get() == Some(&here))
        {
            return Err(HandleError::OnLoopThread);
        }
        Ok(sync_channel(1))
    }
}

/// Waits for the loop's answer.
fn wait<T>(answer: Receiver<T>) -> Result<T, HandleError> {
    answer
        .recv_timeout(ANSWER_TIMEOUT)
        .map_err(|error| match error {
            std::sync::mpsc::RecvTimeoutError::Timeout => HandleError::NoAnswer,
            std::sync::mpsc::RecvTimeoutError::Disconnected => HandleError::Closed,
        })
}
