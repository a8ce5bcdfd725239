//! The run's trace: every step the simulator takes, hashed as it goes and,
//! when asked for (replay), rendered as readable lines.
//!
//! The hash covers a compact binary record of each step, not the text, so
//! `run` (hash only) and `replay` (hash and text) agree byte for byte. A
//! record is its time, its kind (each world names its kinds in an enum:
//! `raft::describe::RaftRecord`, `swim::describe::SwimRecord`) and a few
//! numeric fields.

use std::fmt::Write as _;

/// Bytes buffered before they are fed to the hasher.
const HASH_BUFFER_BYTES: usize = 64 * 1024;

/// One run's trace: a running BLAKE3 hash of every record, and the readable
/// text when kept (replay).
pub struct Trace {
    hasher: blake3::Hasher,
    buffer: Vec<u8>,
    text: Option<String>,
    /// Most bytes of text kept; beyond it the text is cut (the hash is not).
    text_limit_bytes: usize,
    text_truncated: bool,
    steps: u64,
}

impl Trace {
    /// An empty trace; with `keep_text`, readable lines are kept up to
    /// `text_limit_bytes` (the hash always covers every record).
    pub fn new(keep_text: bool, text_limit_bytes: usize) -> Trace {
        Trace {
            hasher: blake3::Hasher::new(),
            buffer: Vec::with_capacity(HASH_BUFFER_BYTES),
            text: keep_text.then(String::new),
            text_limit_bytes,
            text_truncated: false,
            steps: 0,
        }
    }

    /// Is readable text being kept? Callers skip formatting when not.
    pub fn wants_text(&self) -> bool {
        self.text.is_some() && !self.text_truncated
    }

    /// Records one step: its binary form (time, kind, fields) always, its
    /// text if kept.
    pub fn record(&mut self, time_micros: u64, kind: impl Into<u64>, fields: &[u64], text: impl FnOnce() -> String) {
        self.steps += 1;
        self.buffer.extend_from_slice(&time_micros.to_le_bytes());
        self.buffer.push(fields.len() as u8 + 1);
        self.buffer.extend_from_slice(&kind.into().to_le_bytes());
        for word in fields {
            self.buffer.extend_from_slice(&word.to_le_bytes());
        }
        if self.buffer.len() >= HASH_BUFFER_BYTES {
            self.hasher.update(&self.buffer);
            self.buffer.clear();
        }
        if self.wants_text() {
            let line = text();
            let out = self.text.as_mut().expect("wants_text checked");
            let _ = writeln!(out, "[{:>4}.{:06}] {}", time_micros / 1_000_000, time_micros % 1_000_000, line);
            if out.len() > self.text_limit_bytes {
                out.push_str("... trace text cut here (limit reached); the hash covers the whole run\n");
                self.text_truncated = true;
            }
        }
    }

    /// Records so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Finishes the hash; returns it with the text, if kept.
    pub fn finish(mut self) -> ([u8; 32], Option<String>) {
        self.hasher.update(&self.buffer);
        (*self.hasher.finalize().as_bytes(), self.text)
    }
}

/// `bytes` as lowercase hexadecimal, two digits a byte (how hashes are
/// printed).
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}
