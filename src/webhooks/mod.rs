//! Agencies hear back (SPEC §6): signed webhooks for decisions, ends of grants and due
//! deletions.
//!
//! * **Events** are queued in the transaction of the change they report
//!   (`Tx::end_grant`, `Tx::decide_request`; `retention.due` by [`queue_retention_due`]
//!   once a grant's retention has run out), one delivery per live endpoint, so an event is
//!   never lost and never sent for a change that rolled back. Payloads carry ids, never
//!   personal data: `{id, type, created_at, data: {grant_id | request_id, status, …}}`.
//! * **Delivery** ([`deliver_on_time`]) runs on every node: each claims due deliveries for
//!   a lease in the database, so no two nodes send one at once; at least once, with
//!   doubling back-off from [`FIRST_RETRY_MS`] to [`LAST_RETRY_MS`], and after
//!   [`MAX_ATTEMPTS`] tries the delivery is dead — listed for the agency
//!   (`GET /api/v1/webhooks/deliveries?status=dead`) to replay.
//! * **Signatures**: Ed25519 with the service signing key under the `webhook` context over
//!   `timestamp ‖ "." ‖ body`; headers `Custodia-Webhook-Id`, `-Timestamp` (Unix seconds),
//!   `-Key-Id` and `-Signature` (base64url). A receiver checks the signature with the
//!   pinned key, refuses a timestamp more than five minutes off, and drops an id it has
//!   seen ([`crate::client::verify_webhook`]).
//! * **Outbound safety**: `https://` only (`http://` to loopback with
//!   `CUSTODIA_WEBHOOK_ALLOW_LOOPBACK=true`); never a private, loopback, link-local or
//!   otherwise non-public address unless `CUSTODIA_WEBHOOK_ALLOW_PRIVATE=true`, checked at
//!   registration and again, on the resolved addresses the request is then pinned to, at
//!   every delivery (no DNS rebinding); no redirects, no proxies, 5 s to connect, 10 s in
//!   all, the answer's body never read; [`crate::ratelimit::WEBHOOK_PER_AGENCY`] deliveries
//!   a minute per agency.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use custodia_crypto::sign::CONTEXT_WEBHOOK;
use serde::{Deserialize, Serialize};
use url::Url;
use uuid::Uuid;

use crate::audit::{ActorKind, Event};
use crate::context::Context;
use crate::error::{Error, invalid};
use crate::ids::AgencyId;
use crate::store::agencies::AgencyRow;
use crate::store::webhooks::{Claimed, DeliveryRow, WebhookRow};

/// Tries before a delivery is dead.
pub const MAX_ATTEMPTS: i32 = 8;
/// Wait after the first failure; it doubles with each failure after.
pub const FIRST_RETRY_MS: i64 = 10_000;
/// The longest wait between tries.
pub const LAST_RETRY_MS: i64 = 3_600_000;
/// Live endpoints an agency may have.
pub const MAX_WEBHOOKS: usize = 5;
/// How long a node holds a claimed delivery before another may try it.
pub const LEASE_MS: i64 = 60_000;
/// How often each node looks for due deliveries.
pub const TICK: Duration = Duration::from_millis(250);
/// Deliveries claimed at once by one node.
const BATCH: i64 = 16;
/// How often (in ticks) each node looks for retention that ran out.
const RETENTION_EVERY_TICKS: u32 = 20;

/// The wait before try `attempt + 1` after `attempt` failed tries.
pub fn backoff_ms(attempt: i32) -> i64 {
    let doublings = u32::try_from(attempt.saturating_sub(1))
        .unwrap_or(0)
        .min(20);
    FIRST_RETRY_MS
        .saturating_mul(1_i64 << doublings)
        .min(LAST_RETRY_MS)
}

/// A new endpoint (`POST /api/v1/webhooks`).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// Where events are POSTed: `https://` at a public address.
    #[schema(pattern = "^https?://", min_length = 10, max_length = 2000)]
    pub url: String,
}

/// An endpoint as its agency sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WebhookView {
    /// Id.
    pub id: Uuid,
    /// Where events go.
    pub url: String,
    /// When it was added (RFC 3339).
    pub created_at: String,
}

fn webhook_view(w: &WebhookRow) -> WebhookView {
    WebhookView {
        id: w.id,
        url: w.url.clone(),
        created_at: crate::clock::rfc3339(w.created_at),
    }
}

/// One delivery as its agency sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    /// Id (also the event's `id` and the `Custodia-Webhook-Id` header).
    pub id: Uuid,
    /// The endpoint.
    pub webhook_id: Uuid,
    /// `request.decided`, `grant.revoked`, `grant.expired`, `grant.exhausted` or
    /// `retention.due`.
    pub event_type: String,
    /// `pending`, `delivered` or `dead`.
    pub status: String,
    /// Tries so far.
    pub attempts: i32,
    /// The last answer's HTTP status.
    pub last_status: Option<i32>,
    /// Why the last try failed.
    pub last_error: Option<String>,
    /// When it was queued (RFC 3339).
    pub created_at: String,
    /// The next try, while pending (RFC 3339).
    pub next_attempt_at: Option<String>,
    /// When it was delivered (RFC 3339).
    pub delivered_at: Option<String>,
    /// The event as sent.
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
}

fn delivery_view(d: &DeliveryRow) -> DeliveryView {
    DeliveryView {
        id: d.id,
        webhook_id: d.webhook_id,
        event_type: d.event_type.clone(),
        status: d.status.clone(),
        attempts: d.attempts,
        last_status: d.last_status,
        last_error: d.last_error.clone(),
        created_at: crate::clock::rfc3339(d.created_at),
        next_attempt_at: (d.status == "pending").then(|| crate::clock::rfc3339(d.next_attempt_at)),
        delivered_at: d.delivered_at.map(crate::clock::rfc3339),
        event: serde_json::from_str(&d.body).unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------------------
// Where events may go.

/// Networks that are not the public internet (RFC 6890 and friends).
const NON_PUBLIC: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "64:ff9b::/96",
    "64:ff9b:1::/48",
    "100::/64",
    "2001::/23",
    "2001:db8::/32",
    "2002::/16",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
];

/// Whether `ip` is on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    // An IPv4 address carried in IPv6 is judged as the IPv4 address.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    !NON_PUBLIC_NETS.iter().any(|n| n.contains(&ip))
}

/// [`NON_PUBLIC`], parsed once.
static NON_PUBLIC_NETS: std::sync::LazyLock<Vec<ipnet::IpNet>> = std::sync::LazyLock::new(|| {
    NON_PUBLIC
        .iter()
        .filter_map(|n| n.parse::<ipnet::IpNet>().ok())
        .collect()
});

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
        IpAddr::V4(v4) => v4.is_loopback(),
    }
}

/// Whether the settings admit sending to `ip`.
fn admitted(ctx: &Context, ip: IpAddr) -> bool {
    is_public(ip)
        || (is_loopback(ip) && ctx.config.webhook_allow_loopback)
        || (!is_loopback(ip) && ctx.config.webhook_allow_private)
}

fn refused_url(message: impl Into<String>) -> Error {
    invalid("url", message)
}

/// Checks an endpoint's URL: the scheme, no credentials in it, a host. Its addresses are
/// checked by [`addresses`].
fn parse_url(ctx: &Context, text: &str) -> Result<Url, Error> {
    let text = text.trim();
    if text.len() > 2000 {
        return Err(refused_url("must be at most 2000 characters"));
    }
    let url = Url::parse(text).map_err(|_| refused_url("must be an absolute https:// URL"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refused_url("must not carry credentials"));
    }
    if url.fragment().is_some() {
        return Err(refused_url("must not have a fragment"));
    }
    let host = url.host().ok_or_else(|| refused_url("must name a host"))?;
    match url.scheme() {
        "https" => {}
        "http" if ctx.config.webhook_allow_loopback => {
            let loopback = match host {
                url::Host::Ipv4(a) => a.is_loopback(),
                url::Host::Ipv6(a) => a.is_loopback(),
                url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
            };
            if !loopback {
                return Err(refused_url(
                    "must be https:// (http:// only to this machine's loopback)",
                ));
            }
        }
        _ => return Err(refused_url("must be https://")),
    }
    Ok(url)
}

/// The addresses `url` reaches, each admitted by the settings; refused if any is not (a
/// name that resolves to a private address among public ones is refused whole).
async fn addresses(ctx: &Context, url: &Url) -> Result<Vec<SocketAddr>, Error> {
    let port = url
        .port_or_known_default()
        .ok_or_else(|| refused_url("must have a port"))?;
    let found: Vec<SocketAddr> = match url.host() {
        Some(url::Host::Ipv4(a)) => vec![SocketAddr::new(IpAddr::V4(a), port)],
        Some(url::Host::Ipv6(a)) => vec![SocketAddr::new(IpAddr::V6(a), port)],
        Some(url::Host::Domain(d)) => tokio::net::lookup_host((d, port))
            .await
            .map_err(|_| refused_url(format!("the host {d} could not be resolved")))?
            .collect(),
        None => return Err(refused_url("must name a host")),
    };
    if found.is_empty() {
        return Err(refused_url("the host has no address"));
    }
    if let Some(bad) = found.iter().find(|a| !admitted(ctx, a.ip())) {
        return Err(refused_url(format!(
            "reaches {}, which is not a public address; webhooks go to public https:// endpoints",
            bad.ip()
        )));
    }
    Ok(found)
}

// ---------------------------------------------------------------------------------------
// The agency's endpoints and deliveries.

fn agency_event(agency: AgencyId, action: crate::audit::Action) -> Event {
    Event::new(ActorKind::Agency, Some(agency.to_string()), action)
}

/// Who adds an endpoint: the agency over its API, or the operator
/// (`custodia agency webhook add`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddedBy {
    /// The agency, with its key.
    Agency,
    /// The operator, on the command line.
    Operator,
}

/// Adds an endpoint for `agency` (at most [`MAX_WEBHOOKS`] live), recorded as done `by`.
#[tracing::instrument(skip_all, fields(agency = %agency.id))]
pub async fn add(
    ctx: &Context,
    agency: &AgencyRow,
    req: &NewWebhook,
    by: AddedBy,
) -> Result<WebhookView, Error> {
    let url = parse_url(ctx, &req.url)?;
    addresses(ctx, &url).await?;
    if ctx.store.agency_webhooks(agency.id).await?.len() >= MAX_WEBHOOKS {
        return Err(Error::Conflict(format!(
            "An agency has at most {MAX_WEBHOOKS} webhooks; remove one first."
        )));
    }
    let now = ctx.clock.now_ms();
    let row = WebhookRow {
        id: Uuid::new_v4(),
        agency_id: agency.id,
        url: url.to_string(),
        created_at: now,
        disabled_at: None,
    };
    let mut tx = ctx.store.begin().await?;
    tx.insert_webhook(&row).await?;
    let event = match by {
        AddedBy::Agency => agency_event(agency.id, crate::audit::Action::WebhookAdd),
        AddedBy::Operator => {
            Event::new(ActorKind::Operator, None, crate::audit::Action::WebhookAdd)
        }
    };
    crate::audit::stage(
        &mut tx,
        event
            .objects([agency.id.to_string(), row.id.to_string()])
            .detail(row.url.clone()),
        now,
    )
    .await?;
    tx.commit().await?;
    ctx.audit.flush().await;
    Ok(webhook_view(&row))
}

/// The agency's live endpoints.
pub async fn list(ctx: &Context, agency: &AgencyRow) -> Result<Vec<WebhookView>, Error> {
    Ok(ctx
        .store
        .agency_webhooks(agency.id)
        .await?
        .iter()
        .map(webhook_view)
        .collect())
}

/// Removes one of the agency's endpoints; what was still pending for it is dead.
pub async fn remove(ctx: &Context, agency: &AgencyRow, id: Uuid) -> Result<(), Error> {
    let now = ctx.clock.now_ms();
    let mut tx = ctx.store.begin().await?;
    if !tx.disable_webhook(agency.id, id, now).await? {
        return Err(Error::NotFound);
    }
    crate::audit::stage(
        &mut tx,
        agency_event(agency.id, crate::audit::Action::WebhookRemove).objects([id.to_string()]),
        now,
    )
    .await?;
    tx.commit().await?;
    ctx.audit.flush().await;
    Ok(())
}

/// Most deliveries listed at once.
pub const DELIVERIES_LIMIT: i64 = 200;

/// The agency's deliveries (`pending`, `delivered`, `dead`, or all), newest first.
pub async fn deliveries(
    ctx: &Context,
    agency: &AgencyRow,
    status: Option<&str>,
) -> Result<Vec<DeliveryView>, Error> {
    if let Some(s) = status
        && !matches!(s, "pending" | "delivered" | "dead")
    {
        return Err(invalid("status", "must be pending, delivered or dead"));
    }
    Ok(ctx
        .store
        .agency_deliveries(agency.id, status, DELIVERIES_LIMIT)
        .await?
        .iter()
        .map(delivery_view)
        .collect())
}

/// Sends one of the agency's deliveries again, from the first try (a dead one, or one
/// the agency lost); its endpoint must still be live.
pub async fn replay(ctx: &Context, agency: &AgencyRow, id: Uuid) -> Result<DeliveryView, Error> {
    let d = ctx.store.agency_delivery(agency.id, id).await?;
    let live = ctx
        .store
        .agency_webhooks(agency.id)
        .await?
        .iter()
        .any(|w| w.id == d.webhook_id);
    if !live {
        return Err(Error::Conflict(
            "Its webhook was removed; add one and the next events go there.".into(),
        ));
    }
    let now = ctx.clock.now_ms();
    ctx.store
        .record_attempt(
            d.id,
            "pending",
            0,
            now,
            d.last_status,
            d.last_error.as_deref(),
            now,
        )
        .await?;
    Ok(delivery_view(
        &ctx.store.agency_delivery(agency.id, id).await?,
    ))
}

// ---------------------------------------------------------------------------------------
// Sending.

/// The signature headers' values for `body` sent at `timestamp_s`.
pub fn signature(ctx: &Context, timestamp_s: i64, body: &str) -> String {
    let message = format!("{timestamp_s}.{body}");
    URL_SAFE_NO_PAD.encode(ctx.keys.signing.sign(CONTEXT_WEBHOOK, message.as_bytes()))
}

/// Why a try failed, in words safe to show the agency.
enum Failure {
    /// The receiver answered, but not 2xx.
    Status(u16),
    /// No answer, or the target is no longer admitted.
    Error(String),
}

async fn send(ctx: &Context, d: &Claimed) -> Result<u16, Failure> {
    let url = Url::parse(&d.url).map_err(|_| Failure::Error("not a URL".into()))?;
    let pinned = addresses(ctx, &url).await.map_err(|e| match e {
        Error::Invalid { message, .. } => Failure::Error(message),
        other => Failure::Error(other.to_string()),
    })?;
    let mut client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10));
    if let Some(url::Host::Domain(name)) = url.host() {
        // Connect to the addresses just checked, not to whatever a second look-up says.
        client = client.resolve_to_addrs(name, &pinned);
    }
    let client = client
        .build()
        .map_err(|e| Failure::Error(format!("client: {e}")))?;
    let timestamp = ctx.clock.now_ms() / 1000;
    let answer = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(reqwest::header::USER_AGENT, "Custodia-Webhook/1")
        .header("custodia-webhook-id", d.id.to_string())
        .header("custodia-webhook-timestamp", timestamp.to_string())
        .header("custodia-webhook-key-id", &ctx.keys.signing_key_id)
        .header(
            "custodia-webhook-signature",
            signature(ctx, timestamp, &d.body),
        )
        .body(d.body.clone())
        .send()
        .await
        .map_err(|e| {
            Failure::Error(if e.is_timeout() {
                "timed out".into()
            } else if e.is_connect() {
                "could not connect".into()
            } else {
                "the request failed".into()
            })
        })?;
    let status = answer.status().as_u16();
    // The answer's body is never read.
    drop(answer);
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(Failure::Status(status))
    }
}

async fn attempt(ctx: &Context, d: Claimed) -> Result<(), Error> {
    if let Err(Error::RateLimited { retry_after_s }) = crate::ratelimit::check(
        ctx,
        crate::ratelimit::WEBHOOK_PER_AGENCY,
        &d.agency_id.to_string(),
    )
    .await
    {
        let later = ctx.clock.now_ms() + i64::try_from(retry_after_s).unwrap_or(60) * 1000;
        ctx.store.postpone_delivery(d.id, later).await?;
        return Ok(());
    }
    let result = send(ctx, &d).await;
    let now = ctx.clock.now_ms();
    let attempts = d.attempts.saturating_add(1);
    match result {
        Ok(status) => {
            ctx.store
                .record_attempt(
                    d.id,
                    "delivered",
                    attempts,
                    now,
                    Some(i32::from(status)),
                    None,
                    now,
                )
                .await?;
        }
        Err(failure) => {
            let (status, error) = match failure {
                Failure::Status(s) => (Some(i32::from(s)), None),
                Failure::Error(e) => (None, Some(e)),
            };
            let dead = attempts >= MAX_ATTEMPTS;
            ctx.store
                .record_attempt(
                    d.id,
                    if dead { "dead" } else { "pending" },
                    attempts,
                    now + backoff_ms(attempts),
                    status,
                    error.as_deref(),
                    now,
                )
                .await?;
            tracing::info!(delivery = %d.id, attempts, dead, "webhook delivery failed");
        }
    }
    Ok(())
}

/// Queues `retention.due` for every grant whose retention ran out (once, whichever node
/// gets there first). Returns how many.
pub async fn queue_retention_due(ctx: &Context) -> Result<usize, Error> {
    let now = ctx.clock.now_ms();
    let mut queued = 0;
    for grant in ctx.store.retention_due_grants(now, 100).await? {
        let mut tx = ctx.store.begin().await?;
        if let Some((agency, retention_days, ended_at)) =
            tx.mark_retention_notified(grant, now).await?
        {
            tx.queue_webhook_event(
                agency,
                "retention.due",
                serde_json::json!({
                    "grant_id": grant,
                    "retention_days": retention_days,
                    "due_at": crate::clock::rfc3339(
                        ended_at + i64::from(retention_days) * 86_400_000
                    ),
                }),
                now,
            )
            .await?;
            queued += 1;
        }
        tx.commit().await?;
    }
    Ok(queued)
}

/// Claims and sends due deliveries, once. Returns how many were tried.
pub async fn deliver_due(ctx: &Context) -> Result<usize, Error> {
    let claimed = ctx
        .store
        .claim_deliveries(ctx.clock.now_ms(), LEASE_MS, BATCH)
        .await?;
    let n = claimed.len();
    let results =
        futures_util::future::join_all(claimed.into_iter().map(|d| attempt(ctx, d))).await;
    for r in results {
        r?;
    }
    Ok(n)
}

/// Delivers webhooks on every node, every [`TICK`]; looks for retention that ran out
/// every few seconds.
pub async fn deliver_on_time(ctx: Arc<Context>) {
    let mut ticks: u32 = 0;
    loop {
        if ticks.is_multiple_of(RETENTION_EVERY_TICKS)
            && let Err(e) = queue_retention_due(&ctx).await
        {
            tracing::warn!(error = %e, "could not queue retention.due events; will retry");
        }
        ticks = ticks.wrapping_add(1);
        if let Err(e) = deliver_due(&ctx).await {
            tracing::warn!(error = %e, "webhook delivery failed; will retry");
        }
        tokio::time::sleep(TICK).await;
    }
}
