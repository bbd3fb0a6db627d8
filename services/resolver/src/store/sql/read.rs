//! The store's queries outside a transaction.

use async_trait::async_trait;
use sqlx::Row;
use tessera_matching::SourceKey;

use crate::store::{
    IdentityStore, IndexEntry, LinkEvent, LinkFilter, LinkWithKey, MasterId, MasterRow, Page,
    ReviewId, ReviewItem, ReviewState, StoreError, StoreTx, StoredRecord, StoredResponse,
};

use super::{
    EVENT_COLUMNS, RECORD_COLUMNS, REVIEW_COLUMNS, SqlStore, SqlTx, from_json, id, limit, uid,
};

use super::decode::{
    decision_str, event_from_row, key_from_row, link_source_str, master_from_row, record_from_row,
    review_from_row, review_state_str,
};

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
