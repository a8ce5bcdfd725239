//! Durable Raft state on disk: one append-only file of checksummed records.
//!
//! Every [`PersistRequest`] the node emits becomes one record, appended and
//! made durable with `fdatasync` before the driver acknowledges it. Opening
//! the store replays every record to rebuild the hard state and the log.
//!
//! ## Record format
//!
//! ```text
//! +----------------+----------------+----------------------------+
//! | length: u32 LE | crc32: u32 LE  | payload: `length` bytes    |
//! +----------------+----------------+----------------------------+
//! ```
//!
//! The checksum is CRC-32/ISCSI (Castagnoli) of the payload; the payload is a
//! bincode encoding of the request's truncation point, entries and hard state.
//!
//! ## Crash recovery
//!
//! A crash can leave the last record half-written. When opening, a record
//! that runs past the end of the file, or whose checksum fails while it ends
//! exactly at the end of the file, is a *torn tail*: it was never
//! acknowledged, so it is discarded and the file is cut back to the last good
//! record. Damage anywhere else means acknowledged data is gone, and opening
//! fails with [`StorageError::Corrupt`] naming the offset.
//!
//! ## Limits of this skeleton
//!
//! The file only grows (every write repeats the hard state, and nothing is
//! compacted), and opening reads it whole into memory. Snapshots and log
//! compaction belong here once the core supports them.

use chorus_core::raft::{DurableState, Entry, HardState, PersistId, PersistRequest, Snapshot};
use chorus_core::types::LogIndex;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Name of the log file inside the data directory.
pub const LOG_FILE_NAME: &str = "raft.log";

/// Bytes of a record header: length then checksum, both `u32` little-endian.
pub const RECORD_HEADER_BYTES: usize = 8;

/// Largest record payload written or accepted, in bytes. One write carries at
/// most one append's worth of entries, each bounded by the core's
/// `max_command_bytes`; this leaves ample room while keeping a corrupt length
/// field from asking for gigabytes.
pub const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

const CHECKSUM: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// What one record holds: a [`PersistRequest`] without its id (ids only order
/// writes within one run of the node).
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    snapshot: Option<Snapshot>,
    discard_upto: Option<LogIndex>,
    truncate_from: Option<LogIndex>,
    entries: Vec<Entry>,
    hard_state: HardState,
}

fn codec() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Why opening or writing the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The operating system refused an operation on `path`. From
    /// [`Storage::open`]: nothing was opened. From [`Storage::persist`]: the
    /// write may be partly on disk, so the store refuses every later write;
    /// reopen it (which discards the torn record) to go on.
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
    /// A record before the tail is damaged: acknowledged writes are lost.
    /// Nothing was opened and the file was not modified.
    #[error("{path}: corrupt record at byte offset {offset}: {reason}")]
    Corrupt {
        /// The log file.
        path: PathBuf,
        /// Byte offset of the damaged record's header.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The records are intact but do not describe a dense log (a truncation
    /// or an append that does not fit what came before). Nothing was opened
    /// and the file was not modified.
    #[error("{path}: record at byte offset {offset} does not fit the log: {reason}")]
    Inconsistent {
        /// The log file.
        path: PathBuf,
        /// Byte offset of the offending record's header.
        offset: u64,
        /// How it fails to fit.
        reason: String,
    },
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

/// The open store: appends records to the log file.
#[derive(Debug)]
pub struct Storage {
    path: PathBuf,
    file: File,
    poisoned: bool,
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

impl Storage {
    /// Opens the store in `dir` (creating the directory and an empty log if
    /// needed) and replays it.
    pub fn open(dir: &Path) -> Result<(Storage, Recovered), StorageError> {
        let io_error = |operation, path: &Path| {
            let path = path.to_path_buf();
            move |source| StorageError::Io { operation, path, source }
        };
        std::fs::create_dir_all(dir).map_err(io_error("create directory", dir))?;
        let path = dir.join(LOG_FILE_NAME);
        let existed = path.exists();
        let mut file =
            OpenOptions::new().read(true).append(true).create(true).open(&path).map_err(io_error("open", &path))?;
        if !existed {
            // The new file's directory entry must be durable too.
            File::open(dir).and_then(|directory| directory.sync_all()).map_err(io_error("sync directory", dir))?;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_error("read", &path))?;
        let (recovered, valid_bytes) = replay(&path, &bytes)?;
        if valid_bytes < bytes.len() as u64 {
            file.set_len(valid_bytes)
                .and_then(|()| file.sync_all())
                .map_err(io_error("truncate torn tail of", &path))?;
        }
        let storage = Storage { path, file, poisoned: false };
        Ok((storage, recovered))
    }

    /// Path of the log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `request` as one record and waits until it is durable. Only
    /// then may the driver call `RaftNode::handle_persisted`.
    pub fn persist(&mut self, request: &PersistRequest) -> Result<(), StorageError> {
        self.append(request)?;
        self.sync()
    }

    /// Appends `request` as one record without waiting for the disk. Several
    /// appends followed by one [`sync`](Self::sync) make a batch durable with a
    /// single flush.
    pub fn append(&mut self, request: &PersistRequest) -> Result<(), StorageError> {
        if self.poisoned {
            return Err(StorageError::Poisoned);
        }
        let frame = encode_record(request)?;
        if let Err(source) = self.file.write_all(&frame) {
            self.poisoned = true;
            return Err(StorageError::Io { operation: "append to", path: self.path.clone(), source });
        }
        Ok(())
    }

    /// Waits until every appended record is durable.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        if self.poisoned {
            return Err(StorageError::Poisoned);
        }
        if let Err(source) = self.file.sync_data() {
            // After a failed fsync the kernel may have dropped the dirty
            // pages; nothing written since the last good sync can be trusted.
            self.poisoned = true;
            return Err(StorageError::Io { operation: "sync", path: self.path.clone(), source });
        }
        Ok(())
    }
}

/// Encodes one framed record.
fn encode_record(request: &PersistRequest) -> Result<Vec<u8>, StorageError> {
    let record = Record {
        snapshot: request.snapshot.clone(),
        discard_upto: request.discard_upto,
        truncate_from: request.truncate_from,
        entries: request.entries.clone(),
        hard_state: request.hard_state,
    };
    let payload = bincode::serde::encode_to_vec(&record, codec())
        .expect("invariant: in-memory entries and hard states always encode");
    if payload.len() > MAX_RECORD_BYTES {
        return Err(StorageError::RecordTooLarge { bytes: payload.len() });
    }
    let length = u32::try_from(payload.len()).expect("MAX_RECORD_BYTES fits in u32");
    let mut frame = Vec::with_capacity(RECORD_HEADER_BYTES + payload.len());
    frame.extend_from_slice(&length.to_le_bytes());
    frame.extend_from_slice(&CHECKSUM.checksum(&payload).to_le_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// Replays every record in `bytes`. Returns the recovered state and how many
/// leading bytes are valid (the rest is a torn tail).
fn replay(path: &Path, bytes: &[u8]) -> Result<(Recovered, u64), StorageError> {
    let corrupt = |offset: usize, reason: String| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    let mut recovered = Recovered::default();
    let mut offset = 0usize;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        if rest.len() < RECORD_HEADER_BYTES {
            break; // torn header
        }
        let length = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        let checksum = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        if length == 0 && rest.iter().all(|byte| *byte == 0) {
            break; // a zero-filled tail: the file grew but the data never landed
        }
        if length == 0 || length > MAX_RECORD_BYTES {
            return Err(corrupt(offset, format!("impossible record length {length}")));
        }
        let end = RECORD_HEADER_BYTES + length;
        if rest.len() < end {
            break; // torn payload
        }
        let payload = &rest[RECORD_HEADER_BYTES..end];
        if CHECKSUM.checksum(payload) != checksum {
            if rest.len() == end {
                break; // the last record was torn mid-payload
            }
            return Err(corrupt(offset, "checksum mismatch".to_string()));
        }
        let (record, used): (Record, usize) = bincode::serde::decode_from_slice(payload, codec())
            .map_err(|error| corrupt(offset, format!("undecodable payload: {error}")))?;
        if used != payload.len() {
            return Err(corrupt(offset, format!("{} bytes after the payload", payload.len() - used)));
        }
        apply(&mut recovered, record).map_err(|reason| StorageError::Inconsistent {
            path: path.to_path_buf(),
            offset: offset as u64,
            reason,
        })?;
        offset += end;
    }
    recovered.discarded_tail_bytes = (bytes.len() - offset) as u64;
    Ok((recovered, offset as u64))
}

/// Applies one replayed record to the recovered state, by the core's one
/// rule for applying a write ([`DurableState::apply`]).
fn apply(recovered: &mut Recovered, record: Record) -> Result<(), String> {
    let Record { snapshot, discard_upto, truncate_from, entries, hard_state } = record;
    // Ids only order writes within one run of the node; replay needs none.
    let write = PersistRequest { id: PersistId(0), snapshot, discard_upto, truncate_from, entries, hard_state };
    recovered.state.apply(&write).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_core::raft::{Payload, PersistId};
    use chorus_core::types::{NodeId, Term};
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            static COUNTER: AtomicU64 = AtomicU64::new(0);
            let unique =
                format!("chorus-storage-{name}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
            let path = std::env::temp_dir().join(unique);
            let _ = std::fs::remove_dir_all(&path);
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn entry(index: u64, term: u64, command: &[u8]) -> Entry {
        Entry { index: LogIndex(index), term: Term(term), payload: Payload::Command(command.to_vec().into()) }
    }

    fn request(id: u64, truncate_from: Option<u64>, entries: Vec<Entry>, term: u64) -> PersistRequest {
        PersistRequest {
            id: PersistId(id),
            snapshot: None,
            discard_upto: None,
            truncate_from: truncate_from.map(LogIndex),
            entries,
            hard_state: HardState {
                term: Term(term),
                voted_for: Some(NodeId(1)),
                commit: LogIndex(0),
                ..HardState::default()
            },
        }
    }

    fn write_three_records(dir: &Path) {
        let (mut storage, recovered) = Storage::open(dir).unwrap();
        assert_eq!(recovered, Recovered::default());
        storage.persist(&request(1, None, vec![entry(1, 1, b"a"), entry(2, 1, b"b")], 1)).unwrap();
        storage.persist(&request(2, Some(2), vec![entry(2, 2, b"c")], 2)).unwrap();
        storage.persist(&request(3, None, vec![entry(3, 2, b"d")], 2)).unwrap();
    }

    #[test]
    fn reopening_replays_appends_truncations_and_the_last_hard_state() {
        let dir = TempDir::new("replay");
        write_three_records(&dir.0);
        let (_, recovered) = Storage::open(&dir.0).unwrap();
        assert_eq!(recovered.state.entries, vec![entry(1, 1, b"a"), entry(2, 2, b"c"), entry(3, 2, b"d")]);
        assert_eq!(recovered.state.hard_state.term, Term(2));
        assert_eq!(recovered.discarded_tail_bytes, 0);
    }

    #[test]
    fn a_torn_tail_is_discarded_and_cut_off_the_file() {
        let dir = TempDir::new("torn");
        write_three_records(&dir.0);
        let path = dir.0.join(LOG_FILE_NAME);
        let full = std::fs::metadata(&path).unwrap().len();
        // Tear the last record in the middle of its payload.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(full - 3).unwrap();
        drop(file);

        let (mut storage, recovered) = Storage::open(&dir.0).unwrap();
        assert_eq!(recovered.state.entries, vec![entry(1, 1, b"a"), entry(2, 2, b"c")]);
        assert!(recovered.discarded_tail_bytes > 0);
        // Appends after recovery follow the last good record.
        storage.persist(&request(4, None, vec![entry(3, 2, b"e")], 2)).unwrap();
        let (_, recovered) = Storage::open(&dir.0).unwrap();
        assert_eq!(recovered.state.entries.last(), Some(&entry(3, 2, b"e")));
        assert_eq!(recovered.discarded_tail_bytes, 0);
    }

    #[test]
    fn a_torn_header_and_a_zero_filled_tail_are_discarded() {
        for garbage in [vec![7u8, 0, 0], vec![0u8; 40]] {
            let dir = TempDir::new("torn-header");
            write_three_records(&dir.0);
            let path = dir.0.join(LOG_FILE_NAME);
            let mut file = OpenOptions::new().append(true).open(&path).unwrap();
            file.write_all(&garbage).unwrap();
            drop(file);
            let (_, recovered) = Storage::open(&dir.0).unwrap();
            assert_eq!(recovered.state.entries.len(), 3);
            assert_eq!(recovered.discarded_tail_bytes, garbage.len() as u64);
        }
    }

    #[test]
    fn a_bad_checksum_in_the_last_record_is_a_torn_tail() {
        let dir = TempDir::new("tail-checksum");
        write_three_records(&dir.0);
        let path = dir.0.join(LOG_FILE_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (_, recovered) = Storage::open(&dir.0).unwrap();
        assert_eq!(recovered.state.entries.len(), 2);
    }

    #[test]
    fn corruption_before_the_tail_is_an_error_naming_the_offset() {
        let dir = TempDir::new("corrupt");
        write_three_records(&dir.0);
        let path = dir.0.join(LOG_FILE_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        let first_length = u32::from_le_bytes(bytes[0..4].try_into().unwrap()) as usize;
        let second_record = (RECORD_HEADER_BYTES + first_length) as u64;
        // Flip a payload byte of the second record (of three).
        bytes[second_record as usize + RECORD_HEADER_BYTES] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        match Storage::open(&dir.0) {
            Err(StorageError::Corrupt { offset, .. }) => assert_eq!(offset, second_record),
            other => panic!("expected corruption at {second_record}, got {other:?}"),
        }
        // The file was left as it was, for inspection.
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn a_record_that_does_not_fit_the_log_is_inconsistent() {
        let dir = TempDir::new("inconsistent");
        let (mut storage, _) = Storage::open(&dir.0).unwrap();
        storage.persist(&request(1, None, vec![entry(2, 1, b"gap")], 1)).unwrap();
        drop(storage);
        assert!(matches!(Storage::open(&dir.0), Err(StorageError::Inconsistent { offset: 0, .. })));
    }
}
