//! The auditor's console over a large trail on PostgreSQL: search by officer, and the
//! charts of the last 30 days.
//!
//! Run: `cargo bench --bench search` (needs PostgreSQL as the tests do;
//! `CUSTODIA_BENCH_EVENTS` sets the trail's length, default 10,000,000). The trail is made
//! in the database with `generate_series` — agency reads by 200 agencies and 5,000
//! officers of 100,000 citizens over 60 days, with refusals and other actions mixed in —
//! since only the queries are measured here (the chain itself is measured by
//! `benches/audit.rs`); the per-day counts are filled by the statement migration 0013
//! runs. Then it times, through `Store`, 400 searches by officer (newest 50 events) and 20
//! renderings of the 30-day chart, and prints p50/p99.
#![allow(
    dead_code,
    unused_imports,
    unused_macros,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods
)]

#[path = "../tests/api/helpers.rs"]
mod helpers;
#[path = "../tests/common/ids.rs"]
mod ids;
#[path = "../tests/common/s3_server.rs"]
mod s3_server;

use std::time::{Duration, Instant};

use custodia::store::Store;
use custodia::store::audit::AuditFilter;
use sqlx::Connection as _;

const DAY_MS: i64 = 86_400_000;

/// The `i`th official asked for: every one of them read (the seed gives every tenth event
/// to a citizen, so officers whose number ends in 9 have none).
fn officer(i: u32) -> u32 {
    (i * 37) % 5000 / 10 * 10 + i % 9
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn summary(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let events: i64 = std::env::var("CUSTODIA_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let env = helpers::TestEnv::new(helpers::Backend::Postgres).await;
    let store = Store::connect(&env.config()).await.unwrap();
    store.migrate().await.unwrap();
    let mut db = sqlx::PgConnection::connect(&env.vars["CUSTODIA_DATABASE_URL"])
        .await
        .unwrap();

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let first = now - 60 * DAY_MS;
    let step = (60 * DAY_MS) / events.max(1);
    let started = Instant::now();
    let seed = format!(
        "INSERT INTO audit_events (seq, at, actor_kind, actor_id, officer_id, case_id, \
         citizen_pseudonym, action, object_ids, grant_id, purpose, tier, fields, outcome, \
         bytes_sent, request_id, detail, prev_hash, hash) \
         SELECT s, {first} + s * {step}, \
           CASE WHEN s % 10 = 9 THEN 'citizen' ELSE 'agency' END, \
           CASE WHEN s % 10 = 9 THEN NULL ELSE 'agency-' || (s % 200) END, \
           CASE WHEN s % 10 = 9 THEN NULL ELSE 'officer-' || (s % 5000) END, \
           CASE WHEN s % 10 = 9 THEN NULL ELSE 'CASE-' || (s % 77777) END, \
           'p' || (s % 100000), \
           CASE WHEN s % 10 = 9 THEN 'document.upload' WHEN s % 10 < 6 THEN 'document.read' \
                ELSE 'document.file' END, \
           '[]', NULL, 'purpose', 'full', NULL, \
           CASE WHEN s % 50 = 7 THEN 'refused' ELSE 'ok' END, \
           65536, NULL, NULL, '\\x00'::bytea, '\\x00'::bytea \
         FROM generate_series(1::bigint, {events}::bigint) AS s"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(seed))
        .execute(&mut db)
        .await
        .unwrap();
    sqlx::raw_sql(
        "INSERT INTO audit_daily (day, actor_kind, actor_id, action, outcome, n) \
         SELECT at / 86400000, actor_kind, COALESCE(actor_id, ''), action, outcome, COUNT(*) \
         FROM audit_events GROUP BY 1, 2, 3, 4, 5; ANALYZE audit_events; ANALYZE audit_daily",
    )
    .execute(&mut db)
    .await
    .unwrap();
    println!(
        "trail of {events} events made in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    // Search by officer: the console's newest 50 for one official, 400 officials.
    let mut times = Vec::new();
    for i in 0..400u32 {
        let filter = AuditFilter {
            officer_id: Some(format!("officer-{}", officer(i))),
            ..AuditFilter::default()
        };
        let t = Instant::now();
        let rows = store.audit_search(&filter, 50).await.unwrap();
        times.push(t.elapsed());
        if rows.len() != 50 {
            let n: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE officer_id = $1")
                    .bind(filter.officer_id.clone())
                    .fetch_one(&mut db)
                    .await
                    .unwrap();
            panic!(
                "{:?}: {} rows through the store, {n} in the table",
                filter.officer_id,
                rows.len()
            );
        }
    }
    let (search_p50, search_p99) = summary(times);

    // The same official's reads within one agency and a time range (the console's form).
    let mut times = Vec::new();
    for i in 0..400u32 {
        let officer = officer(i);
        let filter = AuditFilter {
            actor_kind: Some("agency".into()),
            actor_id: Some(format!("agency-{}", officer % 200)),
            officer_id: Some(format!("officer-{officer}")),
            action: Some("document.read".into()),
            since_ms: Some(now - 30 * DAY_MS),
            ..AuditFilter::default()
        };
        let t = Instant::now();
        store.audit_search(&filter, 50).await.unwrap();
        times.push(t.elapsed());
    }
    let (combined_p50, combined_p99) = summary(times);

    // The console's charts: reads per agency per day over the last 30 days.
    let since = (now / DAY_MS - 29) * DAY_MS;
    let chart = AuditFilter {
        actor_kind: Some("agency".into()),
        since_ms: Some(since),
        ..AuditFilter::default()
    };
    let mut times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let counts = store.audit_volume(&chart, true).await.unwrap();
        times.push(t.elapsed());
        assert!(!counts.is_empty());
    }
    let (chart_p50, chart_p99) = summary(times);

    // The same chart counted from the events (a filter the per-day counts do not keep).
    let raw = AuditFilter {
        since_ms: Some(since + 1),
        ..chart.clone()
    };
    let t = Instant::now();
    store.audit_volume(&raw, true).await.unwrap();
    let raw_ms = t.elapsed().as_secs_f64() * 1000.0;

    println!();
    println!("| auditor query over {events} events (PostgreSQL) | p50 | p99 |");
    println!("|---|---|---|");
    println!(
        "| search by officer, newest 50 (400 officers) | {search_p50:.2} ms | {search_p99:.2} ms |"
    );
    println!(
        "| search by agency + officer + action + 30 days, newest 50 | {combined_p50:.2} ms | {combined_p99:.2} ms |"
    );
    println!(
        "| 30-day chart of reads per agency per day (20 runs) | {chart_p50:.2} ms | {chart_p99:.2} ms |"
    );
    println!("| the same chart counted from the events (once) | {raw_ms:.0} ms | |");
}
