//! What a feed does on a connection: event streams, short and long polls,
//! WebSocket subscriptions, publishing, replay and catch-up — and answering
//! an HTTP request now or later.
//!
//! **Replay never drops a head and never floods a queue.** A follower that
//! joins with a cursor gets its head first (a protocol chunk, never
//! dropped), then as much of the history after its cursor as its queue
//! admits. The rest follows as the queue drains (`Core::catch_up`, called
//! by the writes): the follower is *catching up* until it reaches the newest
//! event, and live events wait in history for it meanwhile. If history lets
//! go of an event it still needed, it gets a `resync` notice — never a gap.

use std::sync::Arc;

use mio::Token;

use crate::engine::connection::{Ending, Kind, Transport, Waiting};
use crate::engine::outbox::{Encoded, Fanout, Kind as Chunk, SendError};
use crate::engine::store::Then;
use crate::engine::Core;
use crate::feeds::{Arrival, Entry, Payload, PublishError, Replay};
use crate::http::{write_answer, Framing, Response};
use crate::ids::{ConnId, TopicId};
use crate::sse;

impl Core {
    // ---- Answering HTTP requests -------------------------------------------------

    /// Answers the request a connection is serving: `write` gets the framing
    /// the session decided (keep-alive, `HEAD`). Then either the connection
    /// reads its next request (pipelined ones first) or it closes.
    pub(crate) fn answer(
        &mut self,
        token: Token,
        closing: bool,
        write: &dyn Fn(Framing, &mut Vec<u8>),
    ) {
        let now = self.now;
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        // A client's FIN does not close here: the requests it sent before
        // it are answered too, and the loop closes once its input is
        // exhausted (`EventLoop::peer_closed`).
        let closing = closing || self.shutdown_deadline.is_some();
        let Kind::Http(http) = &mut conn.kind else {
            return;
        };
        if !http.session.is_responding() {
            return;
        }
        let framing = http.session.answer(now, closing);
        http.waiting = Waiting::Nothing;
        conn.deadline = None;
        self.feeds.stop_waiting(token);
        self.push_protocol(token, &|out| write(framing, out));
        self.after_answer(token, framing);
    }

    /// After an answer: the next request (the session reads again), or the end.
    fn after_answer(&mut self, token: Token, framing: Framing) {
        if !framing.keep_alive {
            self.end(token, Ending::Answered);
        }
        if framing.keep_alive {
            // Requests pipelined behind this one are handled next — once the
            // queue is below its bound, so it never holds more than the bound
            // and one answer (else `after_write` lets them go on as it drains).
            let full = self.output_full(token);
            if let Some(conn) = self.conns.get_mut(token) {
                conn.paused = full;
            }
            if full {
                self.stats.paused_reads += 1;
            } else {
                self.make_ready(token);
            }
            self.rearm(token);
        } else {
            self.close_after_answer(token, true);
        }
    }

    /// Answers a request with `response`.
    pub(crate) fn answer_with(&mut self, token: Token, response: &Response) {
        let closes = response.headers.iter().any(|(name, value)| {
            name.eq_ignore_ascii_case("connection")
                && crate::http::syntax::list_elements(value.as_bytes())
                    .any(|option| option.eq_ignore_ascii_case(b"close"))
        });
        self.answer(token, closes, &|framing, out| {
            response.write_framed(out, framing)
        });
    }

    /// Answers a request the app deferred (`Reply::Later`). False if the
    /// connection is not waiting for one (answered, gone, or never asked).
    pub fn respond(&mut self, token: Token, response: &Response) -> bool {
        let waiting = self
            .conns
            .get_mut(token)
            .and_then(|conn| conn.http())
            .is_some_and(|http| http.waiting == Waiting::Later);
        if waiting {
            self.answer_with(token, response);
        }
        waiting
    }

    /// A deferred request's time is up (or the server shuts down): `504`.
    pub(crate) fn respond_late(&mut self, token: Token) {
        let late = Response::text(504, "the application did not answer in time");
        self.answer_with(token, &late);
    }

    /// Holds a request the app will answer later with [`Core::respond`].
    pub(crate) fn hold_for_later(&mut self, token: Token) {
        let deadline = self.now + self.config.limits.later_timeout;
        if let Some(conn) = self.conns.get_mut(token) {
            if let Some(http) = conn.http() {
                http.waiting = Waiting::Later;
            }
            conn.deadline = Some(deadline);
            conn.paused = true;
        }
        self.rearm(token);
    }

    // ---- Polls ---------------------------------------------------------------

    /// The head fields of every poll answer.
    pub(crate) fn poll_headers(&self) -> Vec<(&str, &str)> {
        let mut headers = vec![
            ("Content-Type", "application/json"),
            // A poll's answer is only true now.
            ("Cache-Control", "no-store"),
        ];
        if let Some(origin) = self.config.allow_origin.as_deref() {
            headers.push(("Access-Control-Allow-Origin", origin));
        }
        headers
    }

    /// A complete poll answer: the JSON array of events after `after` on
    /// `topics`, and how many events it holds.
    fn poll_answer_bytes(
        &self,
        topics: &[TopicId],
        after: u64,
        framing: Framing,
    ) -> (Vec<u8>, u64) {
        let (body, events) = self.feeds.poll_json(topics, after);
        let mut out = Vec::with_capacity(body.len() + 160);
        write_answer(&mut out, 200, &self.poll_headers(), &body, framing);
        (out, events)
    }

    /// Answers a short poll at once (unless the store must serve its
    /// cursor: see [`crate::engine::store`]).
    pub(crate) fn answer_poll(&mut self, token: Token, topics: &[TopicId], after: u64) {
        if !self.park(token, topics, after, Then::Poll) {
            self.poll_from_history(token, topics, after);
        }
    }

    /// Answers a short poll from history.
    pub(crate) fn poll_from_history(&mut self, token: Token, topics: &[TopicId], after: u64) {
        self.stats.poll.requests += 1;
        self.answer_poll_now(token, topics, after, Transport::Poll);
    }

    /// Holds a long-poll until an event newer than `after` on `topics`, or
    /// answers it at once when there is one (or a resync) already (unless
    /// the store must serve its cursor first).
    pub(crate) fn start_long_poll(&mut self, token: Token, topics: Vec<TopicId>, after: u64) {
        if !self.park(token, &topics, after, Then::LongPoll) {
            self.long_poll_from_history(token, topics, after);
        }
    }

    /// Holds or answers a long-poll from history.
    pub(crate) fn long_poll_from_history(
        &mut self,
        token: Token,
        topics: Vec<TopicId>,
        after: u64,
    ) {
        if self.feeds.has_news(&topics, after) || self.shutdown_deadline.is_some() {
            self.stats.long_poll.requests += 1;
            return self.answer_poll_now(token, &topics, after, Transport::LongPoll);
        }
        let hold_until = self.now + self.config.limits.long_poll_timeout;
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        self.stats.switch(&mut conn.transport, Transport::LongPoll);
        conn.deadline = Some(hold_until);
        // Pipelined requests wait in the kernel until this one is answered.
        conn.paused = true;
        self.feeds.wait(token, &topics);
        if let Some(http) = conn.http() {
            http.waiting = Waiting::LongPoll { topics, after };
        }
        if self.tracing(token) {
            let held = format!("long-poll held after={after}");
            self.trace(|tracer, now| tracer.note(now, token, "hold", &held, "RFC 9112 §9.3"));
        }
        self.rearm(token);
    }

    /// Answers a held long-poll with what there is now (an event came, its
    /// time is up, or the server shuts down).
    pub(crate) fn answer_long_poll(&mut self, token: Token) {
        let Some(http) = self.conns.get_mut(token).and_then(|conn| conn.http()) else {
            return;
        };
        let Waiting::LongPoll { topics, after } =
            std::mem::replace(&mut http.waiting, Waiting::Nothing)
        else {
            return;
        };
        self.answer_poll_now(token, &topics, after, Transport::LongPoll);
    }

    /// Answers a held long-poll with `body` (a JSON array) instead of events:
    /// a message sent to it alone ([`Core::send`]).
    pub(crate) fn answer_long_poll_with(&mut self, token: Token, body: &[u8]) {
        let headers: Vec<(String, String)> = self
            .poll_headers()
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        if let Some(conn) = self.conns.get_mut(token) {
            if conn.transport == Transport::LongPoll {
                self.stats.move_to(&mut conn.transport, Transport::Http);
            }
        }
        self.answer(token, false, &|framing, out| {
            let fields: Vec<(&str, &str)> = headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str()))
                .collect();
            write_answer(out, 200, &fields, body, framing)
        });
    }

    /// Answers a poll with the events after `after` on `topics` now, sharing
    /// the bytes with earlier answers to the same question since the last
    /// publish (most pollers hold the same cursor: the previous newest id;
    /// see `engine::poll_answers`). Counted under `bucket`.
    fn answer_poll_now(&mut self, token: Token, topics: &[TopicId], after: u64, bucket: Transport) {
        let now = self.now;
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let closing = self.shutdown_deadline.is_some();
        let Kind::Http(http) = &mut conn.kind else {
            return;
        };
        if !http.session.is_responding() {
            return;
        }
        let framing = http.session.answer(now, closing);
        http.waiting = Waiting::Nothing;
        conn.deadline = None;
        if conn.transport == Transport::LongPoll {
            self.stats.move_to(&mut conn.transport, Transport::Http);
        }
        self.feeds.stop_waiting(token);
        // With several loops another loop may have published since this one
        // last heard: the newest id is part of the question.
        let latest = self.feeds.latest_id();
        let (bytes, events) = match self.poll_answers.get(topics, after, framing, latest) {
            Some(kept) => kept,
            None => {
                let (bytes, events) = self.poll_answer_bytes(topics, after, framing);
                let bytes: Arc<[u8]> = bytes.into();
                self.poll_answers
                    .keep(topics, after, framing, latest, &bytes, events);
                (bytes, events)
            }
        };
        if bucket == Transport::LongPoll && self.tracing(token) {
            self.trace(|tracer, now| {
                tracer.note(now, token, "wake", "long-poll answered", "RFC 9112 §9.3")
            });
        }
        // A poll answer is a response: never dropped. The connection reads
        // no further request until it is written, so memory stays bounded.
        self.push_shared_to(token, Chunk::Protocol, &bytes, bucket);
        self.stats.of(bucket).events_delivered += events;
        self.after_answer(token, framing);
    }

    // ---- Event streams -------------------------------------------------------

    /// Starts an event stream on a connection whose request asked for one:
    /// the head (never dropped), then the replay after `cursor` if any, then
    /// every new event of `topics`.
    pub(crate) fn start_event_stream(
        &mut self,
        token: Token,
        topics: &[TopicId],
        cursor: Option<u64>,
    ) {
        let now = self.now;
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let Kind::Http(http) = &mut conn.kind else {
            return;
        };
        // The stream runs until the connection closes (RFC 9112 §6.3).
        let framing = http.session.answer(now, true);
        http.session.finish();
        let origin = self.config.allow_origin.clone();
        let extra: Vec<(&str, &str)> = origin
            .iter()
            .map(|origin| ("Access-Control-Allow-Origin", origin.as_str()))
            .collect();
        let retry = self.config.sse_retry_ms;
        self.push_protocol(token, &|out| sse::write_stream_head(out, retry, &extra));
        if framing.head_only {
            // RFC 9110 §9.3.2: a HEAD gets the head of the stream, and no stream.
            return self.start_closing(token, true);
        }
        let keepalive = now + self.config.limits.sse_keepalive;
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        self.stats
            .switch(&mut conn.transport, Transport::EventStream);
        conn.kind = Kind::EventStream;
        conn.deadline = Some(keepalive);
        self.follow(token, topics, cursor);
        self.rearm(token);
    }

    // ---- Subscriptions -------------------------------------------------------

    /// Subscribes an open WebSocket or an event stream to a topic, replaying
    /// history after `after` first when it is given. Not an outbound
    /// WebSocket: feed events are frames encoded once, as a server sends them.
    pub fn subscribe(
        &mut self,
        token: Token,
        topic: TopicId,
        after: Option<u64>,
    ) -> Result<(), SendError> {
        let follower = self.conns.get(token).is_some_and(|conn| {
            conn.takes_shared_frames() || matches!(conn.kind, Kind::EventStream)
        });
        if !follower || !self.feeds.exists(topic) {
            return Err(SendError::NotOpen);
        }
        self.follow(token, &[topic], after);
        Ok(())
    }

    /// A connection follows `topics` from now on, after the replay from
    /// `cursor` if there is one. The replay is read first, together with
    /// what other loops queued for this one, and those arrivals are fanned
    /// out before the connection joins: so an event reaches it either in the
    /// replay or live, never both, never neither.
    pub(crate) fn follow(&mut self, token: Token, topics: &[TopicId], cursor: Option<u64>) {
        let parked = cursor.is_some_and(|after| self.park(token, topics, after, Then::Follow));
        if !parked {
            self.follow_from_history(token, topics, cursor);
        }
    }

    /// A connection follows `topics`, replayed from history (see [`Core::follow`]).
    pub(crate) fn follow_from_history(
        &mut self,
        token: Token,
        topics: &[TopicId],
        cursor: Option<u64>,
    ) {
        let replay = cursor.map(|after| self.feeds.replay(topics, after));
        self.deliver_arrivals();
        for &topic in topics {
            self.feeds.follow(token, topic);
        }
        if let Some(replay) = replay {
            self.queue_replay(token, replay);
        }
    }

    /// A connection stops following a topic. False if it did not follow it.
    pub fn unsubscribe(&mut self, token: Token, topic: TopicId) -> bool {
        self.feeds.unfollow(token, topic)
    }

    /// The bytes of an event for this follower, by its transport (a
    /// WebSocket's compressed once for all, or by its own session, see
    /// [`crate::engine::outbox`]); `None` if it cannot take events (a closing
    /// WebSocket, RFC 6455 §5.5.1).
    pub(crate) fn encoding_for(&mut self, token: Token, entry: &Entry) -> Option<Encoded> {
        match &self.conns.get(token)?.kind {
            Kind::EventStream => Some(Encoded::Shared(Arc::clone(&entry.sse))),
            Kind::WebSocket(_) => {
                let fanout = Fanout {
                    frame: &entry.ws_frame,
                    #[cfg(feature = "deflate")]
                    deflated: &entry.ws_deflated,
                };
                self.ws_encoding(token, &fanout)
            }
            _ => None,
        }
    }

    /// Queues a replay for a follower: the resync notice if any, then as
    /// many events as its queue admits; the rest follows as the queue
    /// drains ([`Core::catch_up`]).
    fn queue_replay(&mut self, token: Token, replay: Replay) {
        let max_queued = self.config.limits.max_queued_bytes;
        if let Some(notice) = &replay.notice {
            if let Some(encoded) = self.encoding_for(token, notice) {
                let _ = self.push_encoded(token, encoded, true);
            }
        }
        let mut last = replay.from;
        for entry in &replay.entries {
            let Some(encoded) = self.encoding_for(token, entry) else {
                return;
            };
            let admitted = self
                .conns
                .get(token)
                .is_some_and(|conn| conn.admits(encoded.len(), max_queued));
            if !admitted {
                // The rest waits in history until the queue drains.
                self.catching_up.insert(token, last);
                return;
            }
            if self.push_encoded(token, encoded, true).is_err() {
                return;
            }
            self.count_delivery(token);
            last = entry.id;
        }
    }

    /// Goes on with a follower's replay once its queue has drained below
    /// half its bound (called after each write). It stays among those
    /// catching up while the arrivals read with the replay are fanned out,
    /// so it gets those from the replay only.
    pub(crate) fn catch_up(&mut self, token: Token) {
        let Some(&after) = self.catching_up.get(&token) else {
            return;
        };
        let half = self.config.limits.max_queued_bytes / 2;
        if self
            .conns
            .get(token)
            .is_none_or(|conn| conn.queued_bytes() > half)
        {
            return;
        }
        let topics = self.feeds.followed(token);
        let replay = self.feeds.replay(&topics, after);
        self.deliver_arrivals();
        self.catching_up.remove(&token);
        self.queue_replay(token, replay);
    }

    pub(crate) fn count_delivery(&mut self, token: Token) {
        if let Some(conn) = self.conns.get(token) {
            let transport = conn.transport;
            self.stats.of(transport).events_delivered += 1;
        }
    }

    // ---- Publishing ----------------------------------------------------------

    /// Publishes an event and fans it out — on this loop now, on the others
    /// through their inboxes: shared bytes to every follower (but `except`,
    /// and followers still catching up, who will find it in history),
    /// answers to every waiting long-poll. Returns its id.
    pub fn publish(
        &mut self,
        topic: TopicId,
        event: Option<&str>,
        payload: Payload,
        except: Option<ConnId>,
    ) -> Result<u64, PublishError> {
        let published = self.feeds.publish(topic, event, payload, except);
        self.after_store_publish(&published);
        let id = published?;
        self.stats.events_published += 1;
        self.deliver_arrivals();
        Ok(id)
    }

    /// Fans out what the feeds have for this loop, in id order: this loop's
    /// own publishes and removals, and the other loops' from the inbox.
    /// Then, if the inbox overflowed, every follower catches up from history
    /// and every long-poll with news is answered (see [`crate::feeds::hub`]).
    /// Not re-entered: a catch-up that collects more arrivals leaves them to
    /// the loop already running here.
    pub(crate) fn deliver_arrivals(&mut self) {
        if self.delivering {
            return;
        }
        self.delivering = true;
        loop {
            while let Some(arrival) = self.feeds.next_arrival() {
                match arrival {
                    Arrival::Event { entry, except } => {
                        self.stats.store.last_id = entry.id;
                        let except = except.and_then(|id| self.local(id));
                        self.fan_out(&entry, except);
                    }
                    Arrival::Removed(topic) => {
                        self.poll_answers.clear();
                        self.feeds.drop_topic(topic);
                    }
                }
            }
            let Some(after) = self.feeds.take_missed() else {
                break;
            };
            self.stats.inbox_overflows += 1;
            self.everyone_catches_up(after);
        }
        self.delivering = false;
        // Cursors that were ahead of this node may be served now.
        self.resume_ahead();
    }

    /// One event to this loop's followers and waiters of its topic.
    fn fan_out(&mut self, entry: &Entry, except: Option<Token>) {
        // History changed: so did every poll's answer.
        self.poll_answers.clear();
        let mut recipients = std::mem::take(&mut self.recipients);
        self.feeds.followers(entry.topic, &mut recipients);
        for &token in &recipients {
            if Some(token) == except || self.catching_up.contains_key(&token) {
                continue;
            }
            let Some(encoded) = self.encoding_for(token, entry) else {
                continue;
            };
            if self.push_encoded(token, encoded, false).is_ok() {
                self.count_delivery(token);
            }
        }
        recipients.clear();
        self.recipients = recipients;
        for token in self.feeds.take_waiters(entry.topic) {
            // With several loops an event can come out of the inbox after a
            // poll that had already seen it was held (its cursor is this
            // event or later): that poll goes on waiting.
            let seen_already = match self.held_poll(token) {
                Some((topics, after)) if after >= entry.id => Some(topics.to_vec()),
                _ => None,
            };
            match seen_already {
                Some(topics) => self.feeds.wait(token, &topics),
                None => self.answer_long_poll(token),
            }
        }
    }

    /// The topics and cursor of `token`'s held long-poll, if it holds one.
    fn held_poll(&self, token: Token) -> Option<(&[TopicId], u64)> {
        match &self.conns.get(token)?.kind {
            Kind::Http(http) => match &http.waiting {
                Waiting::LongPoll { topics, after } => Some((topics, *after)),
                _ => None,
            },
            _ => None,
        }
    }

    /// This loop missed the events after `after` (its inbox was full): every
    /// follower replays from there as its queue allows, and every long-poll
    /// with news is answered. All followers are marked first, so an arrival
    /// collected by one's catch-up reaches the others through theirs.
    fn everyone_catches_up(&mut self, after: u64) {
        let followers = self.feeds.all_followers();
        for &token in &followers {
            let cursor = self.catching_up.entry(token).or_insert(after);
            *cursor = (*cursor).min(after);
        }
        for token in followers {
            self.catch_up(token);
        }
        for token in self.feeds.all_waiters() {
            let news = self
                .held_poll(token)
                .is_some_and(|(topics, after)| self.feeds.has_news(topics, after));
            if news {
                self.answer_long_poll(token);
            }
        }
    }

    /// Removes a topic: its followers and waiters (on every loop) get a last
    /// event of type `removed` (data `{"topic":NAME}`) and no longer follow
    /// it. False if there is no such topic.
    pub fn remove_topic(&mut self, topic: TopicId) -> bool {
        let Some(name) = self.feeds.name(topic) else {
            return false;
        };
        let data = format!("{{\"topic\":\"{name}\"}}");
        let _ = self.publish(topic, Some("removed"), Payload::Json(&data), None);
        let removed = self.feeds.remove(topic);
        self.deliver_arrivals();
        removed
    }
}
