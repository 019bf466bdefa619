//! Every topic of a server: names, histories and the one id counter.
//!
//! This is the part of the feeds that several loops share (behind the hub's
//! lock, see [`crate::feeds::hub`]); who follows what is each loop's own
//! business ([`crate::feeds::members`]).

use std::collections::HashMap;

use crate::feeds::topic::{Entry, HistoryLimits, Payload, PublishError, Topic};
use crate::feeds::topic::{DEFAULT_EVENT, RESYNC_EVENT};
use crate::feeds::{is_topic_name, TopicError};
use crate::ids::TopicId;
use crate::storage::{Store, StoredEvent};

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
    /// Set when the cursor could not be served exactly: send `notice` first.
    pub resync: Option<Resync>,
    /// The resync notice, when there is one ([`Topics::resync_entry`]).
    pub notice: Option<Entry>,
    /// Where the events start: the cursor, or (after a resync) the position
    /// the notice carries as its id.
    pub from: u64,
    /// The events after `from`, oldest first, across the followed topics.
    pub entries: Vec<Entry>,
}

struct Slot {
    generation: u32,
    topic: Option<Topic>,
}

/// Why an event read back from the store was not put into history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdoptError {
    /// Its id is not above the newest one: ids only increase.
    OutOfOrder,
    /// Its topic cannot exist here (a bad name, or `max_topics` reached).
    Topic(TopicError),
    /// It cannot be encoded here (not UTF-8 where text is due, bad JSON, or
    /// larger than this server's `max_event_bytes`).
    Encoding(PublishError),
}

/// Where a cursor stands against what the history can serve, when ids are
/// shared with other nodes (see [`Topics::standing`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// History serves it, exactly or with a resync that no store could avoid.
    Served,
    /// Newer than the newest event here: another node has seen more.
    Ahead,
    /// Older than what history vouches for: the store may still have it.
    Older,
}

/// What [`Topics::restore`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// Events put back into history.
    pub events: u64,
    /// Events left out (see [`AdoptError`]).
    pub skipped: u64,
}

/// Every topic, by name and by id, the id counter, and the store behind
/// the history (see [`crate::storage`]).
pub struct Topics {
    limits: HistoryLimits,
    max_topics: usize,
    slots: Vec<Slot>,
    free: Vec<u32>,
    by_name: HashMap<Box<str>, TopicId>,
    /// The first id of this run: a cursor below `first_id - 1` is from before.
    first_id: u64,
    next_id: u64,
    store: Store,
}

impl Topics {
    /// No topics yet, history in memory only; the first event will have id
    /// `first_id` (at least 1).
    pub fn new(limits: HistoryLimits, max_topics: usize, first_id: u64) -> Topics {
        Topics::with_store(limits, max_topics, first_id, Store::Memory)
    }

    /// No topics yet, history behind `store`; the first event will have id
    /// `first_id` (at least 1) unless [`Topics::restore`] finds later ones.
    pub fn with_store(
        limits: HistoryLimits,
        max_topics: usize,
        first_id: u64,
        store: Store,
    ) -> Topics {
        let first_id = first_id.max(1);
        Topics {
            limits,
            max_topics,
            slots: Vec::new(),
            free: Vec::new(),
            by_name: HashMap::new(),
            first_id,
            next_id: first_id,
            store,
        }
    }

    /// The store behind the history.
    pub fn store(&mut self) -> &mut Store {
        &mut self.store
    }

    /// The store's name in the stats (`memory`, `file`, `redis`).
    pub fn store_name(&self) -> &'static str {
        self.store.name()
    }

    /// Whether a publish is answered later, once the store gives the id.
    pub fn ids_from_elsewhere(&self) -> bool {
        self.store.ids_from_elsewhere()
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
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                let index = u32::try_from(self.slots.len()).map_err(|_| TopicError::TooMany)?;
                self.slots.push(Slot {
                    generation: 0,
                    topic: None,
                });
                index
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.topic = Some(Topic::new(name));
        let id = TopicId {
            index,
            generation: slot.generation,
        };
        self.by_name.insert(name.into(), id);
        Ok(id)
    }

    /// The topics of a comma-separated list (`topics=a,b`): each must exist,
    /// or with `create`, be a name that can be created. An empty element
    /// (`a,,b`, a trailing comma) makes the list malformed (`BadName`); a
    /// name twice counts once.
    pub fn list(&mut self, list: &str, create: bool) -> Result<Vec<TopicId>, TopicError> {
        let mut topics = Vec::new();
        for name in list.split(',') {
            let topic = match self.find(name) {
                Some(topic) => topic,
                None if !is_topic_name(name) => return Err(TopicError::BadName),
                None if create => self.topic(name)?,
                None => return Err(TopicError::Unknown),
            };
            if !topics.contains(&topic) {
                topics.push(topic);
            }
        }
        Ok(topics)
    }

    /// The topic of that name, if it exists (a hash lookup).
    pub fn find(&self, name: &str) -> Option<TopicId> {
        self.by_name.get(name).copied()
    }

    /// A topic's history, if the topic exists.
    pub fn get(&self, id: TopicId) -> Option<&Topic> {
        slot_topic(&self.slots, id)
    }

    fn get_mut(&mut self, id: TopicId) -> Option<&mut Topic> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.topic.as_mut()
    }

    /// The id of the newest event of any topic (the one before the first
    /// when nothing was published yet).
    pub fn latest_id(&self) -> u64 {
        self.next_id - 1
    }

    /// The names of every topic, in no particular order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(|name| &**name)
    }

    /// How many topics exist.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// True when no topic exists.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Publishes an event: gives it the next id, encodes it, hands it to the
    /// store (the file log appends it; a failure refuses the publish with
    /// [`PublishError::Unavailable`]) and keeps it in the topic's history. On
    /// error nothing changes (no id is used up). A store that gives ids
    /// itself (Redis) refuses with [`PublishError::AnswersLater`]: its events
    /// come in through [`Topics::adopt`].
    pub fn publish(
        &mut self,
        topic: TopicId,
        event: Option<&str>,
        payload: Payload,
    ) -> Result<Entry, PublishError> {
        if self.store.ids_from_elsewhere() {
            return Err(PublishError::AnswersLater);
        }
        let id = self.next_id;
        let event = event.unwrap_or(DEFAULT_EVENT);
        let entry = self.check(topic, event, payload, id)?;
        // Fields apart: the store is written while the topic's name is read.
        let Topics { slots, store, .. } = self;
        let name = slot_topic(slots, topic)
            .map(Topic::name)
            .unwrap_or_default();
        let (kind, data) = payload.stored();
        let stored = StoredEvent {
            id,
            topic: name,
            event,
            kind,
            data,
        };
        // Kept durably before anyone hears of it: a publish answered is on disk.
        store
            .append(&stored)
            .map_err(|_| PublishError::Unavailable)?;
        let limits = self.limits;
        if let Some(kept) = self.get_mut(topic) {
            kept.keep(&entry, &limits);
        }
        self.next_id = id + 1;
        Ok(entry)
    }

    /// The event as it would be published on `topic` with id `id` (encoded
    /// for every transport), or why it cannot be: how a publish is refused
    /// at once, before the store hears of it.
    pub fn check(
        &self,
        topic: TopicId,
        event: &str,
        payload: Payload,
        id: u64,
    ) -> Result<Entry, PublishError> {
        let kept = self.get(topic).ok_or(PublishError::UnknownTopic)?;
        Entry::encode(
            id,
            topic,
            kept.name(),
            event,
            payload,
            self.limits.max_event_bytes,
        )
    }

    /// Puts an event the store gave its id into history (read back from a
    /// file log, or from the Redis stream), creating its topic by name if
    /// need be. Its id must be above every id so far.
    pub fn adopt(&mut self, stored: &StoredEvent<'_>) -> Result<Entry, AdoptError> {
        if stored.id < self.next_id {
            return Err(AdoptError::OutOfOrder);
        }
        let payload = Payload::from_stored(stored.kind, stored.data)
            .ok_or(AdoptError::Encoding(PublishError::BadJson))?;
        let topic = self.topic(stored.topic).map_err(AdoptError::Topic)?;
        let entry = self
            .check(topic, stored.event, payload, stored.id)
            .map_err(AdoptError::Encoding)?;
        let limits = self.limits;
        if let Some(kept) = self.get_mut(topic) {
            kept.keep(&entry, &limits);
        }
        self.next_id = stored.id + 1;
        Ok(entry)
    }

    /// Fills a new history with what the store read back at start-up (the
    /// file log's records, oldest first). Cursors from the first restored
    /// event on are served as if they were of this run; ids continue after
    /// `last_id` (the log's last, which retention or a skipped record may
    /// have left out of `events`), or from the `first_id` given to
    /// [`Topics::with_store`] if that is later — the wall clock in µs.
    pub fn restore<'a>(
        &mut self,
        events: impl IntoIterator<Item = StoredEvent<'a>>,
        last_id: Option<u64>,
    ) -> Restored {
        let seed = self.next_id;
        // The log's ids come before this run's, whatever they are.
        self.next_id = 1;
        let mut restored = Restored::default();
        let mut first = None;
        for event in events {
            match self.adopt(&event) {
                Ok(entry) => {
                    first.get_or_insert(entry.id);
                    restored.events += 1;
                }
                Err(_) => restored.skipped += 1,
            }
        }
        let after_log = last_id.map_or(0, |last| last.saturating_add(1));
        self.next_id = seed.max(after_log).max(self.next_id);
        self.first_id = first.unwrap_or(self.next_id);
        restored
    }

    /// Makes `latest` the newest id, when history is still empty: a node
    /// that reads a shared stream starts where the stream stands, so that
    /// its first event follows on from it exactly. False (and nothing
    /// changes) once an event was kept.
    pub fn start_after(&mut self, latest: u64) -> bool {
        if self.next_id != self.first_id {
            return false;
        }
        self.first_id = latest.saturating_add(1).max(1);
        self.next_id = self.first_id;
        true
    }

    /// Where `after` stands on `topics` (see [`Standing`]): only a store that
    /// shares ids with other nodes can serve more than history does.
    pub fn standing(&self, topics: &[TopicId], after: u64) -> Standing {
        if after == 0 || !self.store.ids_are_shared() {
            return Standing::Served;
        }
        if after > self.latest_id() {
            return Standing::Ahead;
        }
        if after < self.served_from(topics) {
            return Standing::Older;
        }
        Standing::Served
    }

    /// The oldest position history serves exactly on `topics`: the newest id
    /// any of them let go of, or the one before the first event it has.
    pub fn served_from(&self, topics: &[TopicId]) -> u64 {
        topics
            .iter()
            .filter_map(|id| self.get(*id))
            .map(Topic::evicted_through)
            .max()
            .unwrap_or(0)
            .max(self.first_id - 1)
    }

    /// Removes a topic. Its name may be used again; its id never is. False
    /// if there is no such topic.
    pub fn remove(&mut self, topic: TopicId) -> bool {
        let Some(slot) = self.slots.get_mut(topic.index as usize) else {
            return false;
        };
        if slot.generation != topic.generation {
            return false;
        }
        let Some(removed) = slot.topic.take() else {
            return false;
        };
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(topic.index);
        self.by_name.remove(removed.name());
        true
    }

    /// What a cursor gets on `topics` (see [`crate::feeds`]).
    pub fn replay(&self, topics: &[TopicId], after: u64) -> Replay {
        let kept: Vec<&Topic> = topics.iter().filter_map(|id| self.get(*id)).collect();
        let evicted = kept
            .iter()
            .map(|topic| topic.evicted_through())
            .max()
            .unwrap_or(0);
        let before_first = self.first_id - 1;
        let resync = if after == 0 {
            None
        } else if after < before_first || after > self.latest_id() {
            Some(Resync::UnknownId)
        } else if evicted > after {
            Some(Resync::FellOutOfHistory)
        } else if after == before_first
            || self.store.ids_are_shared()
            || kept.iter().any(|topic| topic.knows(after))
        {
            // With ids shared by every node (Redis), any position in range
            // is one of the same sequence: see `Store::ids_are_shared`.
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
        let mut heads: Vec<_> = kept
            .iter()
            .map(|topic| topic.after(from).peekable())
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
            notice: resync.map(|why| self.resync_entry(why, from)),
            from,
            entries,
        }
    }

    /// The resync notice of a replay: type `resync`, id `from` (a position
    /// that can be served, so the client's cursor is repaired by it), data
    /// `{"reason":…,"latest":…}`, topic `""` (it concerns the whole
    /// subscription).
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
        if let Some(notice) = &replay.notice {
            body.extend_from_slice(&notice.json);
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

/// The topic in `id`'s slot, if it is still that generation's.
fn slot_topic(slots: &[Slot], id: TopicId) -> Option<&Topic> {
    let slot = slots.get(id.index as usize)?;
    if slot.generation != id.generation {
        return None;
    }
    slot.topic.as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: u64 = 1_000;

    fn topics() -> Topics {
        Topics::new(
            HistoryLimits {
                max_events: 3,
                ..HistoryLimits::default()
            },
            16,
            SEED,
        )
    }

    fn publish(topics: &mut Topics, topic: TopicId, data: &str) -> u64 {
        topics.publish(topic, None, Payload::Text(data)).unwrap().id
    }

    fn ids(replay: &Replay) -> Vec<u64> {
        replay.entries.iter().map(|entry| entry.id).collect()
    }

    #[test]
    fn topic_lists_are_checked_element_by_element() {
        let mut topics = topics();
        let a = topics.topic("a").unwrap();
        assert_eq!(topics.list("a", false), Ok(vec![a]));
        assert_eq!(topics.list("a,b", false), Err(TopicError::Unknown));
        assert_eq!(topics.list("a,,b", true), Err(TopicError::BadName));
        assert_eq!(topics.list("a,", true), Err(TopicError::BadName));
        let both = topics.list("a,b,a", true).unwrap();
        assert_eq!(both.len(), 2, "b created, a counted once");
        assert_eq!(topics.find("b"), Some(both[1]));
    }

    #[test]
    fn one_id_space_across_topics() {
        let mut topics = topics();
        let (a, b) = (topics.topic("a").unwrap(), topics.topic("b").unwrap());
        assert_eq!(topics.topic("a"), Ok(a), "created once");
        assert_eq!(publish(&mut topics, a, "1"), SEED);
        assert_eq!(publish(&mut topics, b, "2"), SEED + 1);
        assert_eq!(publish(&mut topics, a, "3"), SEED + 2);
        assert_eq!(topics.latest_id(), SEED + 2);
    }

    #[test]
    fn topic_names_are_checked_and_bounded_in_number() {
        let mut topics = Topics::new(HistoryLimits::default(), 2, SEED);
        for bad in ["", "a,b", "a b", "é", &"x".repeat(65), "a/b"] {
            assert_eq!(topics.topic(bad), Err(TopicError::BadName), "{bad:?}");
        }
        assert!(topics.topic("user:42").is_ok());
        assert!(topics.topic("sensors.temp-1").is_ok());
        assert_eq!(topics.topic("third"), Err(TopicError::TooMany));
    }

    #[test]
    fn a_multi_topic_cursor_resumes_with_no_loss_and_no_duplicate() {
        let mut topics = topics();
        let (a, b) = (topics.topic("a").unwrap(), topics.topic("b").unwrap());
        let a1 = publish(&mut topics, a, "a1");
        let b1 = publish(&mut topics, b, "b1");
        let a2 = publish(&mut topics, a, "a2");
        let b2 = publish(&mut topics, b, "b2");
        let replay = topics.replay(&[a, b], b1);
        assert_eq!(replay.resync, None);
        assert_eq!(ids(&replay), [a2, b2], "merged in id order");
        assert_eq!(ids(&topics.replay(&[b, a], 0)), [a1, b1, a2, b2]);
    }

    #[test]
    fn a_cursor_from_another_topic_or_server_resyncs() {
        let mut topics = topics();
        let (a, b) = (topics.topic("a").unwrap(), topics.topic("b").unwrap());
        let a1 = publish(&mut topics, a, "a1");
        let b1 = publish(&mut topics, b, "b1");
        assert_eq!(topics.replay(&[b], a1).resync, Some(Resync::UnknownId));
        assert_eq!(topics.replay(&[a], a1).resync, None);
        // Another run's or server's ids: below this run, or from the future.
        assert_eq!(topics.replay(&[b], 5).resync, Some(Resync::UnknownId));
        assert_eq!(
            topics.replay(&[b], b1 + 100).resync,
            Some(Resync::UnknownId)
        );
        // The position before this run's first event is always exact.
        let before = topics.replay(&[b], SEED - 1);
        assert_eq!((before.resync, ids(&before)), (None, vec![b1]));
    }

    #[test]
    fn a_cursor_that_fell_out_of_history_resyncs_to_a_position_that_can_be_served() {
        let mut topics = topics();
        let a = topics.topic("a").unwrap();
        let first = publish(&mut topics, a, "0");
        for i in 1..5 {
            publish(&mut topics, a, &i.to_string());
        }
        let replay = topics.replay(&[a], first);
        assert_eq!(replay.resync, Some(Resync::FellOutOfHistory));
        assert_eq!(replay.from, SEED + 1, "the newest id let go of");
        assert_eq!(ids(&replay), [SEED + 2, SEED + 3, SEED + 4]);
        // The notice's id is a cursor that resumes exactly.
        assert_eq!(topics.replay(&[a], replay.from).resync, None);
        let notice = replay.notice.expect("a notice with the resync");
        assert!(String::from_utf8_lossy(&notice.sse)
            .starts_with("id: 1001\nevent: resync\ndata: {\"reason\":\"fell out of history\""));
    }

    #[test]
    fn a_removed_topic_is_gone_and_its_id_is_never_reused() {
        let mut topics = topics();
        let a = topics.topic("a").unwrap();
        assert!(topics.remove(a));
        assert!(!topics.remove(a));
        assert!(topics.get(a).is_none());
        assert_eq!(
            topics
                .publish(a, None, Payload::Text("x"))
                .map(|entry| entry.id),
            Err(PublishError::UnknownTopic)
        );
        let again = topics.topic("a").unwrap();
        assert_ne!(again, a, "a new generation");
    }

    // ---- The store seam ----

    fn stored<'a>(id: u64, topic: &'a str, data: &'a str) -> StoredEvent<'a> {
        StoredEvent {
            id,
            topic,
            event: "message",
            kind: crate::storage::DataKind::Text,
            data: data.as_bytes(),
        }
    }

    #[test]
    fn a_restored_history_serves_old_cursors_and_ids_continue_after_the_last() {
        let mut topics = topics();
        let restored = topics.restore(
            [
                stored(5, "a", "five"),
                stored(7, "b", "seven"),
                stored(9, "a", "nine"),
            ],
            Some(12),
        );
        assert_eq!(
            restored,
            Restored {
                events: 3,
                skipped: 0
            }
        );
        let a = topics.find("a").expect("re-created by name");
        assert_eq!(ids(&topics.replay(&[a], 0)), [5, 9]);
        let exact = topics.replay(&[a], 5);
        assert_eq!((exact.resync, ids(&exact)), (None, vec![9]));
        // The seed (the wall clock) is later than the log: it wins.
        assert_eq!(publish(&mut topics, a, "new"), SEED);
        let mut late = Topics::new(HistoryLimits::default(), 16, 3);
        late.restore([stored(5, "a", "five")], Some(12));
        let a = late.find("a").unwrap();
        assert_eq!(publish(&mut late, a, "x"), 13, "after the log's last id");
    }

    #[test]
    fn a_record_that_cannot_be_an_event_is_left_out_of_a_restore() {
        let mut topics = Topics::new(HistoryLimits::default(), 1, SEED);
        let bad_json = StoredEvent {
            kind: crate::storage::DataKind::Json,
            ..stored(2, "a", "{")
        };
        let restored = topics.restore(
            [
                stored(1, "a", "ok"),
                bad_json,
                stored(3, "b", "too many topics"),
                stored(3, "a", "not after 3"),
            ],
            Some(3),
        );
        assert_eq!(
            restored,
            Restored {
                events: 2,
                skipped: 2
            }
        );
        assert_eq!(
            topics.adopt(&stored(3, "a", "again")).map(|entry| entry.id),
            Err(AdoptError::OutOfOrder)
        );
    }

    #[test]
    fn a_file_store_keeps_each_publish_before_history_does() {
        use crate::storage::{FileStorage, FileStore};
        let dir = std::env::temp_dir().join(format!("pushloop-topics-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let storage = FileStorage::new(&dir);
        let (store, recovered) = FileStore::open(&storage).expect("open");
        assert!(recovered.records.is_empty());
        let mut topics = Topics::with_store(
            HistoryLimits::default(),
            4,
            SEED,
            Store::File(Box::new(store)),
        );
        let a = topics.topic("a").unwrap();
        let first = topics
            .publish(a, Some("e"), Payload::Json("[1]"))
            .expect("appended")
            .id;
        assert_eq!(
            topics.publish(a, None, Payload::Json("{")).map(|e| e.id),
            Err(PublishError::BadJson),
            "refused before the log hears of it"
        );
        drop(topics);
        let (_, recovered) = FileStore::open(&storage).expect("reopen");
        let ids: Vec<u64> = recovered.records.iter().map(|record| record.id).collect();
        assert_eq!(ids, [first]);
        assert_eq!(recovered.records[0].kind, b'j');
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(feature = "redis")]
    #[test]
    fn with_shared_ids_events_come_only_from_the_store_and_any_cursor_in_range_is_exact() {
        let mut topics = Topics::with_store(HistoryLimits::default(), 4, SEED, Store::Redis);
        assert!(
            topics.start_after(99),
            "empty: starts where the stream stands"
        );
        let a = topics.topic("a").unwrap();
        assert_eq!(
            topics.publish(a, None, Payload::Text("x")).map(|e| e.id),
            Err(PublishError::AnswersLater)
        );
        topics.adopt(&stored(120, "a", "one")).unwrap();
        topics.adopt(&stored(150, "b", "other topic")).unwrap();
        topics.adopt(&stored(180, "a", "two")).unwrap();
        assert!(!topics.start_after(500), "history is no longer empty");
        // 150 is an id of another topic, 160 of no event: both are positions
        // in the one sequence every node shares.
        for cursor in [150, 160] {
            let replay = topics.replay(&[a], cursor);
            assert_eq!((replay.resync, ids(&replay)), (None, vec![180]));
        }
        assert_eq!(topics.standing(&[a], 99), Standing::Served);
        assert_eq!(topics.standing(&[a], 98), Standing::Older);
        assert_eq!(topics.standing(&[a], 181), Standing::Ahead);
        assert_eq!(topics.standing(&[a], 0), Standing::Served);
        assert_eq!(topics.served_from(&[a]), 99);
    }

    #[test]
    fn alone_a_cursor_always_stands_served() {
        let mut topics = topics();
        let a = topics.topic("a").unwrap();
        publish(&mut topics, a, "x");
        assert_eq!(topics.standing(&[a], 5), Standing::Served);
        assert_eq!(topics.standing(&[a], SEED + 100), Standing::Served);
    }

    #[test]
    fn polls_answer_a_json_array_with_the_notice_first() {
        let mut topics = topics();
        let a = topics.topic("a").unwrap();
        assert_eq!(topics.poll_json(&[a], 0), (b"[]".to_vec(), 0));
        publish(&mut topics, a, "x");
        let (body, events) = topics.poll_json(&[a], 3);
        let body = String::from_utf8(body).unwrap();
        assert!(
            body.starts_with(r#"[{"id":999,"topic":"","event":"resync","#),
            "{body}"
        );
        assert!(body.ends_with(r#"{"id":1000,"topic":"a","event":"message","data":"x"}]"#));
        assert_eq!(events, 1);
        assert!(topics.has_news(&[a], 0));
        assert!(!topics.has_news(&[a], SEED));
    }
}
