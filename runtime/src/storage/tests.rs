use super::*;
use chorus_core::raft::{Entry, HardState, Membership, Payload, PersistId, Snapshot, SnapshotMeta};
use chorus_core::types::{LogIndex, NodeId, Term};
use std::sync::atomic::AtomicU64;

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

    fn segment(&self, number: u64) -> PathBuf {
        segment::path(&self.0.join(WAL_DIR), number)
    }

    fn files_in(&self, sub: &str) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(self.0.join(sub)).unwrap().map(|entry| entry.unwrap().path()).collect();
        files.sort();
        files
    }

    fn bytes(&self) -> u64 {
        [WAL_DIR, SNAPSHOT_DIR]
            .iter()
            .flat_map(|sub| self.files_in(sub))
            .map(|path| std::fs::metadata(path).unwrap().len())
            .sum()
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

fn hard_state(term: u64, commit: u64) -> HardState {
    HardState { term: Term(term), voted_for: Some(NodeId(1)), commit: LogIndex(commit), ..HardState::default() }
}

fn request(id: u64, truncate_from: Option<u64>, entries: Vec<Entry>, term: u64) -> PersistRequest {
    PersistRequest {
        id: PersistId(id),
        snapshot: None,
        discard_upto: None,
        truncate_from: truncate_from.map(LogIndex),
        entries,
        hard_state: hard_state(term, 0),
    }
}

fn snapshot(index: u64, term: u64, data: &[u8]) -> Snapshot {
    let membership = Membership::bootstrap(&[NodeId(1), NodeId(2), NodeId(3)]);
    Snapshot { meta: SnapshotMeta { index: LogIndex(index), term: Term(term), membership }, data: data.to_vec() }
}

fn small_segments() -> StorageOptions {
    StorageOptions { segment_bytes: MIN_SEGMENT_BYTES }
}

fn write_three_records(dir: &Path) {
    let (mut storage, recovered) = Storage::open(dir).unwrap();
    assert_eq!(recovered, Recovered::default());
    storage.persist(&request(1, None, vec![entry(1, 1, b"a"), entry(2, 1, b"b")], 1)).unwrap();
    storage.persist(&request(2, Some(2), vec![entry(2, 2, b"c")], 2)).unwrap();
    storage.persist(&request(3, None, vec![entry(3, 2, b"d")], 2)).unwrap();
}

/// Byte offsets of the records of segment `path` (its checkpoint first).
fn record_offsets(path: &Path) -> Vec<u64> {
    segment::read(path, true).unwrap().records.iter().map(|(offset, _)| *offset).collect()
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
fn a_torn_tail_is_cut_off_the_newest_segment() {
    let dir = TempDir::new("torn");
    write_three_records(&dir.0);
    let path = dir.segment(1);
    let full = std::fs::metadata(&path).unwrap().len();
    // Tear the last record in the middle of its payload.
    OpenOptions::new().write(true).open(&path).unwrap().set_len(full - 3).unwrap();

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
        let mut file = OpenOptions::new().append(true).open(dir.segment(1)).unwrap();
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
    let path = dir.segment(1);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let (_, recovered) = Storage::open(&dir.0).unwrap();
    assert_eq!(recovered.state.entries.len(), 2);
}

#[test]
fn corruption_before_the_tail_is_an_error_naming_the_file_and_offset() {
    // A flipped payload byte, and a damaged length field (which must not pass
    // for a record running past the end of the file).
    for (byte_in_record, name) in [(RECORD_HEADER_BYTES, "payload"), (1, "length")] {
        let dir = TempDir::new("corrupt");
        write_three_records(&dir.0);
        let path = dir.segment(1);
        let second_write = record_offsets(&path)[2];
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[second_write as usize + byte_in_record] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        match Storage::open(&dir.0) {
            Err(error @ StorageError::Corrupt { .. }) => {
                let StorageError::Corrupt { path: named, offset, .. } = &error else { unreachable!() };
                assert_eq!((named, *offset), (&path, second_write), "{name}: {error}");
                assert!(error.is_damage());
                let text = error.to_string();
                assert!(text.contains(&path.display().to_string()) && text.contains(&second_write.to_string()));
            }
            other => panic!("{name}: expected corruption at {second_write}, got {other:?}"),
        }
        // The file was left as it was, for inspection.
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }
}

#[test]
fn a_record_that_does_not_fit_the_log_is_refused_before_it_is_written() {
    let dir = TempDir::new("inconsistent");
    let (mut storage, _) = Storage::open(&dir.0).unwrap();
    let error = storage.persist(&request(1, None, vec![entry(2, 1, b"gap")], 1)).unwrap_err();
    assert!(matches!(error, StorageError::Inconsistent { .. }), "{error}");
    // Nothing was written, and the store goes on.
    storage.persist(&request(2, None, vec![entry(1, 1, b"a")], 1)).unwrap();
    drop(storage);
    assert_eq!(Storage::open(&dir.0).unwrap().1.state.entries, vec![entry(1, 1, b"a")]);
}

/// Appends `count` one-entry writes after `first`, with a snapshot and a
/// discard every `snapshot_every` entries (keeping `retained` before it),
/// synced in batches of ten as the driver does.
fn write_load(storage: &mut Storage, first: u64, count: u64, snapshot_every: u64, retained: u64) {
    for index in first..first + count {
        let mut write = request(index, None, vec![entry(index, 1, &[7u8; 100])], 1);
        write.hard_state.commit = LogIndex(index - 1);
        if snapshot_every > 0 && index % snapshot_every == 0 {
            write.snapshot = Some(snapshot(index - 1, 1, &index.to_le_bytes()));
            write.discard_upto = Some(LogIndex((index - 1).saturating_sub(retained)));
        }
        storage.append(&write).unwrap();
        if index % 10 == 0 || index + 1 == first + count {
            storage.sync().unwrap();
        }
    }
}

#[test]
fn segments_end_at_their_size_and_reopening_replays_them_all() {
    let dir = TempDir::new("segments");
    let (mut storage, _) = Storage::open_with(&dir.0, small_segments()).unwrap();
    write_load(&mut storage, 1, 200, 0, 0);
    drop(storage);
    let segments = dir.files_in(WAL_DIR);
    assert!(segments.len() > 3, "{segments:?}");
    for path in &segments {
        assert!(std::fs::metadata(path).unwrap().len() <= MIN_SEGMENT_BYTES, "{path:?}");
    }
    let (_, recovered) = Storage::open_with(&dir.0, small_segments()).unwrap();
    assert_eq!(recovered.state.entries.len(), 200);
    assert_eq!(recovered.state.entries[199], entry(200, 1, &[7u8; 100]));
}

#[test]
fn compaction_keeps_the_data_directory_bounded_under_a_long_write_load() {
    let dir = TempDir::new("bounded");
    let (mut storage, _) = Storage::open_with(&dir.0, small_segments()).unwrap();
    let mut largest = 0;
    // Each snapshot costs a few directory fsyncs, slow on some disks: few
    // snapshots, many entries.
    for round in 0..15 {
        write_load(&mut storage, 1 + round * 200, 200, 200, 10);
        largest = largest.max(dir.bytes());
    }
    // 3,000 entries of 100 bytes were written (over 400 KB with framing);
    // what stays is one snapshot and the entries since the one before, in
    // whole segments.
    assert!(largest < 48 * 1024, "the data directory grew to {largest} bytes");
    assert_eq!(dir.files_in(SNAPSHOT_DIR).len(), 1);
    assert!(storage.stats().segments_removed.load(Ordering::Relaxed) > 50);
    drop(storage);
    let (_, recovered) = Storage::open_with(&dir.0, small_segments()).unwrap();
    let snapshot = recovered.state.snapshot.as_ref().unwrap();
    assert_eq!(snapshot.meta.index, LogIndex(2999));
    assert_eq!(snapshot.data, 3000u64.to_le_bytes());
    assert_eq!(recovered.state.entries.first().unwrap().index, LogIndex(2990));
    assert_eq!(recovered.state.entries.last().unwrap().index, LogIndex(3000));
    recovered.state.check().unwrap();
}

#[test]
fn a_snapshot_file_no_record_names_is_removed_on_open() {
    let dir = TempDir::new("orphan");
    let (mut storage, _) = Storage::open(&dir.0).unwrap();
    write_load(&mut storage, 1, 20, 10, 2);
    drop(storage);
    // A crash after the snapshot file was renamed into place, before its
    // record was written.
    snapshot_file::write(&dir.0.join(SNAPSHOT_DIR), &snapshot(25, 1, b"orphan")).unwrap();
    assert_eq!(dir.files_in(SNAPSHOT_DIR).len(), 2);
    let (_, recovered) = Storage::open(&dir.0).unwrap();
    assert_eq!(recovered.state.snapshot.unwrap().meta.index, LogIndex(19));
    assert_eq!(dir.files_in(SNAPSHOT_DIR).len(), 1);
}

#[test]
fn a_damaged_snapshot_file_is_an_error_naming_it() {
    let dir = TempDir::new("bad-snapshot");
    let (mut storage, _) = Storage::open(&dir.0).unwrap();
    write_load(&mut storage, 1, 20, 10, 2);
    drop(storage);
    let path = dir.files_in(SNAPSHOT_DIR).pop().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    match Storage::open(&dir.0) {
        Err(StorageError::Corrupt { path: named, .. }) => assert_eq!(named, path),
        other => panic!("expected a corrupt snapshot, got {other:?}"),
    }
}

#[test]
fn a_missing_segment_is_named() {
    let dir = TempDir::new("missing");
    let (mut storage, _) = Storage::open_with(&dir.0, small_segments()).unwrap();
    write_load(&mut storage, 1, 200, 0, 0);
    drop(storage);
    std::fs::remove_file(dir.segment(2)).unwrap();
    match Storage::open_with(&dir.0, small_segments()) {
        Err(StorageError::MissingSegment { path, .. }) => assert_eq!(path, dir.segment(2)),
        other => panic!("expected a missing segment, got {other:?}"),
    }
    // Without the oldest segment, the entries it held (and the log still
    // needs) are missing too.
    std::fs::remove_file(dir.segment(1)).unwrap();
    let error = Storage::open_with(&dir.0, small_segments()).unwrap_err();
    assert!(matches!(error, StorageError::MissingEntries { first: 1, .. }), "{error}");
}

#[test]
fn damage_at_the_end_of_an_older_segment_is_not_a_torn_tail() {
    let dir = TempDir::new("older-tail");
    let (mut storage, _) = Storage::open_with(&dir.0, small_segments()).unwrap();
    write_load(&mut storage, 1, 100, 0, 0);
    drop(storage);
    let path = dir.segment(1);
    let length = std::fs::metadata(&path).unwrap().len();
    OpenOptions::new().write(true).open(&path).unwrap().set_len(length - 5).unwrap();
    let error = Storage::open_with(&dir.0, small_segments()).unwrap_err();
    assert!(matches!(&error, StorageError::Corrupt { path: named, .. } if *named == path), "{error}");
}

#[test]
fn a_segment_whose_creation_was_interrupted_is_removed() {
    let dir = TempDir::new("interrupted");
    let (mut storage, _) = Storage::open_with(&dir.0, small_segments()).unwrap();
    write_load(&mut storage, 1, 100, 0, 0);
    drop(storage);
    let newest = dir.files_in(WAL_DIR).pop().unwrap();
    let number: u64 = newest.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    // A crash while the next segment's checkpoint was being written.
    std::fs::write(dir.segment(number + 1), [1u8, 2, 3]).unwrap();
    let (mut storage, recovered) = Storage::open_with(&dir.0, small_segments()).unwrap();
    assert_eq!(recovered.state.entries.len(), 100);
    assert!(!dir.segment(number + 1).exists());
    write_load(&mut storage, 101, 1, 0, 0);
    drop(storage);
    assert_eq!(Storage::open_with(&dir.0, small_segments()).unwrap().1.state.entries.len(), 101);
}

#[test]
fn a_log_of_an_earlier_version_is_refused() {
    let dir = TempDir::new("legacy");
    std::fs::create_dir_all(&dir.0).unwrap();
    std::fs::write(dir.0.join(LEGACY_LOG_FILE_NAME), b"old").unwrap();
    assert!(matches!(Storage::open(&dir.0), Err(StorageError::LegacyLog { .. })));
    assert!(matches!(
        Storage::open_with(&TempDir::new("small").0, StorageOptions { segment_bytes: 10 }),
        Err(StorageError::SegmentTooSmall(10))
    ));
}

/// The store's replay and the core's reference rule agree on a mixed
/// sequence of appends, truncations, snapshots and discards, across
/// segments and compaction.
#[test]
fn replay_agrees_with_the_cores_rule_for_applying_writes() {
    let dir = TempDir::new("agree");
    let (mut storage, _) = Storage::open_with(&dir.0, small_segments()).unwrap();
    let mut reference = DurableState::default();
    let mut state = 12345u64;
    let mut next_random = move |below: u64| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) % below
    };
    let mut term = 1;
    for id in 1..600 {
        let next = reference.next_index().0;
        let first = reference.entries.first().map_or(next, |entry| entry.index.0);
        let snapshot_end = reference.snapshot.as_ref().map_or(0, |snapshot| snapshot.meta.index.0);
        let mut write = request(id, None, Vec::new(), term);
        match next_random(10) {
            0 if next > first + 1 => {
                term += 1;
                let from = (first + 1).max(snapshot_end + 1).max(next - 3);
                write.truncate_from = Some(LogIndex(from)).filter(|from| from.0 < next);
                let start = write.truncate_from.map_or(next, |from| from.0);
                write.entries = vec![entry(start, term, b"t")];
            }
            1 if next > snapshot_end + 4 => {
                let at = next - 2;
                let at_term = reference.entries.iter().find(|entry| entry.index.0 == at).unwrap().term.0;
                write.snapshot = Some(snapshot(at, at_term, &at.to_le_bytes()));
                write.discard_upto = Some(LogIndex(at - 1));
            }
            _ => write.entries = (next..next + 1 + next_random(3)).map(|index| entry(index, term, b"x")).collect(),
        }
        write.hard_state.term = Term(term);
        reference.apply(&write).unwrap();
        storage.persist(&write).unwrap();
    }
    drop(storage);
    let (_, recovered) = Storage::open_with(&dir.0, small_segments()).unwrap();
    assert_eq!(recovered.state, reference);
    assert!(reference.snapshot.is_some() && dir.files_in(WAL_DIR).first() != Some(&dir.segment(1)));
}

#[test]
fn snapshot_files_without_a_log_are_refused() {
    let dir = TempDir::new("lone-snapshot");
    let (mut storage, _) = Storage::open(&dir.0).unwrap();
    write_load(&mut storage, 1, 20, 10, 2);
    drop(storage);
    std::fs::remove_dir_all(dir.0.join(WAL_DIR)).unwrap();
    let error = Storage::open(&dir.0).unwrap_err();
    assert!(error.is_damage() && error.to_string().contains("no log segment"), "{error}");
    assert_eq!(dir.files_in(SNAPSHOT_DIR).len(), 1, "the snapshot is left for inspection");
}
