//! Fuzz target: any byte stream, as a probe (or anything at the collector's port) could send
//! it after the TLS handshake, through the collector's frame decoder (`LengthDelimitedCodec`
//! with a 4-byte length and the protocol's `MAX_FRAME_LEN`, as `ingest::probe_stream`
//! configures it) and each frame through `rie_proto::decode`. Nothing may panic; a message
//! that decodes must encode and decode again to the same message (what the collector
//! acknowledges is what it read). Memory stays bounded by `MAX_FRAME_LEN`.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::{Decoder, LengthDelimitedCodec};

fuzz_target!(|data: &[u8]| {
    let mut codec = LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(rie_proto::MAX_FRAME_LEN)
        .new_codec();
    // Fed in two pieces, as TCP may cut it anywhere.
    let cut = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut buf = BytesMut::new();
    for piece in [&data[..cut], &data[cut..]] {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    if let Ok(msg) = rie_proto::decode(&frame) {
                        let again = rie_proto::encode(&msg).expect("a decoded message encodes");
                        assert_eq!(rie_proto::decode(&again).expect("re-decodes"), msg);
                    }
                }
                Ok(None) => break,
                // An over-long length prefix: the collector closes the connection.
                Err(_) => return,
            }
        }
    }
    // Also the body alone (the spool replays bodies without the prefix).
    let _ = rie_proto::decode(data);
});
