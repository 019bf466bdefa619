//! Feeds: topics (rooms), one id space, who follows what, and replay.
//!
//! A topic is a named, bounded history of events ([`topic::Topic`]). Every
//! event of every topic gets its id from one counter, so ids increase across
//! the whole server and one cursor (`?after=` or `Last-Event-ID`) describes a
//! position in all of them: a connection following several topics resumes
//! with one number, with no loss and no duplicate. Ids start from the wall
//! clock at start-up (microseconds since the Unix epoch), so a cursor from
//! an earlier run is below this run's ids and is recognised; ids stay below
//! 2^53, so JavaScript reads them exactly.
//!
//! A connection of any transport *follows* any number of topics (event
//! streams and WebSockets get each new event) or *waits* on them (a held
//! long-poll, answered by the next event). Both are kept in subscription
//! order, so deliveries and traces repeat exactly.
//!
//! # Cursors and `resync`
//!
//! A cursor is served exactly when it is `0` (everything kept), the position
//! just before this run's first event, or the id of an event of one of the
//! followed topics that they can still vouch for — and no followed topic has
//! let go of an event after it. Anything else — a cursor from an earlier run
//! or another server, from a topic not followed, or one that fell out of
//! history — gets a `resync` event first: its id is a position that *can*
//! be served (the newest id let go of, or the one before this run's first),
//! and every kept event after that position follows. Never a silent gap.
//!
//! This layer owns no socket and reads no clock: the server fans the bytes out.

pub mod topic;

use std::collections::{BTreeMap, HashMap};

use mio::Token;

use crate::ids::TopicId;
pub use topic::{Entry, HistoryLimits, Payload, PublishError, Topic, DEFAULT_EVENT, RESYNC_EVENT};

/// The longest topic name, in bytes: names travel in URLs and in every JSON
/// copy of every event.
pub const MAX_TOPIC_NAME_BYTES: usize = 64;

/// Is `name` a topic name: 1 to 64 bytes of `A-Z a-z 0-9 - _ . : ~ @`? These
/// need no percent-encoding in a URL (RFC 3986 §2.3 unreserved, plus `:`
/// and `@`, which are allowed in a query, §3.4) and no escaping in JSON, and a
/// comma can never be part of one, so `topics=a,b` is unambiguous.
pub fn is_topic_name(name: &str) -> bool {
    (1..=MAX_TOPIC_NAME_BYTES).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:~@".contains(&b))
}

/// Why a topic could not be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopicError {
    /// The name breaks [`is_topic_name`].
    BadName,
    /// `max_topics` topics exist already.
    TooMany,
}

impl std::fmt::Display for TopicError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TopicError::BadName => "a topic name is 1-64 of A-Z a-z 0-9 - _ . : ~ @",
            TopicError::TooMany => "too many topics",
        })
    }
}

impl std::error::Error for TopicError {}

/// Why a cursor could not be served exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resync {
    /// Events after the cursor were let go of (bounded history).
    FellOutOfHistory,
    /// The cursor is not an id of this run and of the followed topics (an
    /// earlier run, another server, another topic, or not an id at all).
    UnknownId,
}

impl Resync {
    /// The reason, as the notice's data says it.
    pub fn reason(self) -> &'static str {
        match self {
            Resync::FellOutOfHistory => "fell out of history",
            Resync::UnknownId => "unknown id",
        }
    }
}

/// What a cursor gets: maybe a resync notice, then kept events in id order.
#[derive(Debug)]
pub struct Replay {
    /// Set when the cursor could not be served exactly: send
    /// [`Feeds::resync_entry`] first.
    pub resync: Option<Resync>,
    /// Where the events start: the cursor, or (after a resync) the position
    /// the notice carries as its id.
    pub from: u64,
    /// The events after `from`, oldest first, across the followed topics.
    pub entries: Vec<Entry>,
}

/// Which of a topic's two lists a membership is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum List {
    /// Gets every new event (event streams, WebSockets).
    Followers,
    /// Gets the next event once (held long-polls).
    Waiters,
}

struct TopicState {
    topic: Topic,
    /// Subscription sequence number → connection, so iteration is in
    /// subscription order and removal is O(log n).
    followers: BTreeMap<u64, Token>,
    waiters: BTreeMap<u64, Token>,
}

impl TopicState {
    fn list(&mut self, list: List) -> &mut BTreeMap<u64, Token> {
        match list {
            List::Followers => &mut self.followers,
            List::Waiters => &mut self.waiters,
        }
    }
}

struct Slot {
    generation: u32,
    state: Option<TopicState>,
}

/// Every topic of a server and every connection's place in them.
pub struct Feeds {
    limits: HistoryLimits,
    max_topics: usize,
    slots: Vec<Slot>,
    free: Vec<u32>,
    by_name: HashMap<Box<str>, TopicId>,
    /// The first id of this run: a cursor below `first_id - 1` is from before.
    first_id: u64,
    next_id: u64,
    next_seq: u64,
    /// For each connection, the topics it follows and waits on, with the
    /// sequence number of each membership (to find it in the topic's list).
    memberships: HashMap<Token, Vec<(List, TopicId, u64)>>,
}

impl Feeds {
    /// No topics yet; the first event will have id `first_id` (at least 1).
    pub fn new(limits: HistoryLimits, max_topics: usize, first_id: u64) -> Feeds {
        let first_id = first_id.max(1);
        Feeds {
            limits,
            max_topics,
            slots: Vec::new(),
            free: Vec::new(),
            by_name: HashMap::new(),
            first_id,
            next_id: first_id,
            next_seq: 0,
            memberships: HashMap::new(),
        }
    }

    /// The topic of that name, created on first use.
    pub fn topic(&mut self, name: &str) -> Result<TopicId, TopicError> {
        if let Some(&id) = self.by_name.get(name) {
            return Ok(id);
        }
        if !is_topic_name(name) {
            return Err(TopicError::BadName);
        }
        if self.by_name.len() >= self.max_topics {
            return Err(TopicError::TooMany);
        }
        let state = TopicState {
            topic: Topic::new(name),
            followers: BTreeMap::new(),
            waiters: BTreeMap::new(),
        };
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    state: None,
                });
                u32::try_from(self.slots.len() - 1).map_err(|_| TopicError::TooMany)?
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.state = Some(state);
        let id = TopicId {
            index,
            generation: slot.generation,
        };
        self.by_name.insert(name.into(), id);
        Ok(id)
    }

    /// The topic of that name, if it exists (a hash lookup).
    pub fn find(&self, name: &str) -> Option<TopicId> {
        self.by_name.get(name).copied()
    }

    fn state(&self, id: TopicId) -> Option<&TopicState> {
        let slot = self.slots.get(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.state.as_ref()
    }

    fn state_mut(&mut self, id: TopicId) -> Option<&mut TopicState> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.state.as_mut()
    }

    /// A topic's history, if the topic exists.
    pub fn get(&self, id: TopicId) -> Option<&Topic> {
        self.state(id).map(|state| &state.topic)
    }

    /// The id of the newest event of any topic (the one before the first
    /// when nothing was published yet).
    pub fn latest_id(&self) -> u64 {
        self.next_id - 1
    }

    /// How many topics exist.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// True when no topic exists.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Publishes an event: gives it the next id, encodes it, keeps it in
    /// the topic's history and returns it for fan-out. On error nothing
    /// changes (no id is used up).
    pub fn publish(
        &mut self,
        topic: TopicId,
        event: Option<&str>,
        payload: Payload,
    ) -> Result<Entry, PublishError> {
        let id = self.next_id;
        let limits = self.limits;
        let state = self.state_mut(topic).ok_or(PublishError::UnknownTopic)?;
        let entry = Entry::encode(
            id,
            topic,
            state.topic.name(),
            event.unwrap_or(DEFAULT_EVENT),
            payload,
            limits.max_event_bytes,
        )?;
        state.topic.keep(&entry, &limits);
        self.next_id += 1;
        Ok(entry)
    }

    /// Removes a topic: returns who followed or waited on it (they no longer
    /// do). Its name may be used again; its id never is.
    pub fn remove(&mut self, topic: TopicId) -> Option<(Vec<Token>, Vec<Token>)> {
        let slot = self.slots.get_mut(topic.index as usize)?;
        if slot.generation != topic.generation {
            return None;
        }
        let state = slot.state.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(topic.index);
        self.by_name.remove(state.topic.name());
        let followers: Vec<Token> = state.followers.values().copied().collect();
        let waiters: Vec<Token> = state.waiters.values().copied().collect();
        for conn in followers.iter().chain(&waiters) {
            if let Some(list) = self.memberships.get_mut(conn) {
                list.retain(|(_, id, _)| *id != topic);
                if list.is_empty() {
                    self.memberships.remove(conn);
                }
            }
        }
        Some((followers, waiters))
    }

    // ---- Who follows what ------------------------------------------------------

    fn join(&mut self, list: List, conn: Token, topic: TopicId) -> bool {
        let seq = self.next_seq;
        if self.state(topic).is_none() {
            return false;
        }
        let memberships = self.memberships.entry(conn).or_default();
        if memberships
            .iter()
            .any(|(l, id, _)| *l == list && *id == topic)
        {
            return true;
        }
        memberships.push((list, topic, seq));
        self.next_seq += 1;
        if let Some(state) = self.state_mut(topic) {
            state.list(list).insert(seq, conn);
        }
        true
    }

    fn leave(&mut self, list: List, conn: Token, topic: Option<TopicId>) -> Vec<TopicId> {
        let Some(memberships) = self.memberships.get_mut(&conn) else {
            return Vec::new();
        };
        let mut left = Vec::new();
        memberships.retain(|&(l, id, seq)| {
            let leaving = l == list && topic.is_none_or(|topic| topic == id);
            if leaving {
                left.push((id, seq));
            }
            !leaving
        });
        if memberships.is_empty() {
            self.memberships.remove(&conn);
        }
        left.into_iter()
            .map(|(id, seq)| {
                if let Some(state) = self.state_mut(id) {
                    state.list(list).remove(&seq);
                }
                id
            })
            .collect()
    }

    /// `conn` follows `topic` from now on (again is a no-op). False if the
    /// topic does not exist.
    pub fn follow(&mut self, conn: Token, topic: TopicId) -> bool {
        self.join(List::Followers, conn, topic)
    }

    /// `conn` no longer follows `topic`. False if it did not.
    pub fn unfollow(&mut self, conn: Token, topic: TopicId) -> bool {
        !self.leave(List::Followers, conn, Some(topic)).is_empty()
    }

    /// The topics `conn` follows, in the order it followed them.
    pub fn followed(&self, conn: Token) -> Vec<TopicId> {
        self.memberships.get(&conn).map_or_else(Vec::new, |list| {
            list.iter()
                .filter(|(l, _, _)| *l == List::Followers)
                .map(|(_, id, _)| *id)
                .collect()
        })
    }

    /// Appends the followers of `topic` to `out`, in subscription order.
    pub fn followers(&self, topic: TopicId, out: &mut Vec<Token>) {
        if let Some(state) = self.state(topic) {
            out.extend(state.followers.values().copied());
        }
    }

    /// `conn` waits for the next event of any of `topics` (a held long-poll).
    pub fn wait(&mut self, conn: Token, topics: &[TopicId]) {
        for &topic in topics {
            self.join(List::Waiters, conn, topic);
        }
    }

    /// Every connection waiting on `topic`, in arrival order; none of them
    /// waits on anything any more.
    pub fn take_waiters(&mut self, topic: TopicId) -> Vec<Token> {
        let waiters: Vec<Token> = self
            .state(topic)
            .map_or_else(Vec::new, |state| state.waiters.values().copied().collect());
        for &conn in &waiters {
            self.leave(List::Waiters, conn, None);
        }
        waiters
    }

    /// `conn` stops waiting (answered by a timeout, or gone).
    pub fn stop_waiting(&mut self, conn: Token) {
        self.leave(List::Waiters, conn, None);
    }

    /// `conn` is gone: it follows and waits on nothing.
    pub fn forget(&mut self, conn: Token) {
        self.leave(List::Followers, conn, None);
        self.leave(List::Waiters, conn, None);
    }

    // ---- Replay ----------------------------------------------------------------

    /// What a cursor gets on `topics` (see the module doc).
    pub fn replay(&self, topics: &[TopicId], after: u64) -> Replay {
        let states: Vec<&TopicState> = topics.iter().filter_map(|id| self.state(*id)).collect();
        let evicted = states
            .iter()
            .map(|state| state.topic.evicted_through())
            .max()
            .unwrap_or(0);
        let before_first = self.first_id - 1;
        let resync = if after == 0 {
            None
        } else if after < before_first || after > self.latest_id() {
            Some(Resync::UnknownId)
        } else if evicted > after {
            Some(Resync::FellOutOfHistory)
        } else if after == before_first || states.iter().any(|state| state.topic.knows(after)) {
            None
        } else {
            Some(Resync::UnknownId)
        };
        let from = match resync {
            Some(_) => evicted.max(before_first),
            None => after,
        };
        // Merge the topics' kept events after `from` by id (few topics per
        // connection: a scan for the smallest head is enough).
        let mut heads: Vec<_> = states
            .iter()
            .map(|state| state.topic.after(from).peekable())
            .collect();
        let mut entries = Vec::new();
        loop {
            let next = heads
                .iter_mut()
                .enumerate()
                .filter_map(|(i, head)| head.peek().map(|entry| (entry.id, i)))
                .min();
            let Some((_, i)) = next else {
                break;
            };
            if let Some(entry) = heads[i].next() {
                entries.push(entry.clone());
            }
        }
        Replay {
            resync,
            from,
            entries,
        }
    }

    /// The resync notice of a replay: type `resync`, id `replay.from` (a
    /// position that can be served, so the client's cursor is repaired by
    /// it), data `{"reason":…,"latest":…}`, topic `""` (it concerns the
    /// whole subscription).
    pub fn resync_entry(&self, why: Resync, from: u64) -> Entry {
        let data = format!(
            "{{\"reason\":\"{}\",\"latest\":{}}}",
            why.reason(),
            self.latest_id()
        );
        let notice = TopicId {
            index: u32::MAX,
            generation: 0,
        };
        // The name is a constant and the data a small JSON object: the
        // encoding cannot fail, and an empty entry would only be a no-op.
        Entry::encode(
            from,
            notice,
            "",
            RESYNC_EVENT,
            Payload::Json(&data),
            usize::MAX,
        )
        .unwrap_or_else(|_| Entry {
            id: from,
            topic: notice,
            sse: Vec::new().into(),
            ws_frame: Vec::new().into(),
            json: b"{}".to_vec().into(),
            #[cfg(feature = "deflate")]
            ws_deflated: Default::default(),
        })
    }

    /// The JSON array a poll after `after` on `topics` answers with (`[]`
    /// when nothing), and how many events it holds.
    pub fn poll_json(&self, topics: &[TopicId], after: u64) -> (Vec<u8>, u64) {
        let replay = self.replay(topics, after);
        let mut body = Vec::from(&b"["[..]);
        if let Some(why) = replay.resync {
            body.extend_from_slice(&self.resync_entry(why, replay.from).json);
        }
        for entry in &replay.entries {
            if body.len() > 1 {
                body.push(b',');
            }
            body.extend_from_slice(&entry.json);
        }
        body.push(b']');
        (body, replay.entries.len() as u64)
    }

    /// Whether a poll after `after` on `topics` has anything to say now (an
    /// event, or a resync): a long-poll is answered at once if so.
    pub fn has_news(&self, topics: &[TopicId], after: u64) -> bool {
        let replay = self.replay(topics, after);
        replay.resync.is_some() || !replay.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: u64 = 1_000;

    fn feeds() -> Feeds {
        Feeds::new(
            HistoryLimits {
                max_events: 3,
                ..HistoryLimits::default()
            },
            16,
            SEED,
        )
    }

    fn publish(feeds: &mut Feeds, topic: TopicId, data: &str) -> u64 {
        feeds.publish(topic, None, Payload::Text(data)).unwrap().id
    }

    fn ids(replay: &Replay) -> Vec<u64> {
        replay.entries.iter().map(|entry| entry.id).collect()
    }

    #[test]
    fn one_id_space_across_topics() {
        let mut feeds = feeds();
        let (a, b) = (feeds.topic("a").unwrap(), feeds.topic("b").unwrap());
        assert_eq!(feeds.topic("a"), Ok(a), "created once");
        assert_eq!(publish(&mut feeds, a, "1"), SEED);
        assert_eq!(publish(&mut feeds, b, "2"), SEED + 1);
        assert_eq!(publish(&mut feeds, a, "3"), SEED + 2);
        assert_eq!(feeds.latest_id(), SEED + 2);
    }

    #[test]
    fn topic_names_are_checked_and_bounded_in_number() {
        let mut feeds = Feeds::new(HistoryLimits::default(), 2, SEED);
        for bad in ["", "a,b", "a b", "é", &"x".repeat(65), "a/b"] {
            assert_eq!(feeds.topic(bad), Err(TopicError::BadName), "{bad:?}");
        }
        assert!(feeds.topic("user:42").is_ok());
        assert!(feeds.topic("sensors.temp-1").is_ok());
        assert_eq!(feeds.topic("third"), Err(TopicError::TooMany));
    }

    #[test]
    fn a_multi_topic_cursor_resumes_with_no_loss_and_no_duplicate() {
        let mut feeds = feeds();
        let (a, b) = (feeds.topic("a").unwrap(), feeds.topic("b").unwrap());
        let a1 = publish(&mut feeds, a, "a1");
        let b1 = publish(&mut feeds, b, "b1");
        let a2 = publish(&mut feeds, a, "a2");
        let b2 = publish(&mut feeds, b, "b2");
        let replay = feeds.replay(&[a, b], b1);
        assert_eq!(replay.resync, None);
        assert_eq!(ids(&replay), [a2, b2], "merged in id order");
        assert_eq!(ids(&feeds.replay(&[b, a], 0)), [a1, b1, a2, b2]);
    }

    #[test]
    fn a_cursor_from_another_topic_or_server_resyncs() {
        let mut feeds = feeds();
        let (a, b) = (feeds.topic("a").unwrap(), feeds.topic("b").unwrap());
        let a1 = publish(&mut feeds, a, "a1");
        let b1 = publish(&mut feeds, b, "b1");
        assert_eq!(feeds.replay(&[b], a1).resync, Some(Resync::UnknownId));
        assert_eq!(feeds.replay(&[a], a1).resync, None);
        // Another run's or server's ids: below this run, or from the future.
        assert_eq!(feeds.replay(&[b], 5).resync, Some(Resync::UnknownId));
        assert_eq!(feeds.replay(&[b], b1 + 100).resync, Some(Resync::UnknownId));
        // The position before this run's first event is always exact.
        let before = feeds.replay(&[b], SEED - 1);
        assert_eq!((before.resync, ids(&before)), (None, vec![b1]));
    }

    #[test]
    fn a_cursor_that_fell_out_of_history_resyncs_to_a_position_that_can_be_served() {
        let mut feeds = feeds();
        let a = feeds.topic("a").unwrap();
        let first = publish(&mut feeds, a, "0");
        for i in 1..5 {
            publish(&mut feeds, a, &i.to_string());
        }
        let replay = feeds.replay(&[a], first);
        assert_eq!(replay.resync, Some(Resync::FellOutOfHistory));
        assert_eq!(replay.from, SEED + 1, "the newest id let go of");
        assert_eq!(ids(&replay), [SEED + 2, SEED + 3, SEED + 4]);
        // The notice's id is a cursor that resumes exactly.
        assert_eq!(feeds.replay(&[a], replay.from).resync, None);
        let notice = feeds.resync_entry(Resync::FellOutOfHistory, replay.from);
        assert!(String::from_utf8_lossy(&notice.sse)
            .starts_with("id: 1001\nevent: resync\ndata: {\"reason\":\"fell out of history\""));
    }

    #[test]
    fn followers_are_kept_in_subscription_order_and_forgotten() {
        let mut feeds = feeds();
        let a = feeds.topic("a").unwrap();
        for token in [5, 1, 9] {
            assert!(feeds.follow(Token(token), a));
        }
        assert!(feeds.follow(Token(1), a), "following again is a no-op");
        let mut out = Vec::new();
        feeds.followers(a, &mut out);
        assert_eq!(out, [Token(5), Token(1), Token(9)]);
        assert!(feeds.unfollow(Token(1), a));
        assert!(!feeds.unfollow(Token(1), a));
        feeds.forget(Token(5));
        out.clear();
        feeds.followers(a, &mut out);
        assert_eq!(out, [Token(9)]);
        assert!(
            !feeds.memberships.contains_key(&Token(5)),
            "nothing left behind"
        );
    }

    #[test]
    fn a_waiter_on_two_topics_is_taken_once() {
        let mut feeds = feeds();
        let (a, b) = (feeds.topic("a").unwrap(), feeds.topic("b").unwrap());
        feeds.wait(Token(1), &[a, b]);
        feeds.wait(Token(2), &[b]);
        assert_eq!(feeds.take_waiters(b), [Token(1), Token(2)]);
        assert_eq!(feeds.take_waiters(a), [], "no longer waiting on a either");
        assert!(feeds.memberships.is_empty());
    }

    #[test]
    fn a_removed_topic_lets_its_members_go_and_its_id_is_never_reused() {
        let mut feeds = feeds();
        let a = feeds.topic("a").unwrap();
        feeds.follow(Token(1), a);
        feeds.wait(Token(2), &[a]);
        assert_eq!(feeds.remove(a), Some((vec![Token(1)], vec![Token(2)])));
        assert_eq!(feeds.remove(a), None);
        assert!(feeds.get(a).is_none());
        assert_eq!(
            feeds
                .publish(a, None, Payload::Text("x"))
                .map(|entry| entry.id),
            Err(PublishError::UnknownTopic)
        );
        let again = feeds.topic("a").unwrap();
        assert_ne!(again, a, "a new generation");
        assert!(feeds.followed(Token(1)).is_empty());
    }

    #[test]
    fn polls_answer_a_json_array_with_the_notice_first() {
        let mut feeds = feeds();
        let a = feeds.topic("a").unwrap();
        assert_eq!(feeds.poll_json(&[a], 0), (b"[]".to_vec(), 0));
        publish(&mut feeds, a, "x");
        let (body, events) = feeds.poll_json(&[a], 3);
        let body = String::from_utf8(body).unwrap();
        assert!(
            body.starts_with(r#"[{"id":999,"topic":"","event":"resync","#),
            "{body}"
        );
        assert!(body.ends_with(r#"{"id":1000,"topic":"a","event":"message","data":"x"}]"#));
        assert_eq!(events, 1);
        assert!(feeds.has_news(&[a], 0));
        assert!(!feeds.has_news(&[a], SEED));
    }
}
