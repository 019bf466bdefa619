//! Durable topic history (issue 17): the building blocks, each usable alone.
//!
//! - [`file_log`]: an append-only log of events in segment files, with CRCs,
//!   recovery that truncates at the first torn or corrupt record, an fsync
//!   policy driven by the loop's clock, and retention by bytes and by age.
//! - [`crc32`]: the checksum the log stores with every record.
//!
//! The Redis Streams backend's wire protocol is sans-IO and lives in
//! `pushloop_proto::resp`.

pub mod crc32;
pub mod file_log;
