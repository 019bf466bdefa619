//! The loop's side of the store behind the history (see [`crate::storage`]):
//! opening it, its timers, its health in the log and the stats.
//!
//! - **Memory**: nothing to do.
//! - **File log**: opened at bind, its records read back into the history
//!   (truncations reported on stderr with their byte offset); each publish
//!   appends before it is fanned out (in [`crate::feeds::Topics::publish`]);
//!   the fsync deadline and the expiry check are a timer of the loop
//!   ([`Wake::Store`]); at the end of the loop the log is synced.

use std::io;

use crate::engine::config::Config;
use crate::engine::timers::Wake;
use crate::engine::Core;
use crate::feeds::{Feeds, PublishError, Topics};
use crate::storage::{DataKind, FileStore, Storage, Store, StoredEvent};
use crate::time::Instant;

/// The store as this loop sees it.
#[derive(Debug, Default)]
pub(crate) struct StoreSide {
    /// The store asks for timers (the file log's fsync and expiry).
    timed: bool,
    /// The store timer armed in the heap, if one is.
    armed: Option<Instant>,
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
        // History starts where the stream stands, once the link knows.
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
            armed: None,
        }
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

    /// Arms the store's next deadline (an fsync, an expiry check) unless an
    /// entry at or before it is armed already.
    pub(crate) fn arm_store_timer(&mut self) {
        let Some(due) = self.feeds.store(|store| store.poll_timeout()) else {
            return;
        };
        let due = Instant::from_duration(due.saturating_duration_since(self.origin));
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
        let now = self.std_instant(self.now);
        self.feeds.store(|store| store.handle_timeout(now));
        self.report_store_health();
        self.arm_store_timer();
    }

    /// Logs the store's health when it changed (once per change), and
    /// copies its error count into the stats.
    pub(crate) fn report_store_health(&mut self) {
        let (change, errors) = self.feeds.store(|store| match store.health() {
            Some(health) => (health.take_change(), health.errors()),
            None => (None, 0),
        });
        self.stats.store.errors = self.stats.store.errors.max(errors);
        match change {
            Some(Some(problem)) => self.log(&format!("store: {problem}")),
            Some(None) => self.log("store: working again"),
            None => {}
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
