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

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::thread::ThreadId;
use std::time::Duration;

use mio::Waker;

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
    /// The borrowed form the feeds take.
    pub fn as_payload(&self) -> Payload<'_> {
        match self {
            OwnedPayload::Text(text) => Payload::Text(text),
            OwnedPayload::Json(json) => Payload::Json(json),
            OwnedPayload::Binary(bytes) => Payload::Binary(bytes),
        }
    }
}

/// A command for the loop, as a [`Handle`] sends it.
#[derive(Debug)]
pub enum Command {
    /// Send a text message to one connection.
    SendText(ConnId, String),
    /// Send a binary message to one connection.
    SendBinary(ConnId, Vec<u8>),
    /// Send a text message to every open WebSocket.
    BroadcastText(String),
    /// Send a binary message to every open WebSocket.
    BroadcastBinary(Vec<u8>),
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

/// Sends commands to a running loop from any thread.
#[derive(Clone, Debug)]
pub struct Handle {
    commands: SyncSender<Command>,
    waker: Arc<Waker>,
    shutdown: Arc<AtomicBool>,
    /// The loop's thread, once it runs (a waiting call from it would deadlock).
    loop_thread: Arc<OnceLock<ThreadId>>,
    /// The feeds' limits, to refuse a publish here rather than in the loop.
    history: HistoryLimits,
}

impl Handle {
    pub(crate) fn new(
        commands: SyncSender<Command>,
        waker: Arc<Waker>,
        shutdown: Arc<AtomicBool>,
        history: HistoryLimits,
    ) -> Handle {
        Handle {
            commands,
            waker,
            shutdown,
            loop_thread: Arc::new(OnceLock::new()),
            history,
        }
    }

    /// Records the thread the loop runs on.
    pub(crate) fn set_loop_thread(&self) {
        let _ = self.loop_thread.set(std::thread::current().id());
    }

    /// Queues a command and wakes the loop.
    pub fn command(&self, command: Command) -> Result<(), HandleError> {
        match self.commands.try_send(command) {
            Ok(()) => self.waker.wake().map_err(|_| HandleError::Closed),
            Err(TrySendError::Full(_)) => Err(HandleError::Full),
            Err(TrySendError::Disconnected(_)) => Err(HandleError::Closed),
        }
    }

    /// Sends a text message to one connection (see `Context::send`).
    pub fn send_text(&self, id: ConnId, text: impl Into<String>) -> Result<(), HandleError> {
        self.command(Command::SendText(id, text.into()))
    }

    /// Sends a binary message to one connection (see `Context::send`).
    pub fn send_binary(&self, id: ConnId, bytes: impl Into<Vec<u8>>) -> Result<(), HandleError> {
        self.command(Command::SendBinary(id, bytes.into()))
    }

    /// Sends a text message to every open WebSocket.
    pub fn broadcast_text(&self, text: impl Into<String>) -> Result<(), HandleError> {
        self.command(Command::BroadcastText(text.into()))
    }

    /// Sends a binary message to every open WebSocket.
    pub fn broadcast_binary(&self, bytes: impl Into<Vec<u8>>) -> Result<(), HandleError> {
        self.command(Command::BroadcastBinary(bytes.into()))
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
        self.command(Command::Close(id, code, reason.into()))
    }

    /// Answers a request the app deferred with `Reply::Later` (see
    /// [`crate::app::Context::respond`]).
    pub fn respond(&self, id: ConnId, response: Response) -> Result<(), HandleError> {
        self.command(Command::Respond(id, response))
    }

    /// Starts a graceful shutdown. Never blocked by a full queue.
    pub fn shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
        // A loop that has already ended needs no wake-up.
        let _ = self.waker.wake();
    }

    pub(crate) fn shutdown_requested(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
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
        if self.loop_thread.get() == Some(&std::thread::current().id()) {
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
