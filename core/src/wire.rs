//! The wire format of Raft messages: bincode 2 (standard configuration), with
//! a hard size limit. Decoding never panics; anything malformed is an error.

use crate::raft::Message;

/// Largest encoded message accepted or produced, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Why bytes from a peer were not a message. Nothing is delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message of {0} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
}

fn codec() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_MESSAGE_BYTES>,
> {
    bincode::config::standard().with_limit::<MAX_MESSAGE_BYTES>()
}

/// Encodes a message.
pub fn encode_message(message: &Message) -> Result<Vec<u8>, WireError> {
    let bytes =
        bincode::serde::encode_to_vec(message, codec()).map_err(|error| WireError::Malformed(error.to_string()))?;
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge(bytes.len()));
    }
    Ok(bytes)
}

/// Decodes one message that must fill `bytes` exactly.
pub fn decode_message(bytes: &[u8]) -> Result<Message, WireError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge(bytes.len()));
    }
    let (message, used): (Message, usize) =
        bincode::serde::decode_from_slice(bytes, codec()).map_err(|error| WireError::Malformed(error.to_string()))?;
    if used != bytes.len() {
        return Err(WireError::TrailingBytes(bytes.len() - used));
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{AppendResponse, ConflictHint, Entry, MessageBody, Payload};
    use crate::types::{LogIndex, NodeId, Term};
    use proptest::prelude::*;

    fn sample() -> Message {
        Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(3),
            body: MessageBody::AppendEntries {
                prev_log_index: LogIndex(4),
                prev_log_term: Term(2),
                entries: vec![Entry { index: LogIndex(5), term: Term(3), payload: Payload::Command(vec![1, 2, 3]) }],
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
            let message = Message { from: NodeId(1), to: NodeId(2), term: Term(3), body };
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
