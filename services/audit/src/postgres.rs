use sqlx::PgPool;

use crate::chain::{make_line, sha256_hex};
use crate::{AuditError, AuditRecord, AuditSink, GENESIS_HASH};

/// Audit records in PostgreSQL table `tessera_audit`, hash-chained like the JSONL trail
/// (`prev_hash` is the previous row's `hash`; `hash` is the SHA-256 of the row's JSONL
/// line), appends serialized by a `SELECT ... FOR UPDATE` on the one-row `tessera_audit_head`.
#[derive(Debug, Clone)]
pub struct PostgresSink {
    pool: PgPool,
}

fn db(e: sqlx::Error) -> AuditError {
    let what = match e {
        sqlx::Error::Database(_) => "database error",
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => "no database connection",
        _ => "database unavailable",
    };
    AuditError::Unavailable(what.to_owned())
}

const DDL: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS tessera_audit (seq bigserial PRIMARY KEY, record jsonb NOT NULL, \
     prev_hash text NOT NULL, hash text NOT NULL, inserted_at timestamptz NOT NULL DEFAULT now())",
    "CREATE TABLE IF NOT EXISTS tessera_audit_head (id boolean PRIMARY KEY DEFAULT true CHECK (id), \
     hash text NOT NULL, seq bigint NOT NULL)",
    "CREATE OR REPLACE FUNCTION tessera_audit_refuse() RETURNS trigger LANGUAGE plpgsql AS \
     $$ BEGIN RAISE EXCEPTION 'tessera_audit is append-only'; END $$",
    "CREATE OR REPLACE TRIGGER tessera_audit_no_change BEFORE UPDATE OR DELETE ON tessera_audit \
     FOR EACH ROW EXECUTE FUNCTION tessera_audit_refuse()",
    "CREATE OR REPLACE TRIGGER tessera_audit_no_truncate BEFORE TRUNCATE ON tessera_audit \
     FOR EACH STATEMENT EXECUTE FUNCTION tessera_audit_refuse()",
];

impl PostgresSink {
    /// Connects to the database at `url` (TLS as its `sslmode` says) and creates the
    /// tables and triggers if missing. The error never carries the URL.
    pub async fn connect(url: &str) -> Result<Self, AuditError> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(url)
            .await
            .map_err(db)?;
        Self::migrate(pool, None).await
    }

    /// Creates the tables and triggers if missing; with `service_role`, grants it only
    /// INSERT and SELECT on the trail (and revokes UPDATE, DELETE, TRUNCATE).
    pub async fn migrate(pool: PgPool, service_role: Option<&str>) -> Result<Self, AuditError> {
        for stmt in DDL {
            sqlx::query(stmt).execute(&pool).await.map_err(db)?;
        }
        sqlx::query(
            "INSERT INTO tessera_audit_head (hash, seq) VALUES ($1, 0) ON CONFLICT DO NOTHING",
        )
        .bind(GENESIS_HASH)
        .execute(&pool)
        .await
        .map_err(db)?;
        if let Some(role) = service_role {
            let role = format!("\"{}\"", role.replace('"', "\"\""));
            for stmt in [
                format!("REVOKE UPDATE, DELETE, TRUNCATE ON tessera_audit FROM {role}"),
                format!("GRANT INSERT, SELECT ON tessera_audit TO {role}"),
                format!("GRANT USAGE ON SEQUENCE tessera_audit_seq_seq TO {role}"),
                format!("GRANT SELECT, UPDATE ON tessera_audit_head TO {role}"),
            ] {
                sqlx::query(&stmt).execute(&pool).await.map_err(db)?;
            }
        }
        Ok(Self { pool })
    }
}

impl PostgresSink {
    /// Walks table `tessera_audit` in sequence order and recomputes every row's hash and
    /// link, as `verify` does for a JSONL trail; also checks that the head row names the
    /// last row, so a deleted tail is found too. The error names the first broken row
    /// (`line` is its 1-based position).
    pub async fn verify(&self) -> Result<crate::VerifyReport, crate::VerifyError> {
        let unreadable = |e: sqlx::Error| crate::VerifyError::Io(db(e).to_string());
        let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
            "SELECT seq, record::text, prev_hash, hash FROM tessera_audit ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(unreadable)?;
        let mut head = GENESIS_HASH.to_owned();
        for (i, (_, json, prev_hash, hash)) in rows.iter().enumerate() {
            let sequence = i as u64 + 1;
            let broken = |what: &'static str| crate::VerifyError::Broken {
                line: sequence,
                sequence,
                what,
            };
            let record: AuditRecord =
                serde_json::from_str(json).map_err(|_| broken("malformed record"))?;
            if *prev_hash != head {
                return Err(broken("link to previous row broken"));
            }
            if record.sequence != sequence {
                return Err(broken("sequence out of order"));
            }
            let line = make_line(prev_hash, &record).map_err(|_| broken("malformed record"))?;
            if sha256_hex(line.as_bytes()) != *hash {
                return Err(broken("hash mismatch"));
            }
            head.clone_from(hash);
        }
        let (head_hash, head_seq): (String, i64) =
            sqlx::query_as("SELECT hash, seq FROM tessera_audit_head")
                .fetch_one(&self.pool)
                .await
                .map_err(unreadable)?;
        let records = rows.len() as u64;
        if head_hash != head || u64::try_from(head_seq).ok() != Some(records) {
            return Err(crate::VerifyError::Broken {
                line: records + 1,
                sequence: records + 1,
                what: "rows missing after the last one (head names another)",
            });
        }
        Ok(crate::VerifyReport {
            records,
            head_hash: head,
        })
    }
}

#[async_trait::async_trait]
impl AuditSink for PostgresSink {
    async fn append(&self, mut record: AuditRecord) -> Result<(), AuditError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let (prev, seq): (String, i64) =
            sqlx::query_as("SELECT hash, seq FROM tessera_audit_head FOR UPDATE")
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
        record.sequence = u64::try_from(seq).unwrap_or(0) + 1;
        let line = make_line(&prev, &record).map_err(|_| AuditError::Serialize)?;
        let hash = sha256_hex(line.as_bytes());
        let json = serde_json::to_string(&record).map_err(|_| AuditError::Serialize)?;
        sqlx::query(
            "INSERT INTO tessera_audit (record, prev_hash, hash) VALUES ($1::jsonb, $2, $3)",
        )
        .bind(json)
        .bind(&prev)
        .bind(&hash)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query("UPDATE tessera_audit_head SET hash = $1, seq = seq + 1")
            .bind(&hash)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }
}
