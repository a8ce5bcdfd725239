//! Segment files: naming, listing, creating, and reading one back.
//!
//! Segments are numbered from 1 without gaps (`<number>.wal`, 20 digits);
//! compaction removes the oldest ones, so the lowest number on disk may be
//! higher than 1.

use super::record::{self, Frame, WalRecord};
use super::shape::LogShape;
use super::snapshot_file::sync_directory;
use super::{io_error, StorageError};
use chorus_core::types::LogIndex;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

const EXTENSION: &str = "wal";

/// One segment the store knows about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Segment {
    /// Its number: 1 for the first segment of the disk, one more for each.
    pub(super) number: u64,
    pub(super) path: PathBuf,
    /// The highest entry index written in it (0 if none): once the
    /// snapshot covers it, the segment holds nothing the log still needs.
    pub(super) max_index: LogIndex,
}

/// The path of segment `number` in `dir`.
pub(super) fn path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}.{EXTENSION}"))
}

/// The numbers of the segments in `dir`, ascending; an error names a
/// missing segment between two present ones.
pub(super) fn list(dir: &Path) -> Result<Vec<u64>, StorageError> {
    let mut numbers = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error("list", dir))? {
        let entry = entry.map_err(io_error("list", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(number) = name.strip_suffix(".wal").and_then(|stem| stem.parse::<u64>().ok()) {
            numbers.push(number);
        }
    }
    numbers.sort_unstable();
    if let Some(pair) = numbers.windows(2).find(|pair| pair[1] != pair[0] + 1) {
        return Err(StorageError::MissingSegment { path: path(dir, pair[0] + 1), next: path(dir, pair[1]) });
    }
    Ok(numbers)
}

/// Creates segment `number` holding its checkpoint, durably (the file and
/// its directory entry). Returns the file, open for appending, and its size.
pub(super) fn create(dir: &Path, number: u64, checkpoint: &LogShape) -> Result<(File, u64), StorageError> {
    let path = path(dir, number);
    let frame = record::encode(&WalRecord::Checkpoint(checkpoint.clone()))
        .expect("invariant: a checkpoint (no entries) is far below the record limit");
    let mut file = OpenOptions::new().create_new(true).append(true).open(&path).map_err(io_error("create", &path))?;
    file.write_all(&frame).and_then(|()| file.sync_all()).map_err(io_error("write the checkpoint of", &path))?;
    sync_directory(dir)?;
    Ok((file, frame.len() as u64))
}

/// The records of one segment, read whole.
#[derive(Debug)]
pub(super) struct SegmentRecords {
    pub(super) records: Vec<(u64, WalRecord<'static>)>,
    /// Offset of the first byte after the last intact record.
    pub(super) valid_bytes: u64,
    /// Bytes of torn tail after it.
    pub(super) torn_bytes: u64,
}

/// Reads every record of segment `path`. A torn tail is allowed only if
/// `last` (the newest segment); anywhere else damage is corruption.
pub(super) fn read(path: &Path, last: bool) -> Result<SegmentRecords, StorageError> {
    let bytes = fs::read(path).map_err(io_error("read", path))?;
    let corrupt = |offset: usize, reason: String| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    let mut records = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        match record::frame_at(&bytes, offset) {
            Frame::Record { payload, end } => {
                let record = record::decode(payload).map_err(|reason| corrupt(offset, reason))?;
                records.push((offset as u64, record));
                offset = end;
            }
            Frame::TornTail if last => break,
            Frame::TornTail => {
                return Err(corrupt(offset, "a record cut short in a segment that is not the newest".to_string()))
            }
            Frame::Corrupt(reason) => return Err(corrupt(offset, reason)),
        }
    }
    Ok(SegmentRecords { records, valid_bytes: offset as u64, torn_bytes: (bytes.len() - offset) as u64 })
}
