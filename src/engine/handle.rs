//! Acting on the loop from other threads.
//!
//! A [`Handle`] is `Send + Clone`. Each call puts a command on a bounded
//! channel and wakes the loop through a `mio::Waker`; the loop runs the
//! commands in order at its next turn. Calls never block: a full channel is
//! reported as [`HandleError::Full`] (so a sensor thread can decide to drop or
//! retry, and a callback that mistakenly calls its own handle cannot deadlock).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;

use mio::Waker;

use crate::http::Response;
use crate::ids::{ConnId, TopicId};
use crate::ws::close::CloseCode;

/// A command for the loop, as a [`Handle`] sends it.
#[derive(Debug)]
pub enum Command {
    /// Send a text message to one WebSocket.
    SendText(ConnId, String),
    /// Send a binary message to one WebSocket.
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
        data: String,
    },
    /// Close a connection.
    Close(ConnId, CloseCode, String),
    /// Answer a request the app deferred (`Reply::Later`).
    Respond(ConnId, Response),
}

/// Why a command was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandleError {
    /// `Config::handle_capacity` commands are already waiting.
    Full,
    /// The loop has ended.
    Closed,
}

impl fmt::Display for HandleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HandleError::Full => "the loop's command queue is full",
            HandleError::Closed => "the loop has ended",
        })
    }
}

impl std::error::Error for HandleError {}

/// Sends commands to a running loop from any thread.
#[derive(Clone, Debug)]
pub struct Handle {
    commands: SyncSender<Command>,
    waker: Arc<Waker>,
    shutdown: Arc<AtomicBool>,
}

impl Handle {
    pub(crate) fn new(
        commands: SyncSender<Command>,
        waker: Arc<Waker>,
        shutdown: Arc<AtomicBool>,
    ) -> Handle {
        Handle {
            commands,
            waker,
            shutdown,
        }
    }

    /// Queues a command and wakes the loop.
    pub fn command(&self, command: Command) -> Result<(), HandleError> {
        match self.commands.try_send(command) {
            Ok(()) => self.waker.wake().map_err(|_| HandleError::Closed),
            Err(TrySendError::Full(_)) => Err(HandleError::Full),
            Err(TrySendError::Disconnected(_)) => Err(HandleError::Closed),
        }
    }

    /// Sends a text message to one WebSocket.
    pub fn send_text(&self, id: ConnId, text: impl Into<String>) -> Result<(), HandleError> {
        self.command(Command::SendText(id, text.into()))
    }

    /// Sends a binary message to one WebSocket.
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

    /// Publishes an event on a topic (`event` `None`: the `message` type).
    pub fn publish(
        &self,
        topic: TopicId,
        event: Option<&str>,
        data: impl Into<String>,
    ) -> Result<(), HandleError> {
        self.command(Command::Publish {
            topic,
            event: event.map(str::to_owned),
            data: data.into(),
        })
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
}
