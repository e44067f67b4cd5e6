//! Rows of `webhooks` and `webhook_deliveries`, and the agency's acknowledgements on
//! `grants` (SPEC §6).

use uuid::Uuid;

use crate::ids::{AccessRequestId, AgencyId, GrantId};

use crate::on_engine;

use super::{Store, StoreError, Tx};

/// An agency's endpoint.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WebhookRow {
    pub id: Uuid,
    pub agency_id: AgencyId,
    pub url: String,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
}

/// One event for one endpoint, and how its delivery went.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub agency_id: AgencyId,
    pub event_type: String,
    pub body: String,
    /// `pending`, `delivered` or `dead`.
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: i64,
    pub claimed_until: Option<i64>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
}

/// A claimed delivery with the URL it goes to.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: Uuid,
    pub agency_id: AgencyId,
    pub url: String,
    pub body: String,
    pub attempts: i32,
}

/// Per agency: ended grants not acknowledged within a day, and grants whose retention ran
/// out without a confirmed deletion.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AckTally {
    pub agency_id: AgencyId,
    pub unacknowledged_ends: i64,
    pub unconfirmed_deletions: i64,
}

const DELIVERY: &str = "id, webhook_id, agency_id, event_type, body, status, attempts, \
    next_attempt_at, claimed_until, last_status, last_error, created_at, delivered_at";

const DAY_MS: i64 = 86_400_000;

impl Store {
    /// An agency's live endpoints, oldest first.
    pub async fn agency_webhooks(&self, agency: AgencyId) -> Result<Vec<WebhookRow>, StoreError> {
        const SQL: &str = "SELECT id, agency_id, url, created_at, disabled_at FROM webhooks \
            WHERE agency_id = $1 AND disabled_at IS NULL ORDER BY created_at, id";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, WebhookRow>(SQL).bind(agency).fetch_all(p).await?
        }))
    }

    /// An agency's deliveries of one status (or all), newest first.
    pub async fn agency_deliveries(
        &self,
        agency: AgencyId,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let sql = format!(
            "SELECT {DELIVERY} FROM webhook_deliveries WHERE agency_id = $1 \
             AND ($2 IS NULL OR status = $3) ORDER BY created_at DESC, id LIMIT $4"
        );
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, DeliveryRow>(sqlx::AssertSqlSafe(sql))
                .bind(agency).bind(status).bind(status).bind(limit).fetch_all(p).await?
        }))
    }

    /// One of an agency's deliveries; `NotFound` for anyone else's.
    pub async fn agency_delivery(
        &self,
        agency: AgencyId,
        id: Uuid,
    ) -> Result<DeliveryRow, StoreError> {
        let sql =
            format!("SELECT {DELIVERY} FROM webhook_deliveries WHERE id = $1 AND agency_id = $2");
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, DeliveryRow>(sqlx::AssertSqlSafe(sql)).bind(id).bind(agency).fetch_one(p).await?
        }))
    }

    /// Claims up to `limit` due deliveries for `lease_ms`: no other node sends them until
    /// the lease runs out. On PostgreSQL rows another node is claiming are skipped.
    pub async fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        // A read first: most ticks find nothing due, and a read takes no write lock (on
        // SQLite the claim's UPDATE would, four times a second on every node).
        const ANY: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM webhook_deliveries \
            WHERE status = 'pending' AND next_attempt_at <= $1 LIMIT 1) AS due";
        let due: i64 = on_engine!(self.pool(), p => {
            sqlx::query_scalar::<_, i64>(ANY).bind(now_ms).fetch_one(p).await?
        });
        if due == 0 {
            return Ok(Vec::new());
        }
        const DUE: &str = "d.status = 'pending' AND d.next_attempt_at <= $2 \
            AND (d.claimed_until IS NULL OR d.claimed_until <= $2)";
        let pick = match self.pool() {
            super::OnEngine::Sqlite(_) => format!(
                "SELECT d.id FROM webhook_deliveries d WHERE {DUE} ORDER BY d.next_attempt_at LIMIT $3"
            ),
            super::OnEngine::Postgres(_) => format!(
                "SELECT d.id FROM webhook_deliveries d WHERE {DUE} ORDER BY d.next_attempt_at LIMIT $3 \
                 FOR UPDATE SKIP LOCKED"
            ),
        };
        // The claim repeats the conditions, so a row claimed meanwhile is not taken twice.
        let sql = format!(
            "UPDATE webhook_deliveries SET claimed_until = $1 WHERE id IN ({pick}) \
             AND status = 'pending' AND (claimed_until IS NULL OR claimed_until <= $2) \
             RETURNING id"
        );
        let ids: Vec<Uuid> = on_engine!(self.pool(), p => {
            sqlx::query_scalar::<_, Uuid>(sqlx::AssertSqlSafe(sql))
                .bind(now_ms + lease_ms).bind(now_ms).bind(limit).fetch_all(p).await?
        });
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(ids.len());
        const ONE: &str = "SELECT d.id, d.agency_id, w.url, d.body, d.attempts \
            FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id WHERE d.id = $1";
        for id in ids {
            let row = on_engine!(self.pool(), p => {
                sqlx::query_as::<_, Claimed>(ONE).bind(id).fetch_one(p).await?
            });
            out.push(row);
        }
        Ok(out)
    }

    /// Records a delivery's attempt: delivered, waiting for `next_attempt_at`, or dead.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_attempt(
        &self,
        id: Uuid,
        status: &str,
        attempts: i32,
        next_attempt_at: i64,
        last_status: Option<i32>,
        last_error: Option<&str>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE webhook_deliveries SET status = $1, attempts = $2, \
            next_attempt_at = $3, last_status = $4, last_error = $5, claimed_until = NULL, \
            delivered_at = CASE WHEN $6 = 'delivered' THEN $7 ELSE delivered_at END WHERE id = $8";
        on_engine!(self.pool(), p => {
            sqlx::query(SQL).bind(status).bind(attempts).bind(next_attempt_at).bind(last_status)
                .bind(last_error).bind(status).bind(now_ms).bind(id).execute(p).await?;
        });
        Ok(())
    }

    /// Puts a claimed delivery back, untried, until `at` (the agency's delivery rate).
    pub async fn postpone_delivery(&self, id: Uuid, at: i64) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE webhook_deliveries SET claimed_until = NULL, next_attempt_at = $1 \
            WHERE id = $2 AND status = 'pending'";
        on_engine!(self.pool(), p => {
            sqlx::query(SQL).bind(at).bind(id).execute(p).await?;
        });
        Ok(())
    }

    /// Grants whose retention ran out by `now_ms` and whose `retention.due` is not queued.
    pub async fn retention_due_grants(
        &self,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<GrantId>, StoreError> {
        const SQL: &str = "SELECT id FROM grants WHERE retention_notified_at IS NULL \
            AND status <> 'active' AND status_changed_at + CAST(retention_days AS BIGINT) * 86400000 <= $1 \
            ORDER BY status_changed_at LIMIT $2";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_scalar::<_, GrantId>(SQL).bind(now_ms).bind(limit).fetch_all(p).await?
        }))
    }

    /// Per agency, overdue acknowledgements at `now_ms`: ends not acknowledged within a
    /// day, deletions not confirmed once the retention ran out.
    pub async fn overdue_acks(&self, now_ms: i64) -> Result<Vec<AckTally>, StoreError> {
        const SQL: &str = "SELECT agency_id, \
            CAST(SUM(CASE WHEN revocation_ack_at IS NULL AND status_changed_at < $1 THEN 1 ELSE 0 END) AS BIGINT) \
                AS unacknowledged_ends, \
            CAST(SUM(CASE WHEN retention_ack_at IS NULL \
                AND status_changed_at + CAST(retention_days AS BIGINT) * 86400000 < $2 THEN 1 ELSE 0 END) AS BIGINT) \
                AS unconfirmed_deletions \
            FROM grants WHERE status <> 'active' GROUP BY agency_id";
        let rows: Vec<AckTally> = on_engine!(self.pool(), p => {
            sqlx::query_as::<_, AckTally>(SQL).bind(now_ms - DAY_MS).bind(now_ms).fetch_all(p).await?
        });
        Ok(rows
            .into_iter()
            .filter(|r| r.unacknowledged_ends > 0 || r.unconfirmed_deletions > 0)
            .collect())
    }
}

impl Tx {
    /// Adds an endpoint.
    pub async fn insert_webhook(&mut self, w: &WebhookRow) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO webhooks (id, agency_id, url, created_at, disabled_at) \
            VALUES ($1, $2, $3, $4, $5)";
        on_engine!(self, c => {
            sqlx::query(SQL).bind(w.id).bind(w.agency_id).bind(&w.url).bind(w.created_at)
                .bind(w.disabled_at).execute(&mut **c).await?;
        });
        Ok(())
    }

    /// Removes one of an agency's endpoints (no delivery to it is tried again). Returns
    /// whether it was live.
    pub async fn disable_webhook(
        &mut self,
        agency: AgencyId,
        id: Uuid,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE webhooks SET disabled_at = $1 \
            WHERE id = $2 AND agency_id = $3 AND disabled_at IS NULL";
        const DEAD: &str = "UPDATE webhook_deliveries SET status = 'dead', last_error = 'endpoint removed' \
            WHERE webhook_id = $1 AND status = 'pending'";
        let n = on_engine!(self, c => {
            let n = sqlx::query(SQL).bind(now_ms).bind(id).bind(agency)
                .execute(&mut **c).await?.rows_affected();
            sqlx::query(DEAD).bind(id).execute(&mut **c).await?;
            n
        });
        Ok(n == 1)
    }

    /// Queues `event_type` with `data` for every live endpoint of `agency`, in this
    /// transaction (so it is sent exactly when the change commits). Returns how many.
    pub async fn queue_webhook_event(
        &mut self,
        agency: AgencyId,
        event_type: &str,
        data: serde_json::Value,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        const HOOKS: &str =
            "SELECT id FROM webhooks WHERE agency_id = $1 AND disabled_at IS NULL ORDER BY id";
        const SQL: &str = "INSERT INTO webhook_deliveries (id, webhook_id, agency_id, event_type, body, \
            status, attempts, next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $7)";
        let hooks: Vec<Uuid> = on_engine!(self, c => {
            sqlx::query_scalar::<_, Uuid>(HOOKS).bind(agency).fetch_all(&mut **c).await?
        });
        for hook in &hooks {
            let id = Uuid::new_v4();
            let body = serde_json::json!({
                "id": id,
                "type": event_type,
                "created_at": crate::clock::rfc3339(now_ms),
                "data": data,
            })
            .to_string();
            on_engine!(self, c => {
                sqlx::query(SQL).bind(id).bind(hook).bind(agency).bind(event_type).bind(&body)
                    .bind(now_ms).bind(now_ms).execute(&mut **c).await?;
            });
        }
        Ok(hooks.len())
    }

    /// Queues the event of a grant's end for its agency.
    pub(super) async fn queue_grant_end(
        &mut self,
        grant: GrantId,
        status: crate::status::GrantStatus,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        const SQL: &str = "SELECT agency_id FROM grants WHERE id = $1";
        let agency: AgencyId = on_engine!(self, c => {
            sqlx::query_scalar::<_, AgencyId>(SQL).bind(grant).fetch_one(&mut **c).await?
        });
        let event = match status {
            crate::status::GrantStatus::Revoked => "grant.revoked",
            crate::status::GrantStatus::Expired => "grant.expired",
            crate::status::GrantStatus::Exhausted => "grant.exhausted",
            crate::status::GrantStatus::Active => return Ok(()),
        };
        self.queue_webhook_event(
            agency,
            event,
            serde_json::json!({ "grant_id": grant, "status": status }),
            now_ms,
        )
        .await?;
        Ok(())
    }

    /// Queues `request.decided` for the request's agency.
    pub(super) async fn queue_request_decided(
        &mut self,
        request: AccessRequestId,
        status: crate::status::RequestStatus,
        grant: Option<GrantId>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        const SQL: &str = "SELECT agency_id FROM access_requests WHERE id = $1";
        let agency: AgencyId = on_engine!(self, c => {
            sqlx::query_scalar::<_, AgencyId>(SQL).bind(request).fetch_one(&mut **c).await?
        });
        self.queue_webhook_event(
            agency,
            "request.decided",
            serde_json::json!({ "request_id": request, "status": status, "grant_id": grant }),
            now_ms,
        )
        .await?;
        Ok(())
    }

    /// Marks `retention.due` queued for a grant. Returns whether this call did (no other
    /// node had), with the grant's agency and retention.
    pub async fn mark_retention_notified(
        &mut self,
        grant: GrantId,
        now_ms: i64,
    ) -> Result<Option<(AgencyId, i32, i64)>, StoreError> {
        const SQL: &str = "UPDATE grants SET retention_notified_at = $1 \
            WHERE id = $2 AND retention_notified_at IS NULL RETURNING agency_id, retention_days, status_changed_at";
        Ok(on_engine!(self, c => {
            sqlx::query_as::<_, (AgencyId, i32, i64)>(SQL).bind(now_ms).bind(grant)
                .fetch_optional(&mut **c).await?
        }))
    }

    /// Records that an agency stopped using its ended grant (once). Returns whether this
    /// call recorded it.
    pub async fn ack_revocation(
        &mut self,
        agency: AgencyId,
        grant: GrantId,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE grants SET revocation_ack_at = $1 \
            WHERE id = $2 AND agency_id = $3 AND revocation_ack_at IS NULL";
        let n = on_engine!(self, c => {
            sqlx::query(SQL).bind(now_ms).bind(grant).bind(agency).execute(&mut **c).await?.rows_affected()
        });
        Ok(n == 1)
    }

    /// Records that an agency deleted every copy it kept (once). Returns whether this call
    /// recorded it.
    pub async fn ack_retention(
        &mut self,
        agency: AgencyId,
        grant: GrantId,
        deleted_at: i64,
        statement: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE grants SET retention_ack_at = $1, retention_deleted_at = $2, \
            retention_statement = $3 WHERE id = $4 AND agency_id = $5 AND retention_ack_at IS NULL";
        let n = on_engine!(self, c => {
            sqlx::query(SQL).bind(now_ms).bind(deleted_at).bind(statement).bind(grant).bind(agency)
                .execute(&mut **c).await?.rows_affected()
        });
        Ok(n == 1)
    }
}
