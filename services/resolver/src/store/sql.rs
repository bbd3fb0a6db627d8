//! [`SqlStore`]: the identity store on SQLite or PostgreSQL through sqlx's `Any`
//! driver. Both backends run the same SQL (numbered `$n` parameters, `RETURNING`,
//! `ON CONFLICT`); only the migrations differ.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor, Row, Transaction};
use tessera_matching::{Decision, Demographics, FieldWeight, SourceKey};

use super::{
    EventId, EventType, IdentityStore, IndexEntry, Link, LinkEvent, LinkFilter, LinkSource,
    LinkWithKey, MasterId, MasterRow, MasterState, Micros, NewEvent, Page, RecordId,
    ReviewCandidate, ReviewId, ReviewItem, ReviewOutcome, ReviewState, StoreError, StoreTx,
    StoredRecord, StoredResponse,
};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Columns of a record joined with its link, in the order `record_from_row` reads.
const RECORD_COLUMNS: &str = "r.id, r.system, r.local_id, r.demographics, r.source_updated_at, \
     r.created_at, r.updated_at, l.master_id, l.decision, l.link_source, l.score, \
     l.field_weights, l.created_at AS link_created_at, l.updated_at AS link_updated_at";

const REVIEW_COLUMNS: &str = "v.id, v.record_id, r.system, r.local_id, v.master_id, v.candidates, \
     v.state, v.outcome, v.resolved_master, v.created_at, v.resolved_at";

const EVENT_COLUMNS: &str = "e.id, e.master_id, e.event_type, e.record_id, r.system, r.local_id, \
     e.other_master, e.decision, e.link_source, e.score, e.field_weights, e.actor, e.request_id, \
     e.created_at";

/// The identity store on SQLite (embedded, a file) or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pub(super) pool: AnyPool,
    pub(super) sqlite: bool,
    /// SQLite only: the background WAL checkpointer, stopped with the last clone.
    _checkpointer: Option<Arc<Checkpointer>>,
}

/// Checkpoints SQLite's write-ahead log in the background, so that no commit on
/// the request path pays for a checkpoint (SQLite's automatic checkpoint runs
/// inside whichever commit crosses the threshold).
#[derive(Debug)]
struct Checkpointer(tokio::task::JoinHandle<()>);

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How often the background checkpointer runs.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

impl SqlStore {
    /// Connects to `url` and applies the backend's migrations. SQLite URLs
    /// (`sqlite://PATH`) create the file if it is missing.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let (url, sqlite) = if let Some(rest) = url.strip_prefix("sqlite:") {
            let sep = if rest.contains('?') { '&' } else { '?' };
            let url = if rest.contains("mode=") {
                url.to_owned()
            } else {
                format!("{url}{sep}mode=rwc")
            };
            (url, true)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (url.to_owned(), false)
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 8 } else { 16 })
            // A connection to an embedded file cannot drop, and sqlx's SQLite
            // connections live on worker threads: the ping before each use was
            // a second thread hop per query for nothing.
            .test_before_acquire(!sqlite)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; \
                             PRAGMA wal_autocheckpoint = 0;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        let checkpointer = if sqlite {
            SQLITE_MIGRATIONS.run(&pool).await?;
            let pool = pool.clone();
            Some(Arc::new(Checkpointer(tokio::spawn(async move {
                let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    // PASSIVE never blocks writers; a failure is retried next tick.
                    if let Err(e) = pool.execute("PRAGMA wal_checkpoint(PASSIVE)").await {
                        tracing::warn!(error = %e, "identity store checkpoint failed");
                    }
                }
            }))))
        } else {
            POSTGRES_MIGRATIONS.run(&pool).await?;
            None
        };
        Ok(Self {
            pool,
            sqlite,
            _checkpointer: checkpointer,
        })
    }
}

/// Now, in microseconds since the epoch.
pub(crate) fn now_micros() -> Micros {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

pub(super) fn id(v: u64) -> i64 {
    // Store ids come from the database's own i64 sequences.
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn uid(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn decision_str(d: Decision) -> &'static str {
    match d {
        Decision::Match => "MATCH",
        Decision::PossibleMatch => "POSSIBLE_MATCH",
        Decision::NoMatch => "NO_MATCH",
    }
}

fn parse_decision(s: &str) -> Result<Decision, StoreError> {
    match s {
        "MATCH" => Ok(Decision::Match),
        "POSSIBLE_MATCH" => Ok(Decision::PossibleMatch),
        "NO_MATCH" => Ok(Decision::NoMatch),
        _ => Err(StoreError::Corrupt { what: "decision" }),
    }
}

fn link_source_str(s: LinkSource) -> &'static str {
    match s {
        LinkSource::Auto => "AUTO",
        LinkSource::Manual => "MANUAL",
    }
}

fn parse_link_source(s: &str) -> Result<LinkSource, StoreError> {
    match s {
        "AUTO" => Ok(LinkSource::Auto),
        "MANUAL" => Ok(LinkSource::Manual),
        _ => Err(StoreError::Corrupt {
            what: "link source",
        }),
    }
}

fn event_type_str(t: EventType) -> &'static str {
    match t {
        EventType::Linked => "LINKED",
        EventType::Unlinked => "UNLINKED",
        EventType::Merged => "MERGED",
        EventType::Unmerged => "UNMERGED",
        EventType::ReviewOpened => "REVIEW_OPENED",
        EventType::ReviewResolved => "REVIEW_RESOLVED",
        EventType::RecordUpdated => "RECORD_UPDATED",
    }
}

fn parse_event_type(s: &str) -> Result<EventType, StoreError> {
    Ok(match s {
        "LINKED" => EventType::Linked,
        "UNLINKED" => EventType::Unlinked,
        "MERGED" => EventType::Merged,
        "UNMERGED" => EventType::Unmerged,
        "REVIEW_OPENED" => EventType::ReviewOpened,
        "REVIEW_RESOLVED" => EventType::ReviewResolved,
        "RECORD_UPDATED" => EventType::RecordUpdated,
        _ => return Err(StoreError::Corrupt { what: "event type" }),
    })
}

fn review_state_str(s: ReviewState) -> &'static str {
    match s {
        ReviewState::Open => "OPEN",
        ReviewState::Resolved => "RESOLVED",
    }
}

fn outcome_str(o: ReviewOutcome) -> &'static str {
    match o {
        ReviewOutcome::Linked => "LINKED",
        ReviewOutcome::NewMaster => "NEW_MASTER",
    }
}

pub(super) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

fn from_json<T: serde::de::DeserializeOwned>(
    text: &str,
    what: &'static str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|_| StoreError::Corrupt { what })
}

/// A row's `system` and `local_id` columns as a key.
fn key_from_row(row: &AnyRow) -> Result<SourceKey, StoreError> {
    Ok(SourceKey::new(
        row.try_get::<String, _>("system")?,
        row.try_get::<String, _>("local_id")?,
    ))
}

fn record_from_row(row: &AnyRow) -> Result<StoredRecord, StoreError> {
    let id = uid(row.try_get("id")?);
    let master: Option<i64> = row.try_get("master_id")?;
    let link = match master {
        Some(master) => {
            let decision: String = row.try_get("decision")?;
            let source: String = row.try_get("link_source")?;
            let weights: String = row.try_get("field_weights")?;
            Some(Link {
                record: id,
                master: uid(master),
                decision: parse_decision(&decision)?,
                link_source: parse_link_source(&source)?,
                score: row.try_get("score")?,
                field_weights: from_json(&weights, "field weights")?,
                created_at: row.try_get("link_created_at")?,
                updated_at: row.try_get("link_updated_at")?,
            })
        }
        None => None,
    };
    let demographics: String = row.try_get("demographics")?;
    Ok(StoredRecord {
        id,
        key: key_from_row(row)?,
        demographics: from_json(&demographics, "demographics")?,
        source_updated_at: row.try_get("source_updated_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        link,
    })
}

fn master_from_row(row: &AnyRow) -> Result<MasterRow, StoreError> {
    let state: String = row.try_get("state")?;
    Ok(MasterRow {
        id: uid(row.try_get("id")?),
        state: match state.as_str() {
            "ACTIVE" => MasterState::Active,
            "MERGED" => MasterState::Merged,
            _ => {
                return Err(StoreError::Corrupt {
                    what: "master state",
                });
            }
        },
        merged_into: row.try_get::<Option<i64>, _>("merged_into")?.map(uid),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn review_from_row(row: &AnyRow) -> Result<ReviewItem, StoreError> {
    let candidates: String = row.try_get("candidates")?;
    let state: String = row.try_get("state")?;
    let outcome: Option<String> = row.try_get("outcome")?;
    Ok(ReviewItem {
        id: uid(row.try_get("id")?),
        record: uid(row.try_get("record_id")?),
        key: key_from_row(row)?,
        master: uid(row.try_get("master_id")?),
        candidates: from_json::<Vec<ReviewCandidate>>(&candidates, "review candidates")?,
        state: match state.as_str() {
            "OPEN" => ReviewState::Open,
            "RESOLVED" => ReviewState::Resolved,
            _ => {
                return Err(StoreError::Corrupt {
                    what: "review state",
                });
            }
        },
        outcome: match outcome.as_deref() {
            None => None,
            Some("LINKED") => Some(ReviewOutcome::Linked),
            Some("NEW_MASTER") => Some(ReviewOutcome::NewMaster),
            Some(_) => {
                return Err(StoreError::Corrupt {
                    what: "review outcome",
                });
            }
        },
        resolved_master: row.try_get::<Option<i64>, _>("resolved_master")?.map(uid),
        created_at: row.try_get("created_at")?,
        resolved_at: row.try_get("resolved_at")?,
    })
}

fn event_from_row(row: &AnyRow) -> Result<LinkEvent, StoreError> {
    let event_type: String = row.try_get("event_type")?;
    let decision: Option<String> = row.try_get("decision")?;
    let link_source: Option<String> = row.try_get("link_source")?;
    let weights: String = row.try_get("field_weights")?;
    let system: Option<String> = row.try_get("system")?;
    let local_id: Option<String> = row.try_get("local_id")?;
    Ok(LinkEvent {
        id: uid(row.try_get("id")?),
        event: NewEvent {
            master: uid(row.try_get("master_id")?),
            event_type: parse_event_type(&event_type)?,
            record: row.try_get::<Option<i64>, _>("record_id")?.map(uid),
            other_master: row.try_get::<Option<i64>, _>("other_master")?.map(uid),
            decision: decision.as_deref().map(parse_decision).transpose()?,
            link_source: link_source.as_deref().map(parse_link_source).transpose()?,
            score: row.try_get("score")?,
            field_weights: from_json::<Vec<FieldWeight>>(&weights, "field weights")?,
            actor: row.try_get("actor")?,
            request_id: row.try_get("request_id")?,
        },
        key: system.zip(local_id).map(|(s, l)| SourceKey::new(s, l)),
        created_at: row.try_get("created_at")?,
    })
}

fn limit(page: Page) -> i64 {
    i64::from(page.limit.max(1))
}

#[async_trait]
impl IdentityStore for SqlStore {
    async fn begin(&self) -> Result<Box<dyn StoreTx>, StoreError> {
        Ok(Box::new(SqlTx {
            tx: self.pool.begin().await?,
        }))
    }

    fn shared(&self) -> bool {
        // The embedded file belongs to this process; PostgreSQL may have other
        // writers (replicas).
        !self.sqlite
    }

    async fn load_index(&self) -> Result<Vec<IndexEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.id, r.system, r.local_id, l.master_id, r.demographics FROM source_records r \
             JOIN links l ON l.record_id = r.id ORDER BY r.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let demographics: String = row.try_get("demographics")?;
                Ok(IndexEntry {
                    record: uid(row.try_get("id")?),
                    key: key_from_row(row)?,
                    master: uid(row.try_get("master_id")?),
                    demographics: from_json(&demographics, "demographics")?,
                })
            })
            .collect()
    }

    async fn load_masters(&self) -> Result<Vec<(MasterId, Option<MasterId>)>, StoreError> {
        let rows = sqlx::query("SELECT id, merged_into FROM masters ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let merged_into: Option<i64> = row.try_get("merged_into")?;
                Ok((uid(row.try_get("id")?), merged_into.map(uid)))
            })
            .collect()
    }

    async fn record_by_key(&self, key: &SourceKey) -> Result<Option<StoredRecord>, StoreError> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM source_records r LEFT JOIN links l ON l.record_id = r.id \
             WHERE r.system = $1 AND r.local_id = $2"
        );
        let row = sqlx::query(&sql)
            .bind(&key.system)
            .bind(&key.local_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(record_from_row).transpose()
    }

    async fn master(&self, master: MasterId) -> Result<Option<MasterRow>, StoreError> {
        let row = sqlx::query(
            "SELECT id, state, merged_into, created_at, updated_at FROM masters WHERE id = $1",
        )
        .bind(id(master))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(master_from_row).transpose()
    }

    async fn master_records(&self, master: MasterId) -> Result<Vec<StoredRecord>, StoreError> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM links l JOIN source_records r ON r.id = l.record_id \
             WHERE l.master_id = $1 ORDER BY r.id"
        );
        let rows = sqlx::query(&sql)
            .bind(id(master))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(record_from_row).collect()
    }

    async fn master_keys(
        &self,
        master: MasterId,
    ) -> Result<Option<(MasterRow, Vec<SourceKey>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.id, m.state, m.merged_into, m.created_at, m.updated_at, r.system, r.local_id \
             FROM masters m LEFT JOIN links l ON l.master_id = m.id \
             LEFT JOIN source_records r ON r.id = l.record_id \
             WHERE m.id = $1 ORDER BY r.id",
        )
        .bind(id(master))
        .fetch_all(&self.pool)
        .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let row = master_from_row(first)?;
        let mut keys = Vec::with_capacity(rows.len());
        for r in &rows {
            let system: Option<String> = r.try_get("system")?;
            let local_id: Option<String> = r.try_get("local_id")?;
            if let (Some(system), Some(local_id)) = (system, local_id) {
                keys.push(SourceKey::new(system, local_id));
            }
        }
        Ok(Some((row, keys)))
    }

    async fn cluster_keys(
        &self,
        key: &SourceKey,
    ) -> Result<Option<(MasterId, Vec<SourceKey>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT l.master_id, r.system, r.local_id FROM links l \
             JOIN source_records r ON r.id = l.record_id \
             WHERE l.master_id = (SELECT l2.master_id FROM source_records r2 \
             JOIN links l2 ON l2.record_id = r2.id WHERE r2.system = $1 AND r2.local_id = $2) \
             ORDER BY r.id",
        )
        .bind(&key.system)
        .bind(&key.local_id)
        .fetch_all(&self.pool)
        .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let master = uid(first.try_get("master_id")?);
        let keys = rows
            .iter()
            .map(key_from_row)
            .collect::<Result<_, StoreError>>()?;
        Ok(Some((master, keys)))
    }

    async fn cluster_of(&self, key: &SourceKey) -> Result<Vec<StoredRecord>, StoreError> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM links l JOIN source_records r ON r.id = l.record_id \
             WHERE l.master_id = (SELECT l2.master_id FROM source_records r2 \
             JOIN links l2 ON l2.record_id = r2.id WHERE r2.system = $1 AND r2.local_id = $2) \
             ORDER BY r.id"
        );
        let rows = sqlx::query(&sql)
            .bind(&key.system)
            .bind(&key.local_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(record_from_row).collect()
    }

    async fn list_links(
        &self,
        filter: &LinkFilter,
        page: Page,
    ) -> Result<Vec<LinkWithKey>, StoreError> {
        // Fixed SQL fragments; every value is a bound parameter.
        let mut sql = format!(
            "SELECT {RECORD_COLUMNS} FROM links l JOIN source_records r ON r.id = l.record_id \
             WHERE l.record_id > $1"
        );
        let mut n = 1;
        let mut clause = |sql: &mut String, column: &str| {
            n += 1;
            sql.push_str(&format!(" AND {column} = ${n}"));
        };
        if filter.master.is_some() {
            clause(&mut sql, "l.master_id");
        }
        if filter.decision.is_some() {
            clause(&mut sql, "l.decision");
        }
        if filter.link_source.is_some() {
            clause(&mut sql, "l.link_source");
        }
        if filter.system.is_some() {
            clause(&mut sql, "r.system");
        }
        n += 1;
        sql.push_str(&format!(" ORDER BY l.record_id LIMIT ${n}"));

        let mut query = sqlx::query(&sql).bind(id(page.after.unwrap_or(0)));
        if let Some(master) = filter.master {
            query = query.bind(id(master));
        }
        if let Some(decision) = filter.decision {
            query = query.bind(decision_str(decision));
        }
        if let Some(source) = filter.link_source {
            query = query.bind(link_source_str(source));
        }
        if let Some(system) = &filter.system {
            query = query.bind(system.clone());
        }
        let rows = query.bind(limit(page)).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let record = record_from_row(row)?;
                let link = record.link.ok_or(StoreError::Corrupt { what: "link" })?;
                Ok(LinkWithKey {
                    link,
                    key: record.key,
                })
            })
            .collect()
    }

    async fn list_review_items(
        &self,
        state: Option<ReviewState>,
        page: Page,
    ) -> Result<(Vec<ReviewItem>, u64), StoreError> {
        let state = state.map(review_state_str);
        let sql = format!(
            "SELECT {REVIEW_COLUMNS} FROM review_items v JOIN source_records r ON r.id = v.record_id \
             WHERE v.id > $1 AND ($2 = '' OR v.state = $2) ORDER BY v.id LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(id(page.after.unwrap_or(0)))
            .bind(state.unwrap_or(""))
            .bind(limit(page))
            .fetch_all(&self.pool)
            .await?;
        let total: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM review_items WHERE $1 = '' OR state = $1")
                .bind(state.unwrap_or(""))
                .fetch_one(&self.pool)
                .await?
                .try_get("n")?;
        let items = rows.iter().map(review_from_row).collect::<Result<_, _>>()?;
        Ok((items, uid(total)))
    }

    async fn review_item(&self, review: ReviewId) -> Result<Option<ReviewItem>, StoreError> {
        let sql = format!(
            "SELECT {REVIEW_COLUMNS} FROM review_items v JOIN source_records r ON r.id = v.record_id \
             WHERE v.id = $1"
        );
        let row = sqlx::query(&sql)
            .bind(id(review))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(review_from_row).transpose()
    }

    async fn list_link_events(
        &self,
        master: MasterId,
        page: Page,
    ) -> Result<Vec<LinkEvent>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM link_events e LEFT JOIN source_records r ON r.id = e.record_id \
             WHERE e.master_id = $1 AND e.id < $2 ORDER BY e.id DESC LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(id(master))
            .bind(page.after.map_or(i64::MAX, id))
            .bind(limit(page))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn stored_response(
        &self,
        request_id: &str,
    ) -> Result<Option<StoredResponse>, StoreError> {
        let row =
            sqlx::query("SELECT method, fingerprint, response FROM requests WHERE request_id = $1")
                .bind(request_id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|row| {
            Ok(StoredResponse {
                method: row.try_get("method")?,
                fingerprint: row.try_get("fingerprint")?,
                response: row.try_get("response")?,
            })
        })
        .transpose()
    }

    async fn counts(&self) -> Result<(u64, u64), StoreError> {
        let records: i64 = sqlx::query("SELECT COUNT(*) AS n FROM source_records")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        let masters: i64 = sqlx::query("SELECT COUNT(*) AS n FROM masters WHERE state = 'ACTIVE'")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        Ok((uid(records), uid(masters)))
    }

    async fn open_review_count(&self) -> Result<u64, StoreError> {
        let open: i64 = sqlx::query("SELECT COUNT(*) AS n FROM review_items WHERE state = 'OPEN'")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        Ok(uid(open))
    }
}

/// A transaction on either backend.
struct SqlTx {
    tx: Transaction<'static, Any>,
}

#[async_trait]
impl StoreTx for SqlTx {
    async fn record_by_key(&mut self, key: &SourceKey) -> Result<Option<StoredRecord>, StoreError> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM source_records r LEFT JOIN links l ON l.record_id = r.id \
             WHERE r.system = $1 AND r.local_id = $2"
        );
        let row = sqlx::query(&sql)
            .bind(&key.system)
            .bind(&key.local_id)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(record_from_row).transpose()
    }

    async fn insert_record(
        &mut self,
        key: &SourceKey,
        demographics: &Demographics,
        source_updated_at: Option<Micros>,
    ) -> Result<RecordId, StoreError> {
        let now = now_micros();
        let row = sqlx::query(
            "INSERT INTO source_records (system, local_id, demographics, source_updated_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
        )
        .bind(&key.system)
        .bind(&key.local_id)
        .bind(to_json(demographics))
        .bind(source_updated_at)
        .bind(now)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(uid(row.try_get("id")?))
    }

    async fn update_record(
        &mut self,
        record: RecordId,
        demographics: &Demographics,
        source_updated_at: Option<Micros>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE source_records SET demographics = $1, source_updated_at = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(to_json(demographics))
        .bind(source_updated_at)
        .bind(now_micros())
        .bind(id(record))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn create_master(&mut self) -> Result<MasterId, StoreError> {
        let row = sqlx::query(
            "INSERT INTO masters (state, created_at, updated_at) VALUES ('ACTIVE', $1, $1) RETURNING id",
        )
        .bind(now_micros())
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(uid(row.try_get("id")?))
    }

    async fn set_link(&mut self, link: &Link) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO links (record_id, master_id, decision, link_source, score, field_weights, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (record_id) DO UPDATE SET master_id = $2, decision = $3, link_source = $4, \
             score = $5, field_weights = $6, updated_at = $8",
        )
        .bind(id(link.record))
        .bind(id(link.master))
        .bind(decision_str(link.decision))
        .bind(link_source_str(link.link_source))
        .bind(link.score)
        .bind(to_json(&link.field_weights))
        .bind(link.created_at)
        .bind(link.updated_at)
        .execute(&mut *self.tx)
        .await?;
        self.touch_master(link.master).await
    }

    async fn master_record_ids(&mut self, master: MasterId) -> Result<Vec<RecordId>, StoreError> {
        let rows =
            sqlx::query("SELECT record_id FROM links WHERE master_id = $1 ORDER BY record_id")
                .bind(id(master))
                .fetch_all(&mut *self.tx)
                .await?;
        rows.iter()
            .map(|row| Ok(uid(row.try_get("record_id")?)))
            .collect()
    }

    async fn move_links(
        &mut self,
        from: MasterId,
        to: MasterId,
    ) -> Result<Vec<RecordId>, StoreError> {
        let moved = self.master_record_ids(from).await?;
        sqlx::query(
            "UPDATE links SET master_id = $1, link_source = 'MANUAL', decision = 'MATCH', updated_at = $2 \
             WHERE master_id = $3",
        )
        .bind(id(to))
        .bind(now_micros())
        .bind(id(from))
        .execute(&mut *self.tx)
        .await?;
        self.touch_master(to).await?;
        Ok(moved)
    }

    async fn mark_merged(&mut self, loser: MasterId, winner: MasterId) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE masters SET state = 'MERGED', merged_into = $1, updated_at = $2 WHERE id = $3",
        )
        .bind(id(winner))
        .bind(now_micros())
        .bind(id(loser))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn touch_master(&mut self, master: MasterId) -> Result<(), StoreError> {
        sqlx::query("UPDATE masters SET updated_at = $1 WHERE id = $2")
            .bind(now_micros())
            .bind(id(master))
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn add_no_match(&mut self, record: RecordId, master: MasterId) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO no_match (record_id, master_id, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (record_id, master_id) DO NOTHING",
        )
        .bind(id(record))
        .bind(id(master))
        .bind(now_micros())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn remove_no_match(
        &mut self,
        record: RecordId,
        master: MasterId,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM no_match WHERE record_id = $1 AND master_id = $2")
            .bind(id(record))
            .bind(id(master))
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn no_match_masters(&mut self, record: RecordId) -> Result<Vec<MasterId>, StoreError> {
        let rows = sqlx::query("SELECT master_id FROM no_match WHERE record_id = $1")
            .bind(id(record))
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter()
            .map(|row| Ok(uid(row.try_get("master_id")?)))
            .collect()
    }

    async fn open_review(
        &mut self,
        record: RecordId,
        master: MasterId,
        candidates: &[ReviewCandidate],
    ) -> Result<ReviewId, StoreError> {
        let row = sqlx::query(
            "INSERT INTO review_items (record_id, master_id, candidates, state, created_at) \
             VALUES ($1, $2, $3, 'OPEN', $4) RETURNING id",
        )
        .bind(id(record))
        .bind(id(master))
        .bind(to_json(&candidates))
        .bind(now_micros())
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(uid(row.try_get("id")?))
    }

    async fn resolve_reviews(
        &mut self,
        record: RecordId,
        outcome: ReviewOutcome,
        master: MasterId,
    ) -> Result<Vec<ReviewId>, StoreError> {
        let rows = sqlx::query(
            "UPDATE review_items SET state = 'RESOLVED', outcome = $1, resolved_master = $2, resolved_at = $3 \
             WHERE record_id = $4 AND state = 'OPEN' RETURNING id",
        )
        .bind(outcome_str(outcome))
        .bind(id(master))
        .bind(now_micros())
        .bind(id(record))
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(|row| Ok(uid(row.try_get("id")?))).collect()
    }

    async fn add_event(&mut self, event: &NewEvent) -> Result<EventId, StoreError> {
        let row = sqlx::query(
            "INSERT INTO link_events (master_id, event_type, record_id, other_master, decision, link_source, \
             score, field_weights, actor, request_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        )
        .bind(id(event.master))
        .bind(event_type_str(event.event_type))
        .bind(event.record.map(id))
        .bind(event.other_master.map(id))
        .bind(event.decision.map(decision_str))
        .bind(event.link_source.map(link_source_str))
        .bind(event.score)
        .bind(to_json(&event.field_weights))
        .bind(&event.actor)
        .bind(&event.request_id)
        .bind(now_micros())
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(uid(row.try_get("id")?))
    }

    async fn save_response(
        &mut self,
        request_id: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO requests (request_id, method, fingerprint, response, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(request_id)
        .bind(&response.method)
        .bind(&response.fingerprint)
        .bind(&response.response)
        .bind(now_micros())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }
}
