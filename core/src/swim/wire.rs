//! The wire format of SWIM messages: bincode 2 (standard configuration, the
//! crate's wire format), with a size limit chosen by the caller (normally
//! [`Config::max_message_bytes`](super::Config::max_message_bytes)) under a
//! hard ceiling of [`MAX_DATAGRAM_BYTES`]. Decoding never panics and never
//! allocates more than the input could justify; anything malformed is an
//! error.
//!
//! The node measures sizes with [`encoded_len`], the same encoder, so what it
//! builds within its budget is exactly what [`encode`] produces.

use super::message::Message;
use serde::Serialize;

/// Hard ceiling on an encoded SWIM message: the largest UDP payload over
/// IPv4. No configuration can exceed it.
pub const MAX_DATAGRAM_BYTES: usize = 65_507;

pub use crate::wire::WireError;

/// Encodes a message of at most `limit` bytes (capped at
/// [`MAX_DATAGRAM_BYTES`]).
pub fn encode(message: &Message, limit: usize) -> Result<Vec<u8>, WireError> {
    crate::wire::encode_bounded::<_, MAX_DATAGRAM_BYTES>(message, limit)
}

/// Decodes one message that must fill `bytes` exactly and be at most `limit`
/// bytes long (capped at [`MAX_DATAGRAM_BYTES`]). Only the encoding is checked
/// here; the node checks the content against its limits.
pub fn decode(bytes: &[u8], limit: usize) -> Result<Message, WireError> {
    crate::wire::decode_bounded::<_, MAX_DATAGRAM_BYTES>(bytes, limit)
}

/// The exact number of bytes `value` takes in the wire format.
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> usize {
    crate::wire::encoded_len_bounded::<_, MAX_DATAGRAM_BYTES>(value)
}

/// Bytes of the length prefix bincode writes before a sequence of `len`
/// elements (a varint).
pub const fn length_prefix_len(len: usize) -> usize {
    match len as u64 {
        0..=250 => 1,
        251..=0xFFFF => 3,
        0x1_0000..=0xFFFF_FFFF => 5,
        _ => 9,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swim::member::{Address, Incarnation, Metadata};
    use crate::swim::message::{MessageBody, ProbeNumber, Update};
    use crate::types::NodeId;
    use proptest::prelude::*;

    fn sample(updates: usize) -> Message {
        Message {
            from: NodeId(1),
            from_address: Address::new(b"10.0.0.1:7946".to_vec()),
            to: Some(NodeId(2)),
            body: MessageBody::Ping { probe: ProbeNumber(7) },
            updates: (0..updates)
                .map(|n| Update::Alive {
                    member: NodeId(n as u64),
                    incarnation: Incarnation(3),
                    address: Address::new(vec![1; 6]),
                    metadata: Metadata::new(vec![2; 4]),
                })
                .collect(),
        }
    }

    #[test]
    fn messages_round_trip() {
        let bytes = encode(&sample(3), 1400).unwrap();
        assert_eq!(decode(&bytes, 1400).unwrap(), sample(3));
    }

    #[test]
    fn encoded_len_is_the_length_encode_produces() {
        for updates in [0, 1, 250, 251, 300] {
            let message = sample(updates);
            assert_eq!(encoded_len(&message), encode(&message, MAX_DATAGRAM_BYTES).unwrap().len());
        }
    }

    #[test]
    fn length_prefix_matches_the_encoder() {
        for len in [0usize, 1, 250, 251, 65_535, 65_536] {
            let bytes = vec![0u8; len];
            assert_eq!(encoded_len(&bytes), length_prefix_len(len) + len, "len {len}");
        }
    }

    #[test]
    fn oversized_messages_are_rejected_both_ways() {
        let message = sample(100);
        let len = encoded_len(&message);
        assert_eq!(encode(&message, len - 1), Err(WireError::TooLarge { bytes: len, limit: len - 1 }));
        let bytes = encode(&message, len).unwrap();
        assert_eq!(decode(&bytes, len - 1), Err(WireError::TooLarge { bytes: len, limit: len - 1 }));
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = encode(&sample(1), 1400).unwrap();
        bytes.push(0);
        assert_eq!(decode(&bytes, 1400), Err(WireError::TrailingBytes(1)));
    }

    #[test]
    fn a_huge_length_prefix_is_an_error_not_an_allocation() {
        let mut bytes = encode(&sample(0), 1400).unwrap();
        bytes.pop(); // the empty update list's length prefix
        bytes.extend_from_slice(&[0xfc, 0xff, 0xff, 0xff, 0x7f]);
        assert!(decode(&bytes, 1400).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode(&bytes, 1400);
        }

        #[test]
        fn mutated_messages_never_panic_the_decoder(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)
        ) {
            let mut bytes = encode(&sample(5), 1400).unwrap();
            for (index, byte) in flips {
                let at = index.index(bytes.len());
                bytes[at] = byte;
            }
            let _ = decode(&bytes, 1400);
        }
    }
}
