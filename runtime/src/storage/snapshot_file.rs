//! Snapshots as files of their own, written atomically: a temporary file,
//! fsync, rename, fsync of the directory.
//!
//! ```text
//! +-------------+-----------------+-----------------+--------------------+
//! | "CHSNAP01"  | length: u64 LE  | payload crc: u32| payload: `length` B|
//! +-------------+-----------------+-----------------+--------------------+
//! ```
//!
//! The payload is the bincode encoding of the whole `Snapshot` (what it
//! covers and the state machine's bytes). A file is named after what it
//! covers, `snapshot-<index>-<term>.snap`, and counts only once a log record
//! names it: a file without one (a crash between the two) is removed on
//! open.

use super::record::checksum;
use super::{io_error, StorageError};
use chorus_core::raft::{Snapshot, SnapshotMeta};
use chorus_core::types::{LogIndex, Term};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"CHSNAP01";
const HEADER_BYTES: usize = 8 + 8 + 4;
const EXTENSION: &str = "snap";

/// The file name of the snapshot covering up to `index` in `term`.
pub(super) fn file_name(index: LogIndex, term: Term) -> String {
    format!("snapshot-{:020}-{:020}.{EXTENSION}", index.0, term.0)
}

/// Parses a snapshot file name into what it covers.
fn parse_name(name: &str) -> Option<(LogIndex, Term)> {
    let rest = name.strip_prefix("snapshot-")?.strip_suffix(".snap")?;
    let (index, term) = rest.split_once('-')?;
    Some((LogIndex(index.parse().ok()?), Term(term.parse().ok()?)))
}

/// Writes `snapshot` into `dir` atomically and durably; returns its path.
pub(super) fn write(dir: &Path, snapshot: &Snapshot) -> Result<PathBuf, StorageError> {
    let payload =
        bincode::serde::encode_to_vec(snapshot, bincode::config::standard()).expect("invariant: snapshots encode");
    let name = file_name(snapshot.meta.index, snapshot.meta.term);
    let path = dir.join(&name);
    let temporary = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&temporary).map_err(io_error("create", &temporary))?;
    let mut header = Vec::with_capacity(HEADER_BYTES);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    header.extend_from_slice(&checksum(&payload).to_le_bytes());
    file.write_all(&header)
        .and_then(|()| file.write_all(&payload))
        .and_then(|()| file.sync_all())
        .map_err(io_error("write", &temporary))?;
    drop(file);
    fs::rename(&temporary, &path).map_err(io_error("rename into place", &path))?;
    sync_directory(dir)?;
    Ok(path)
}

/// Reads the snapshot file for `meta` from `dir`, checking that it is
/// intact and covers what the log says it does.
pub(super) fn read(dir: &Path, meta: &SnapshotMeta) -> Result<Snapshot, StorageError> {
    let path = dir.join(file_name(meta.index, meta.term));
    let corrupt = |offset: u64, reason: String| StorageError::Corrupt { path: path.clone(), offset, reason };
    let bytes = fs::read(&path).map_err(io_error("read the snapshot the log names", &path))?;
    if bytes.len() < HEADER_BYTES || &bytes[0..8] != MAGIC {
        return Err(corrupt(0, "not a snapshot file (bad magic or too short)".to_string()));
    }
    let length = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let expected = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
    let payload = &bytes[HEADER_BYTES..];
    if payload.len() as u64 != length {
        return Err(corrupt(8, format!("length {length} but {} payload bytes", payload.len())));
    }
    if checksum(payload) != expected {
        return Err(corrupt(HEADER_BYTES as u64, "payload checksum mismatch".to_string()));
    }
    let (snapshot, _): (Snapshot, usize) = bincode::serde::decode_from_slice(payload, bincode::config::standard())
        .map_err(|error| corrupt(HEADER_BYTES as u64, format!("undecodable snapshot: {error}")))?;
    if &snapshot.meta != meta {
        return Err(corrupt(HEADER_BYTES as u64, "the snapshot does not cover what the log says".to_string()));
    }
    Ok(snapshot)
}

/// Removes every snapshot file and leftover temporary file in `dir` but
/// `keep`. Returns how many files were removed.
pub(super) fn remove_all_but(dir: &Path, keep: Option<&SnapshotMeta>) -> Result<usize, StorageError> {
    let keep = keep.map(|meta| file_name(meta.index, meta.term));
    let mut removed = 0;
    for entry in fs::read_dir(dir).map_err(io_error("list", dir))? {
        let entry = entry.map_err(io_error("list", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = parse_name(&name).is_some() || name.ends_with(".snap.tmp");
        if ours && Some(&name) != keep.as_ref() {
            let path = entry.path();
            fs::remove_file(&path).map_err(io_error("remove", &path))?;
            if parse_name(&name).is_some() {
                tracing::debug!(file = %path.display(), "removed a snapshot file no log record needs");
            }
            removed += 1;
        }
    }
    if removed > 0 {
        sync_directory(dir)?;
    }
    Ok(removed)
}

/// Makes the creation, renaming or removal of files in `dir` durable.
pub(super) fn sync_directory(dir: &Path) -> Result<(), StorageError> {
    File::open(dir).and_then(|directory| directory.sync_all()).map_err(io_error("sync directory", dir))
}
