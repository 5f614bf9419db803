//! Frame bodies: one [`Message`] encoded as a MessagePack map (field names kept, so unknown
//! fields are skipped and missing ones defaulted — the basis of version compatibility).
//!
//! Framing itself is a 4-byte big-endian length prefix followed by the body; the async sides use
//! `tokio_util::codec::LengthDelimitedCodec` configured with [`MAX_FRAME_LEN`], and
//! [`frame`] builds the same bytes for synchronous tools and tests.

use crate::messages::Message;

/// Largest body accepted on either side. A batch of one busy site for 10 s is a few kB; 4 MiB
/// leaves room for a probe replaying its backlog while bounding what a bad peer can make us
/// allocate.
pub const MAX_FRAME_LEN: usize = 4 * 1024 * 1024;

/// A body that could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("cannot encode {kind} message: {source}")]
    Serialize {
        kind: &'static str,
        #[source]
        source: rmp_serde::encode::Error,
    },
    #[error("{kind} message is {len} bytes, more than the {max}-byte frame limit")]
    TooLarge {
        kind: &'static str,
        len: usize,
        max: usize,
    },
}

/// A body that could not be decoded; carries a sample of the bytes for the log.
#[derive(Debug, thiserror::Error)]
#[error("malformed frame of {len} bytes ({source}); starts with {sample}")]
pub struct DecodeError {
    pub len: usize,
    pub sample: String,
    #[source]
    pub source: rmp_serde::decode::Error,
}

/// Encodes a message body.
///
/// # Errors
/// [`EncodeError::TooLarge`] when the body exceeds [`MAX_FRAME_LEN`].
pub fn encode(msg: &Message) -> Result<Vec<u8>, EncodeError> {
    let body = rmp_serde::to_vec_named(msg).map_err(|source| EncodeError::Serialize {
        kind: msg.kind(),
        source,
    })?;
    if body.len() > MAX_FRAME_LEN {
        return Err(EncodeError::TooLarge {
            kind: msg.kind(),
            len: body.len(),
            max: MAX_FRAME_LEN,
        });
    }
    Ok(body)
}

/// Decodes a message body.
///
/// # Errors
/// [`DecodeError`] when the bytes are not a known message.
pub fn decode(body: &[u8]) -> Result<Message, DecodeError> {
    rmp_serde::from_slice(body).map_err(|source| DecodeError {
        len: body.len(),
        sample: body
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        source,
    })
}

/// A complete frame (length prefix and body) for synchronous writers.
///
/// # Errors
/// As [`encode`].
pub fn frame(msg: &Message) -> Result<Vec<u8>, EncodeError> {
    let body = encode(msg)?;
    let mut out = Vec::with_capacity(body.len() + 4);
    // The length fits: encode() bounded it by MAX_FRAME_LEN, far below u32::MAX.
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{Ack, Heartbeat};

    #[test]
    fn round_trips_and_prefixes_length() {
        let msg = Message::Ack(Ack {
            seq: 7,
            duplicate: true,
        });
        let f = frame(&msg).unwrap();
        let len = u32::from_be_bytes([f[0], f[1], f[2], f[3]]) as usize;
        assert_eq!(len, f.len() - 4);
        assert_eq!(decode(&f[4..]).unwrap(), msg);
    }

    #[test]
    fn garbage_is_an_error_with_a_sample() {
        let err = decode(&[0xc1, 0x00, 0xff]).unwrap_err();
        assert_eq!(err.len, 3);
        assert_eq!(err.sample, "c100ff");
        let ok = Message::Heartbeat(Heartbeat {
            probe_time_ms: 1,
            health: None,
        });
        assert!(decode(&encode(&ok).unwrap()[..3]).is_err());
    }
}
