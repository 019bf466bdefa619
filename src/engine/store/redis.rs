//! Loop 0's link to Redis: the sans-IO [`Link`] on two mio sockets of the
//! loop's own tokens, and what its events do to the feeds (see the parent
//! module for the design).

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mio::net::TcpStream;
use mio::{Interest, Token};
use pushloop_proto::resp::stream::Event;

use super::{Parked, Then, Waiter};
use crate::engine::handle::{Command, Fetched, OwnedPayload};
use crate::engine::slab::{REDIS_COMMANDS, REDIS_READER};
use crate::engine::Core;
use crate::feeds::{Entry, Payload, PublishError, DEFAULT_EVENT};
use crate::http::write_answer;
use crate::ids::{ConnId, TopicId};
use crate::storage::redis::{Failure, Link, LinkEvent, RedisConfig, Role, Ticket};
use crate::storage::{DataKind, Health, StoredEvent};
use crate::time::Instant;

/// The link and its sockets.
#[derive(Debug)]
pub(crate) struct RedisDriver {
    link: Link,
    /// Resolved once, when the server starts: a name lookup blocks, and the
    /// loop must not.
    addr: SocketAddr,
    sockets: [Option<TcpStream>; 2],
    /// A socket whose TCP connect has not completed yet.
    connecting: [bool; 2],
    next_ticket: Ticket,
    publishes: HashMap<Ticket, Waiter>,
    fetches: HashMap<Ticket, ConnId>,
}

impl RedisDriver {
    /// A link to the Redis `config` names (its address resolved now).
    pub(crate) fn new(config: &RedisConfig, seed: u64) -> io::Result<RedisDriver> {
        let url = &config.url;
        let addr = (url.host.as_str(), url.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(ErrorKind::NotFound, "no address for the Redis host"))?;
        Ok(RedisDriver {
            link: Link::new(config.clone(), seed),
            addr,
            sockets: [None, None],
            connecting: [false, false],
            next_ticket: 0,
            publishes: HashMap::new(),
            fetches: HashMap::new(),
        })
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.link.poll_timeout()
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.link.handle_timeout(now);
    }

    pub(crate) fn retry_after(&self, now: Instant) -> Duration {
        self.link.retry_after(now)
    }

    pub(crate) fn health(&mut self) -> &mut Health {
        self.link.health()
    }

    fn ticket(&mut self) -> Ticket {
        self.next_ticket += 1;
        self.next_ticket
    }

    /// Starts a TCP connect for `role`.
    fn open(&mut self, role: Role, registry: &mio::Registry, now: Instant) {
        let opened = TcpStream::connect(self.addr).and_then(|mut stream| {
            registry.register(
                &mut stream,
                token_of(role),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(stream)
        });
        match opened {
            Ok(stream) => {
                // Commands are small and must not wait for Nagle's algorithm.
                let _ = stream.set_nodelay(true);
                self.sockets[index(role)] = Some(stream);
                self.connecting[index(role)] = true;
            }
            Err(error) => self.link.closed(role, now, &error.to_string()),
        }
    }

    /// Writes what the link has for each connected socket, until the socket
    /// takes no more (the rest goes when it is writable again).
    fn flush(&mut self, now: Instant) {
        for role in Role::BOTH {
            let at = index(role);
            let Some(stream) = self.sockets[at].as_mut().filter(|_| !self.connecting[at]) else {
                continue;
            };
            loop {
                let out = self.link.transmit(role);
                if out.is_empty() {
                    break;
                }
                match stream.write(out) {
                    Ok(0) => {
                        self.drop_socket(role, now, "Redis took no bytes");
                        break;
                    }
                    Ok(n) => self.link.consumed(role, n),
                    Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                    Err(error) if error.kind() == ErrorKind::Interrupted => {}
                    Err(error) => {
                        self.drop_socket(role, now, &error.to_string());
                        break;
                    }
                }
            }
        }
    }

    /// The socket of `role` is gone (`why`): the link hears of it.
    fn drop_socket(&mut self, role: Role, now: Instant, why: &str) {
        self.sockets[index(role)] = None;
        self.connecting[index(role)] = false;
        self.link.closed(role, now, why);
    }

    /// A readiness event on `role`'s socket: the connect completing, then
    /// reads until the socket is empty, each handed to the link.
    fn ready(&mut self, role: Role, scratch: &mut [u8], now: Instant) {
        let at = index(role);
        let Some(stream) = self.sockets[at].as_mut() else {
            return;
        };
        if self.connecting[at] {
            // mio's TcpStream::connect: writable means done, or failed.
            match stream.take_error() {
                Ok(Some(error)) | Err(error) => {
                    return self.drop_socket(role, now, &error.to_string())
                }
                Ok(None) => {}
            }
            match stream.peer_addr() {
                Ok(_) => {
                    self.connecting[at] = false;
                    self.link.connected(role, now);
                }
                Err(error) if error.kind() == ErrorKind::NotConnected => return,
                Err(error) => return self.drop_socket(role, now, &error.to_string()),
            }
        }
        loop {
            let Some(stream) = self.sockets[at].as_mut() else {
                return;
            };
            match stream.read(scratch) {
                Ok(0) => return self.drop_socket(role, now, "closed by Redis"),
                Ok(n) => self.link.receive(role, &scratch[..n], now),
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return self.drop_socket(role, now, &error.to_string()),
            }
        }
    }
}

fn index(role: Role) -> usize {
    match role {
        Role::Reader => 0,
        Role::Commands => 1,
    }
}

fn token_of(role: Role) -> Token {
    match role {
        Role::Reader => REDIS_READER,
        Role::Commands => REDIS_COMMANDS,
    }
}

/// Microseconds since the Unix epoch: the unit of the ids Redis gives.
fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
        })
}

impl Core {
    /// Loop 0 talks to Redis (the driver is made at bind).
    pub(crate) fn start_redis(&mut self, config: &RedisConfig) -> io::Result<()> {
        let seed = self.jitter(Duration::from_secs(3600)).as_micros() as u64;
        self.store.redis = Some(Box::new(RedisDriver::new(config, seed)?));
        self.arm_store_timer();
        Ok(())
    }

    /// A readiness event on one of the link's sockets.
    pub(crate) fn redis_ready(&mut self, token: Token, scratch: &mut [u8]) {
        let role = match token {
            REDIS_READER => Role::Reader,
            _ => Role::Commands,
        };
        let now = self.now;
        if let Some(driver) = self.store.redis.as_mut() {
            driver.ready(role, scratch, now);
        }
        self.pump_redis();
    }

    /// Sends a publish to Redis (through loop 0 from another loop). A
    /// refusal known now gives the waiter back, untold.
    pub(crate) fn send_to_redis(
        &mut self,
        topic: TopicId,
        event: Option<&str>,
        payload: Payload,
        waiter: Waiter,
    ) -> Result<(), (PublishError, Waiter)> {
        if let Err(error) = self.feeds.check(topic, event, payload) {
            return Err((error, waiter));
        }
        let Some(driver) = self.store.redis.as_mut() else {
            if self.loop_index == 0 {
                return Err((PublishError::Unavailable, waiter));
            }
            let command = Command::StorePublish {
                topic,
                event: event.map(str::to_owned),
                payload: OwnedPayload::from_payload(payload),
                waiter,
            };
            return self
                .handle
                .to_first_loop(command)
                .map_err(|refused| match refused {
                    Command::StorePublish { waiter, .. } => (PublishError::Unavailable, waiter),
                    _ => (PublishError::Unavailable, Waiter::Nobody),
                });
        };
        let Some(name) = self.feeds.name(topic) else {
            return Err((PublishError::UnknownTopic, waiter));
        };
        let ticket = driver.ticket();
        let (kind, data) = payload.stored();
        let event = Event {
            topic: &name,
            event: event.unwrap_or(DEFAULT_EVENT),
            kind: kind.tag(),
            data,
        };
        // The floor: ids above what this node has seen, whatever Redis's clock says.
        let floor = self.feeds.latest_id();
        match driver.link.publish(ticket, floor, &event, self.now) {
            Ok(()) => {
                driver.publishes.insert(ticket, waiter);
                self.pump_redis();
                Ok(())
            }
            Err(_) => {
                self.stats.store.unavailable += 1;
                Err((PublishError::Unavailable, waiter))
            }
        }
    }

    /// Asks Redis for the events after `after`, for `conn` (on loop 0).
    /// False if the link cannot ask now.
    pub(crate) fn fetch_from_redis(&mut self, conn: ConnId, after: u64) -> bool {
        let now = self.now;
        let Some(driver) = self.store.redis.as_mut() else {
            return false;
        };
        let ticket = driver.ticket();
        if driver.link.fetch(ticket, after, now).is_err() {
            return false;
        }
        driver.fetches.insert(ticket, conn);
        self.stats.store.fetches += 1;
        self.pump_redis();
        true
    }

    /// A command another loop sent about the store.
    pub(crate) fn store_command(&mut self, command: Command) {
        match command {
            Command::StorePublish {
                topic,
                event,
                payload,
                waiter,
            } => {
                let _ =
                    self.publish_later(topic, event.as_deref(), payload.as_payload(), None, waiter);
            }
            Command::StoreFetch { conn, after } if !self.fetch_from_redis(conn, after) => {
                self.send_page(conn, Err(Failure::Down));
            }
            Command::StoreFetched { conn, page } => self.send_page(conn, page),
            // Asked for (StoreFetch), or not a store's command.
            _ => {}
        }
    }

    /// A page for `conn`: served here, or sent to its loop.
    fn send_page(&mut self, conn: ConnId, page: Fetched) {
        match self.local(conn) {
            Some(token) => self.unpark(token, Some(page)),
            None => {
                // A loop that cannot take it now lets the cursor wait out
                // FETCH_WAIT, then answers from history.
                let _ = self
                    .handle
                    .command_to_loop(conn.loop_index(), Command::StoreFetched { conn, page });
            }
        }
    }

    /// Acts on what the link has to say, writes what it has to send; until
    /// neither has anything.
    pub(crate) fn pump_redis(&mut self) {
        let now = self.now;
        loop {
            let Some(driver) = self.store.redis.as_mut() else {
                return;
            };
            driver.flush(now);
            let events: Vec<LinkEvent> = std::iter::from_fn(|| driver.link.poll_event()).collect();
            if events.is_empty() {
                break;
            }
            for event in events {
                self.link_event(event);
            }
        }
        if let Some(driver) = self.store.redis.as_ref() {
            let link = &driver.link;
            self.stats.store.connected = link.is_up();
            self.stats.store.in_flight = link.in_flight() as u64;
            self.stats.store.reconnects = link.reconnects();
        }
        self.report_store_health();
        self.arm_store_timer();
    }

    fn link_event(&mut self, event: LinkEvent) {
        let now = self.now;
        let Some(driver) = self.store.redis.as_mut() else {
            return;
        };
        match event {
            LinkEvent::Connect(role) => driver.open(role, &self.registry, now),
            LinkEvent::Disconnect(role) => {
                driver.sockets[index(role)] = None;
                driver.connecting[index(role)] = false;
            }
            LinkEvent::Top(top) => {
                if self.feeds.start_after(top) {
                    self.stats.store.last_id = self.feeds.latest_id();
                }
                self.resume_ahead();
            }
            LinkEvent::Events(events) => self.adopt_events(events),
            LinkEvent::Published(ticket, result) => {
                let waiter = driver.publishes.remove(&ticket).unwrap_or(Waiter::Nobody);
                let result = result.map_err(|_| PublishError::Unavailable);
                if result.is_err() {
                    self.stats.store.unavailable += 1;
                }
                self.answer_waiter_of_publish(waiter, result);
            }
            LinkEvent::Fetched(ticket, page) => {
                if let Some(conn) = driver.fetches.remove(&ticket) {
                    self.send_page(conn, page);
                }
            }
        }
    }

    /// Events read from the stream join the history (every loop's, through
    /// the hub) and are fanned out.
    fn adopt_events(&mut self, events: Vec<pushloop_proto::resp::stream::StoredEvent>) {
        for event in &events {
            let adopted = DataKind::from_tag(event.kind)
                .ok_or("its kind is unknown")
                .and_then(|kind| {
                    let stored = StoredEvent {
                        id: event.id,
                        topic: &event.topic,
                        event: &event.event,
                        kind,
                        data: &event.data,
                    };
                    self.feeds
                        .adopt(&stored)
                        .map_err(|_| "this node cannot keep it")
                });
            match adopted {
                Ok(_) => self.stats.events_published += 1,
                Err(why) => {
                    if let Some(driver) = self.store.redis.as_mut() {
                        driver
                            .health()
                            .failed(format_args!("an event read from Redis was left out: {why}"));
                    }
                }
            }
        }
        if let Some(last) = events.last() {
            // Ids are Redis's clock in µs: how long ago Redis stored it.
            self.stats.store.lag_us = unix_micros().saturating_sub(last.id);
        }
        self.deliver_arrivals();
    }

    /// A parked cursor's page came (see the parent module): its events of
    /// the followed topics up to where history vouches, then history; or
    /// another page; or history alone when the stream no longer holds the
    /// cursor.
    pub(super) fn serve_page(&mut self, token: Token, parked: Parked, page: Fetched) {
        let page = match page {
            Ok(page) if page.holds_cursor => page,
            _ => return self.serve_from_history(token, parked),
        };
        if !self.still_waits(token, parked.then) {
            return;
        }
        let floor = self.feeds.served_from(&parked.topics);
        let max_event_bytes = self.config.history.max_event_bytes;
        let mut entries: Vec<Entry> = Vec::new();
        for event in page.events.iter().filter(|event| event.id <= floor) {
            let Some(topic) = self
                .feeds
                .find(&event.topic)
                .filter(|topic| parked.topics.contains(topic))
            else {
                continue;
            };
            let payload = DataKind::from_tag(event.kind)
                .and_then(|kind| Payload::from_stored(kind, &event.data));
            if let Some(entry) = payload.and_then(|payload| {
                Entry::encode(
                    event.id,
                    topic,
                    &event.topic,
                    &event.event,
                    payload,
                    max_event_bytes,
                )
                .ok()
            }) {
                entries.push(entry);
            }
        }
        let complete = page.more_after.is_none_or(|more| more >= floor);
        match (parked.then, complete) {
            (Then::Follow, true) => {
                self.push_fetched(token, &entries);
                self.follow_from_history(token, &parked.topics, Some(floor));
            }
            (Then::Poll | Then::LongPoll, true) => {
                entries.extend(self.feeds.replay(&parked.topics, floor).entries);
                if entries.is_empty() && parked.then == Then::LongPoll {
                    return self.long_poll_from_history(token, parked.topics, floor);
                }
                self.answer_fetched(token, &entries, parked.then);
            }
            (Then::Poll | Then::LongPoll, false) if !entries.is_empty() => {
                // The client comes back with the last id for the rest.
                self.answer_fetched(token, &entries, parked.then);
            }
            (_, false) => {
                if parked.then == Then::Follow {
                    self.push_fetched(token, &entries);
                }
                let more = page.more_after.unwrap_or(floor);
                let parked = Parked {
                    after: more,
                    ..parked
                };
                self.park_again(token, parked);
            }
        }
    }

    /// Asks for the next page of a parked cursor, or lets history answer.
    fn park_again(&mut self, token: Token, parked: Parked) {
        let conn = self.conn_id(token);
        let asked = match self.store.redis.is_some() {
            true => self.fetch_from_redis(conn, parked.after),
            false => self
                .handle
                .to_first_loop(Command::StoreFetch {
                    conn,
                    after: parked.after,
                })
                .is_ok(),
        };
        if asked {
            self.store.parked.insert(token, parked);
            self.arm_store_timer();
        } else {
            self.serve_from_history(token, parked);
        }
    }

    /// Queues a page's events for a follower, whatever its queue holds: a
    /// page is bounded (`RedisConfig::page` events), and these cannot wait
    /// in history for the queue to drain as a replay's do.
    fn push_fetched(&mut self, token: Token, entries: &[Entry]) {
        for entry in entries {
            let Some(encoded) = self.encoding_for(token, entry) else {
                return;
            };
            if self.push_encoded(token, encoded, true).is_ok() {
                self.count_delivery(token);
            }
        }
    }

    /// Answers a parked poll with `entries` (a JSON array, as history would).
    fn answer_fetched(&mut self, token: Token, entries: &[Entry], then: Then) {
        let mut body = Vec::from(&b"["[..]);
        for entry in entries {
            if body.len() > 1 {
                body.push(b',');
            }
            body.extend_from_slice(&entry.json);
        }
        body.push(b']');
        let stats = match then {
            Then::LongPoll => &mut self.stats.long_poll,
            _ => &mut self.stats.poll,
        };
        stats.requests += 1;
        stats.events_delivered += entries.len() as u64;
        let headers: Vec<(String, String)> = self
            .poll_headers()
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        self.answer(token, false, &|framing, out| {
            let fields: Vec<(&str, &str)> = headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str()))
                .collect();
            write_answer(out, 200, &fields, &body, framing)
        });
    }
}
