//! Durable topic history (issue 17): the one seam between the feeds and the
//! place their events are kept.
//!
//! The feeds ([`crate::feeds`]) always keep each topic's recent events in
//! memory, encoded once for every transport: that ring is the *cache* every
//! follower, poll and replay reads, whatever the backend. Behind it, a
//! [`Store`] decides what happens to an event before it is fanned out:
//!
//! | backend | a publish is | ids come from | after a restart |
//! |---|---|---|---|
//! | [`Store::Memory`] (default) | kept in the ring | the loop's counter | gone |
//! | [`Store::File`] | appended to a [`file_log`], then kept | the loop's counter, continued after the last id on disk | read back from the log |
//! | `Store::Redis` (feature `redis`) | sent to a Redis stream, kept when it comes back from it | Redis (one id space for every node) | read from the stream on demand |
//!
//! The first two answer a publish at once ([`crate::app::Context::publish`]
//! returns the id). Redis answers later: the engine holds the publisher
//! until Redis has the event (see `engine::store`), and every node — the
//! publishing one included — learns of the event by reading the stream, so
//! the same event has the same id everywhere. The loop, the transports and
//! the replay rules do not change with the backend; only where ids come
//! from does, and with it one replay rule (see [`Store::ids_are_shared`]).
//!
//! The building blocks, each usable alone:
//! - [`file_log`]: an append-only log of events in segment files, with CRCs,
//!   recovery that truncates at the first torn or corrupt record, an fsync
//!   policy driven by the loop's clock, and retention by bytes and by age;
//! - [`crc32`]: the checksum the log stores with every record;
//! - `redis` (feature `redis`): the Redis link as a sans-IO state machine;
//!   its wire protocol is `pushloop_proto::resp`.

pub mod crc32;
pub mod file_log;
#[cfg(feature = "redis")]
pub mod redis;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use file_log::{FileLog, FileLogConfig, Record, Recovered};

/// Which backend keeps the history (part of [`crate::server::Config`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Storage {
    /// The in-memory ring only: nothing survives a restart.
    #[default]
    Memory,
    /// An append-only log in a directory (see [`FileStorage`]).
    File(FileStorage),
    /// Redis Streams, shared by every node (see [`redis::RedisConfig`]).
    #[cfg(feature = "redis")]
    Redis(redis::RedisConfig),
}

/// Where and how the file backend keeps its log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileStorage {
    /// The directory of the segment files (created if missing).
    pub dir: PathBuf,
    /// Fsync policy, segment size, retention (see [`FileLogConfig`]; its
    /// defaults: a sync every second, 8 MiB segments, 64 MiB in all, a day).
    pub log: FileLogConfig,
    /// How often segments older than `log.max_age` are looked for. Default
    /// [`EXPIRY_CHECK_PERIOD`].
    pub expiry_check: Duration,
}

/// How often the file backend looks for expired segments: once a minute. A
/// segment is removed at most this late past `max_age` (a day by default),
/// and the check reads no file: it compares a time kept per segment.
pub const EXPIRY_CHECK_PERIOD: Duration = Duration::from_secs(60);

impl FileStorage {
    /// The log in `dir` with the default policy and retention.
    pub fn new(dir: impl Into<PathBuf>) -> FileStorage {
        FileStorage {
            dir: dir.into(),
            log: FileLogConfig::default(),
            expiry_check: EXPIRY_CHECK_PERIOD,
        }
    }
}

/// What an event's data is, so that it is encoded again exactly as it was
/// published when it is read back from a backend (the feeds' `Payload`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataKind {
    /// UTF-8 text.
    Text,
    /// One JSON value.
    Json,
    /// Bytes.
    Binary,
}

impl DataKind {
    /// The byte a backend stores for this kind: an ASCII letter, so a Redis
    /// entry stays readable in `redis-cli`.
    pub fn tag(self) -> u8 {
        match self {
            DataKind::Text => b't',
            DataKind::Json => b'j',
            DataKind::Binary => b'b',
        }
    }

    /// The kind a stored byte names; `None` for anything else (a record
    /// pushloop did not write).
    pub fn from_tag(tag: u8) -> Option<DataKind> {
        match tag {
            b't' => Some(DataKind::Text),
            b'j' => Some(DataKind::Json),
            b'b' => Some(DataKind::Binary),
            _ => None,
        }
    }
}

/// An event as a backend keeps it, borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredEvent<'a> {
    /// Its id.
    pub id: u64,
    /// The topic's name.
    pub topic: &'a str,
    /// The event name.
    pub event: &'a str,
    /// What `data` is.
    pub kind: DataKind,
    /// The payload.
    pub data: &'a [u8],
}

/// A problem of the store, reported once per change of state: a run of
/// failed appends is one line in the log and one more when it ends, however
/// many publishes it refused (see [`Health::take_change`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    problem: Option<String>,
    changed: bool,
    errors: u64,
}

impl Health {
    /// Something failed: `what` says what. The same problem again is no
    /// change; another one is.
    pub fn failed(&mut self, what: impl fmt::Display) {
        self.errors += 1;
        let what = what.to_string();
        if self.problem.as_deref() != Some(what.as_str()) {
            self.problem = Some(what);
            self.changed = true;
        }
    }

    /// Things work (again).
    pub fn ok(&mut self) {
        if self.problem.take().is_some() {
            self.changed = true;
        }
    }

    /// The problem now, if there is one.
    pub fn problem(&self) -> Option<&str> {
        self.problem.as_deref()
    }

    /// Failures counted since start.
    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// The state, once after each change: `Some(Some(problem))` when
    /// trouble began, `Some(None)` when it ended, `None` when nothing changed.
    pub fn take_change(&mut self) -> Option<Option<String>> {
        std::mem::take(&mut self.changed).then(|| self.problem.clone())
    }
}

/// The backend behind the feeds' history. See the module doc.
#[derive(Debug, Default)]
pub enum Store {
    /// History in memory only.
    #[default]
    Memory,
    /// Each event appended to a log before it is fanned out (boxed: a log
    /// is a few hundred bytes the other backends need not carry).
    File(Box<FileStore>),
    /// Events come from a Redis stream, ids included; the link that
    /// carries them lives in the engine (see `engine::store`).
    #[cfg(feature = "redis")]
    Redis,
}

impl Store {
    /// The backend's name in the stats: `memory`, `file` or `redis`.
    pub fn name(&self) -> &'static str {
        match self {
            Store::Memory => "memory",
            Store::File(_) => "file",
            #[cfg(feature = "redis")]
            Store::Redis => "redis",
        }
    }

    /// Whether ids come from elsewhere (Redis): a publish is then answered
    /// later, and events enter the history only with the id the store gave.
    pub fn ids_from_elsewhere(&self) -> bool {
        match self {
            Store::Memory | Store::File(_) => false,
            #[cfg(feature = "redis")]
            Store::Redis => true,
        }
    }

    /// Whether every node numbers events in one id space (Redis): then any
    /// cursor between the oldest position the cache vouches for and the
    /// newest id is a position in the same sequence, wherever the client
    /// got it, and is served exactly. Alone, a cursor must name an event of
    /// a followed topic, since numbers from another server or run are not
    /// comparable (see `crate::feeds`).
    pub fn ids_are_shared(&self) -> bool {
        self.ids_from_elsewhere()
    }

    /// Keeps `event` before it is fanned out (a no-op in memory). An error
    /// means it was not kept: the publish must be refused.
    pub fn append(&mut self, event: &StoredEvent<'_>) -> io::Result<()> {
        match self {
            Store::File(file) => file.append(event),
            _ => Ok(()),
        }
    }

    /// When [`Store::handle_timeout`] must next be called (an fsync or an
    /// expiry check due), if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Store::File(file) => file.poll_timeout(),
            _ => None,
        }
    }

    /// Does what is due by `now`: an fsync, removing expired segments.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Store::File(file) = self {
            file.handle_timeout(now);
        }
    }

    /// Flushes what was appended to the disk (at shutdown).
    pub fn sync(&mut self) {
        if let Store::File(file) = self {
            file.sync();
        }
    }

    /// The store's health (its problems are reported once per change).
    pub fn health(&mut self) -> Option<&mut Health> {
        match self {
            Store::File(file) => Some(&mut file.health),
            _ => None,
        }
    }
}

/// The file backend: a [`FileLog`] and its timers.
#[derive(Debug)]
pub struct FileStore {
    log: FileLog,
    expiry_check: Duration,
    /// When expired segments are next looked for (`None` without `max_age`).
    next_expiry: Option<Instant>,
    health: Health,
}

impl FileStore {
    /// Opens the log (see [`FileLog::open`]): the store, and what was read
    /// back, to be replayed into the history.
    pub fn open(storage: &FileStorage) -> io::Result<(FileStore, Recovered)> {
        let (log, recovered) = FileLog::open(&storage.dir, storage.log, SystemTime::now())?;
        let next_expiry = storage
            .log
            .max_age
            .map(|_| Instant::now() + storage.expiry_check);
        let store = FileStore {
            log,
            expiry_check: storage.expiry_check,
            next_expiry,
            health: Health::default(),
        };
        Ok((store, recovered))
    }

    /// The log itself.
    pub fn log(&self) -> &FileLog {
        &self.log
    }

    fn append(&mut self, event: &StoredEvent<'_>) -> io::Result<()> {
        let record = Record {
            id: event.id,
            unix_ms: unix_ms(SystemTime::now()),
            topic: event.topic,
            event: event.event,
            kind: event.kind.tag(),
            data: event.data,
        };
        match self.log.append(&record, Instant::now()) {
            Ok(()) => {
                self.health.ok();
                Ok(())
            }
            Err(error) => {
                self.health.failed(format_args!("file log append: {error}"));
                Err(error)
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match (self.log.poll_timeout(), self.next_expiry) {
            (Some(sync), Some(expiry)) => Some(sync.min(expiry)),
            (sync, expiry) => sync.or(expiry),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if let Err(error) = self.log.handle_timeout(now) {
            self.health.failed(format_args!("file log fsync: {error}"));
        }
        if self.next_expiry.is_some_and(|due| due <= now) {
            self.next_expiry = Some(now + self.expiry_check);
            if let Err(error) = self.log.remove_expired(SystemTime::now()) {
                self.health
                    .failed(format_args!("file log retention: {error}"));
            }
        }
    }

    fn sync(&mut self) {
        if let Err(error) = self.log.sync() {
            self.health.failed(format_args!("file log fsync: {error}"));
        }
    }
}

/// Milliseconds since the Unix epoch (0 before it).
fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_tags_and_nothing_else_is_one() {
        for kind in [DataKind::Text, DataKind::Json, DataKind::Binary] {
            assert_eq!(DataKind::from_tag(kind.tag()), Some(kind));
        }
        assert_eq!(DataKind::from_tag(0), None);
        assert_eq!(DataKind::from_tag(b'x'), None);
    }

    #[test]
    fn health_reports_each_change_of_state_once() {
        let mut health = Health::default();
        assert_eq!(health.take_change(), None);
        health.failed("disk full");
        health.failed("disk full");
        assert_eq!(health.take_change(), Some(Some("disk full".into())));
        assert_eq!(health.take_change(), None, "once");
        health.failed("NOAUTH");
        assert_eq!(
            health.take_change(),
            Some(Some("NOAUTH".into())),
            "another problem"
        );
        assert_eq!(health.errors(), 3, "every failure counted");
        health.ok();
        health.ok();
        assert_eq!(health.take_change(), Some(None));
        assert_eq!(health.take_change(), None);
    }

    #[test]
    fn memory_keeps_nothing_and_asks_for_no_timer() {
        let mut store = Store::Memory;
        let event = StoredEvent {
            id: 1,
            topic: "t",
            event: "message",
            kind: DataKind::Text,
            data: b"x",
        };
        assert!(store.append(&event).is_ok());
        assert_eq!(store.poll_timeout(), None);
        assert!(!store.ids_from_elsewhere() && !store.ids_are_shared());
        assert_eq!(store.name(), "memory");
    }
}
