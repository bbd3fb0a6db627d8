use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{mpsc, oneshot};

use crate::chain::{make_line, sha256_hex, verify_bytes};
use crate::{AuditError, AuditRecord, AuditSink};

/// A batch member: a record to append, or a probe (`None`) that only checks the trail.
type Job = (Option<AuditRecord>, oneshot::Sender<Result<(), AuditError>>);

/// An append-only, hash-chained JSONL file with group commit: one writer thread batches
/// concurrent appends and `fdatasync`s them together.
#[derive(Debug, Clone)]
pub struct JsonlSink {
    tx: mpsc::UnboundedSender<Job>,
    healthy: Arc<AtomicBool>,
}

struct Writer {
    path: PathBuf,
    file: Option<File>,
    good_len: u64,
    head: String,
    next_seq: u64,
    healthy: Arc<AtomicBool>,
}

fn unavailable(e: std::io::Error) -> AuditError {
    AuditError::Unavailable(e.kind().to_string())
}

impl JsonlSink {
    /// Opens (or creates, mode 0600; its directory 0700) the trail at `path`, verifying the
    /// existing lines to continue the chain. Refuses a trail that fails verification.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(unavailable)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(0o600)
            .open(path)
            .map_err(unavailable)?;
        let data = std::fs::read(path).map_err(unavailable)?;
        let report = verify_bytes(&data)?;
        let healthy = Arc::new(AtomicBool::new(true));
        let mut writer = Writer {
            path: path.to_owned(),
            file: Some(file),
            good_len: data.len() as u64,
            head: report.head_hash,
            next_seq: report.records + 1,
            healthy: Arc::clone(&healthy),
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                while let Some(first) = rx.blocking_recv() {
                    let mut batch = vec![first];
                    while let Ok(job) = rx.try_recv() {
                        batch.push(job);
                    }
                    writer.commit(batch);
                }
            })
            .map_err(unavailable)?;
        Ok(Self { tx, healthy })
    }

    async fn send(&self, record: Option<AuditRecord>) -> Result<(), AuditError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((record, tx))
            .map_err(|_| AuditError::Unavailable("writer stopped".into()))?;
        rx.await
            .map_err(|_| AuditError::Unavailable("writer stopped".into()))?
    }
}

impl Writer {
    fn commit(&mut self, batch: Vec<Job>) {
        let result = self.write_batch(batch.iter().filter_map(|(r, _)| r.clone()).collect());
        self.healthy.store(result.is_ok(), Ordering::SeqCst);
        if result.is_err() {
            self.file = None;
        }
        for (_, reply) in batch {
            let r = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(AuditError::Unavailable(e.clone())),
            };
            let _ = reply.send(r);
        }
    }

    fn write_batch(&mut self, records: Vec<AuditRecord>) -> Result<(), String> {
        let io = |e: std::io::Error| e.kind().to_string();
        if self.file.is_none() {
            // Reopen without creating: a vanished trail must not restart at genesis.
            let mut f = OpenOptions::new()
                .read(true)
                .append(true)
                .open(&self.path)
                .map_err(io)?;
            // Another file put in the trail's place is neither cut nor continued.
            let len = f.metadata().map_err(io)?.len();
            if len < self.good_len || !ends_with(&mut f, self.good_len, &self.head).map_err(io)? {
                return Err("trail file is not the one written".to_owned());
            }
            f.set_len(self.good_len).map_err(io)?;
            self.file = Some(f);
        }
        let mut buf = Vec::new();
        let mut head = self.head.clone();
        let mut seq = self.next_seq;
        for mut record in records {
            record.sequence = seq;
            let line = make_line(&head, &record).map_err(|_| "serialization".to_owned())?;
            head = sha256_hex(line.as_bytes());
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
            seq += 1;
        }
        let file = self.file.as_mut().ok_or_else(|| "closed".to_owned())?;
        // Writing to a trail that was deleted or moved away would "succeed" and be lost.
        let here = std::fs::metadata(&self.path).map_err(io)?;
        let open = file.metadata().map_err(io)?;
        if (here.dev(), here.ino()) != (open.dev(), open.ino()) {
            return Err("trail file replaced".to_owned());
        }
        if let Err(e) = file.write_all(&buf).and_then(|()| file.sync_data()) {
            // Drop any partial write on the next reopen.
            return Err(io(e));
        }
        self.good_len += buf.len() as u64;
        self.head = head;
        self.next_seq = seq;
        Ok(())
    }
}

/// Whether the line ending at byte `len` of `file` hashes to `head` (or `len` is 0).
fn ends_with(file: &mut File, len: u64, head: &str) -> std::io::Result<bool> {
    if len == 0 {
        return Ok(true);
    }
    // Lines are a few hundred bytes; one longer than this fails the check.
    const TAIL: u64 = 64 * 1024;
    let start = len.saturating_sub(TAIL);
    let mut tail = vec![0; (len - start) as usize];
    file.seek(SeekFrom::Start(start))?;
    file.read_exact(&mut tail)?;
    let Some(body) = tail.strip_suffix(b"\n") else {
        return Ok(false);
    };
    let line = body
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(body, |i| &body[i + 1..]);
    Ok(sha256_hex(line) == head)
}

#[async_trait::async_trait]
impl AuditSink for JsonlSink {
    async fn append(&self, record: AuditRecord) -> Result<(), AuditError> {
        self.send(Some(record)).await
    }

    /// False after a failed write or fsync, until an append or a probe succeeds again.
    fn healthy(&self) -> bool {
        self.healthy.load(Ordering::SeqCst)
    }

    /// Reopens the trail if a write failed (never creating it: a vanished trail must
    /// not restart at genesis), checks it is still the file it was, and syncs it.
    async fn probe(&self) -> Result<(), AuditError> {
        self.send(None).await
    }
}
