//! Durable Raft state on disk: a write-ahead log in segments, snapshots as
//! files of their own, and compaction that removes what a snapshot covers.
//!
//! ## Layout of the data directory
//!
//! ```text
//! wal/00000000000000000007.wal        segments, numbered without gaps
//! wal/00000000000000000008.wal        (the newest one is appended to)
//! snapshots/snapshot-<index>-<term>.snap
//! ```
//!
//! Every [`PersistRequest`] the node emits becomes one record of the newest
//! segment (its snapshot, if any, a file first). A segment starts with a
//! checkpoint (the hard state, the snapshot's description and the range of
//! stored entries at that moment) and ends once it reaches
//! [`StorageOptions::segment_bytes`]: the next record starts a new segment
//! (a record larger than that makes a segment of its own).
//!
//! ## When it waits for the disk (fsync rules)
//!
//! - [`Storage::sync`] (`fdatasync` of the newest segment) before the driver
//!   acknowledges any write: nothing is acknowledged that a power loss could
//!   take back. [`Storage::persist`] is append then sync; the driver appends
//!   a batch and syncs once (group commit).
//! - A segment is synced before the next one is created, and a new segment
//!   (its checkpoint) and its directory entry are synced before anything is
//!   written after it: only the newest segment can have a torn tail.
//! - A snapshot is written to a temporary file, synced, renamed into place,
//!   and the directory synced, all before the record naming it is written.
//! - Each removal of a segment or snapshot file is followed by a sync of its
//!   directory, so segments disappear oldest first even after a crash.
//!
//! ## Crash recovery
//!
//! Opening replays the segments from the oldest, one at a time (only the
//! entries not yet covered by the snapshot are kept). A record cut short at
//! the end of the newest segment (running past the end of the file, a
//! checksum that fails where the file ends, or a zero-filled tail) was never
//! acknowledged: it is cut off, with a warning naming the file and offset.
//! Damage anywhere else means acknowledged data may be gone, and opening
//! fails with [`StorageError::Corrupt`] naming the file and offset, and
//! changes nothing on disk. A snapshot file no record names (a crash between
//! the two) is removed.
//!
//! ## Compaction
//!
//! Once a write that stores a snapshot or discards a log prefix is durable,
//! every segment but the newest whose entries all lie before the first entry
//! still stored is removed (the next segment's checkpoint carries what the
//! log needs), and so is every snapshot file but the newest. The directory
//! stays bounded under a steady write load: about one snapshot plus the
//! entries the snapshot policy keeps, rounded up to whole segments.

mod record;
mod segment;
mod shape;
mod snapshot_file;
#[cfg(test)]
mod tests;

use crate::metrics::Histogram;
use chorus_core::raft::{DurableState, PersistRequest};
use chorus_core::types::LogIndex;
use record::{WalRecord, WriteRecord};
use segment::Segment;
use shape::{LogShape, Replay};
use std::borrow::Cow;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub use record::RECORD_HEADER_BYTES;

/// The directory of the log's segments, inside the data directory.
pub const WAL_DIR: &str = "wal";

/// The directory of snapshot files, inside the data directory.
pub const SNAPSHOT_DIR: &str = "snapshots";

/// The single log file of earlier versions; a data directory holding one is
/// refused (see [`StorageError::LegacyLog`]).
pub const LEGACY_LOG_FILE_NAME: &str = "raft.log";

/// Largest record payload written or accepted, in bytes. One write carries at
/// most one append's worth of entries, each bounded by the core's
/// `max_command_bytes`; this leaves ample room while keeping a corrupt length
/// field from asking for gigabytes.
pub const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

/// Default size at which a segment ends: 64 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Smallest segment size accepted (smaller would mostly hold checkpoints).
pub const MIN_SEGMENT_BYTES: u64 = 4 * 1024;

/// How the store lays out its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageOptions {
    /// A segment ends once it holds this many bytes (at least
    /// [`MIN_SEGMENT_BYTES`]).
    pub segment_bytes: u64,
}

impl Default for StorageOptions {
    fn default() -> StorageOptions {
        StorageOptions { segment_bytes: DEFAULT_SEGMENT_BYTES }
    }
}

/// Why opening or writing the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The operating system refused an operation on `path`. From
    /// [`Storage::open`]: nothing was opened. From a write: the write may be
    /// partly on disk, so the store refuses every later write; reopen it
    /// (which discards the torn record) to go on.
    #[error("{operation} {path}: {source}")]
    Io {
        /// What was being done, e.g. "sync".
        operation: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A record before the tail, or a snapshot file, is damaged:
    /// acknowledged writes may be lost. Nothing was opened or modified.
    #[error("{path}: corrupt at byte offset {offset}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damaged record's header (or of the damage).
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The records are intact but do not describe a dense log (a truncation
    /// or an append that does not fit what came before). Nothing was opened
    /// or modified; from a write, nothing was written.
    #[error("{path}: record at byte offset {offset} does not fit the log: {reason}")]
    Inconsistent {
        /// The segment.
        path: PathBuf,
        /// Byte offset of the offending record's header.
        offset: u64,
        /// How it fails to fit.
        reason: String,
    },
    /// A segment is missing between two present ones. Nothing was opened.
    #[error("segment {path} is missing (the next one present is {next})")]
    MissingSegment {
        /// The first missing segment.
        path: PathBuf,
        /// The segment after the gap.
        next: PathBuf,
    },
    /// Entries the log still needs were in segments that are gone (removed
    /// by hand?). Nothing was opened.
    #[error(
        "log entries {first} to {last} are missing: they were written in segments before {path}, \
         which are gone"
    )]
    MissingEntries {
        /// The oldest segment present.
        path: PathBuf,
        /// The first missing entry.
        first: u64,
        /// The last missing entry.
        last: u64,
    },
    /// The data directory holds the single log file of an earlier version.
    /// Nothing was opened or modified.
    #[error("{path}: a log of an earlier version of chorus, which this version cannot read")]
    LegacyLog {
        /// The old log file.
        path: PathBuf,
    },
    /// [`StorageOptions::segment_bytes`] is below [`MIN_SEGMENT_BYTES`].
    #[error("segment size {0} bytes is below the minimum of {MIN_SEGMENT_BYTES}")]
    SegmentTooSmall(u64),
    /// The request encodes to more than [`MAX_RECORD_BYTES`]. Nothing was
    /// written; the store stays usable.
    #[error("a record of {bytes} bytes exceeds the {MAX_RECORD_BYTES}-byte limit")]
    RecordTooLarge {
        /// Size of the encoded record.
        bytes: usize,
    },
    /// An earlier write failed part-way. Nothing was written; reopen the
    /// store to go on.
    #[error("an earlier write failed; reopen the store")]
    Poisoned,
}

impl StorageError {
    /// Is the data on disk damaged or incomplete (as opposed to an operating
    /// system error or a refused request)? Such a disk must not be used to
    /// vote again: start the node on an empty directory as a new disk.
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            StorageError::Corrupt { .. }
                | StorageError::Inconsistent { .. }
                | StorageError::MissingSegment { .. }
                | StorageError::MissingEntries { .. }
        )
    }
}

/// Builds the [`StorageError::Io`] for `operation` on `path`.
fn io_error(operation: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StorageError {
    let path = path.to_path_buf();
    move |source| StorageError::Io { operation, path, source }
}

/// What the store did, for metrics.
#[derive(Debug, Default)]
pub struct StorageStats {
    /// Latency of each `fdatasync` of a segment.
    pub fsync_latency: Histogram,
    /// Snapshot files written.
    pub snapshots_written: AtomicU64,
    /// Segment files removed by compaction.
    pub segments_removed: AtomicU64,
    /// Segment files present now.
    pub segments: AtomicU64,
}

/// What [`Storage::open`] recovered.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// What the records add up to: the hard state of the last record (the
    /// default when the store is new), the latest stored snapshot, and the
    /// stored log, dense (from index 1, or within the snapshot).
    pub state: DurableState,
    /// Bytes of torn tail that were discarded (0 after a clean shutdown).
    pub discarded_tail_bytes: u64,
}

/// The open store: appends records to the newest segment.
#[derive(Debug)]
pub struct Storage {
    wal_dir: PathBuf,
    snapshot_dir: PathBuf,
    options: StorageOptions,
    /// Oldest first; the last is the one appended to.
    segments: VecDeque<Segment>,
    active: ActiveSegment,
    /// The shape of the log as of the last record appended.
    shape: LogShape,
    /// A snapshot or discard was written since the last compaction.
    compaction_due: bool,
    poisoned: bool,
    stats: Arc<StorageStats>,
}

/// The newest segment, open for appending.
#[derive(Debug)]
struct ActiveSegment {
    file: File,
    /// Bytes in it.
    size: u64,
    /// Does it hold more than its checkpoint?
    has_writes: bool,
}

/// What replaying the segments found.
struct Replayed {
    replay: Replay,
    segments: Vec<Segment>,
    /// Intact bytes and torn bytes of the newest segment.
    tail: (u64, u64),
    /// Does the newest segment hold more than its checkpoint?
    active_has_writes: bool,
}

impl Storage {
    /// Opens the store in `dir` with the default options (creating the
    /// directory and a first segment if needed) and replays it.
    pub fn open(dir: &Path) -> Result<(Storage, Recovered), StorageError> {
        Storage::open_with(dir, StorageOptions::default())
    }

    /// Opens the store in `dir` and replays it.
    pub fn open_with(dir: &Path, options: StorageOptions) -> Result<(Storage, Recovered), StorageError> {
        if options.segment_bytes < MIN_SEGMENT_BYTES {
            return Err(StorageError::SegmentTooSmall(options.segment_bytes));
        }
        let legacy = dir.join(LEGACY_LOG_FILE_NAME);
        if legacy.exists() {
            return Err(StorageError::LegacyLog { path: legacy });
        }
        let (wal_dir, snapshot_dir) = (dir.join(WAL_DIR), dir.join(SNAPSHOT_DIR));
        for path in [dir, &wal_dir, &snapshot_dir] {
            create_directory(path)?;
        }
        // The directory stands in for the newest segment until it is opened
        // below (by `resume` or `start_segment`).
        let placeholder = File::open(&wal_dir).map_err(io_error("open", &wal_dir))?;
        let mut storage = Storage {
            active: ActiveSegment { file: placeholder, size: 0, has_writes: false },
            wal_dir,
            snapshot_dir,
            options,
            segments: VecDeque::new(),
            shape: LogShape::default(),
            compaction_due: false,
            poisoned: false,
            stats: Arc::new(StorageStats::default()),
        };
        let numbers = segment::list(&storage.wal_dir)?;
        let replayed = if numbers.is_empty() { None } else { replay_segments(&storage.wal_dir, &numbers)? };
        let recovered = match replayed {
            Some(replayed) => storage.resume(replayed)?,
            None => {
                storage.refuse_lone_snapshots()?;
                snapshot_file::remove_all_but(&storage.snapshot_dir, None)?;
                storage.start_segment(1)?;
                Recovered::default()
            }
        };
        storage.stats.segments.store(storage.segments.len() as u64, Ordering::Relaxed);
        Ok((storage, recovered))
    }

    /// Takes up the replayed segments: loads the snapshot, removes files no
    /// record needs, cuts the torn tail, and opens the newest segment.
    fn resume(&mut self, replayed: Replayed) -> Result<Recovered, StorageError> {
        let Replayed { replay, segments, tail: (valid_bytes, torn_bytes), active_has_writes } = replayed;
        let oldest = segments.first().expect("invariant: replay found a segment").path.clone();
        let (shape, entries) = replay.finish().map_err(|(first, last)| StorageError::MissingEntries {
            path: oldest,
            first: first.0,
            last: last.0,
        })?;
        let snapshot = shape.snapshot.as_ref().map(|meta| snapshot_file::read(&self.snapshot_dir, meta)).transpose()?;
        let removed = snapshot_file::remove_all_but(&self.snapshot_dir, shape.snapshot.as_ref())?;
        if removed > 0 {
            tracing::info!(removed, dir = %self.snapshot_dir.display(), "removed snapshot files no log record names");
        }
        let newest = segments.last().expect("invariant: replay found a segment").path.clone();
        let file = OpenOptions::new().append(true).open(&newest).map_err(io_error("open", &newest))?;
        if torn_bytes > 0 {
            file.set_len(valid_bytes)
                .and_then(|()| file.sync_all())
                .map_err(io_error("cut the torn tail of", &newest))?;
            tracing::warn!(
                file = %newest.display(), offset = valid_bytes, bytes = torn_bytes,
                "cut a torn record off the end of the log (a write that was never acknowledged)"
            );
        }
        self.active = ActiveSegment { file, size: valid_bytes, has_writes: active_has_writes };
        self.segments = segments.into();
        self.shape = shape.clone();
        let state = DurableState { hard_state: shape.hard_state, snapshot, entries };
        Ok(Recovered { state, discarded_tail_bytes: torn_bytes })
    }

    /// Snapshot files without any segment mean the log was deleted: the
    /// disk must not pass for a new one (it would be bootstrapped or
    /// joined over what remains). Temporary files of an interrupted first
    /// snapshot are fine.
    fn refuse_lone_snapshots(&self) -> Result<(), StorageError> {
        let listing = std::fs::read_dir(&self.snapshot_dir).map_err(io_error("list", &self.snapshot_dir))?;
        for entry in listing {
            let path = entry.map_err(io_error("list", &self.snapshot_dir))?.path();
            if path.extension().is_some_and(|extension| extension == "snap") {
                let reason = "a snapshot file, but no log segment: the log was deleted".to_string();
                return Err(StorageError::Corrupt { path, offset: 0, reason });
            }
        }
        Ok(())
    }

    /// Starts segment `number` with a checkpoint of the current shape and
    /// makes it the one appended to.
    fn start_segment(&mut self, number: u64) -> Result<(), StorageError> {
        let (file, size) = segment::create(&self.wal_dir, number, &self.shape)?;
        self.active = ActiveSegment { file, size, has_writes: false };
        let path = segment::path(&self.wal_dir, number);
        self.segments.push_back(Segment { number, path, max_index: LogIndex::ZERO });
        self.stats.segments.store(self.segments.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// The directory of the log's segments.
    pub fn wal_dir(&self) -> &Path {
        &self.wal_dir
    }

    /// What the store did (shared; read it from any thread).
    pub fn stats(&self) -> Arc<StorageStats> {
        Arc::clone(&self.stats)
    }

    /// Appends `request` as one record and waits until it is durable. Only
    /// then may the driver call `RaftNode::handle_persisted`.
    pub fn persist(&mut self, request: &PersistRequest) -> Result<(), StorageError> {
        self.append(request)?;
        self.sync()
    }

    /// Appends `request` as one record without waiting for the disk (its
    /// snapshot, if any, is written durably first). Several appends followed
    /// by one [`sync`](Self::sync) make a batch durable with a single flush.
    pub fn append(&mut self, request: &PersistRequest) -> Result<(), StorageError> {
        if self.poisoned {
            return Err(StorageError::Poisoned);
        }
        let record = WalRecord::Write(WriteRecord {
            snapshot: request.snapshot.as_ref().map(|snapshot| snapshot.meta.clone()),
            discard_upto: request.discard_upto,
            truncate_from: request.truncate_from,
            entries: Cow::Borrowed(&request.entries),
            hard_state: request.hard_state,
        });
        let frame = record::encode(&record).map_err(|bytes| StorageError::RecordTooLarge { bytes })?;
        let WalRecord::Write(write) = &record else { unreachable!("built as a write just above") };
        let mut shape = self.shape.clone();
        shape.apply(write).map_err(|reason| StorageError::Inconsistent {
            path: self.segments.back().expect("invariant: a segment is always open").path.clone(),
            offset: self.active.size,
            reason,
        })?;
        let result = self.write_frame(request, &frame);
        if result.is_err() {
            self.poisoned = true;
        }
        result?;
        let segment = self.segments.back_mut().expect("invariant: a segment is always open");
        if let Some(last) = request.entries.last() {
            segment.max_index = segment.max_index.max(last.index);
        }
        self.compaction_due |= request.snapshot.is_some() || request.discard_upto.is_some();
        self.shape = shape;
        Ok(())
    }

    /// Writes the request's snapshot file, starts a new segment if this one
    /// is full, and appends `frame`.
    fn write_frame(&mut self, request: &PersistRequest, frame: &[u8]) -> Result<(), StorageError> {
        if let Some(snapshot) = &request.snapshot {
            snapshot_file::write(&self.snapshot_dir, snapshot)?;
            self.stats.snapshots_written.fetch_add(1, Ordering::Relaxed);
        }
        if self.active.has_writes && self.active.size + frame.len() as u64 > self.options.segment_bytes {
            self.sync_active()?;
            let next = self.segments.back().expect("invariant: a segment is always open").number + 1;
            self.start_segment(next)?;
        }
        let path = &self.segments.back().expect("invariant: a segment is always open").path;
        self.active.file.write_all(frame).map_err(io_error("append to", path))?;
        self.active.size += frame.len() as u64;
        self.active.has_writes = true;
        Ok(())
    }

    /// Waits until every appended record is durable, then removes the files
    /// a new snapshot made unnecessary.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        if self.poisoned {
            return Err(StorageError::Poisoned);
        }
        if let Err(error) = self.sync_active() {
            // After a failed fsync the kernel may have dropped the dirty
            // pages; nothing written since the last good sync can be trusted.
            self.poisoned = true;
            return Err(error);
        }
        if self.compaction_due {
            // A failed removal loses nothing: the files are retried after
            // the next snapshot.
            match self.compact() {
                Ok(()) => self.compaction_due = false,
                Err(error) => tracing::warn!(%error, "cannot remove log files a snapshot covers"),
            }
        }
        Ok(())
    }

    fn sync_active(&mut self) -> Result<(), StorageError> {
        let started = Instant::now();
        let path = &self.segments.back().expect("invariant: a segment is always open").path;
        self.active.file.sync_data().map_err(io_error("sync", path))?;
        self.stats.fsync_latency.observe(started.elapsed());
        Ok(())
    }

    /// Removes the oldest segments while every entry they hold lies before
    /// the first entry the log still stores, and every snapshot file but
    /// the newest.
    fn compact(&mut self) -> Result<(), StorageError> {
        let first_live = self.shape.first_live();
        while self.segments.len() > 1 && self.segments[0].max_index < first_live {
            let path = self.segments[0].path.clone();
            std::fs::remove_file(&path).map_err(io_error("remove", &path))?;
            snapshot_file::sync_directory(&self.wal_dir)?;
            self.segments.pop_front();
            self.stats.segments_removed.fetch_add(1, Ordering::Relaxed);
            self.stats.segments.store(self.segments.len() as u64, Ordering::Relaxed);
            tracing::debug!(file = %path.display(), "removed a segment the snapshot covers");
        }
        snapshot_file::remove_all_but(&self.snapshot_dir, self.shape.snapshot.as_ref())?;
        Ok(())
    }
}

/// Creates `path` if it is missing, and makes its directory entry durable.
fn create_directory(path: &Path) -> Result<(), StorageError> {
    if path.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(path).map_err(io_error("create directory", path))?;
    let parent = path.parent().filter(|parent| !parent.as_os_str().is_empty());
    snapshot_file::sync_directory(parent.unwrap_or(Path::new(".")))
}

/// Replays the segments `numbers` of `dir`, oldest first. `None` if the only
/// segment is the first one and its checkpoint never became durable (a
/// crash during the very first start).
fn replay_segments(dir: &Path, numbers: &[u64]) -> Result<Option<Replayed>, StorageError> {
    let mut replay: Option<Replay> = None;
    let mut segments = Vec::new();
    let mut tail = (0, 0);
    let mut active_has_writes = false;
    for (position, number) in numbers.iter().enumerate() {
        let path = segment::path(dir, *number);
        let last = position + 1 == numbers.len();
        let read = segment::read(&path, last)?;
        if read.records.is_empty() {
            // Only a torn checkpoint: the segment was being created; nothing
            // in it was ever acknowledged.
            let only_first = *number == 1 && replay.is_none();
            if !last || (replay.is_none() && !only_first) {
                return Err(StorageError::Corrupt { path, offset: 0, reason: "a segment without a checkpoint".into() });
            }
            std::fs::remove_file(&path).map_err(io_error("remove", &path))?;
            snapshot_file::sync_directory(dir)?;
            tracing::warn!(file = %path.display(), "removed a segment whose creation a crash interrupted");
            break;
        }
        active_has_writes = read.records.len() > 1;
        tail = (read.valid_bytes, read.torn_bytes);
        let max_index = replay_records(&path, read.records, &mut replay)?;
        segments.push(Segment { number: *number, path, max_index });
    }
    if segments.len() + 1 == numbers.len() {
        // The newest segment was removed above: the one before it, intact
        // and synced before the newest was created, is appended to again.
        let newest = segments.last().expect("invariant: a segment precedes the removed one");
        let size = std::fs::metadata(&newest.path).map_err(io_error("read", &newest.path))?.len();
        tail = (size, 0);
        active_has_writes = true;
    }
    Ok(replay.map(|replay| Replayed { replay, segments, tail, active_has_writes }))
}

/// Replays one segment's records into `replay` (started by the first
/// segment's checkpoint). Returns the highest entry index written in it.
fn replay_records(
    path: &Path,
    records: Vec<(u64, WalRecord<'static>)>,
    replay: &mut Option<Replay>,
) -> Result<LogIndex, StorageError> {
    let inconsistent = |offset: u64, reason: &str| StorageError::Inconsistent {
        path: path.to_path_buf(),
        offset,
        reason: reason.into(),
    };
    let mut records = records.into_iter();
    match (records.next(), replay.as_ref()) {
        (Some((_, WalRecord::Checkpoint(shape))), None) => *replay = Some(Replay::new(shape)),
        (Some((offset, WalRecord::Checkpoint(shape))), Some(replayed)) if replayed.shape != shape => {
            return Err(inconsistent(offset, "the checkpoint disagrees with the segments before it"));
        }
        (Some((_, WalRecord::Checkpoint(_))), Some(_)) => {}
        (Some((offset, WalRecord::Write(_))), _) => {
            return Err(inconsistent(offset, "the segment does not start with a checkpoint"));
        }
        (None, _) => return Err(inconsistent(0, "an empty segment")),
    }
    let replay = replay.as_mut().expect("invariant: set from the first checkpoint above");
    let mut max_index = LogIndex::ZERO;
    for (offset, record) in records {
        let WalRecord::Write(write) = record else {
            return Err(inconsistent(offset, "a checkpoint that does not start its segment"));
        };
        if let Some(last) = write.entries.last() {
            max_index = max_index.max(last.index);
        }
        replay.apply(write).map_err(|reason| inconsistent(offset, &reason))?;
    }
    Ok(max_index)
}
