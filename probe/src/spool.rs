//! The probe's disk spool: every batch is written here before it is sent and leaves only when
//! the collector has acknowledged it, so a probe cut off from the core, or killed, loses nothing
//! it had spooled.
//!
//! Design constraints (after Vector's disk buffer):
//! - Append-only segment files (`spool/<first seq>.seg`, 8 MiB), one record per batch:
//!   `len u32 LE | crc32 u32 LE | seq u64 LE | MessagePack batch`. The CRC covers seq and body,
//!   so a torn write (power cut, SIGKILL) or bit rot is detected on start and the file is cut
//!   back to its last whole record; what follows is counted and logged, never half-read.
//! - The spool numbers batches: `seq` = one more than the highest ever spooled or acknowledged,
//!   and `meta.bin` (`stream`, `acked`) is written and fsynced before any segment is deleted,
//!   so numbering can never go back and redeliver new data under an old number. It is two
//!   checksummed 32-byte slots rewritten in place alternately: no new blocks (works on a full
//!   disk), and a torn write leaves the other slot intact.
//! - Every append is fsynced (one small write per interval: cheap, and what "spooled" means).
//! - A budget bounds the disk used; past it the oldest segment goes first, counted and logged.
//! - If the disk fails (full, spool directory deleted), batches are held in memory (bounded)
//!   and the spool tries the disk again at the next append; the probe keeps running.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rand::RngCore;
use rie_proto::Batch;
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

const HEADER: usize = 16;
const SEGMENT_MAX: u64 = 8 * 1024 * 1024;
/// Batches kept in memory while the disk refuses writes.
const MEMORY_FALLBACK: usize = 1_000;

/// Where unacknowledged batches wait. The uplink is generic over it: the probe uses the disk
/// [`Spool`], the demo's simulated probes a [`MemoryOutbox`].
pub trait Outbox: Send {
    /// Sequence stream these numbers belong to (sent in the hello).
    fn stream(&self) -> u64;
    /// Numbers `batch` (its `seq` is overwritten), keeps it, returns the number.
    fn append(&mut self, batch: Batch) -> u64;
    /// Unacknowledged batches.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The `i`-th unacknowledged batch, oldest first; `None` if it could not be read back (it
    /// is then dropped and counted).
    fn get(&mut self, i: usize) -> Option<Batch>;
    /// Everything up to and including `seq` is stored by the collector.
    fn ack(&mut self, seq: u64);
    /// Counters for `status`.
    fn state(&self) -> OutboxState;
}

/// What `rie-probe status` shows of the outbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxState {
    pub batches: usize,
    pub bytes: u64,
    /// Probe clock of the oldest unacknowledged batch, Unix ms.
    pub oldest_ms: Option<i64>,
    pub last_acked: u64,
    /// Batches given up: budget exceeded, unreadable, memory fallback full.
    pub dropped: u64,
    /// Damaged records cut off when the spool was opened.
    pub torn_cut: u64,
    /// Appends the disk refused.
    pub write_errors: u64,
}

/// In-memory outbox, bounded: past `max` the oldest batch is dropped and counted.
pub struct MemoryOutbox {
    stream: u64,
    next: u64,
    max: usize,
    q: VecDeque<Batch>,
    state: OutboxState,
}

impl MemoryOutbox {
    pub fn new(max: usize) -> Self {
        Self {
            stream: random_stream(),
            next: 1,
            max,
            q: VecDeque::new(),
            state: OutboxState::default(),
        }
    }
}

impl Outbox for MemoryOutbox {
    fn stream(&self) -> u64 {
        self.stream
    }
    fn append(&mut self, mut batch: Batch) -> u64 {
        batch.seq = self.next;
        self.next += 1;
        if self.q.len() >= self.max && self.q.pop_front().is_some() {
            self.state.dropped += 1;
        }
        self.q.push_back(batch);
        self.next - 1
    }
    fn len(&self) -> usize {
        self.q.len()
    }
    fn get(&mut self, i: usize) -> Option<Batch> {
        self.q.get(i).cloned()
    }
    fn ack(&mut self, seq: u64) {
        while self.q.front().is_some_and(|b| b.seq <= seq) {
            self.q.pop_front();
        }
        self.state.last_acked = self.state.last_acked.max(seq);
    }
    fn state(&self) -> OutboxState {
        OutboxState {
            batches: self.q.len(),
            oldest_ms: self.q.front().map(|b| b.created_ms),
            ..self.state.clone()
        }
    }
}

/// A fresh stream id.
pub fn random_stream() -> u64 {
    // Positive in SQLite's signed integers, where the collector keeps it.
    rand::rngs::OsRng.next_u64() >> 1
}

#[derive(Debug, Clone, Copy)]
struct Meta {
    stream: u64,
    acked: u64,
    /// Write generation: picks the newer of the two slots.
    generation: u64,
}

const META_FILE: &str = "meta.bin";
const SLOT: usize = 32;
const META_MAGIC: u32 = 0x5249_454d; // "RIEM"

impl Meta {
    /// One slot: magic | crc32 of the rest | generation | stream | acked (little-endian).
    fn encode(&self) -> [u8; SLOT] {
        let mut b = [0u8; SLOT];
        b[0..4].copy_from_slice(&META_MAGIC.to_le_bytes());
        b[8..16].copy_from_slice(&self.generation.to_le_bytes());
        b[16..24].copy_from_slice(&self.stream.to_le_bytes());
        b[24..32].copy_from_slice(&self.acked.to_le_bytes());
        let sum = crc32fast::hash(&b[8..32]);
        b[4..8].copy_from_slice(&sum.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Self> {
        let u32_at = |i: usize| {
            b.get(i..i + 4)
                .and_then(|x| x.try_into().ok())
                .map(u32::from_le_bytes)
        };
        let u64_at = |i: usize| {
            b.get(i..i + 8)
                .and_then(|x| x.try_into().ok())
                .map(u64::from_le_bytes)
        };
        if u32_at(0)? != META_MAGIC || u32_at(4)? != crc32fast::hash(b.get(8..32)?) {
            return None;
        }
        Some(Self {
            generation: u64_at(8)?,
            stream: u64_at(16)?,
            acked: u64_at(24)?,
        })
    }

    /// The newer valid slot of a meta file; `None` when neither is valid.
    fn read(bytes: &[u8]) -> Option<Self> {
        let a = bytes.get(..SLOT).and_then(Self::decode);
        let b = bytes.get(SLOT..2 * SLOT).and_then(Self::decode);
        match (a, b) {
            (Some(x), Some(y)) => Some(if x.generation >= y.generation { x } else { y }),
            (x, y) => x.or(y),
        }
    }
}

#[derive(Debug)]
enum Loc {
    Disk { segment: u64, offset: u64, len: u32 },
    Memory(Box<Batch>),
}

#[derive(Debug)]
struct Entry {
    seq: u64,
    created_ms: i64,
    loc: Loc,
}

#[derive(Debug)]
struct Segment {
    first_seq: u64,
    last_seq: u64,
    bytes: u64,
}

/// The disk spool (see the module documentation).
pub struct Spool {
    dir: PathBuf,
    budget: u64,
    meta: Meta,
    next_seq: u64,
    segments: VecDeque<Segment>,
    entries: VecDeque<Entry>,
    writer: Option<File>,
    state: OutboxState,
}

/// Why the spool could not be opened at all.
#[derive(Debug, thiserror::Error)]
#[error("spool {dir}: {source}")]
pub struct SpoolError {
    pub dir: String,
    #[source]
    pub source: std::io::Error,
}

fn seg_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.seg"))
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, checking every record and cutting damaged tails.
    ///
    /// # Errors
    /// [`SpoolError`] when the directory cannot be created or read.
    pub fn open(dir: &Path, budget: u64) -> Result<Self, SpoolError> {
        let err = |source| SpoolError {
            dir: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        let meta_path = dir.join(META_FILE);
        let meta = match std::fs::read(&meta_path) {
            Ok(b) => Meta::read(&b).ok_or_else(|| {
                err(std::io::Error::other(format!(
                    "{META_FILE}: both slots damaged; move the spool directory aside to start a new stream"
                )))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Meta {
                stream: random_stream(),
                acked: 0,
                generation: 0,
            },
            Err(e) => return Err(err(e)),
        };
        let mut firsts: Vec<u64> = std::fs::read_dir(dir)
            .map_err(err)?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
            .collect();
        firsts.sort_unstable();
        let mut spool = Self {
            dir: dir.to_path_buf(),
            budget: budget.max(2 * SEGMENT_MAX),
            meta,
            next_seq: meta.acked + 1,
            segments: VecDeque::new(),
            entries: VecDeque::new(),
            writer: None,
            state: OutboxState {
                last_acked: meta.acked,
                ..OutboxState::default()
            },
        };
        for first in firsts {
            spool.recover_segment(first).map_err(err)?;
        }
        spool.write_meta().map_err(err)?;
        spool.delete_acked_segments();
        info!(
            dir = %dir.display(),
            stream = spool.meta.stream,
            unacked = spool.entries.len(),
            next_seq = spool.next_seq,
            torn_cut = spool.state.torn_cut,
            "spool opened"
        );
        Ok(spool)
    }

    /// Reads a segment, indexes its unacknowledged records, cuts it at the first bad one.
    fn recover_segment(&mut self, first: u64) -> std::io::Result<()> {
        let path = seg_path(&self.dir, first);
        let mut data = Vec::new();
        File::open(&path)?.read_to_end(&mut data)?;
        let mut off = 0usize;
        let mut last = None;
        let mut prev = self.next_seq.saturating_sub(1);
        while off < data.len() {
            let Some((seq, body)) = parse_record(&data[off..]) else {
                break;
            };
            if seq <= prev && last.is_some() {
                break;
            }
            let len = body.len() as u32;
            if seq > self.meta.acked {
                let created_ms = rmp_serde::from_slice::<Batch>(body)
                    .map(|b| b.created_ms)
                    .unwrap_or(0);
                self.entries.push_back(Entry {
                    seq,
                    created_ms,
                    loc: Loc::Disk {
                        segment: first,
                        offset: off as u64,
                        len,
                    },
                });
            }
            prev = seq;
            last = Some(seq);
            self.next_seq = self.next_seq.max(seq + 1);
            off += HEADER + len as usize;
        }
        if off < data.len() {
            warn!(file = %path.display(), kept = off, cut = data.len() - off, "damaged or torn record at the end of a spool segment: cut off");
            self.state.torn_cut += 1;
            let f = OpenOptions::new().write(true).open(&path)?;
            f.set_len(off as u64)?;
            f.sync_all()?;
        }
        match last {
            Some(last_seq) => self.segments.push_back(Segment {
                first_seq: first,
                last_seq,
                bytes: off as u64,
            }),
            None => {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(())
    }

    /// Writes the mark in place, into the slot the last write did not use: no new disk blocks
    /// are needed (it works on a full disk), and a torn write leaves the other slot valid.
    fn write_meta(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let path = self.dir.join(META_FILE);
        let created = !path.exists();
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        if created {
            f.set_len(2 * SLOT as u64)?;
        }
        let next = Meta {
            generation: self.meta.generation + 1,
            ..self.meta
        };
        f.write_all_at(&next.encode(), (next.generation % 2) * SLOT as u64)?;
        f.sync_data()?;
        if created {
            fsync_dir(&self.dir)?;
        }
        self.meta = next;
        Ok(())
    }

    fn disk_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    fn write_record(&mut self, seq: u64, body: &[u8]) -> std::io::Result<(u64, u64)> {
        let rec_len = (HEADER + body.len()) as u64;
        // The directory may have been removed under us: a handle to an unlinked file would
        // swallow data silently.
        if self
            .segments
            .back()
            .is_some_and(|s| !seg_path(&self.dir, s.first_seq).exists())
        {
            self.writer = None;
            self.forget_missing_segments()?;
        }
        let rotate = self
            .segments
            .back()
            .is_none_or(|s| s.bytes + rec_len > SEGMENT_MAX)
            || self.writer.is_none();
        if rotate {
            std::fs::create_dir_all(&self.dir)?;
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(seg_path(&self.dir, seq))?;
            fsync_dir(&self.dir)?;
            self.writer = Some(f);
            self.segments.push_back(Segment {
                first_seq: seq,
                last_seq: seq,
                bytes: 0,
            });
        }
        let mut rec = Vec::with_capacity(rec_len as usize);
        rec.extend_from_slice(&(body.len() as u32).to_le_bytes());
        rec.extend_from_slice(&crc(seq, body).to_le_bytes());
        rec.extend_from_slice(&seq.to_le_bytes());
        rec.extend_from_slice(body);
        let seg = self
            .segments
            .back_mut()
            .ok_or_else(|| std::io::Error::other("no segment"))?;
        let f = self
            .writer
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no writer"))?;
        let offset = seg.bytes;
        if let Err(e) = f.write_all(&rec).and_then(|()| f.sync_data()) {
            // Leave no half record in the way of the next append, and no empty segment behind.
            let _ = f.set_len(offset);
            if offset == 0 {
                let first = seg.first_seq;
                self.segments.pop_back();
                self.writer = None;
                let _ = std::fs::remove_file(seg_path(&self.dir, first));
            }
            return Err(e);
        }
        seg.bytes += rec_len;
        seg.last_seq = seq;
        Ok((seg.first_seq, offset))
    }

    /// Segment files removed from under the probe: their batches are lost; say so, count them,
    /// and make the directory whole again (meta.bin keeps the numbering going).
    fn forget_missing_segments(&mut self) -> std::io::Result<()> {
        let dir = self.dir.clone();
        let missing: Vec<u64> = self
            .segments
            .iter()
            .filter(|s| !seg_path(&dir, s.first_seq).exists())
            .map(|s| s.first_seq)
            .collect();
        self.segments.retain(|s| !missing.contains(&s.first_seq));
        let before = self.entries.len();
        self.entries
            .retain(|e| !matches!(e.loc, Loc::Disk { segment, .. } if missing.contains(&segment)));
        let lost = (before - self.entries.len()) as u64;
        self.state.dropped += lost;
        error!(dir = %dir.display(), batches = lost, "spool files were removed under the running probe: their batches are lost");
        std::fs::create_dir_all(&dir)?;
        self.write_meta()
    }

    /// Drops the oldest segments while over budget (never the one being written).
    fn enforce_budget(&mut self) {
        while self.disk_bytes() > self.budget && self.segments.len() > 1 {
            let Some(seg) = self.segments.pop_front() else {
                break;
            };
            let before = self.entries.len();
            self.entries.retain(
                |e| !matches!(e.loc, Loc::Disk { segment, .. } if segment == seg.first_seq),
            );
            let lost = (before - self.entries.len()) as u64;
            self.state.dropped += lost;
            error!(
                batches = lost,
                first_seq = seg.first_seq,
                last_seq = seg.last_seq,
                budget = self.budget,
                "spool over budget: oldest unacknowledged batches dropped"
            );
            if let Err(e) = std::fs::remove_file(seg_path(&self.dir, seg.first_seq)) {
                warn!(error = %e, "cannot delete spool segment");
            }
        }
    }

    /// Deletes segments whose records are all acknowledged; `meta.bin` already holds the mark,
    /// so numbering survives even with no segment left.
    fn delete_acked_segments(&mut self) {
        while self
            .segments
            .front()
            .is_some_and(|s| s.last_seq <= self.meta.acked)
        {
            if let Some(seg) = self.segments.pop_front() {
                if self.segments.is_empty() {
                    // The writer points into it: the next append starts a new segment.
                    self.writer = None;
                }
                let _ = std::fs::remove_file(seg_path(&self.dir, seg.first_seq));
            }
        }
    }
}

fn crc(seq: u64, body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(body);
    h.finalize()
}

/// A whole, checksummed record at the start of `data`: its seq and body.
fn parse_record(data: &[u8]) -> Option<(u64, &[u8])> {
    let header = data.get(..HEADER)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let sum = u32::from_le_bytes(header[4..8].try_into().ok()?);
    let seq = u64::from_le_bytes(header[8..16].try_into().ok()?);
    if len > rie_proto::MAX_FRAME_LEN {
        return None;
    }
    let body = data.get(HEADER..HEADER + len)?;
    (crc(seq, body) == sum).then_some((seq, body))
}

impl Outbox for Spool {
    fn stream(&self) -> u64 {
        self.meta.stream
    }

    fn append(&mut self, mut batch: Batch) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        batch.seq = seq;
        let created_ms = batch.created_ms;
        let loc = match rmp_serde::to_vec_named(&batch) {
            Ok(body) => match self.write_record(seq, &body) {
                Ok((segment, offset)) => Loc::Disk {
                    segment,
                    offset,
                    len: body.len() as u32,
                },
                Err(e) => {
                    self.state.write_errors += 1;
                    self.writer = None;
                    error!(error = %e, dir = %self.dir.display(), seq, "cannot write to the spool (disk full or directory gone?); holding the batch in memory");
                    Loc::Memory(Box::new(batch))
                }
            },
            Err(e) => {
                error!(error = %e, seq, "cannot encode batch for the spool");
                Loc::Memory(Box::new(batch))
            }
        };
        self.entries.push_back(Entry {
            seq,
            created_ms,
            loc,
        });
        let in_memory = self
            .entries
            .iter()
            .filter(|e| matches!(e.loc, Loc::Memory(_)))
            .count();
        if in_memory > MEMORY_FALLBACK {
            if let Some(pos) = self
                .entries
                .iter()
                .position(|e| matches!(e.loc, Loc::Memory(_)))
            {
                self.entries.remove(pos);
                self.state.dropped += 1;
            }
        }
        self.enforce_budget();
        seq
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn get(&mut self, i: usize) -> Option<Batch> {
        loop {
            let e = self.entries.get(i)?;
            let read = match &e.loc {
                Loc::Memory(b) => Some((**b).clone()),
                Loc::Disk {
                    segment,
                    offset,
                    len,
                } => read_at(&seg_path(&self.dir, *segment), *offset, *len)
                    .and_then(|body| rmp_serde::from_slice::<Batch>(&body).ok())
                    .filter(|b| b.seq == e.seq),
            };
            match read {
                Some(b) => return Some(b),
                None => {
                    warn!(
                        seq = e.seq,
                        "spooled batch unreadable (file removed or damaged): dropped"
                    );
                    self.entries.remove(i);
                    self.state.dropped += 1;
                }
            }
        }
    }

    fn ack(&mut self, seq: u64) {
        while self.entries.front().is_some_and(|e| e.seq <= seq) {
            self.entries.pop_front();
        }
        if seq > self.meta.acked {
            self.meta.acked = seq;
            self.state.last_acked = seq;
            match self.write_meta() {
                Ok(()) => self.delete_acked_segments(),
                // Without a durable mark, keep the segments: redelivery is deduplicated.
                Err(e) => warn!(error = %e, "cannot record the acknowledgement in the spool"),
            }
        }
    }

    fn state(&self) -> OutboxState {
        OutboxState {
            batches: self.entries.len(),
            bytes: self.disk_bytes(),
            oldest_ms: self.entries.front().map(|e| e.created_ms),
            ..self.state.clone()
        }
    }
}

fn read_at(path: &Path, offset: u64, len: u32) -> Option<Vec<u8>> {
    let mut f = File::open(path).ok()?;
    f.seek(SeekFrom::Start(offset)).ok()?;
    let mut rec = vec![0u8; HEADER + len as usize];
    f.read_exact(&mut rec).ok()?;
    parse_record(&rec).map(|(_, body)| body.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(bytes: u64) -> Batch {
        Batch {
            top_talkers: Vec::new(),
            seq: 0,
            created_ms: bytes as i64,
            flows: vec![rie_proto::FlowAggregate {
                minute: 60,
                protocol: 6,
                direction: rie_proto::Direction::Inbound,
                exporter: None,
                flows: 1,
                packets: 1,
                bytes,
                sampling_rate: 1,
                port_class: rie_proto::PortClass::Unknown,
            }],
            samples: vec![],
            links: vec![],
        }
    }

    /// Bytes of every readable batch, oldest first (`get` drops unreadable ones as it goes).
    fn bytes_of(s: &mut Spool) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some(b) = s.get(out.len()) {
            out.push(b.flows[0].bytes);
        }
        assert_eq!(out.len(), s.len());
        out
    }

    #[test]
    fn survives_reopen_and_forgets_only_what_was_acked() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
        let stream = s.stream();
        assert_eq!(
            (s.append(b(10)), s.append(b(20)), s.append(b(30))),
            (1, 2, 3)
        );
        s.ack(1);
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(s.stream(), stream);
        assert_eq!(bytes_of(&mut s), [20, 30]);
        assert_eq!(s.get(0).unwrap().seq, 2);
        assert_eq!(s.append(b(40)), 4);
        s.ack(4);
        assert!(s.is_empty());
        drop(s);
        // Everything acked: numbering still goes on, never back.
        let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
        assert!(s.is_empty());
        assert_eq!(s.append(b(50)), 5);
    }

    #[test]
    fn the_ack_mark_survives_a_damaged_slot() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
        s.append(b(10));
        s.append(b(20));
        s.ack(1);
        let stream = s.stream();
        let generation = s.meta.generation;
        drop(s);
        // Damage the slot written last, as a torn write would.
        let path = dir.path().join(META_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let newest = (generation % 2) as usize * SLOT;
        bytes[newest + 20] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(s.stream(), stream);
        // The older slot may hold an older mark: at worst a batch is sent again, never lost.
        assert!(bytes_of(&mut s).ends_with(&[20]));
        assert_eq!(s.append(b(30)), 3);
        drop(s);
        std::fs::write(&path, [0u8; 2 * SLOT]).unwrap();
        let e = Spool::open(dir.path(), 1 << 30).err().unwrap().to_string();
        assert!(e.contains("both slots damaged"), "{e}");
    }

    #[test]
    fn a_torn_tail_is_cut_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
        s.append(b(10));
        s.append(b(20));
        drop(s);
        let seg = seg_path(dir.path(), 1);
        let whole = std::fs::metadata(&seg).unwrap().len();
        // Half of a third record, as a power cut would leave it.
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[40, 0, 0, 0, 1, 2, 3, 4, 3, 0, 0]).unwrap();
        drop(f);
        let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(bytes_of(&mut s), [10, 20]);
        assert_eq!(s.state().torn_cut, 1);
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), whole);
        assert_eq!(s.append(b(30)), 3);
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(bytes_of(&mut s), [10, 20, 30]);
        assert_eq!(s.state().torn_cut, 0);
    }

    #[test]
    fn a_flipped_bit_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
        s.append(b(10));
        s.append(b(20));
        drop(s);
        let seg = seg_path(dir.path(), 1);
        let mut data = std::fs::read(&seg).unwrap();
        let last = data.len() - 1;
        data[last] ^= 0x40;
        std::fs::write(&seg, data).unwrap();
        let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(bytes_of(&mut s), [10]);
        assert_eq!(s.state().torn_cut, 1);
    }

    #[test]
    fn over_budget_the_oldest_segment_goes_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 0).unwrap();
        // Budget is raised to two segments; ~1 MiB batches fill them quickly.
        let big = |n: u64| {
            let mut x = b(n);
            x.samples = (0..9_000)
                .map(|i| rie_proto::AvailabilitySample {
                    link: rie_proto::LinkId::new("L").unwrap(),
                    check: rie_proto::CheckKind::Icmp,
                    target: format!(
                        "target-{i}-{n}-padding-padding-padding-padding-padding-padding-padding"
                    ),
                    start: 0,
                    interval_s: 10,
                    sent: 1,
                    received: 1,
                    rtt_min_us: None,
                    rtt_avg_us: None,
                    rtt_max_us: None,
                    rtt_p95_us: None,
                    jitter_us: None,
                })
                .collect();
            x
        };
        for n in 0..30 {
            s.append(big(n));
        }
        let st = s.state();
        assert!(st.bytes <= 2 * SEGMENT_MAX, "{st:?}");
        assert!(st.dropped > 0);
        assert_eq!(st.batches as u64 + st.dropped, 30);
        // What is left is the newest, in order.
        let kept = bytes_of(&mut s);
        assert_eq!(kept.last(), Some(&29));
        assert!(kept.windows(2).all(|w| w[1] == w[0] + 1));
    }

    #[test]
    fn a_deleted_spool_directory_does_not_stop_the_probe() {
        let dir = tempfile::tempdir().unwrap();
        let spool_dir = dir.path().join("spool");
        let mut s = Spool::open(&spool_dir, 1 << 30).unwrap();
        s.append(b(10));
        std::fs::remove_dir_all(&spool_dir).unwrap();
        // The batch on disk is gone with its file, counted at once; new ones are spooled again.
        assert_eq!(s.append(b(20)), 2);
        assert_eq!(s.state().dropped, 1);
        assert_eq!(bytes_of(&mut s), [20]);
        assert!(spool_dir.join("meta.bin").exists());
        drop(s);
        // And the numbering survived the loss of meta.bin too.
        let mut s = Spool::open(&spool_dir, 1 << 30).unwrap();
        assert_eq!(bytes_of(&mut s), [20]);
        assert_eq!(s.append(b(30)), 3);
    }
}
