use std::sync::Mutex;

use crate::{AuditError, AuditRecord, AuditSink};

/// An in-memory sink for tests of other crates.
#[derive(Debug, Default)]
pub struct MemorySink {
    records: Mutex<Vec<AuditRecord>>,
}

impl MemorySink {
    /// The records appended so far.
    pub fn records(&self) -> Vec<AuditRecord> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl AuditSink for MemorySink {
    async fn append(&self, mut record: AuditRecord) -> Result<(), AuditError> {
        let mut records = self
            .records
            .lock()
            .map_err(|_| AuditError::Unavailable("memory sink poisoned".into()))?;
        record.sequence = records.len() as u64 + 1;
        records.push(record);
        Ok(())
    }
}
