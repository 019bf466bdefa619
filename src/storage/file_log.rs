//! An append-only log of events in segment files: durable topic history on
//! one machine, with no server to run.
//!
//! # Files
//!
//! A directory holds segments named by the id of their first record, 20
//! digits so that names sort as ids do: `00000000000000000001.log`,
//! `00000000000000004097.log`, ... Records are only ever appended to the last
//! segment; when a record would take it past [`FileLogConfig::segment_bytes`]
//! a new segment begins. Other files in the directory are left alone. One
//! process writes a directory at a time (not enforced: `File::lock` is newer
//! than pushloop's minimum Rust).
//!
//! # Record format
//!
//! Little-endian, no padding; a record is 29 bytes plus its three strings:
//!
//! ```text
//!  0       4       8               16              24      26      28   29
//!  ├───────┼───────┼───────────────┼───────────────┼───────┼───────┼────┼─────────┬─────────┬──────────┐
//!  │ len   │ crc   │ id            │ unix_ms       │ t_len │ e_len │kind│ topic   │ event   │ data     │
//!  │ u32   │ u32   │ u64           │ u64           │ u16   │ u16   │ u8 │ t_len B │ e_len B │ the rest │
//!  └───────┴───────┴───────────────┴───────────────┴───────┴───────┴────┴─────────┴─────────┴──────────┘
//!          ╰──────────────────────── len bytes: the body ───────────────────────────────────────────────╯
//!   crc = CRC-32 of the 4 bytes of `len` followed by the body
//! ```
//!
//! `len` counts the body (everything after `crc`), so a reader knows where the
//! next record starts before trusting this one. The CRC covers `len` too: a
//! corrupt length that happens to land on a plausible boundary still fails the
//! check. `topic` and `event` are UTF-8; `data` is any bytes, and `kind` says
//! how the layer above reads them (pushloop writes [`super::DataKind::tag`]:
//! text, JSON or bytes, so an event is re-encoded after a restart exactly as
//! it was published). `unix_ms` is the wall-clock time of the publish, used
//! only for retention by age.
//!
//! # Recovery
//!
//! [`FileLog::open`] reads every segment back, oldest first, and stops a
//! segment at its first record that is torn or corrupt ([`Corruption`]): a
//! short header or body (the process died mid-write), an absurd length, a bad
//! CRC, a body whose parts do not add up, or an id not above the one before.
//! The segment is truncated there and the truncation is reported
//! ([`Recovered::truncations`], with path and byte offset, for stderr); the
//! bytes after it are never guessed at, so no record is invented. A corrupt
//! file never stops `open`: only I/O errors do. Later segments are still read,
//! because each begins at a record boundary of its own: in a crash only the
//! last segment can be torn, and bit rot in an old one should not discard the
//! newer history after it.
//!
//! # Durability: [`FsyncPolicy`]
//!
//! Every append is one `write` of the whole record to the segment (opened with
//! `O_APPEND`), so once [`FileLog::append`] returns, the record survives the
//! *process* dying (even by `kill -9`: the kernel has it) under every policy.
//! What the policy decides is the loss window on a *power cut or kernel crash*:
//!
//! | policy | `fdatasync` | lost on power cut |
//! |---|---|---|
//! | `Always` | before each append returns | nothing that was acknowledged |
//! | `EveryMillis(n)` | by [`FileLog::poll_timeout`], at most `n` ms after the first unsynced append | up to `n` ms of appends, plus however late the loop calls [`FileLog::handle_timeout`] |
//! | `Never` | only on [`FileLog::sync`] | whatever the kernel had not written back yet (Linux: ~30 s by default, `vm.dirty_expire_centisecs`) |
//!
//! A new segment's directory entry is synced too (except under `Never`), and
//! the segment left behind is synced before the new one begins. A failed
//! write is cut off the segment again so that later appends never follow a
//! torn record. A failed `fdatasync` marks the log failed and every later call
//! errs: after a failed fsync the kernel may have dropped the dirty pages, so
//! retrying could report success for data that is gone (PostgreSQL's
//! "fsyncgate", 2018). Reopen the log to go on.
//!
//! Measured on the development VM (ext4 on a virtio disk, 2 vCPUs, a noisy
//! neighbour: figures are the range of three runs), 200-byte events, the
//! loop's `handle_timeout` called after each append:
//!
//! | policy | appends/s |
//! |---|---|
//! | `Always` | 250 – 380 (one `fdatasync` of 2.6 – 4 ms each) |
//! | `EveryMillis(1)` | 165 000 – 266 000 |
//! | `EveryMillis(1000)` | 470 000 – 610 000 |
//! | `Never` | 610 000 – 1 070 000 |
//!
//! Reopening a full default log (64 MiB, ≈ 260 000 such records) took
//! 120 – 420 ms. Method: `cargo test --release --lib -- --ignored
//! measure_appends_per_policy --nocapture`.
//!
//! # Retention
//!
//! Whole segments are removed, oldest first, never the last one (it carries
//! the last id): by bytes, before an append would take the directory past
//! [`FileLogConfig::max_total_bytes`] (so disk use stays under it, or under
//! one segment if that is larger); and by age, when [`FileLog::remove_expired`]
//! finds that a segment's newest record is older than
//! [`FileLogConfig::max_age`]. Both also run in [`FileLog::open`].
//!
//! # Ids
//!
//! The caller assigns ids; each must be above the last (gaps are fine), and
//! [`Recovered::last_id`] says where to continue. A segment's name is the id
//! of its first record, so the last id is known even when retention or a torn
//! tail left the last segment empty.
//!
//! # Checksum
//!
//! CRC-32 (IEEE), written here ([`super::crc32`], slice-by-8, 60 lines and
//! its tests) rather than taken from `crc32fast`: pushloop keeps its
//! dependencies to a handful, and for the events it stores the checksum is
//! not what limits an append. Measured here: slice-by-8 0.9 – 1.6 GB/s,
//! `crc32fast` (PCLMULQDQ) 12 GB/s on 200-byte inputs and far more on large
//! ones. For a 200-byte event that is ≈ 0.15 µs of CRC in an append of
//! 1 – 2 µs (`Never`) or 3 ms (`Always`). For events near 1 MiB the CRC
//! (≈ 1 ms) would dominate a `Never` append; should that be the load,
//! swapping [`super::crc32::Crc32`]'s body for `crc32fast` changes no format.

use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::crc32::Crc32;

/// Bytes before a record's body: `len` and `crc`.
const HEAD_BYTES: usize = 8;

/// The fixed part of a body: `id`, `unix_ms`, `t_len`, `e_len`, `kind`.
const FIXED_BODY_BYTES: usize = 21;

/// Bytes of a record besides its topic, event name and data.
pub const RECORD_OVERHEAD: usize = HEAD_BYTES + FIXED_BODY_BYTES;

/// A segment's file name: the id of its first record in this many digits
/// (u64::MAX has 20), then this suffix.
const SEGMENT_NAME_DIGITS: usize = 20;
const SEGMENT_SUFFIX: &str = ".log";

/// When appended records are flushed to the disk with `fdatasync`; see the
/// module doc for the loss window of each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Before every append returns.
    Always,
    /// At most this many milliseconds after the first append not yet synced,
    /// when the loop calls [`FileLog::handle_timeout`] at
    /// [`FileLog::poll_timeout`].
    EveryMillis(u32),
    /// Only when [`FileLog::sync`] is called; the kernel writes back when it
    /// likes.
    Never,
}

/// The named limits and policies of a [`FileLog`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileLogConfig {
    /// Default `EveryMillis(1000)`: Redis's default for its append-only file
    /// (`appendfsync everysec`), a second of loss on a power cut for the speed
    /// of `Never` in between.
    pub fsync: FsyncPolicy,
    /// Bytes of one record, header included. Default 1 MiB + 4 KiB: an event
    /// of the largest default request body (`max_body_bytes`, 1 MiB) with a
    /// topic and event name of up to 4 068 bytes together. Longer appends are
    /// refused. Recovery reads a longer length as corrupt (it is how a garbled
    /// length is recognised before anything is allocated), so raise this
    /// freely but lower it only on an empty directory.
    pub max_record_bytes: u32,
    /// Bytes at which a new segment begins. Default 8 MiB: retention frees
    /// space an eighth of the default total at a time, and a segment still
    /// holds several records of the largest size.
    pub segment_bytes: u64,
    /// Bytes of all segments together, the newest one excepted when it alone
    /// is larger. Default 64 MiB: [`FileLog::open`] reads every retained record
    /// into memory, so this bounds start-up memory and time.
    pub max_total_bytes: u64,
    /// Age after which a segment's newest record makes it removable by
    /// [`FileLog::remove_expired`]; `None` keeps records until the byte limit
    /// removes them. Default 24 h: a client away for less than a day resumes
    /// from its last id without a resync.
    pub max_age: Option<Duration>,
}

impl Default for FileLogConfig {
    fn default() -> Self {
        FileLogConfig {
            fsync: FsyncPolicy::EveryMillis(1000),
            max_record_bytes: (1 << 20) + (4 << 10),
            segment_bytes: 8 << 20,
            max_total_bytes: 64 << 20,
            max_age: Some(Duration::from_secs(24 * 60 * 60)),
        }
    }
}

/// A record to append, borrowing its parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// The event id: above every id appended before.
    pub id: u64,
    /// Wall-clock time of the publish, in milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// The topic, at most 65 535 bytes.
    pub topic: &'a str,
    /// The event name, at most 65 535 bytes.
    pub event: &'a str,
    /// How the layer above reads `data` (pushloop: [`super::DataKind::tag`]).
    pub kind: u8,
    /// The payload, binary-safe.
    pub data: &'a [u8],
}

impl Record<'_> {
    /// Bytes this record takes in a segment.
    pub fn encoded_len(&self) -> usize {
        RECORD_OVERHEAD + self.topic.len() + self.event.len() + self.data.len()
    }
}

/// A record read back by [`FileLog::open`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    /// The event id.
    pub id: u64,
    /// Wall-clock time of the publish, in milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// The topic.
    pub topic: String,
    /// The event name.
    pub event: String,
    /// How the layer above reads `data`, as appended.
    pub kind: u8,
    /// The payload.
    pub data: Vec<u8>,
}

impl StoredRecord {
    /// The record, borrowed, as it was appended.
    pub fn as_record(&self) -> Record<'_> {
        Record {
            id: self.id,
            unix_ms: self.unix_ms,
            topic: &self.topic,
            event: &self.event,
            kind: self.kind,
            data: &self.data,
        }
    }
}

/// Why recovery stopped reading a segment at some offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// Fewer than 8 bytes were left for a record header: the process died
    /// while writing it.
    ShortHeader,
    /// The body is shorter than its length says: the process died while
    /// writing it.
    ShortBody,
    /// The length is below the 21 fixed body bytes or above
    /// [`FileLogConfig::max_record_bytes`]: not a length this log wrote.
    AbsurdLength,
    /// The CRC does not match: a bit changed on the disk, or the record was
    /// never completely written.
    BadCrc,
    /// The CRC matches but the body does not hold a record: the topic and event
    /// lengths run past its end, or a name is not UTF-8.
    Malformed,
    /// The id is not above the record before it (or below the segment's first
    /// id, its name).
    IdOutOfOrder,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Corruption::ShortHeader => "torn record header",
            Corruption::ShortBody => "torn record body",
            Corruption::AbsurdLength => "absurd record length",
            Corruption::BadCrc => "CRC mismatch",
            Corruption::Malformed => "malformed record body",
            Corruption::IdOutOfOrder => "record id out of order",
        })
    }
}

/// A segment cut short by recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncation {
    /// The segment file.
    pub path: PathBuf,
    /// Where the first bad record began; the file now ends here.
    pub offset: u64,
    /// Bytes removed from the end of the file.
    pub dropped_bytes: u64,
    /// What was wrong with the record at `offset`.
    pub reason: Corruption,
}

impl fmt::Display for Truncation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} at byte {}; truncated, {} bytes dropped",
            self.path.display(),
            self.reason,
            self.offset,
            self.dropped_bytes
        )
    }
}

/// What [`FileLog::open`] found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Every record kept, oldest first (ids increasing).
    pub records: Vec<StoredRecord>,
    /// The id to continue after: the last record's, or one below the last
    /// segment's first id if that is higher. `None` for an empty log.
    pub last_id: Option<u64>,
    /// Segments cut short at a torn or corrupt record, to report on stderr.
    pub truncations: Vec<Truncation>,
    /// Segments removed by retention (bytes or age) while opening.
    pub removed: Vec<PathBuf>,
}

/// One segment file.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    bytes: u64,
    /// The newest `unix_ms` among its records; `None` while it has none.
    newest_unix_ms: Option<u64>,
}

/// An append-only event log in a directory of segment files. See the module
/// doc for the format, recovery, durability and retention.
///
/// Driving it from a loop: [`FileLog::append`] each event; when
/// [`FileLog::poll_timeout`] is `Some(deadline)`, wake by then and call
/// [`FileLog::handle_timeout`]; call [`FileLog::remove_expired`] from a coarse
/// timer (once a minute is plenty); call [`FileLog::sync`] at shutdown.
#[derive(Debug)]
pub struct FileLog {
    dir: PathBuf,
    config: FileLogConfig,
    /// Oldest first; records are appended to the last one.
    segments: VecDeque<Segment>,
    /// The last segment, open for appending; `None` until the first segment
    /// exists.
    active: Option<File>,
    last_id: Option<u64>,
    total_bytes: u64,
    /// Appends to `active` not yet flushed with `fdatasync`.
    unsynced: bool,
    /// Under `EveryMillis`: when the oldest unsynced append must be synced.
    sync_deadline: Option<Instant>,
    /// Set by a write that could not be undone or a failed sync: the log
    /// refuses everything after.
    failed: Option<io::ErrorKind>,
    /// One record, encoded; reused so an append allocates nothing.
    scratch: Vec<u8>,
}

impl FileLog {
    /// Opens (creating if needed) the log in `dir`: applies retention by bytes,
    /// reads every segment back (truncating each at its first torn or corrupt
    /// record), applies retention by age as of `now`, and opens the last
    /// segment for appending. Errors are I/O errors, or `InvalidInput` for a
    /// config that cannot hold a record; corrupt data is never an error.
    pub fn open(
        dir: impl AsRef<Path>,
        config: FileLogConfig,
        now: SystemTime,
    ) -> io::Result<(FileLog, Recovered)> {
        if (config.max_record_bytes as usize) <= RECORD_OVERHEAD {
            return Err(invalid_input(
                "max_record_bytes must exceed the 29-byte record overhead",
            ));
        }
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)?;
        let mut recovered = Recovered::default();

        // 1. Retention by bytes, from file sizes: what goes is not read.
        let mut found = list_segments(&dir)?;
        let mut total_bytes: u64 = found.iter().map(|(_, segment)| segment.bytes).sum();
        while total_bytes > config.max_total_bytes && found.len() > 1 {
            let (_, oldest) = found.remove(0);
            remove_segment(&oldest)?;
            total_bytes -= oldest.bytes;
            recovered.removed.push(oldest.path);
        }

        // 2. Read every segment, truncating at the first bad record.
        let mut segments = VecDeque::with_capacity(found.len());
        let mut records_per_segment = VecDeque::with_capacity(found.len());
        let mut last_id: Option<u64> = None;
        for (first_id, mut segment) in found {
            // The segment's name is its first id: nothing in it may be lower.
            if let Some(floor) = first_id.checked_sub(1) {
                last_id = last_id.max(Some(floor));
            }
            let before = recovered.records.len();
            let scan = read_segment(
                &segment.path,
                last_id,
                config.max_record_bytes,
                &mut recovered.records,
            )?;
            if let Some(reason) = scan.corruption {
                let file = OpenOptions::new().write(true).open(&segment.path)?;
                file.set_len(scan.good_bytes)?;
                if config.fsync != FsyncPolicy::Never {
                    file.sync_all()?;
                }
                recovered.truncations.push(Truncation {
                    path: segment.path.clone(),
                    offset: scan.good_bytes,
                    dropped_bytes: scan.file_bytes - scan.good_bytes,
                    reason,
                });
            }
            last_id = last_id.max(scan.last_id);
            segment.bytes = scan.good_bytes;
            segment.newest_unix_ms = scan.newest_unix_ms;
            records_per_segment.push_back(recovered.records.len() - before);
            segments.push_back(segment);
        }

        // 3. Retention by age; the expired records leave the recovered ones.
        let now_ms = unix_ms(now);
        let mut expired_records = 0;
        while segments.len() > 1 && is_expired(&segments[0], config.max_age, now_ms) {
            if let Some(oldest) = segments.pop_front() {
                remove_segment(&oldest)?;
                expired_records += records_per_segment.pop_front().unwrap_or(0);
                recovered.removed.push(oldest.path);
            }
        }
        recovered.records.drain(..expired_records);
        recovered.last_id = last_id;

        // 4. The last segment takes the appends.
        let active = segments
            .back()
            .map(|last| OpenOptions::new().append(true).open(&last.path))
            .transpose()?;
        let log = FileLog {
            dir,
            config,
            total_bytes: segments.iter().map(|segment| segment.bytes).sum(),
            segments,
            active,
            last_id,
            unsynced: false,
            sync_deadline: None,
            failed: None,
            scratch: Vec::new(),
        };
        Ok((log, recovered))
    }

    /// Appends `record` at the end of the log; `now` is the loop's clock, for
    /// the `EveryMillis` deadline. Once this returns `Ok`, the record survives
    /// the process dying, and a power cut as the [`FsyncPolicy`] says.
    ///
    /// Refused with `InvalidInput`, nothing written: an id not above the last,
    /// a topic or event name over 65 535 bytes, a record over
    /// [`FileLogConfig::max_record_bytes`]. Any other error is I/O: the record
    /// may or may not be found after a restart; after a failed sync the log
    /// refuses every later call.
    pub fn append(&mut self, record: &Record<'_>, now: Instant) -> io::Result<()> {
        self.check_not_failed()?;
        if self.last_id.is_some_and(|last| record.id <= last) {
            return Err(invalid_input("record id is not above the last id"));
        }
        let len = record.encoded_len();
        if len > self.config.max_record_bytes as usize {
            return Err(invalid_input("record is longer than max_record_bytes"));
        }
        encode_record(record, &mut self.scratch)?;
        let len = len as u64;

        // A new segment when there is none, or when this record would take a
        // non-empty one past segment_bytes.
        let roll = match self.segments.back() {
            None => true,
            Some(active) => active.bytes > 0 && active.bytes + len > self.config.segment_bytes,
        };
        if roll {
            self.begin_segment(record.id)?;
        }
        // Retention by bytes: room for this record, never taking its segment.
        while self.total_bytes + len > self.config.max_total_bytes && self.segments.len() > 1 {
            self.remove_oldest()?;
        }

        let (Some(file), Some(active)) = (self.active.as_mut(), self.segments.back_mut()) else {
            return Err(io::Error::other("file log has no segment to append to"));
        };
        if let Err(error) = file.write_all(&self.scratch) {
            // Cut off a partial record, or later appends would follow a torn
            // one and recovery would drop them with it.
            if file.set_len(active.bytes).is_err() {
                self.failed = Some(error.kind());
            }
            return Err(error);
        }
        active.bytes += len;
        active.newest_unix_ms = active.newest_unix_ms.max(Some(record.unix_ms));
        self.total_bytes += len;
        self.last_id = Some(record.id);
        self.unsynced = true;
        match self.config.fsync {
            FsyncPolicy::Always => self.sync(),
            FsyncPolicy::EveryMillis(millis) => {
                self.sync_deadline
                    .get_or_insert(now + Duration::from_millis(millis.into()));
                Ok(())
            }
            FsyncPolicy::Never => Ok(()),
        }
    }

    /// When [`FileLog::handle_timeout`] must next be called: under
    /// `EveryMillis`, the sync deadline of the oldest unsynced append.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sync_deadline
    }

    /// Syncs if the deadline has passed by `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> io::Result<()> {
        match self.sync_deadline {
            Some(deadline) if deadline <= now => self.sync(),
            _ => Ok(()),
        }
    }

    /// Flushes every append so far to the disk (`fdatasync`), whatever the
    /// policy: call it at shutdown. A failure marks the log failed.
    pub fn sync(&mut self) -> io::Result<()> {
        self.check_not_failed()?;
        self.sync_deadline = None;
        if !self.unsynced {
            return Ok(());
        }
        if let Some(file) = &self.active {
            if let Err(error) = file.sync_data() {
                self.failed = Some(error.kind());
                return Err(error);
            }
        }
        self.unsynced = false;
        Ok(())
    }

    /// Removes the oldest segments whose newest record is older than
    /// [`FileLogConfig::max_age`] as of `now` (wall clock), stopping at the
    /// first that is not, and never the last one. Returns how many went.
    pub fn remove_expired(&mut self, now: SystemTime) -> io::Result<usize> {
        self.check_not_failed()?;
        let now_ms = unix_ms(now);
        let mut removed = 0;
        while self.segments.len() > 1 && is_expired(&self.segments[0], self.config.max_age, now_ms)
        {
            self.remove_oldest()?;
            removed += 1;
        }
        Ok(removed)
    }

    /// The id of the last record appended or recovered (or implied by the last
    /// segment's name); the next append must be above it.
    pub fn last_id(&self) -> Option<u64> {
        self.last_id
    }

    /// Bytes in all segments.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Segment files, the one being appended to included.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The directory of the segments.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn check_not_failed(&self) -> io::Result<()> {
        match self.failed {
            Some(kind) => Err(io::Error::new(
                kind,
                "the file log failed to write or sync earlier; reopen it",
            )),
            None => Ok(()),
        }
    }

    /// Starts the segment whose first record will be `first_id`.
    fn begin_segment(&mut self, first_id: u64) -> io::Result<()> {
        // What went into the segment left behind is synced before it is.
        if self.config.fsync != FsyncPolicy::Never {
            self.sync()?;
        }
        let path = self.dir.join(segment_name(first_id));
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)?;
        self.segments.push_back(Segment {
            path,
            bytes: 0,
            newest_unix_ms: None,
        });
        self.active = Some(file);
        // The new name lives in the directory, which is synced on its own.
        if self.config.fsync != FsyncPolicy::Never {
            if let Err(error) = File::open(&self.dir).and_then(|dir| dir.sync_all()) {
                self.failed = Some(error.kind());
                return Err(error);
            }
        }
        Ok(())
    }

    /// Removes the oldest segment (the caller keeps the last one).
    fn remove_oldest(&mut self) -> io::Result<()> {
        if let Some(oldest) = self.segments.front() {
            remove_segment(oldest)?;
            self.total_bytes -= oldest.bytes;
            self.segments.pop_front();
        }
        Ok(())
    }
}

fn invalid_input(message: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Milliseconds since the Unix epoch (0 before it, saturating far after).
fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

fn is_expired(segment: &Segment, max_age: Option<Duration>, now_ms: u64) -> bool {
    let Some(max_age) = max_age else {
        return false;
    };
    let max_age_ms = u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX);
    // A segment with no record left holds nothing to keep.
    segment
        .newest_unix_ms
        .is_none_or(|newest| newest.saturating_add(max_age_ms) <= now_ms)
}

fn segment_name(first_id: u64) -> String {
    format!(
        "{first_id:0width$}{SEGMENT_SUFFIX}",
        width = SEGMENT_NAME_DIGITS
    )
}

/// The first id a segment file's name gives, if it is a segment's name.
fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segments in `dir` with their first ids, oldest first.
fn list_segments(dir: &Path) -> io::Result<Vec<(u64, Segment)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(first_id) = entry.file_name().to_str().and_then(parse_segment_name) else {
            continue;
        };
        let metadata = entry.metadata()?;
        if metadata.is_file() {
            let segment = Segment {
                path: entry.path(),
                bytes: metadata.len(),
                newest_unix_ms: None,
            };
            found.push((first_id, segment));
        }
    }
    found.sort_by_key(|(first_id, _)| *first_id);
    Ok(found)
}

fn remove_segment(segment: &Segment) -> io::Result<()> {
    match fs::remove_file(&segment.path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// Appends `record` to `out` (cleared first) in the format of the module doc.
fn encode_record(record: &Record<'_>, out: &mut Vec<u8>) -> io::Result<()> {
    let too_long = || invalid_input("topic or event name is longer than 65 535 bytes");
    let topic_len = u16::try_from(record.topic.len()).map_err(|_| too_long())?;
    let event_len = u16::try_from(record.event.len()).map_err(|_| too_long())?;
    let body_len = u32::try_from(record.encoded_len() - HEAD_BYTES)
        .map_err(|_| invalid_input("record is longer than max_record_bytes"))?;
    out.clear();
    out.extend_from_slice(&body_len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&record.id.to_le_bytes());
    out.extend_from_slice(&record.unix_ms.to_le_bytes());
    out.extend_from_slice(&topic_len.to_le_bytes());
    out.extend_from_slice(&event_len.to_le_bytes());
    out.push(record.kind);
    out.extend_from_slice(record.topic.as_bytes());
    out.extend_from_slice(record.event.as_bytes());
    out.extend_from_slice(record.data);
    let crc = Crc32::new()
        .update(&out[..4])
        .update(&out[HEAD_BYTES..])
        .finish();
    out[4..HEAD_BYTES].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Reads a body whose CRC matched; `None` if its parts do not add up.
fn decode_body(body: &[u8]) -> Option<StoredRecord> {
    let (id, rest) = body.split_first_chunk::<8>()?;
    let (unix_ms, rest) = rest.split_first_chunk::<8>()?;
    let (topic_len, rest) = rest.split_first_chunk::<2>()?;
    let (event_len, rest) = rest.split_first_chunk::<2>()?;
    let (&kind, rest) = rest.split_first()?;
    let (topic, rest) = rest.split_at_checked(usize::from(u16::from_le_bytes(*topic_len)))?;
    let (event, data) = rest.split_at_checked(usize::from(u16::from_le_bytes(*event_len)))?;
    Some(StoredRecord {
        id: u64::from_le_bytes(*id),
        unix_ms: u64::from_le_bytes(*unix_ms),
        topic: std::str::from_utf8(topic).ok()?.to_owned(),
        event: std::str::from_utf8(event).ok()?.to_owned(),
        kind,
        data: data.to_vec(),
    })
}

/// What reading one segment found.
struct Scan {
    file_bytes: u64,
    /// Bytes of whole, valid records from the start.
    good_bytes: u64,
    /// Why reading stopped before the end, if it did.
    corruption: Option<Corruption>,
    newest_unix_ms: Option<u64>,
    last_id: Option<u64>,
}

/// Reads the records of one segment into `records`, up to the first bad one.
/// Ids must rise above `last_id`. Allocates at most one record's body.
fn read_segment(
    path: &Path,
    mut last_id: Option<u64>,
    max_record_bytes: u32,
    records: &mut Vec<StoredRecord>,
) -> io::Result<Scan> {
    let file = File::open(path)?;
    let file_bytes = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(64 << 10, file);
    let mut good_bytes = 0u64;
    let mut newest_unix_ms = None;
    let mut body = Vec::new();
    let corruption = loop {
        let left = file_bytes - good_bytes;
        if left == 0 {
            break None;
        }
        if left < HEAD_BYTES as u64 {
            break Some(Corruption::ShortHeader);
        }
        let mut head = [0u8; HEAD_BYTES];
        reader.read_exact(&mut head)?;
        let [l0, l1, l2, l3, c0, c1, c2, c3] = head;
        let body_len = u32::from_le_bytes([l0, l1, l2, l3]);
        let crc = u32::from_le_bytes([c0, c1, c2, c3]);
        let record_bytes = HEAD_BYTES as u64 + u64::from(body_len);
        // Judged before anything is allocated: a garbled length of 4 GiB
        // reads as corrupt, not as a reason to allocate 4 GiB.
        if (body_len as usize) < FIXED_BODY_BYTES || record_bytes > u64::from(max_record_bytes) {
            break Some(Corruption::AbsurdLength);
        }
        if left < record_bytes {
            break Some(Corruption::ShortBody);
        }
        body.resize(body_len as usize, 0);
        reader.read_exact(&mut body)?;
        if Crc32::new().update(&head[..4]).update(&body).finish() != crc {
            break Some(Corruption::BadCrc);
        }
        let Some(record) = decode_body(&body) else {
            break Some(Corruption::Malformed);
        };
        if last_id.is_some_and(|last| record.id <= last) {
            break Some(Corruption::IdOutOfOrder);
        }
        last_id = Some(record.id);
        newest_unix_ms = newest_unix_ms.max(Some(record.unix_ms));
        records.push(record);
        good_bytes += record_bytes;
    };
    Ok(Scan {
        file_bytes,
        good_bytes,
        corruption,
        newest_unix_ms,
        last_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    /// A directory under the system's temporary one, removed when dropped.
    struct TestDir(PathBuf);

    impl TestDir {
        fn new(name: &str) -> TestDir {
            let path = std::env::temp_dir()
                .join(format!("pushloop-file-log-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            TestDir(path)
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// The wall clock of the tests: a fixed time, moved by hand.
    fn wall(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms)
    }

    /// The tests' config: no fsync (speed) and no age limit (their records
    /// are stamped near 1970); the age tests set one.
    fn unsynced() -> FileLogConfig {
        FileLogConfig {
            fsync: FsyncPolicy::Never,
            max_age: None,
            ..FileLogConfig::default()
        }
    }

    /// Test record `id`: owned, so a test can keep it and compare.
    fn stored(id: u64, unix_ms: u64) -> StoredRecord {
        StoredRecord {
            id,
            unix_ms,
            topic: format!("topic-{}", id % 3),
            event: ["message", "update!"][(id % 2) as usize].to_owned(),
            kind: [b't', b'j', b'b'][(id % 3) as usize],
            // Fixed width, so records 1..=9999 all take the same bytes.
            data: format!("data of {id:04}\r\n\0").into_bytes(),
        }
    }

    /// Appends records `ids`, each stamped `unix_ms`, and returns them.
    fn append_all(
        log: &mut FileLog,
        ids: impl IntoIterator<Item = u64>,
        unix_ms: u64,
    ) -> Vec<StoredRecord> {
        let now = Instant::now();
        ids.into_iter()
            .map(|id| {
                let record = stored(id, unix_ms);
                log.append(&record.as_record(), now).expect("append");
                record
            })
            .collect()
    }

    fn open(dir: &Path, config: FileLogConfig) -> (FileLog, Recovered) {
        FileLog::open(dir, config, wall(0)).expect("open")
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .expect("read_dir")
            .map(|entry| entry.expect("entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
            .collect();
        files.sort();
        files
    }

    // --- Format and round trip ---

    #[test]
    fn record_bytes_match_the_diagram() {
        let record = Record {
            id: 0x0102_0304_0506_0708,
            unix_ms: 9,
            topic: "ab",
            event: "e",
            kind: b'b',
            data: b"\xFFz",
        };
        let mut out = vec![0xEE; 3];
        encode_record(&record, &mut out).unwrap();
        let body: &[u8] =
            b"\x08\x07\x06\x05\x04\x03\x02\x01\x09\0\0\0\0\0\0\0\x02\0\x01\0babe\xFFz";
        assert_eq!(&out[..4], &26u32.to_le_bytes(), "len counts the body");
        let crc = Crc32::new().update(&out[..4]).update(body).finish();
        assert_eq!(&out[4..8], &crc.to_le_bytes(), "crc covers len and body");
        assert_eq!(&out[8..], body);
        assert_eq!(out.len(), record.encoded_len());
        assert_eq!(decode_body(body).unwrap().as_record(), record);
    }

    #[test]
    fn records_round_trip_through_a_reopen() {
        let dir = TestDir::new("round-trip");
        let (mut log, recovered) = open(&dir.0, unsynced());
        assert!(recovered.records.is_empty() && recovered.last_id.is_none());
        assert_eq!(log.segment_count(), 0);
        let mut written = append_all(&mut log, 1..=3, 5);
        let odd = StoredRecord {
            id: 4,
            unix_ms: 6,
            topic: "héllo wörld".to_owned(),
            event: String::new(),
            kind: 0,
            data: Vec::new(),
        };
        log.append(&odd.as_record(), Instant::now()).unwrap();
        written.push(odd);
        log.sync().unwrap();
        drop(log);
        let (log, recovered) = open(&dir.0, unsynced());
        assert_eq!(recovered.records, written);
        assert_eq!(recovered.last_id, Some(4));
        assert!(recovered.truncations.is_empty() && recovered.removed.is_empty());
        assert_eq!(log.last_id(), Some(4));
        assert_eq!(
            log.total_bytes(),
            written
                .iter()
                .map(|r| r.as_record().encoded_len() as u64)
                .sum::<u64>()
        );
        assert_eq!(
            segment_files(&dir.0),
            [dir.0.join("00000000000000000001.log")]
        );
    }

    #[test]
    fn other_files_in_the_directory_are_left_alone() {
        let dir = TestDir::new("foreign");
        fs::create_dir_all(&dir.0).unwrap();
        for name in [
            "README",
            "1.log",
            "0000000000000000000x.log",
            "99999999999999999999.log",
        ] {
            fs::write(dir.0.join(name), b"not a segment").unwrap();
        }
        let (mut log, recovered) = open(&dir.0, unsynced());
        assert!(recovered.records.is_empty() && recovered.truncations.is_empty());
        append_all(&mut log, [1], 0);
        for name in [
            "README",
            "1.log",
            "0000000000000000000x.log",
            "99999999999999999999.log",
        ] {
            assert_eq!(fs::read(dir.0.join(name)).unwrap(), b"not a segment");
        }
    }

    // --- Recovery ---

    /// A log of records 1..=3 in one segment: its path, bytes, and where each
    /// record starts.
    fn three_records(dir: &Path) -> (PathBuf, Vec<u8>, Vec<u64>, Vec<StoredRecord>) {
        let (mut log, _) = open(dir, unsynced());
        let records = append_all(&mut log, 1..=3, 0);
        drop(log);
        let path = dir.join(segment_name(1));
        let bytes = fs::read(&path).unwrap();
        let mut starts = vec![0u64];
        for record in &records {
            starts.push(starts.last().unwrap() + record.as_record().encoded_len() as u64);
        }
        assert_eq!(*starts.last().unwrap(), bytes.len() as u64);
        (path, bytes, starts, records)
    }

    #[test]
    fn a_torn_tail_at_every_offset_keeps_exactly_the_whole_records() {
        let dir = TestDir::new("torn");
        let (path, bytes, starts, records) = three_records(&dir.0);
        let last_start = starts[2];
        for cut in last_start..bytes.len() as u64 {
            fs::write(&path, &bytes[..cut as usize]).unwrap();
            let (mut log, recovered) = open(&dir.0, unsynced());
            assert_eq!(recovered.records, records[..2], "cut at {cut}");
            assert_eq!(recovered.last_id, Some(2));
            if cut == last_start {
                assert!(recovered.truncations.is_empty());
            } else {
                let expected_reason = if cut - last_start < HEAD_BYTES as u64 {
                    Corruption::ShortHeader
                } else {
                    Corruption::ShortBody
                };
                assert_eq!(
                    recovered.truncations,
                    [Truncation {
                        path: path.clone(),
                        offset: last_start,
                        dropped_bytes: cut - last_start,
                        reason: expected_reason,
                    }],
                    "cut at {cut}"
                );
            }
            assert_eq!(
                fs::metadata(&path).unwrap().len(),
                last_start,
                "file truncated"
            );
            // The lost record can be appended again, and follows the others.
            append_all(&mut log, [3], 0);
            drop(log);
            let (_, recovered) = open(&dir.0, unsynced());
            assert_eq!(recovered.records, records);
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_in_the_middle_record_truncates_there() {
        let dir = TestDir::new("bitflip");
        let (path, bytes, starts, records) = three_records(&dir.0);
        let (start, end) = (starts[1], starts[2]);
        for bit in start * 8..end * 8 {
            let mut flipped = bytes.clone();
            flipped[(bit / 8) as usize] ^= 1 << (bit % 8);
            fs::write(&path, &flipped).unwrap();
            let (_, recovered) = open(&dir.0, unsynced());
            assert_eq!(recovered.records, records[..1], "bit {bit}");
            let [truncation] = &recovered.truncations[..] else {
                panic!("bit {bit}: {:?}", recovered.truncations);
            };
            assert_eq!(truncation.offset, start, "bit {bit}");
            assert_eq!(truncation.dropped_bytes, bytes.len() as u64 - start);
            // A bit of the data or the names can only be caught by the CRC.
            if bit >= (start + RECORD_OVERHEAD as u64) * 8 {
                assert_eq!(truncation.reason, Corruption::BadCrc, "bit {bit}");
            }
        }
        let report = Truncation {
            path: PathBuf::from("/x/1.log"),
            offset: 40,
            dropped_bytes: 9,
            reason: Corruption::BadCrc,
        };
        assert_eq!(
            report.to_string(),
            "/x/1.log: CRC mismatch at byte 40; truncated, 9 bytes dropped"
        );
    }

    #[test]
    fn a_garbled_length_is_refused_before_allocating() {
        let dir = TestDir::new("absurd");
        let (path, mut bytes, starts, records) = three_records(&dir.0);
        let at = starts[1] as usize;
        for len in [u32::MAX, 1 << 31, 19] {
            bytes[at..at + 4].copy_from_slice(&len.to_le_bytes());
            fs::write(&path, &bytes).unwrap();
            let (_, recovered) = open(&dir.0, unsynced());
            assert_eq!(recovered.records, records[..1]);
            assert_eq!(recovered.truncations[0].reason, Corruption::AbsurdLength);
        }
    }

    #[test]
    fn a_valid_record_that_breaks_the_rules_is_refused() {
        let dir = TestDir::new("rules");
        fs::create_dir_all(&dir.0).unwrap();
        let path = dir.0.join(segment_name(1));
        let mut segment = Vec::new();
        let mut record = Vec::new();
        // Ids 1, 2, then 2 again: the third is out of order.
        for id in [1, 2, 2] {
            encode_record(&stored(id, 0).as_record(), &mut record).unwrap();
            segment.extend_from_slice(&record);
        }
        fs::write(&path, &segment).unwrap();
        let (_, recovered) = open(&dir.0, unsynced());
        assert_eq!(recovered.records, [stored(1, 0), stored(2, 0)]);
        assert_eq!(recovered.truncations[0].reason, Corruption::IdOutOfOrder);
        // A body whose name lengths run past its end, with a correct CRC.
        encode_record(&stored(1, 0).as_record(), &mut record).unwrap();
        record[24..26].copy_from_slice(&u16::MAX.to_le_bytes());
        let crc = Crc32::new()
            .update(&record[..4])
            .update(&record[8..])
            .finish();
        record[4..8].copy_from_slice(&crc.to_le_bytes());
        fs::write(&path, &record).unwrap();
        let (_, recovered) = open(&dir.0, unsynced());
        assert!(recovered.records.is_empty());
        assert_eq!(recovered.truncations[0].reason, Corruption::Malformed);
        // A record below its segment's first id.
        fs::remove_file(&path).unwrap();
        encode_record(&stored(4, 0).as_record(), &mut record).unwrap();
        fs::write(dir.0.join(segment_name(5)), &record).unwrap();
        let (_, recovered) = open(&dir.0, unsynced());
        assert!(recovered.records.is_empty());
        assert_eq!(recovered.truncations[0].reason, Corruption::IdOutOfOrder);
    }

    #[test]
    fn a_corrupt_old_segment_keeps_the_newer_ones() {
        let dir = TestDir::new("old-corrupt");
        let config = FileLogConfig {
            segment_bytes: 200,
            ..unsynced()
        };
        let (mut log, _) = open(&dir.0, config);
        let records = append_all(&mut log, 1..=12, 0);
        drop(log);
        let files = segment_files(&dir.0);
        assert!(files.len() >= 3, "{files:?}");
        let mut first = fs::read(&files[0]).unwrap();
        let last_byte = first.len() - 1;
        first[last_byte] ^= 0x40;
        fs::write(&files[0], &first).unwrap();
        let (_, recovered) = open(&dir.0, config);
        assert_eq!(recovered.truncations.len(), 1);
        assert_eq!(recovered.truncations[0].path, files[0]);
        let kept: Vec<u64> = recovered.records.iter().map(|r| r.id).collect();
        let lost = records.len() - kept.len();
        assert_eq!(lost, 1, "only the corrupt record is gone: {kept:?}");
        assert_eq!(recovered.last_id, Some(12));
    }

    // --- Ids ---

    #[test]
    fn ids_continue_after_the_last_and_must_rise() {
        let dir = TestDir::new("ids");
        let (mut log, _) = open(&dir.0, unsynced());
        append_all(&mut log, 1..=5, 0);
        drop(log);
        let (mut log, recovered) = open(&dir.0, unsynced());
        assert_eq!(recovered.last_id, Some(5));
        let error = log
            .append(&stored(5, 0).as_record(), Instant::now())
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        // Gaps are fine.
        append_all(&mut log, [9], 0);
        drop(log);
        let (_, recovered) = open(&dir.0, unsynced());
        assert_eq!(recovered.last_id, Some(9));
        assert_eq!(recovered.records.len(), 6);
    }

    #[test]
    fn an_empty_last_segment_still_knows_the_last_id() {
        // Retention took the older segments and the last one's only record was
        // torn: its name still says ids continue after 41.
        let dir = TestDir::new("empty-last");
        fs::create_dir_all(&dir.0).unwrap();
        fs::write(dir.0.join(segment_name(42)), b"\x30\0\0").unwrap();
        let (mut log, recovered) = open(&dir.0, unsynced());
        assert_eq!(recovered.last_id, Some(41));
        assert_eq!(recovered.truncations[0].reason, Corruption::ShortHeader);
        assert!(log
            .append(&stored(41, 0).as_record(), Instant::now())
            .is_err());
        append_all(&mut log, [42], 0);
        assert_eq!(segment_files(&dir.0), [dir.0.join(segment_name(42))]);
    }

    // --- Limits ---

    #[test]
    fn record_limit_is_exact() {
        let dir = TestDir::new("record-limit");
        let limit = 100;
        let config = FileLogConfig {
            max_record_bytes: limit,
            ..unsynced()
        };
        let (mut log, _) = open(&dir.0, config);
        let fits = vec![7u8; limit as usize - RECORD_OVERHEAD - 2];
        fn record(id: u64, data: &[u8]) -> Record<'_> {
            Record {
                id,
                unix_ms: 0,
                topic: "t",
                event: "e",
                kind: b't',
                data,
            }
        }
        assert_eq!(record(1, &fits).encoded_len(), limit as usize);
        log.append(&record(1, &fits), Instant::now()).unwrap();
        let over = vec![7u8; fits.len() + 1];
        let error = log.append(&record(2, &over), Instant::now()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(log.total_bytes(), u64::from(limit), "nothing written");
        let long_name = "n".repeat(65_536);
        let config = FileLogConfig::default();
        let dir = TestDir::new("name-limit");
        let (mut log, _) = open(&dir.0, config);
        let named = Record {
            topic: &long_name,
            ..record(1, b"")
        };
        let error = log.append(&named, Instant::now()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        // A limit that cannot hold the overhead is refused at open.
        let tiny = FileLogConfig {
            max_record_bytes: RECORD_OVERHEAD as u32,
            ..config
        };
        let error = FileLog::open(&dir.0, tiny, wall(0)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn a_segment_rolls_only_past_segment_bytes() {
        let dir = TestDir::new("roll");
        let one = stored(1, 0).as_record().encoded_len() as u64;
        let config = FileLogConfig {
            segment_bytes: 2 * one,
            ..unsynced()
        };
        let (mut log, _) = open(&dir.0, config);
        // Records 1..=9 have the same length (one digit in their data).
        append_all(&mut log, 1..=2, 0);
        assert_eq!(log.segment_count(), 1, "exactly full");
        append_all(&mut log, [3], 0);
        assert_eq!(log.segment_count(), 2, "one byte over");
        assert_eq!(
            segment_files(&dir.0),
            [dir.0.join(segment_name(1)), dir.0.join(segment_name(3))]
        );
        // A record larger than a segment gets one of its own.
        let big = vec![0u8; 3 * one as usize];
        let four = stored(4, 0);
        let record = Record {
            data: &big,
            ..four.as_record()
        };
        log.append(&record, Instant::now()).unwrap();
        append_all(&mut log, [5], 0);
        assert_eq!(log.segment_count(), 4);
    }

    // --- Retention ---

    #[test]
    fn retention_by_bytes_removes_whole_old_segments() {
        let dir = TestDir::new("retain-bytes");
        let one = stored(10, 0).as_record().encoded_len() as u64;
        let config = FileLogConfig {
            segment_bytes: 3 * one,
            max_total_bytes: 10 * one,
            ..unsynced()
        };
        let (mut log, _) = open(&dir.0, config);
        for id in 10..=99 {
            append_all(&mut log, [id], 0);
            assert!(log.total_bytes() <= config.max_total_bytes, "id {id}");
            let on_disk: u64 = segment_files(&dir.0)
                .iter()
                .map(|path| fs::metadata(path).unwrap().len())
                .sum();
            assert_eq!(on_disk, log.total_bytes());
        }
        drop(log);
        let (_, recovered) = open(&dir.0, config);
        let ids: Vec<u64> = recovered.records.iter().map(|r| r.id).collect();
        // The newest records, with no gap; segments of 3 went whole, and only
        // as many as needed: at least 10 - 3 + 1 records stay.
        assert!((8..=10).contains(&ids.len()), "{ids:?}");
        assert!(ids.iter().copied().eq(100 - ids.len() as u64..=99));
        // Reopened with half the room: the oldest go at open, reported.
        let half = FileLogConfig {
            max_total_bytes: 5 * one,
            ..config
        };
        let (log, recovered) = open(&dir.0, half);
        assert_eq!(recovered.removed.len(), 2);
        assert_eq!(recovered.records.len(), ids.len() - 6);
        assert!(log.total_bytes() <= half.max_total_bytes);
        assert_eq!(recovered.last_id, Some(99));
    }

    #[test]
    fn retention_by_age_removes_segments_whose_newest_record_is_too_old() {
        let dir = TestDir::new("retain-age");
        let hour = 3_600_000;
        let one = stored(1, 0).as_record().encoded_len() as u64;
        let config = FileLogConfig {
            segment_bytes: 2 * one,
            max_age: Some(Duration::from_millis(hour)),
            ..unsynced()
        };
        let (mut log, _) = open(&dir.0, config);
        // Two records per segment, ten minutes apart: segments end at minutes
        // 10, 30, 50, 70 and 90 (the last, 80-90, being appended to).
        for id in 1..=10u64 {
            let record = stored(id, 1_700_000_000_000 + (id - 1) * hour / 6);
            log.append(&record.as_record(), Instant::now()).unwrap();
        }
        assert_eq!(log.segment_count(), 5);
        // At minute 70 the segment ending at minute 10 is exactly an hour old.
        assert_eq!(log.remove_expired(wall(70 * hour / 60 - 1)).unwrap(), 0);
        assert_eq!(log.remove_expired(wall(70 * hour / 60)).unwrap(), 1);
        // A day later, everything but the last segment.
        assert_eq!(log.remove_expired(wall(24 * hour)).unwrap(), 3);
        assert_eq!(log.segment_count(), 1);
        assert_eq!(
            log.remove_expired(wall(48 * hour)).unwrap(),
            0,
            "never the last"
        );
        append_all(&mut log, [11], 1_700_000_000_000);
        drop(log);
        // At open too: the segment of 9 and 10 has expired; that of 11 is the
        // last and stays, however old.
        let (log, recovered) = FileLog::open(&dir.0, config, wall(48 * hour)).unwrap();
        assert_eq!(recovered.removed.len(), 1);
        assert_eq!(
            recovered.records.iter().map(|r| r.id).collect::<Vec<_>>(),
            [11]
        );
        assert_eq!(recovered.last_id, Some(11));
        assert_eq!(log.segment_count(), 1);
        // No max_age: nothing expires.
        let forever = FileLogConfig {
            max_age: None,
            ..config
        };
        let (mut log, _) = FileLog::open(&dir.0, forever, wall(0)).unwrap();
        append_all(&mut log, 12..=15, 0);
        assert_eq!(log.remove_expired(wall(1_000 * hour)).unwrap(), 0);
    }

    // --- The fsync policy's hooks ---

    #[test]
    fn every_millis_asks_for_one_sync_by_the_first_appends_deadline() {
        let dir = TestDir::new("every-millis");
        let config = FileLogConfig {
            fsync: FsyncPolicy::EveryMillis(50),
            ..FileLogConfig::default()
        };
        let (mut log, _) = open(&dir.0, config);
        assert_eq!(log.poll_timeout(), None);
        let start = Instant::now();
        log.append(&stored(1, 0).as_record(), start).unwrap();
        let deadline = start + Duration::from_millis(50);
        assert_eq!(log.poll_timeout(), Some(deadline));
        log.append(&stored(2, 0).as_record(), start + Duration::from_millis(10))
            .unwrap();
        assert_eq!(
            log.poll_timeout(),
            Some(deadline),
            "the first append's deadline"
        );
        log.handle_timeout(deadline - Duration::from_millis(1))
            .unwrap();
        assert_eq!(log.poll_timeout(), Some(deadline), "not due yet");
        log.handle_timeout(deadline).unwrap();
        assert_eq!(log.poll_timeout(), None, "synced");
        assert!(!log.unsynced);
    }

    #[test]
    fn always_and_never_ask_for_no_timeout() {
        for fsync in [FsyncPolicy::Always, FsyncPolicy::Never] {
            let dir = TestDir::new("no-timeout");
            let config = FileLogConfig {
                fsync,
                ..FileLogConfig::default()
            };
            let (mut log, _) = open(&dir.0, config);
            append_all(&mut log, 1..=3, 0);
            assert_eq!(log.poll_timeout(), None);
            assert_eq!(log.unsynced, fsync == FsyncPolicy::Never);
            log.sync().unwrap();
            assert!(!log.unsynced);
        }
    }

    #[test]
    fn a_failed_log_refuses_everything() {
        let dir = TestDir::new("failed");
        let (mut log, _) = open(&dir.0, unsynced());
        append_all(&mut log, [1], 0);
        log.failed = Some(io::ErrorKind::Other);
        let now = Instant::now();
        assert!(log.append(&stored(2, 0).as_record(), now).is_err());
        assert!(log.sync().is_err());
        assert!(log.remove_expired(wall(0)).is_err());
    }

    // --- A crash in the middle of a burst ---

    /// Set in the child process: the directory to append to until killed.
    const CRASH_DIR_ENV: &str = "PUSHLOOP_FILE_LOG_CRASH_DIR";
    /// Acknowledged appends after which the parent kills the child.
    const ACKS_BEFORE_KILL: u64 = 300;
    /// The child stops by itself after this many, so nothing runs forever.
    const CHILD_MAX_APPENDS: u64 = 100_000;

    /// The child's side: appends with `Always` into small segments, printing
    /// `acked <id>` after each append that returned `Ok`.
    fn append_until_killed(dir: &Path) {
        let config = FileLogConfig {
            fsync: FsyncPolicy::Always,
            segment_bytes: 4096,
            max_age: None,
            ..FileLogConfig::default()
        };
        let (mut log, _) = FileLog::open(dir, config, SystemTime::now()).expect("child open");
        let mut out = io::stdout().lock();
        for id in 1..=CHILD_MAX_APPENDS {
            log.append(&stored(id, 0).as_record(), Instant::now())
                .expect("child append");
            writeln!(out, "acked {id}").expect("child stdout");
            out.flush().expect("child stdout");
        }
    }

    #[test]
    fn kill_9_mid_burst_keeps_every_acknowledged_record() {
        if let Some(dir) = std::env::var_os(CRASH_DIR_ENV) {
            append_until_killed(Path::new(&dir));
            return;
        }
        let dir = TestDir::new("kill-9");
        let test_name = concat!(
            module_path!(),
            "::kill_9_mid_burst_keeps_every_acknowledged_record"
        );
        let test_name = test_name
            .split_once("::")
            .map_or(test_name, |(_, name)| name);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
            .env(CRASH_DIR_ENV, &dir.0)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut acked = 0u64;
        let mut lines = io::BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            if let Some(id) = line.unwrap().strip_prefix("acked ") {
                acked = id.parse().unwrap();
                if acked == ACKS_BEFORE_KILL {
                    break;
                }
            }
        }
        assert_eq!(acked, ACKS_BEFORE_KILL, "the child stopped early");
        // SIGKILL: no destructor, no flush, in the middle of the burst.
        child.kill().unwrap();
        child.wait().unwrap();
        // Acknowledgements already in the pipe count too.
        for line in lines {
            if let Some(id) = line.unwrap().strip_prefix("acked ") {
                acked = id.parse().unwrap();
            }
        }
        assert!(
            acked < CHILD_MAX_APPENDS,
            "the child finished before the kill"
        );
        let config = FileLogConfig {
            max_age: None,
            ..FileLogConfig::default()
        };
        let (_, recovered) = FileLog::open(&dir.0, config, SystemTime::now()).unwrap();
        let ids: Vec<u64> = recovered.records.iter().map(|r| r.id).collect();
        // Every acknowledged record, in order, and at most the one in flight.
        assert!(
            ids.len() as u64 >= acked,
            "{} recovered, {acked} acked",
            ids.len()
        );
        assert!(ids.len() as u64 <= acked + 1);
        assert!(ids.iter().copied().eq(1..=ids.len() as u64));
        for record in &recovered.records {
            assert_eq!(*record, stored(record.id, 0));
        }
    }

    // --- Measurements (run by hand) ---

    /// Appends per second for each policy, and the CRC's speed.
    /// `cargo test --release --lib -- --ignored measure_appends_per_policy --nocapture`
    /// Set `PUSHLOOP_BENCH_DIR` to measure another disk (default: `target/`).
    #[test]
    #[ignore]
    fn measure_appends_per_policy() {
        let base = std::env::var_os("PUSHLOOP_BENCH_DIR").map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
            PathBuf::from,
        );
        let data = vec![b'x'; 200];
        let policies = [
            FsyncPolicy::Always,
            FsyncPolicy::EveryMillis(1),
            FsyncPolicy::EveryMillis(1000),
            FsyncPolicy::Never,
        ];
        for fsync in policies {
            let dir = base.join(format!("file-log-bench-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            let config = FileLogConfig {
                fsync,
                ..FileLogConfig::default()
            };
            let (mut log, _) = FileLog::open(&dir, config, SystemTime::now()).unwrap();
            let budget = Duration::from_secs(2);
            let start = Instant::now();
            let mut id = 0;
            while start.elapsed() < budget {
                for _ in 0..64 {
                    id += 1;
                    let record = Record {
                        id,
                        unix_ms: unix_ms(SystemTime::now()),
                        topic: "news",
                        event: "message",
                        kind: b't',
                        data: &data,
                    };
                    let now = Instant::now();
                    log.append(&record, now).unwrap();
                    // As the loop would: sync when the deadline has come.
                    log.handle_timeout(now).unwrap();
                }
            }
            let elapsed = start.elapsed();
            println!(
                "{fsync:?}: {id} appends in {elapsed:.2?} = {:.0} appends/s",
                id as f64 / elapsed.as_secs_f64()
            );
            drop(log);
            // Recovery of what was written.
            let start = Instant::now();
            let (_, recovered) = FileLog::open(&dir, config, SystemTime::now()).unwrap();
            println!(
                "  open: {} records in {:.2?}",
                recovered.records.len(),
                start.elapsed()
            );
            let _ = fs::remove_dir_all(&dir);
        }
        let block = vec![0xA5u8; 1 << 20];
        let start = Instant::now();
        let mut crc = Crc32::new();
        for _ in 0..256 {
            crc = crc.update(&block);
        }
        let elapsed = start.elapsed();
        println!(
            "CRC-32 slice-by-8: 256 MiB in {elapsed:.2?} = {:.2} GB/s ({:08x})",
            256.0 * 1_048_576.0 / elapsed.as_secs_f64() / 1e9,
            crc.finish()
        );
    }
}
