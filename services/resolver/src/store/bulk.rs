//! Bulk loading: a whole linked population in one transaction, with multi-row
//! inserts and ids assigned up front, for `tessera resolver link-batch --store`
//! and the benchmarks.

use std::collections::HashMap;

use sqlx::Row;
use tessera_matching::{Demographics, SourceKey};

use super::sql::{id, now_micros, to_json, uid};
use super::{MasterId, SqlStore, StoreError};

/// Rows per multi-row INSERT; keeps every statement under SQLite's and
/// PostgreSQL's bound-parameter limits.
const CHUNK: usize = 1000;

/// Why a bulk load failed. Nothing is written unless it succeeds.
#[derive(Debug, thiserror::Error)]
pub enum BulkLoadError {
    /// Two input rows have the same (source, local_id).
    #[error("input rows {first} and {second} have the same source and local_id")]
    DuplicateKey {
        /// 1-based data row of the first occurrence.
        first: usize,
        /// 1-based data row of the second.
        second: usize,
    },
    /// `clusters` does not have one entry per record.
    #[error("one cluster per record is required")]
    ClusterCount,
    /// The store failed (an input key already stored is a constraint failure).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for BulkLoadError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::Database(e))
    }
}

/// `(...), (...)` for `rows` rows of `per_row` parameters, numbered after `$1`
/// (which every row may use for the timestamp). `row` renders one row from its
/// parameter numbers.
fn values(rows: usize, per_row: usize, row: impl Fn(&[usize]) -> String) -> String {
    (0..rows)
        .map(|r| {
            let params: Vec<usize> = (0..per_row).map(|i| 2 + r * per_row + i).collect();
            row(&params)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Stores `records`, one new master per distinct cluster, each record AUTO-linked
/// to its cluster's master with a LINKED event, in one transaction. Returns each
/// record's master.
pub async fn bulk_load(
    store: &SqlStore,
    records: &[(SourceKey, Demographics)],
    clusters: &[u32],
) -> Result<Vec<MasterId>, BulkLoadError> {
    if records.len() != clusters.len() {
        return Err(BulkLoadError::ClusterCount);
    }
    let mut seen: HashMap<(&str, &str), usize> = HashMap::with_capacity(records.len());
    for (row, (key, _)) in records.iter().enumerate() {
        if let Some(first) = seen.insert((&key.system, &key.local_id), row) {
            return Err(BulkLoadError::DuplicateKey {
                first: first + 1,
                second: row + 1,
            });
        }
    }
    drop(seen);

    let mut tx = store.pool.begin().await?;
    let max = |table: &str| format!("SELECT COALESCE(MAX(id), 0) AS m FROM {table}");
    let record_base = uid(sqlx::query(&max("source_records"))
        .fetch_one(&mut *tx)
        .await?
        .try_get("m")?);
    let master_base = uid(sqlx::query(&max("masters"))
        .fetch_one(&mut *tx)
        .await?
        .try_get("m")?);

    let mut master_of: HashMap<u32, MasterId> = HashMap::new();
    let masters: Vec<MasterId> = clusters
        .iter()
        .map(|c| {
            let next = master_base + master_of.len() as u64 + 1;
            *master_of.entry(*c).or_insert(next)
        })
        .collect();
    let mut new_masters: Vec<MasterId> = master_of.into_values().collect();
    new_masters.sort_unstable();
    let now = now_micros();

    for chunk in new_masters.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO masters (id, state, created_at, updated_at) VALUES {}",
            values(chunk.len(), 1, |p| format!("(${}, 'ACTIVE', $1, $1)", p[0]))
        );
        let mut query = sqlx::query(&sql).bind(now);
        for m in chunk {
            query = query.bind(id(*m));
        }
        query.execute(&mut *tx).await?;
    }

    let rows: Vec<(u64, &(SourceKey, Demographics), MasterId)> = records
        .iter()
        .zip(&masters)
        .enumerate()
        .map(|(i, (record, master))| (record_base + i as u64 + 1, record, *master))
        .collect();
    for chunk in rows.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO source_records (id, system, local_id, demographics, created_at, updated_at) VALUES {}",
            values(chunk.len(), 4, |p| format!(
                "(${}, ${}, ${}, ${}, $1, $1)",
                p[0], p[1], p[2], p[3]
            ))
        );
        let mut query = sqlx::query(&sql).bind(now);
        for (record, (key, demographics), _) in chunk {
            query = query
                .bind(id(*record))
                .bind(key.system.clone())
                .bind(key.local_id.clone())
                .bind(to_json(demographics));
        }
        query.execute(&mut *tx).await?;

        let sql = format!(
            "INSERT INTO links (record_id, master_id, decision, link_source, score, field_weights, created_at, updated_at) VALUES {}",
            values(chunk.len(), 2, |p| format!(
                "(${}, ${}, 'MATCH', 'AUTO', 0, '[]', $1, $1)",
                p[0], p[1]
            ))
        );
        let mut query = sqlx::query(&sql).bind(now);
        for (record, _, master) in chunk {
            query = query.bind(id(*record)).bind(id(*master));
        }
        query.execute(&mut *tx).await?;

        let sql = format!(
            "INSERT INTO link_events (master_id, event_type, record_id, decision, link_source, score, field_weights, actor, request_id, created_at) VALUES {}",
            values(chunk.len(), 2, |p| {
                format!(
                    "(${}, 'LINKED', ${}, 'MATCH', 'AUTO', 0, '[]', 'link-batch', '', $1)",
                    p[0], p[1]
                )
            })
        );
        let mut query = sqlx::query(&sql).bind(now);
        for (record, _, master) in chunk {
            query = query.bind(id(*master)).bind(id(*record));
        }
        query.execute(&mut *tx).await?;
    }

    if !store.sqlite {
        // Explicit ids do not advance PostgreSQL's identity sequences.
        for table in ["masters", "source_records"] {
            let sql = format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT COALESCE(MAX(id), 1) FROM {table}))"
            );
            sqlx::query(&sql).execute(&mut *tx).await?;
        }
    }
    tx.commit().await?;
    Ok(masters)
}
