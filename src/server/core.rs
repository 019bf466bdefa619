//! The loop's state apart from the user's `App`: connections, topics, timers,
//! counters — and every action a [`crate::app::Context`] can take on them.
//!
//! Actions only queue bytes and change states. Sockets are written in
//! [`Core::flush`] when the loop finishes a batch of events, and connections
//! are removed by the loop (which can then tell the `App`).
//!
//! Two kinds of writes leave at two paces. Bytes built for one connection (an
//! HTTP response, an echo, a pong) are *answers*: every answer queued in a
//! batch is written at the end of that batch ([`Core::flush_dirty`]). Bytes
//! shared by many (a published event, a broadcast) are *fan-out*: their
//! recipients wait in a first-in-first-out line that the loop writes a slice
//! at a time ([`Core::flush_fanout`]), looking for new input between slices.
//! Events published while the line is being worked through join the queues of
//! recipients still waiting, so under load one `writev` carries several
//! events to a recipient instead of one `writev` per event per recipient. With
//! nothing else to do the loop goes straight on to the next slice, so a lone
//! event waits no longer than before. Input must not outrun the line, though:
//! once some queue in it is deeper than [`FANOUT_DEEP_QUEUE`] (or a quarter
//! of `max_queued_bytes`), the whole line is written before the loop reads
//! again, as if there were no line. A publisher that floods then waits on TCP
//! instead of pushing every subscriber towards the slow-reader limit.

use std::collections::{HashSet, VecDeque};
use std::net::Shutdown;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mio::{Interest, Registry, Token};

use crate::app::{Message, SendError, TimerId, TopicId};
use crate::http::write_head;
use crate::limits::SlowReader;
use crate::server::connection::{ClosingStage, Connection, LongPollState, State, Transport};
use crate::server::last_write::LastWrite;
use crate::server::timers::{Deadline, Timers, Wake};
use crate::server::token::Slab;
use crate::server::trace::{Outgoing, Tracer};
use crate::server::write_queue::Spare;
use crate::server::{Config, Handle, Stats};
use crate::sse::{self, SseError};
use crate::topic::Topic;
use crate::ws::close::{encode_close_payload, CloseCode, CloseState};
use crate::ws::frame::{encode_frame, OpCode};

/// Queued bytes on a connection in the fan-out line past which the whole
/// line is written at once (see the module doc).
pub(crate) const FANOUT_DEEP_QUEUE: usize = 64 * 1024;

/// A topic and who follows it.
pub struct TopicState {
    /// History and encodings.
    pub topic: Topic,
    /// Event streams and WebSockets that get every new event.
    pub subscribers: HashSet<Token>,
    /// Long-polls waiting for the next event.
    pub waiters: HashSet<Token>,
}

/// A long-poll answer shared by the waiters with the same cursor and
/// keep-alive: `((after, keep_alive), response, events in it)`.
type SharedAnswer = ((u64, bool), Rc<[u8]>, u64);

/// A user timer slot.
struct UserTimer {
    generation: u32,
    period: Option<Duration>,
    active: bool,
}

/// Everything the loop owns except the `App`, the poll and the read buffer.
pub struct Core {
    pub(crate) config: Config,
    pub(crate) registry: Registry,
    pub(crate) conns: Slab<Connection>,
    pub(crate) timers: Timers,
    user_timers: Vec<UserTimer>,
    free_timers: Vec<usize>,
    pub(crate) topics: Vec<TopicState>,
    pub(crate) stats: Stats,
    /// The clock for the current batch of events (read once per `poll` return).
    pub(crate) now: Instant,
    /// Connections with bytes to write or a state to settle at the end of the batch.
    pub(crate) dirty: Vec<Token>,
    /// Connections with shared bytes (events, broadcasts) to write, in the
    /// order they got them; each is in the line at most once (`in_fanout`).
    pub(crate) fanout: VecDeque<Token>,
    /// The deepest queue seen on a connection joining the line since it was
    /// last empty (an upper bound of what is queued in it now).
    fanout_deepest: usize,
    /// Reused by `publish` and `broadcast` for the recipients of one message.
    recipients: Vec<Token>,
    /// Written queue buffers kept for the next writes (see `write_queue`).
    spare: Spare,
    /// Connections to remove (the loop tells the `App` about WebSockets).
    pub(crate) dead: Vec<Token>,
    /// Connections whose leftover input waits to be handled (requests
    /// pipelined behind a long-poll that has just been answered).
    pub(crate) resume: Vec<Token>,
    pub(crate) handle: Handle,
    /// Set when a graceful shutdown began; the loop ends when every connection
    /// is gone or this deadline passes.
    pub(crate) shutdown_deadline: Option<Instant>,
    /// First event id of this run (wall-clock microseconds at start).
    id_seed: u64,
    /// The protocol trace, when asked for.
    pub(crate) tracer: Option<Tracer>,
}

impl Core {
    pub(crate) fn new(
        mut config: Config,
        registry: Registry,
        handle: Handle,
        id_seed: u64,
    ) -> Core {
        let now = Instant::now();
        let tracer = config.trace.take().map(|output| Tracer::new(output, now));
        Core {
            config,
            registry,
            conns: Slab::new(),
            timers: Timers::default(),
            user_timers: Vec::new(),
            free_timers: Vec::new(),
            topics: Vec::new(),
            stats: Stats::default(),
            now: Instant::now(),
            dirty: Vec::new(),
            fanout: VecDeque::new(),
            fanout_deepest: 0,
            recipients: Vec::new(),
            spare: Spare::default(),
            dead: Vec::new(),
            resume: Vec::new(),
            handle,
            shutdown_deadline: None,
            id_seed,
            tracer,
        }
    }

    /// Runs `write` on the tracer, if tracing.
    pub(crate) fn trace(&mut self, write: impl FnOnce(&mut Tracer, Instant)) {
        if let Some(tracer) = self.tracer.as_mut() {
            write(tracer, self.now);
        }
    }

    /// Traces bytes queued for a connection, by what its state makes them.
    fn trace_out(&mut self, token: Token, bytes: &[u8]) {
        let Some(conn) = self.conns.get(token) else {
            return;
        };
        let kind = match conn.state {
            State::WebSocket(_) => Outgoing::Frames,
            State::EventStream(_) => Outgoing::Events,
            _ => Outgoing::Http,
        };
        self.trace(|tracer, now| tracer.bytes_out(now, token, kind, bytes));
    }

    // ---- Queuing bytes ---------------------------------------------------------

    /// Queues bytes built for this connection alone.
    /// (One instance for every call site: `encode` is called through a pointer.)
    pub(crate) fn append(&mut self, token: Token, encode: &dyn Fn(&mut Vec<u8>)) {
        if self.tracer.is_some() {
            let mut bytes = Vec::new();
            encode(&mut bytes);
            self.trace_out(token, &bytes);
            return self.append_untraced(token, &|out| out.extend_from_slice(&bytes));
        }
        self.append_untraced(token, encode);
    }

    fn append_untraced(&mut self, token: Token, encode: &dyn Fn(&mut Vec<u8>)) {
        if let Some(conn) = self.conns.get_mut(token) {
            let before = conn.queue.len();
            conn.queue.append_with(&mut self.spare, encode);
            self.stats.of(conn.transport).bytes_written += (conn.queue.len() - before) as u64;
            if !conn.in_dirty {
                conn.in_dirty = true;
                self.dirty.push(token);
            }
        }
    }

    /// Lists a connection for the end-of-batch flush, once.
    fn mark_dirty(&mut self, token: Token) {
        if let Some(conn) = self.conns.get_mut(token) {
            if !conn.in_dirty {
                conn.in_dirty = true;
                self.dirty.push(token);
            }
        }
    }

    /// Applies the slow-reader policy before `len` more bytes are queued: a
    /// connection whose queue would pass `Limits::max_queued_bytes` is a slow
    /// reader (an empty queue always takes one message, however large).
    fn admit(&mut self, token: Token, len: usize) -> Result<(), SendError> {
        let limits = &self.config.limits;
        let Some(conn) = self.conns.get_mut(token) else {
            return Err(SendError::NotOpen);
        };
        let queued = conn.queue.len();
        if queued == 0 || queued + len <= limits.max_queued_bytes {
            return Ok(());
        }
        self.stats.slow_readers += 1;
        match limits.slow_reader {
            SlowReader::Drop => {
                self.stats.dropped_messages += 1;
                Err(SendError::Dropped)
            }
            SlowReader::Close => {
                // Unsent whole frames/events are dropped so the close is not stuck
                // behind them; the client resumes from its cursor.
                conn.queue.drop_unstarted();
                self.close(token, CloseCode::POLICY_VIOLATION, "slow reader");
                Err(SendError::Closing)
            }
        }
    }

    /// Queues bytes shared with other connections, under the slow-reader
    /// policy, and puts the connection in the fan-out line.
    fn enqueue_shared(&mut self, token: Token, bytes: &Rc<[u8]>) -> Result<(), SendError> {
        self.admit(token, bytes.len())?;
        if self.tracer.is_some() {
            self.trace_out(token, bytes);
        }
        let Some(conn) = self.conns.get_mut(token) else {
            return Err(SendError::NotOpen);
        };
        conn.queue.push_shared(Rc::clone(bytes));
        self.stats.of(conn.transport).bytes_written += bytes.len() as u64;
        self.fanout_deepest = self.fanout_deepest.max(conn.queue.len());
        if !conn.in_fanout {
            conn.in_fanout = true;
            self.fanout.push_back(token);
        }
        Ok(())
    }

    /// Sends a message to one open WebSocket.
    pub(crate) fn send(&mut self, token: Token, message: Message) -> Result<(), SendError> {
        if !self
            .conns
            .get(token)
            .is_some_and(Connection::is_open_websocket)
        {
            return Err(SendError::NotOpen);
        }
        let (opcode, payload) = match message {
            Message::Text(text) => (OpCode::Text, text.as_bytes()),
            Message::Binary(bytes) => (OpCode::Binary, bytes),
        };
        self.admit(token, payload.len())?;
        self.append(token, &|out| encode_frame(out, true, opcode, None, payload));
        Ok(())
    }

    /// Sends a message to every open WebSocket but `except`.
    pub(crate) fn broadcast(&mut self, except: Option<Token>, message: Message) -> usize {
        let (opcode, payload) = match message {
            Message::Text(text) => (OpCode::Text, text.as_bytes()),
            Message::Binary(bytes) => (OpCode::Binary, bytes),
        };
        let mut frame = Vec::with_capacity(payload.len() + 14);
        encode_frame(&mut frame, true, opcode, None, payload);
        let frame: Rc<[u8]> = frame.into();
        let mut recipients = std::mem::take(&mut self.recipients);
        recipients.extend(
            self.conns
                .iter_mut()
                .filter(|(token, conn)| Some(*token) != except && conn.is_open_websocket())
                .map(|(token, _)| token),
        );
        let sent = recipients
            .iter()
            .filter(|token| self.enqueue_shared(**token, &frame).is_ok())
            .count();
        recipients.clear();
        self.recipients = recipients;
        sent
    }

    /// Bytes queued for a connection.
    pub(crate) fn buffered_amount(&self, token: Token) -> Option<usize> {
        self.conns.get(token).map(|conn| conn.queue.len())
    }

    // ---- Closing ---------------------------------------------------------------

    /// Starts closing a connection: a WebSocket gets a Close frame (RFC 6455
    /// §7.1.2) and waits for the peer's; anything else flushes and closes.
    pub(crate) fn close(&mut self, token: Token, code: CloseCode, reason: &str) -> bool {
        let Some(conn) = self.conns.get_mut(token) else {
            return false;
        };
        match &mut conn.state {
            State::WebSocket(ws) => {
                if ws.close != CloseState::Open {
                    return false;
                }
                let from = ws.close;
                ws.close = ws.close.on_send();
                let to = ws.close;
                conn.deadlines.set(
                    Deadline::Close,
                    Some(self.now + self.config.limits.close_timeout),
                );
                conn.deadlines.set(Deadline::Heartbeat, None);
                conn.deadlines.set(Deadline::Idle, None);
                self.append(token, &|out| write_close_frame(out, code, reason));
                self.trace(|tracer, now| tracer.close_state(now, token, from, to));
                self.rearm(token);
                true
            }
            State::Closing(_) => false,
            _ => {
                self.start_closing(token);
                true
            }
        }
    }

    /// Flush what is queued, then a lingering close, bounded by `close_timeout`.
    pub(crate) fn start_closing(&mut self, token: Token) {
        self.start_closing_with(token, true);
    }

    /// Flush what is queued, then close without lingering: for a peer that has
    /// sent its last byte (its Close frame), so there is no input left to wait for.
    pub(crate) fn close_after_flush(&mut self, token: Token) {
        self.start_closing_with(token, false);
    }

    fn start_closing_with(&mut self, token: Token, linger: bool) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if matches!(conn.state, State::Closing(_)) {
            return;
        }
        self.unsubscribe(token);
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        conn.state = State::Closing(ClosingStage::Flushing { linger });
        conn.leftover = Vec::new();
        for deadline in [
            Deadline::Handshake,
            Deadline::Idle,
            Deadline::Heartbeat,
            Deadline::Stream,
        ] {
            conn.deadlines.set(deadline, None);
        }
        conn.deadlines.set(
            Deadline::Close,
            Some(self.now + self.config.limits.close_timeout),
        );
        self.rearm(token);
        self.mark_dirty(token);
    }

    /// Removes a connection from its topic's subscribers and waiters.
    pub(crate) fn unsubscribe(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let topic = match &mut conn.state {
            State::EventStream(topic) => Some(*topic),
            State::LongPoll(poll) => Some(poll.topic),
            State::WebSocket(ws) => ws.topic.take(),
            _ => None,
        };
        if let Some(state) = topic.and_then(|topic| self.topics.get_mut(topic.0)) {
            state.subscribers.remove(&token);
            state.waiters.remove(&token);
        }
    }

    /// Arms the connection's earliest deadline in the timer heap.
    pub(crate) fn rearm(&mut self, token: Token) {
        if let Some(conn) = self.conns.get_mut(token) {
            conn.deadlines.rearm(&mut self.timers, token);
        }
    }

    // ---- Writing -----------------------------------------------------------------

    /// Writes every dirty connection's queue (read before write: a batch's
    /// input has been handled, so its answers leave in as few calls as
    /// possible), registers WRITABLE only where bytes remain, and moves
    /// closing connections along.
    pub(crate) fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for token in dirty.drain(..) {
            if let Some(conn) = self.conns.get_mut(token) {
                conn.in_dirty = false;
                self.flush(token);
            }
        }
        // Keep the allocation for the next batch.
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    /// Writes the next `slice` connections of the fan-out line (all of it
    /// when a queue in it is deep); true when some are left (the loop then
    /// polls without sleeping and comes back).
    pub(crate) fn flush_fanout(&mut self, slice: usize) -> bool {
        let deep = FANOUT_DEEP_QUEUE.min(self.config.limits.max_queued_bytes / 4);
        let slice = if self.fanout_deepest > deep {
            usize::MAX
        } else {
            slice
        };
        for _ in 0..slice {
            let Some(token) = self.fanout.pop_front() else {
                break;
            };
            if let Some(conn) = self.conns.get_mut(token) {
                conn.in_fanout = false;
                self.flush(token);
            }
        }
        if self.fanout.is_empty() {
            self.fanout_deepest = 0;
            // Release a line that a burst made long.
            if self.fanout.capacity() > 4096 {
                self.fanout = VecDeque::new();
            }
            return false;
        }
        true
    }

    /// Writes one connection's queue.
    pub(crate) fn flush(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        // A socket that closes once drained sends its last bytes with the FIN.
        let result = if matches!(
            conn.state,
            State::Closing(ClosingStage::Flushing { linger: false })
        ) {
            conn.queue
                .flush_into(&mut LastWrite(&mut conn.stream), &mut self.spare)
        } else {
            conn.queue.flush_into(&mut conn.stream, &mut self.spare)
        };
        let drained = match result {
            Ok(drained) => drained,
            Err(_) => {
                // The peer is gone (reset, broken pipe): nothing more can be said.
                conn.queue.clear();
                self.dead.push(token);
                return;
            }
        };
        let want_writable = !drained;
        if want_writable != conn.wants_writable {
            let interest = if want_writable {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if self
                .registry
                .reregister(&mut conn.stream, token, interest)
                .is_err()
            {
                self.dead.push(token);
                return;
            }
            conn.wants_writable = want_writable;
        }
        match conn.state {
            State::Closing(ClosingStage::Flushing { linger: true }) if drained => {
                // Half-close, then read until the peer's FIN (see ClosingStage).
                match conn.stream.shutdown(Shutdown::Write) {
                    Ok(()) => conn.state = State::Closing(ClosingStage::Lingering),
                    Err(_) => self.dead.push(token),
                }
            }
            // The peer has nothing more to send: close now. The kernel still
            // delivers what it holds, then its FIN (no reset: nothing is unread).
            State::Closing(ClosingStage::Flushing { linger: false }) if drained => {
                self.dead.push(token);
            }
            _ => {}
        }
    }

    // ---- Topics ------------------------------------------------------------------

    /// The topic of that name, created on first use.
    pub(crate) fn topic(&mut self, name: &str) -> TopicId {
        if let Some(index) = self
            .topics
            .iter()
            .position(|state| state.topic.name() == name)
        {
            return TopicId(index);
        }
        self.topics.push(TopicState {
            topic: Topic::new(name, self.config.history, self.id_seed),
            subscribers: HashSet::new(),
            waiters: HashSet::new(),
        });
        TopicId(self.topics.len() - 1)
    }

    /// Publishes and fans out: shared bytes to subscribers, answers to waiters.
    pub(crate) fn publish(
        &mut self,
        topic: TopicId,
        event: Option<&str>,
        data: &str,
    ) -> Result<u64, SseError> {
        let Some(state) = self.topics.get_mut(topic.0) else {
            return Err(SseError::BadLastEventId);
        };
        let entry = state.topic.publish(event, data)?;
        let mut recipients = std::mem::take(&mut self.recipients);
        recipients.extend(state.subscribers.iter().copied());
        let waiters: Vec<Token> = state.waiters.drain().collect();
        let (mut streams, mut sockets) = (0, 0);
        for &token in &recipients {
            let (bytes, count) = match self.conns.get(token).map(|conn| &conn.state) {
                Some(State::EventStream(_)) => (&entry.sse, &mut streams),
                // RFC 6455 §5.5.1: no data frames after our Close frame.
                Some(State::WebSocket(ws)) if ws.close == CloseState::Open => {
                    (&entry.ws_frame, &mut sockets)
                }
                _ => continue,
            };
            if self.enqueue_shared(token, bytes).is_ok() {
                *count += 1;
            }
        }
        self.stats.event_stream.events_delivered += streams;
        self.stats.websocket.events_delivered += sockets;
        recipients.clear();
        self.recipients = recipients;
        // Most waiters hold the same cursor (the previous latest id): one
        // response serves them all.
        let mut answers: Vec<SharedAnswer> = Vec::new();
        for token in waiters {
            let Some(State::LongPoll(poll)) = self.conns.get(token).map(|conn| &conn.state) else {
                continue;
            };
            let key = (poll.after, poll.keep_alive);
            let (response, events) = match answers.iter().find(|(k, _, _)| *k == key) {
                Some((_, response, events)) => (Rc::clone(response), *events),
                None => {
                    let response = self.poll_response(topic, key.0, key.1);
                    let events = self.events_after(topic, key.0);
                    answers.push((key, Rc::clone(&response), events));
                    (response, events)
                }
            };
            self.answer_long_poll(token, &response, key.1, events);
        }
        Ok(entry.id)
    }

    /// A complete `200` JSON response with the topic's events after `after`.
    pub(crate) fn poll_response(&self, topic: TopicId, after: u64, keep_alive: bool) -> Rc<[u8]> {
        let body = self
            .topics
            .get(topic.0)
            .map_or_else(|| b"[]".to_vec(), |state| state.topic.poll_json(after));
        let mut response = Vec::with_capacity(body.len() + 160);
        let mut headers = vec![
            ("Content-Type", "application/json"),
            ("Cache-Control", "no-store"),
        ];
        if let Some(origin) = self.config.allow_origin.as_deref() {
            headers.push(("Access-Control-Allow-Origin", origin));
        }
        if !keep_alive {
            headers.push(("Connection", "close"));
        }
        write_head(&mut response, 200, &headers, Some(body.len()));
        response.extend_from_slice(&body);
        response.into()
    }

    /// Events a poll after `after` gets.
    pub(crate) fn events_after(&self, topic: TopicId, after: u64) -> u64 {
        self.topics
            .get(topic.0)
            .map_or(0, |state| state.topic.since(after).entries.len() as u64)
    }

    /// Answers a held long-poll (with `events` events) and returns the
    /// connection to reading requests.
    pub(crate) fn answer_long_poll(
        &mut self,
        token: Token,
        response: &Rc<[u8]>,
        keep_alive: bool,
        events: u64,
    ) {
        self.unsubscribe(token);
        if self.tracer.is_some() {
            self.trace(|tracer, now| {
                tracer.note(now, token, "wake", "long-poll answered", "RFC 9112 §9.3")
            });
            self.trace_out(token, response);
        }
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        conn.queue.push_shared(Rc::clone(response));
        self.stats.long_poll.bytes_written += response.len() as u64;
        self.stats.long_poll.events_delivered += events;
        conn.deadlines.set(Deadline::Stream, None);
        if keep_alive {
            conn.state = State::Http(crate::server::connection::HttpState {
                scanner: crate::http::HeadScanner::new(self.config.limits.max_head_bytes),
                pending: None,
            });
            conn.deadlines.set(
                Deadline::Idle,
                Some(self.now + self.config.limits.idle_timeout),
            );
            self.stats.switch(conn, Transport::Http);
            self.rearm(token);
            // Requests pipelined behind the long-poll are handled next.
            self.mark_dirty(token);
            self.resume.push(token);
        } else {
            self.start_closing(token);
        }
    }

    /// Subscribes an open WebSocket to a topic, replaying after the cursor.
    pub(crate) fn subscribe_socket(
        &mut self,
        token: Token,
        topic: TopicId,
        after: Option<u64>,
    ) -> Result<(), SendError> {
        if !self
            .conns
            .get(token)
            .is_some_and(Connection::is_open_websocket)
            || topic.0 >= self.topics.len()
        {
            return Err(SendError::NotOpen);
        }
        self.unsubscribe(token);
        if let Some(after) = after {
            let replay = self.replay(topic, after, |entry| Rc::clone(&entry.ws_frame));
            for bytes in replay {
                self.enqueue_shared(token, &bytes)?;
            }
        }
        if let Some(ws) = self.conns.get_mut(token).and_then(Connection::websocket) {
            ws.topic = Some(topic);
        }
        self.topics[topic.0].subscribers.insert(token);
        Ok(())
    }

    /// The shared bytes a cursor gets: a resync notice if needed, then history.
    pub(crate) fn replay(
        &self,
        topic: TopicId,
        after: u64,
        pick: impl Fn(&crate::topic::Entry) -> Rc<[u8]>,
    ) -> Vec<Rc<[u8]>> {
        let Some(state) = self.topics.get(topic.0) else {
            return Vec::new();
        };
        let replay = state.topic.since(after);
        let notice = replay
            .resync
            .map(|why| pick(&state.topic.resync_entry(why)));
        notice.into_iter().chain(replay.entries.map(pick)).collect()
    }

    /// Starts an event stream on a connection whose request asked for one.
    pub(crate) fn start_event_stream(&mut self, token: Token, topic: TopicId, after: Option<u64>) {
        let mut head = Vec::with_capacity(256);
        let mut headers = vec![
            // WHATWG HTML §9.2.5: the MIME type that makes it an event stream.
            ("Content-Type", "text/event-stream"),
            // Caches must not hold a stream; proxies (nginx) must not buffer it.
            ("Cache-Control", "no-cache"),
            ("X-Accel-Buffering", "no"),
        ];
        if let Some(origin) = self.config.allow_origin.as_deref() {
            headers.push(("Access-Control-Allow-Origin", origin));
        }
        // RFC 9112 §6.3: no length and no chunking, so the body runs until the
        // connection closes — which is what a stream is.
        headers.push(("Connection", "close"));
        write_head(&mut head, 200, &headers, None);
        sse::encode_retry(self.config.sse_retry_ms, &mut head);
        self.append(token, &|out| out.extend_from_slice(&head));
        let replay = after
            .map(|after| self.replay(topic, after, |entry| Rc::clone(&entry.sse)))
            .unwrap_or_default();
        let keepalive = self.now + self.config.limits.sse_keepalive;
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        self.stats.switch(conn, Transport::EventStream);
        conn.state = State::EventStream(topic);
        conn.deadlines.set(Deadline::Idle, None);
        conn.deadlines.set(Deadline::Handshake, None);
        conn.deadlines.set(Deadline::Stream, Some(keepalive));
        self.rearm(token);
        for bytes in replay {
            if self.enqueue_shared(token, &bytes).is_err() {
                return;
            }
            self.stats.event_stream.events_delivered += 1;
        }
        if let Some(state) = self.topics.get_mut(topic.0) {
            state.subscribers.insert(token);
        }
    }

    /// Holds a long-poll, or answers it at once when something is newer.
    pub(crate) fn start_long_poll(
        &mut self,
        token: Token,
        topic: TopicId,
        after: u64,
        keep_alive: bool,
    ) {
        let pending = self.topics.get(topic.0).is_some_and(|state| {
            let replay = state.topic.since(after);
            replay.resync.is_some() || replay.entries.len() > 0
        });
        if pending || self.shutdown_deadline.is_some() {
            let response = self.poll_response(topic, after, keep_alive);
            self.append(token, &|out| out.extend_from_slice(&response));
            if !keep_alive {
                self.start_closing(token);
            }
            return;
        }
        let hold_until = self.now + self.config.limits.long_poll_timeout;
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        self.stats.switch(conn, Transport::LongPoll);
        conn.state = State::LongPoll(LongPollState {
            topic,
            after,
            keep_alive,
        });
        conn.deadlines.set(Deadline::Idle, None);
        conn.deadlines.set(Deadline::Handshake, None);
        conn.deadlines.set(Deadline::Stream, Some(hold_until));
        self.rearm(token);
        let held = format!("long-poll held after={after}");
        self.trace(|tracer, now| tracer.note(now, token, "hold", &held, "RFC 9112 §9.3"));
        if let Some(state) = self.topics.get_mut(topic.0) {
            state.waiters.insert(token);
        }
    }

    // ---- User timers -------------------------------------------------------------

    /// Schedules a user timer.
    pub(crate) fn set_timer(&mut self, delay: Duration, period: Option<Duration>) -> TimerId {
        let slot = match self.free_timers.pop() {
            Some(slot) => slot,
            None => {
                self.user_timers.push(UserTimer {
                    generation: 0,
                    period: None,
                    active: false,
                });
                self.user_timers.len() - 1
            }
        };
        let timer = &mut self.user_timers[slot];
        timer.period = period;
        timer.active = true;
        let id = TimerId {
            slot,
            generation: timer.generation,
        };
        self.timers
            .arm(self.now + delay, Wake::User(slot, id.generation));
        id
    }

    /// Cancels a user timer.
    pub(crate) fn clear_timer(&mut self, id: TimerId) -> bool {
        match self.user_timers.get_mut(id.slot) {
            Some(timer) if timer.active && timer.generation == id.generation => {
                timer.active = false;
                timer.generation = timer.generation.wrapping_add(1);
                self.free_timers.push(id.slot);
                true
            }
            _ => false,
        }
    }

    /// A user timer's heap entry popped: the id to report if it is still live,
    /// re-armed from its own deadline when periodic.
    pub(crate) fn user_timer_fired(
        &mut self,
        when: Instant,
        slot: usize,
        generation: u32,
    ) -> Option<TimerId> {
        let timer = self.user_timers.get_mut(slot)?;
        if !timer.active || timer.generation != generation {
            return None;
        }
        let id = TimerId { slot, generation };
        match timer.period {
            Some(period) => self.timers.arm(when + period, Wake::User(slot, generation)),
            None => {
                self.clear_timer(id);
            }
        }
        Some(id)
    }

    // ---- Shutdown ----------------------------------------------------------------

    /// Closes every connection (WebSockets with `1001 Going Away`) and sets the
    /// deadline by which the loop ends.
    pub(crate) fn begin_shutdown(&mut self) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        self.shutdown_deadline = Some(self.now + self.config.limits.shutdown_timeout);
        for token in self.conns.tokens() {
            let Some(conn) = self.conns.get(token) else {
                continue;
            };
            let idle_http = match &conn.state {
                State::Http(http) => {
                    http.pending.is_none() && conn.leftover.is_empty() && conn.queue.len() == 0
                }
                _ => false,
            };
            if idle_http {
                // Between requests (or never used, like a browser's preconnected
                // socket): nothing is owed, so no lingering close either.
                self.dead.push(token);
            } else {
                self.close(token, CloseCode::GOING_AWAY, "server shutting down");
            }
        }
    }
}

/// Appends a server Close frame (RFC 6455 §5.5.1: code, then a UTF-8 reason).
pub(crate) fn write_close_frame(out: &mut Vec<u8>, code: CloseCode, reason: &str) {
    let mut payload = [0; 125];
    let len = encode_close_payload(code, reason, &mut payload);
    encode_frame(out, true, OpCode::Close, None, &payload[..len]);
}
