//! The loop's side of the store behind the history (see [`crate::storage`]):
//! opening it, its timers, its health in the log and the stats.
//!
//! - **Memory**: nothing to do.
//! - **File log**: opened at bind, its records read back into the history
//!   (truncations reported on stderr with their byte offset); each publish
//!   appends before it is fanned out (in [`crate::feeds::Topics::publish`]);
//!   the fsync deadline and the expiry check are a timer of the loop
//!   (`Wake::Store`); at the end of the loop the log is synced.
//! - **Redis** (feature `redis`): loop 0 drives the link
//!   (`storage::redis::Link`) on two mio sockets of its own tokens,
//!   through the same timer. See below.
//!
//! # Publishing with Redis: answered later
//!
//! Ids come from Redis, so a publish cannot be answered at once. The
//! synchronous [`crate::app::Context::publish`] refuses
//! ([`PublishError::AnswersLater`]); the asynchronous path takes a
//! [`Waiter`] — the HTTP request to answer (`Context::publish_for`, which
//! holds the request like `Reply::Later`), a thread blocked in
//! `Handle::publish_and_wait`, or nobody (`Context::publish_later`,
//! `Handle::publish`). The event is checked here first (a bad name, bad
//! JSON, too big: refused at once, as with any backend), then sent to Redis;
//! the waiter hears `Ok(id)` when Redis has it, or
//! [`PublishError::Unavailable`] (`503` with `Retry-After`) when the link is
//! down, too busy, or lost before the answer. Nobody hears of the event
//! itself from the publish: it comes back from the stream like every other
//! node's, and is fanned out then, with the id every node gives it. So
//! `except` (don't send it back to its sender) is not honoured: the event
//! read from the stream is everyone's.
//!
//! With several loops, loop 0 holds the link: the others forward their
//! publishes and fetches to it as commands (`Command::StorePublish`,
//! `Command::StoreFetch`), and it sends their answers back
//! (`Command::StoreFetched`, `Handle::respond`). Events read from the
//! stream reach every loop through the hub, like any publish.
//!
//! # Cursors: history, then the stream
//!
//! The in-memory history is the cache. A cursor it cannot serve exactly is
//! *parked* (the connection waits, bounded) instead of resynced at once:
//! - **ahead** of this node (a client moved from a node that read further):
//!   it waits until this node has read that far ([`AHEAD_WAIT`]);
//! - **older** than history (from before this node started, or let go of):
//!   the stream is asked for the events after it (`XRANGE`, a page at a
//!   time). If the stream still holds the cursor, the page's events of the
//!   followed topics go out first, then history takes over from where it
//!   vouches; if not (trimmed by `MAXLEN`, or Redis lost its data), history
//!   answers as it would alone, with a `resync`.
//!
//! Polls, long-polls, event streams and WebSocket subscriptions all go
//! through the same three entry points (`answer_poll`, `start_long_poll`,
//! `follow`), so every transport gets the same answer.

#[cfg(feature = "redis")]
mod redis;

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use mio::Token;

use crate::engine::config::Config;
#[cfg(feature = "redis")]
use crate::engine::handle::Command;
use crate::engine::handle::Fetched;
pub use crate::engine::handle::Waiter;
use crate::engine::timers::Wake;
use crate::engine::Core;
use crate::feeds::{Feeds, Payload, PublishError, Standing, Topics};
use crate::http::Response;
use crate::ids::{ConnId, TopicId};
use crate::storage::{DataKind, FileStore, Storage, Store, StoredEvent};
use crate::time::Instant;

#[cfg(feature = "redis")]
pub(crate) use redis::RedisDriver;

/// How long a cursor ahead of this node waits for the node to read that
/// far before history answers it (with a `resync`). A node is behind
/// another by about one `XREAD` round trip — well under a millisecond on a
/// LAN — unless its reader is reconnecting; two seconds covers the first
/// reconnect windows.
pub const AHEAD_WAIT: Duration = Duration::from_secs(2);

/// How long a cursor older than history waits for a page of the stream
/// before history answers it: past the link's own reply timeout (5 s by
/// default, then the fetch fails and history answers at once), in case an
/// answer crossing loops is lost.
pub const FETCH_WAIT: Duration = Duration::from_secs(10);

/// What a parked connection does once its cursor can be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Then {
    Follow,
    Poll,
    LongPoll,
}

/// A connection whose cursor waits for the store (see the module doc).
#[derive(Debug)]
struct Parked {
    topics: Vec<TopicId>,
    after: u64,
    then: Then,
    deadline: Instant,
    /// Waiting for a page of the stream (else for this node to read further).
    fetching: bool,
}

/// The store as this loop sees it.
#[derive(Debug, Default)]
pub(crate) struct StoreSide {
    /// The store asks for timers (the file log's fsync and expiry).
    timed: bool,
    /// The store timer armed in the heap, if one is.
    armed: Option<Instant>,
    /// Connections whose cursor waits for the store.
    parked: HashMap<Token, Parked>,
    /// Loop 0's link to Redis.
    #[cfg(feature = "redis")]
    pub(crate) redis: Option<Box<RedisDriver>>,
}

/// Opens the store `config` names and the feeds over it: a file log's
/// records are read back into the history. Returns the feeds, and the lines
/// to log about what recovery found.
pub(crate) fn open_feeds(config: &Config, seed: u64) -> io::Result<(Feeds, Vec<String>)> {
    let (limits, max_topics) = (config.history, config.limits.max_topics);
    match &config.storage {
        Storage::Memory => Ok((Feeds::new(limits, max_topics, seed), Vec::new())),
        Storage::File(file) => {
            let (store, recovered) = FileStore::open(file)?;
            let mut notes = Vec::new();
            for truncation in &recovered.truncations {
                // Bad input never stops the server: it is cut off and said.
                notes.push(format!(
                    "file log: {} truncated at byte offset {} ({}; {} bytes dropped)",
                    truncation.path.display(),
                    truncation.offset,
                    truncation.reason,
                    truncation.dropped_bytes
                ));
            }
            for removed in &recovered.removed {
                notes.push(format!(
                    "file log: {} removed by retention",
                    removed.display()
                ));
            }
            let mut topics =
                Topics::with_store(limits, max_topics, seed, Store::File(Box::new(store)));
            let events = recovered.records.iter().filter_map(|record| {
                Some(StoredEvent {
                    id: record.id,
                    topic: &record.topic,
                    event: &record.event,
                    kind: DataKind::from_tag(record.kind)?,
                    data: &record.data,
                })
            });
            let restored = topics.restore(events, recovered.last_id);
            let unreadable = recovered.records.len() as u64 - restored.events - restored.skipped;
            notes.push(format!(
                "file log: {} events read back from {} ({} left out), next id {}",
                restored.events,
                file.dir.display(),
                restored.skipped + unreadable,
                topics.latest_id() + 1
            ));
            Ok((Feeds::with_topics(topics), notes))
        }
        // History starts where the stream stands, once the link knows (the
        // link itself is made by `EventLoop::bind`, on loop 0).
        #[cfg(feature = "redis")]
        Storage::Redis(_) => {
            let topics = Topics::with_store(limits, max_topics, seed, Store::Redis);
            Ok((Feeds::with_topics(topics), Vec::new()))
        }
    }
}

impl StoreSide {
    /// The loop's side of the store the feeds were opened over.
    pub(crate) fn new(feeds: &mut Feeds) -> StoreSide {
        StoreSide {
            timed: feeds.store(|store| matches!(store, Store::File(_))),
            ..StoreSide::default()
        }
    }
}

/// The answer to a publish made for an HTTP request.
pub(crate) fn publish_response(
    result: Result<u64, PublishError>,
    retry_after: Duration,
) -> Response {
    match result {
        Ok(id) => Response::json(200, format!("{{\"id\":{id}}}")),
        // RFC 9110 §15.6.4 and §10.2.3: 503 says when to come back.
        Err(PublishError::Unavailable) => {
            Response::text(503, &PublishError::Unavailable.to_string())
                .header("Retry-After", &retry_after.as_secs().max(1).to_string())
        }
        Err(error) => Response::text(error.status(), &error.to_string()),
    }
}

impl Core {
    /// After a publish: a store's refusal is counted and its health
    /// reported; a store with timers gets its next one armed.
    pub(crate) fn after_store_publish(&mut self, result: &Result<u64, PublishError>) {
        if result == &Err(PublishError::Unavailable) {
            self.stats.store.unavailable += 1;
        }
        if self.store.timed {
            self.arm_store_timer();
            self.report_store_health();
        }
    }

    /// Arms the store's next deadline (an fsync, an expiry check, the Redis
    /// link's, a parked cursor's) unless an entry at or before it is armed
    /// already.
    pub(crate) fn arm_store_timer(&mut self) {
        let file = match self.store.timed {
            true => self
                .feeds
                .store(|store| store.poll_timeout())
                .map(|due| Instant::from_duration(due.saturating_duration_since(self.origin))),
            false => None,
        };
        let parked = self
            .store
            .parked
            .values()
            .map(|parked| parked.deadline)
            .min();
        #[cfg(feature = "redis")]
        let link = self
            .store
            .redis
            .as_ref()
            .and_then(|driver| driver.poll_timeout());
        #[cfg(not(feature = "redis"))]
        let link = None;
        let Some(due) = [file, parked, link].into_iter().flatten().min() else {
            return;
        };
        if self.store.armed.is_none_or(|armed| due < armed) {
            self.store.armed = Some(due);
            self.timers.arm(due, Wake::Store);
        }
    }

    /// The store's timer popped (armed for `when`): do what is due, arm the next.
    pub(crate) fn store_timer(&mut self, when: Instant) {
        if self.store.armed == Some(when) {
            self.store.armed = None;
        }
        if self.store.timed {
            let now = self.std_instant(self.now);
            self.feeds.store(|store| store.handle_timeout(now));
        }
        #[cfg(feature = "redis")]
        if let Some(driver) = self.store.redis.as_mut() {
            driver.handle_timeout(self.now);
            self.pump_redis();
        }
        let now = self.now;
        let expired: Vec<Token> = self
            .store
            .parked
            .iter()
            .filter(|(_, parked)| parked.deadline <= now)
            .map(|(token, _)| *token)
            .collect();
        for token in expired {
            // The store took too long: history answers, as it would alone.
            self.unpark(token, None);
        }
        self.report_store_health();
        self.arm_store_timer();
    }

    /// Logs the store's health when it changed (once per change), and
    /// copies its error count into the stats.
    pub(crate) fn report_store_health(&mut self) {
        let (change, errors) = match self.store.timed {
            true => self.feeds.store(|store| match store.health() {
                Some(health) => (health.take_change(), health.errors()),
                None => (None, 0),
            }),
            false => (None, 0),
        };
        self.stats.store.errors = self.stats.store.errors.max(errors);
        #[cfg(feature = "redis")]
        let change = match self.store.redis.as_mut() {
            Some(driver) => {
                let health = driver.health();
                self.stats.store.errors = health.errors();
                health.take_change()
            }
            None => change,
        };
        match change {
            Some(Some(problem)) => self.log(&format!("store: {problem}")),
            Some(None) => self.log("store: working again"),
            None => {}
        }
    }

    // ---- Publishing, whatever the store ----------------------------------------

    /// Publishes through the store, however it answers (see the module
    /// doc): memory and the file log answer `waiter` now; Redis when it has
    /// the event. `Err` is a refusal known at once (and `waiter` is told too).
    pub(crate) fn publish_later(
        &mut self,
        topic: TopicId,
        event: Option<&str>,
        payload: Payload,
        except: Option<ConnId>,
        waiter: Waiter,
    ) -> Result<(), PublishError> {
        if !self.feeds.ids_from_elsewhere() {
            let result = self.publish(topic, event, payload, except);
            self.answer_waiter_of_publish(waiter, result);
            return result.map(|_| ());
        }
        match self.send_to_store(topic, event, payload, waiter) {
            Ok(()) => Ok(()),
            Err((error, waiter)) => {
                self.answer_waiter_of_publish(waiter, Err(error));
                Err(error)
            }
        }
    }

    /// Sends a publish to a store that answers later; a refusal known now
    /// gives the waiter back, untold.
    fn send_to_store(
        &mut self,
        topic: TopicId,
        event: Option<&str>,
        payload: Payload,
        waiter: Waiter,
    ) -> Result<(), (PublishError, Waiter)> {
        #[cfg(feature = "redis")]
        return self.send_to_redis(topic, event, payload, waiter);
        #[cfg(not(feature = "redis"))]
        {
            let _ = (topic, event, payload);
            Err((PublishError::AnswersLater, waiter))
        }
    }

    /// Publishes for the HTTP request `id` is serving, and says how to
    /// answer it: at once (memory, file log, a refusal), or later (Redis).
    pub(crate) fn publish_for(
        &mut self,
        id: ConnId,
        topic: TopicId,
        event: Option<&str>,
        payload: Payload,
    ) -> Option<Response> {
        if !self.feeds.ids_from_elsewhere() {
            let result = self.publish(topic, event, payload, None);
            return Some(publish_response(result, self.retry_after()));
        }
        match self.send_to_store(topic, event, payload, Waiter::Request(id)) {
            // The answer comes with Redis's.
            Ok(()) => None,
            Err((error, _)) => Some(publish_response(Err(error), self.retry_after())),
        }
    }

    /// Tells a waiter how its publish went; a failure nobody hears of is counted.
    pub(crate) fn answer_waiter_of_publish(
        &mut self,
        waiter: Waiter,
        result: Result<u64, PublishError>,
    ) {
        match waiter {
            Waiter::Nobody => {}
            Waiter::Thread(reply) => {
                // The caller may have stopped waiting; nothing to do then.
                let _ = reply.send(result);
            }
            Waiter::Request(id) => {
                let response = publish_response(result, self.retry_after());
                match self.local(id) {
                    Some(token) => {
                        self.respond(token, &response);
                    }
                    None => {
                        let _ = self.handle.respond(id, response);
                    }
                }
            }
        }
    }

    /// How long a publisher refused with `503` should wait.
    fn retry_after(&self) -> Duration {
        #[cfg(feature = "redis")]
        if let Some(driver) = &self.store.redis {
            return driver.retry_after(self.now);
        }
        Duration::from_secs(1)
    }

    // ---- Cursors the store serves ----------------------------------------------

    /// Parks a connection whose cursor history cannot serve but the store
    /// may (see the module doc); false if history answers it now.
    pub(crate) fn park(
        &mut self,
        token: Token,
        topics: &[TopicId],
        after: u64,
        then: Then,
    ) -> bool {
        if !self.feeds.ids_from_elsewhere() {
            return false;
        }
        let fetching = match self.feeds.standing(topics, after) {
            Standing::Served => return false,
            Standing::Ahead => false,
            Standing::Older => {
                if !self.ask_for_page(token, after) {
                    return false;
                }
                true
            }
        };
        let wait = if fetching { FETCH_WAIT } else { AHEAD_WAIT };
        self.store.parked.insert(
            token,
            Parked {
                topics: topics.to_vec(),
                after,
                then,
                deadline: self.now + wait,
                fetching,
            },
        );
        self.arm_store_timer();
        true
    }

    /// Goes on with the connections parked until this node read further.
    pub(crate) fn resume_ahead(&mut self) {
        if self.store.parked.is_empty() {
            return;
        }
        let latest = self.feeds.latest_id();
        let caught_up: Vec<Token> = self
            .store
            .parked
            .iter()
            .filter(|(_, parked)| !parked.fetching && parked.after <= latest)
            .map(|(token, _)| *token)
            .collect();
        for token in caught_up {
            if let Some(parked) = self.store.parked.remove(&token) {
                self.serve_cursor(token, parked);
            }
        }
    }

    /// A parked connection goes on: with the stream's page when one came,
    /// else from history as it would alone.
    fn unpark(&mut self, token: Token, page: Option<Fetched>) {
        let Some(parked) = self.store.parked.remove(&token) else {
            return;
        };
        #[cfg(feature = "redis")]
        if let Some(page) = page {
            return self.serve_page(token, parked, page);
        }
        #[cfg(not(feature = "redis"))]
        let _ = page;
        self.serve_from_history(token, parked);
    }

    /// A cursor that may be served now: through the entry point again (it
    /// may park once more, for an older cursor).
    fn serve_cursor(&mut self, token: Token, parked: Parked) {
        if !self.still_waits(token, parked.then) {
            return;
        }
        match parked.then {
            Then::Follow => self.follow(token, &parked.topics, Some(parked.after)),
            Then::Poll => self.answer_poll(token, &parked.topics, parked.after),
            Then::LongPoll => self.start_long_poll(token, parked.topics, parked.after),
        }
    }

    /// History answers a parked cursor as it would with no store behind it.
    fn serve_from_history(&mut self, token: Token, parked: Parked) {
        if !self.still_waits(token, parked.then) {
            return;
        }
        match parked.then {
            Then::Follow => self.follow_from_history(token, &parked.topics, Some(parked.after)),
            Then::Poll => self.poll_from_history(token, &parked.topics, parked.after),
            Then::LongPoll => self.long_poll_from_history(token, parked.topics, parked.after),
        }
    }

    /// Whether the connection still waits for what it was parked for (it
    /// may have gone meanwhile, or closed).
    fn still_waits(&self, token: Token, then: Then) -> bool {
        use crate::engine::connection::Kind;
        self.conns
            .get(token)
            .is_some_and(|conn| match (&conn.kind, then) {
                (Kind::Http(http), Then::Poll | Then::LongPoll) => http.session.is_responding(),
                (Kind::EventStream, Then::Follow) => true,
                (Kind::WebSocket(ws), Then::Follow) => ws.session.can_send(),
                _ => false,
            })
    }

    /// Asks the stream for the events after `after`, for `token`: through
    /// the link on loop 0, through loop 0 elsewhere. False if it cannot.
    fn ask_for_page(&mut self, token: Token, after: u64) -> bool {
        #[cfg(feature = "redis")]
        {
            let conn = self.conn_id(token);
            if self.store.redis.is_some() {
                return self.fetch_from_redis(conn, after);
            }
            self.handle
                .to_first_loop(Command::StoreFetch { conn, after })
                .is_ok()
        }
        #[cfg(not(feature = "redis"))]
        {
            let _ = (token, after);
            false
        }
    }

    /// At the end of the loop: what the store holds goes to the disk.
    pub(crate) fn close_store(&mut self) {
        if self.store.timed {
            self.feeds.store(Store::sync);
            self.report_store_health();
        }
    }
}
