//! Durable batch numbering. The collector deduplicates on (site, stream, seq), so a probe must
//! never reuse a sequence number within a stream: the next number is written to disk (write,
//! fsync, rename) before the batch that uses it leaves. If the state file is lost, a fresh
//! random stream id starts a new numbering that cannot collide with what was stored.

use std::path::{Path, PathBuf};

use rand::RngCore;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    stream: u64,
    next_seq: u64,
}

pub struct Sequencer {
    state: State,
    path: Option<PathBuf>,
}

impl Sequencer {
    /// Loads `DIR/sequence.json`, or starts a new stream there.
    ///
    /// # Errors
    /// I/O errors on the data directory (it must be writable by the probe user).
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("sequence.json");
        let state = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<State>(&bytes) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "unreadable sequence state; starting a new stream");
                    fresh()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => fresh(),
            Err(e) => return Err(e),
        };
        let s = Self {
            state,
            path: Some(path),
        };
        s.persist()?;
        Ok(s)
    }

    /// A stream kept only in memory (simulated probes of the demo and load generator).
    pub fn ephemeral() -> Self {
        Self {
            state: fresh(),
            path: None,
        }
    }

    /// A given stream and next number, in memory (tools and tests).
    pub fn fixed(stream: u64, next_seq: u64) -> Self {
        Self {
            state: State { stream, next_seq },
            path: None,
        }
    }

    pub fn stream(&self) -> u64 {
        self.state.stream
    }

    /// Reserves the next sequence number, durably.
    ///
    /// # Errors
    /// I/O errors writing the state; the number is then not used.
    pub fn reserve(&mut self) -> std::io::Result<u64> {
        let seq = self.state.next_seq;
        self.state.next_seq += 1;
        if let Err(e) = self.persist() {
            self.state.next_seq -= 1;
            return Err(e);
        }
        Ok(seq)
    }

    fn persist(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let tmp = path.with_extension("json.tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&serde_json::to_vec(&self.state).map_err(std::io::Error::other)?)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

fn fresh() -> State {
    State {
        stream: rand::rngs::OsRng.next_u64() >> 1,
        next_seq: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbering_survives_restart_and_never_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Sequencer::open(dir.path()).unwrap();
        assert_eq!((a.reserve().unwrap(), a.reserve().unwrap()), (1, 2));
        let stream = a.stream();
        drop(a);
        let mut b = Sequencer::open(dir.path()).unwrap();
        assert_eq!((b.stream(), b.reserve().unwrap()), (stream, 3));
        std::fs::remove_file(dir.path().join("sequence.json")).unwrap();
        let c = Sequencer::open(dir.path()).unwrap();
        assert_ne!(c.stream(), stream);
    }
}
