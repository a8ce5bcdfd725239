//! The wire format of Raft messages: bincode 2 (standard configuration), with
//! a hard size limit. Decoding never panics; anything malformed is an error.

use crate::raft::Message;

/// Largest encoded message accepted or produced, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Why bytes could not be encoded within, or decoded as, a message. Nothing
/// is delivered. Shared by every protocol's wire format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The message is longer than the limit. When decoding: a peer with a
    /// larger limit, or garbage. When encoding: the node's limits allow a
    /// message the wire format cannot carry (for Raft, `max_command_bytes` or
    /// `snapshot_chunk_bytes` near [`MAX_MESSAGE_BYTES`]); lower them.
    #[error("message of {bytes} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// The length of the message: the input's when decoding, the
        /// encoding's when encoding.
        bytes: usize,
        /// The limit in force, already capped at the protocol's ceiling.
        limit: usize,
    },
    /// The bytes are not an encoding of a message (corruption, another
    /// protocol, or a peer running an incompatible version); bincode's
    /// description of the problem. Encoding the crate's own types never
    /// fails this way.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A whole message decoded but this many bytes were left over: the input
    /// must hold exactly one message.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
}

/// The crate's bincode configuration, with `CEILING` as bincode's own
/// allocation limit: a huge length prefix is an error before any allocation.
fn codec<const CEILING: usize>() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<CEILING>,
> {
    bincode::config::standard().with_limit::<CEILING>()
}

/// Encodes `value` in at most `limit` bytes (itself capped at `CEILING`).
pub(crate) fn encode_bounded<T: serde::Serialize, const CEILING: usize>(
    value: &T,
    limit: usize,
) -> Result<Vec<u8>, WireError> {
    let limit = limit.min(CEILING);
    let bytes = bincode::serde::encode_to_vec(value, codec::<CEILING>())
        .map_err(|error| WireError::Malformed(error.to_string()))?;
    if bytes.len() > limit {
        return Err(WireError::TooLarge { bytes: bytes.len(), limit });
    }
    Ok(bytes)
}

/// Decodes one value that must fill `bytes` exactly and be at most `limit`
/// bytes long (itself capped at `CEILING`). Never panics.
pub(crate) fn decode_bounded<T: serde::de::DeserializeOwned, const CEILING: usize>(
    bytes: &[u8],
    limit: usize,
) -> Result<T, WireError> {
    let limit = limit.min(CEILING);
    if bytes.len() > limit {
        return Err(WireError::TooLarge { bytes: bytes.len(), limit });
    }
    let (value, used): (T, usize) = bincode::serde::decode_from_slice(bytes, codec::<CEILING>())
        .map_err(|error| WireError::Malformed(error.to_string()))?;
    if used != bytes.len() {
        return Err(WireError::TrailingBytes(bytes.len() - used));
    }
    Ok(value)
}

/// The exact number of bytes `value` takes in the wire format.
pub(crate) fn encoded_len_bounded<T: serde::Serialize + ?Sized, const CEILING: usize>(value: &T) -> usize {
    let mut counter = bincode::enc::write::SizeWriter::default();
    bincode::serde::encode_into_writer(value, &mut counter, codec::<CEILING>())
        .expect("invariant: counting bytes cannot fail, and our types always serialize");
    counter.bytes_written
}

/// Encodes a Raft message.
pub fn encode_message(message: &Message) -> Result<Vec<u8>, WireError> {
    encode_bounded::<_, MAX_MESSAGE_BYTES>(message, MAX_MESSAGE_BYTES)
}

/// Decodes one Raft message that must fill `bytes` exactly.
pub fn decode_message(bytes: &[u8]) -> Result<Message, WireError> {
    decode_bounded::<_, MAX_MESSAGE_BYTES>(bytes, MAX_MESSAGE_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{AppendResponse, ConflictHint, DiskId, Entry, MessageBody, Payload};
    use crate::types::{LogIndex, NodeId, Term};
    use proptest::prelude::*;

    fn sample() -> Message {
        Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(3),
            disk: DiskId(7),
            incarnation: 2,
            body: MessageBody::AppendEntries {
                prev_log_index: LogIndex(4),
                prev_log_term: Term(2),
                entries: vec![Entry {
                    index: LogIndex(5),
                    term: Term(3),
                    payload: Payload::Command(vec![1, 2, 3].into()),
                }],
                leader_commit: LogIndex(4),
            },
        }
    }

    #[test]
    fn messages_round_trip() {
        let bytes = encode_message(&sample()).unwrap();
        assert_eq!(decode_message(&bytes).unwrap(), sample());
    }

    #[test]
    fn every_message_kind_round_trips() {
        let bodies = [
            MessageBody::RequestVote {
                pre_vote: false,
                last_log_index: LogIndex(9),
                last_log_term: Term(2),
                transfer: true,
            },
            MessageBody::RequestVote {
                pre_vote: true,
                last_log_index: LogIndex(0),
                last_log_term: Term(0),
                transfer: false,
            },
            MessageBody::RequestVoteResponse { pre_vote: true, granted: true },
            MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index: LogIndex(7) }),
            MessageBody::AppendEntriesResponse(AppendResponse::Rejected {
                rejected_prev_index: LogIndex(7),
                hint: ConflictHint { conflict_term: Some(Term(1)), first_index: LogIndex(3) },
            }),
            MessageBody::Heartbeat { commit: LogIndex(4), read_context: u64::MAX },
            MessageBody::HeartbeatResponse { read_context: 17 },
            MessageBody::TimeoutNow,
        ];
        for body in bodies {
            let message =
                Message { from: NodeId(1), to: NodeId(2), term: Term(3), disk: DiskId(7), incarnation: 2, body };
            let bytes = encode_message(&message).unwrap();
            assert_eq!(decode_message(&bytes).unwrap(), message);
        }
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = encode_message(&sample()).unwrap();
        bytes.push(0);
        assert_eq!(decode_message(&bytes), Err(WireError::TrailingBytes(1)));
    }

    #[test]
    fn a_huge_length_prefix_is_an_error_not_an_allocation() {
        // Variant AppendEntries with an entry count claiming billions of entries.
        let mut bytes = encode_message(&sample()).unwrap();
        bytes.truncate(8);
        bytes.extend_from_slice(&[0xfc, 0xff, 0xff, 0xff, 0x7f]);
        assert!(decode_message(&bytes).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_message(&bytes);
        }
    }
}
