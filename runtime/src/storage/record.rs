//! What the write-ahead log holds, and how one record is framed on disk.
//!
//! ```text
//! +----------------+-----------------+-----------------+---------------------+
//! | length: u32 LE | payload crc: u32| header crc: u32 | payload: `length` B |
//! +----------------+-----------------+-----------------+---------------------+
//! ```
//!
//! Both checksums are CRC-32/ISCSI (Castagnoli): the payload's, and the
//! header's own over its first 8 bytes, so that a damaged length field is
//! told apart from a record cut short by a crash.

use super::shape::LogShape;
use super::MAX_RECORD_BYTES;
use chorus_core::raft::{Entry, HardState, SnapshotMeta};
use chorus_core::types::LogIndex;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// Bytes of a record header: length, payload checksum, header checksum.
pub const RECORD_HEADER_BYTES: usize = 12;

const CHECKSUM: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// One record of a segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum WalRecord<'a> {
    /// The first record of every segment: the log's shape when the segment
    /// was started, so that replay can begin at any segment once the older
    /// ones are deleted.
    Checkpoint(LogShape),
    /// One write of the node (a `PersistRequest` without its id). The
    /// snapshot itself is a file of its own, written before this record.
    Write(WriteRecord<'a>),
}

/// One `PersistRequest`, as the log stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct WriteRecord<'a> {
    /// The snapshot stored by this write (its file is named after it).
    pub(super) snapshot: Option<SnapshotMeta>,
    pub(super) discard_upto: Option<LogIndex>,
    pub(super) truncate_from: Option<LogIndex>,
    pub(super) entries: Cow<'a, [Entry]>,
    pub(super) hard_state: HardState,
}

fn codec() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes `record` as one frame, or returns the payload's size if it
/// exceeds [`MAX_RECORD_BYTES`].
pub(super) fn encode(record: &WalRecord<'_>) -> Result<Vec<u8>, usize> {
    let payload = bincode::serde::encode_to_vec(record, codec()).expect("invariant: in-memory records always encode");
    if payload.len() > MAX_RECORD_BYTES {
        return Err(payload.len());
    }
    let length = u32::try_from(payload.len()).expect("MAX_RECORD_BYTES fits in u32");
    let mut frame = Vec::with_capacity(RECORD_HEADER_BYTES + payload.len());
    frame.extend_from_slice(&length.to_le_bytes());
    frame.extend_from_slice(&CHECKSUM.checksum(&payload).to_le_bytes());
    let header_checksum = CHECKSUM.checksum(&frame[0..8]);
    frame.extend_from_slice(&header_checksum.to_le_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// Decodes a payload whose checksum matched.
pub(super) fn decode(payload: &[u8]) -> Result<WalRecord<'static>, String> {
    let (record, used): (WalRecord<'static>, usize) =
        bincode::serde::decode_from_slice(payload, codec()).map_err(|error| format!("undecodable payload: {error}"))?;
    if used != payload.len() {
        return Err(format!("{} bytes after the payload", payload.len() - used));
    }
    Ok(record)
}

/// What lies at an offset of a segment.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Frame<'a> {
    /// An intact record; the next one starts at `end`.
    Record {
        /// The payload, checksum verified.
        payload: &'a [u8],
        /// Offset of the byte after the record.
        end: usize,
    },
    /// A record cut short by a crash: it runs past the end of the file, its
    /// checksum fails while it ends exactly at the end of the file, or the
    /// rest of the file is zeros. It was never acknowledged.
    TornTail,
    /// Damage that a crash cannot explain.
    Corrupt(String),
}

/// Reads the frame at `offset` (below `bytes.len()`).
pub(super) fn frame_at(bytes: &[u8], offset: usize) -> Frame<'_> {
    let rest = &bytes[offset..];
    if rest.len() < RECORD_HEADER_BYTES {
        return Frame::TornTail;
    }
    let word = |at: usize| u32::from_le_bytes(rest[at..at + 4].try_into().expect("4 bytes"));
    let (length, payload_checksum, header_checksum) = (word(0) as usize, word(4), word(8));
    if CHECKSUM.checksum(&rest[0..8]) != header_checksum {
        if rest.iter().all(|byte| *byte == 0) {
            return Frame::TornTail; // the file grew but the data never landed
        }
        return Frame::Corrupt("header checksum mismatch".to_string());
    }
    if length == 0 || length > MAX_RECORD_BYTES {
        return Frame::Corrupt(format!("impossible record length {length}"));
    }
    let end = RECORD_HEADER_BYTES + length;
    if rest.len() < end {
        return Frame::TornTail;
    }
    let payload = &rest[RECORD_HEADER_BYTES..end];
    if CHECKSUM.checksum(payload) != payload_checksum {
        if rest.len() == end {
            return Frame::TornTail;
        }
        return Frame::Corrupt("payload checksum mismatch".to_string());
    }
    Frame::Record { payload, end: offset + end }
}

/// CRC-32/ISCSI of `bytes` (snapshot files use it too).
pub(super) fn checksum(bytes: &[u8]) -> u32 {
    CHECKSUM.checksum(bytes)
}
