//! The write path: one transaction on either backend.

use async_trait::async_trait;
use sqlx::Row;
use tessera_matching::{Demographics, SourceKey};

use crate::store::{
    EventId, Link, MasterId, Micros, NewEvent, RecordId, ReviewCandidate, ReviewId, ReviewOutcome,
    StoreError, StoreTx, StoredRecord, StoredResponse,
};

use super::{RECORD_COLUMNS, SqlTx, id, now_micros, to_json, uid};

use super::decode::{decision_str, event_type_str, link_source_str, outcome_str, record_from_row};

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
