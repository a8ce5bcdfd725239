//! Arbitrary bytes into the wire decoder. Decoding must never panic, and
//! whatever decodes must survive a round trip unchanged.

#![no_main]

use chorus_core::wire::{decode_message, encode_message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(message) = decode_message(bytes) else {
        return;
    };
    let encoded = encode_message(&message).expect("a decoded message encodes again");
    let again = decode_message(&encoded).expect("an encoded message decodes");
    assert_eq!(again, message, "decode(encode(m)) != m");
    // The encoding is a function of the message: a second round trip gives
    // the same bytes (the input itself may have used a non-canonical varint).
    let reencoded = encode_message(&again).expect("a decoded message encodes again");
    assert_eq!(reencoded, encoded, "encoding is not deterministic");
});
