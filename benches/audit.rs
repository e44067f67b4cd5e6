//! The audit append path and verification.
//!
//! Run: `cargo bench --bench audit` (SQLite; `CUSTODIA_BENCH_POSTGRES=1` adds PostgreSQL;
//! `CUSTODIA_BENCH_EVENTS` sets the size of the verified trail, default 1,000,000).
//! Reports, as Markdown for BENCHMARKS.md: appends per second with group commit and with
//! one commit per event at 1, 16 and 256 concurrent writers, and `audit verify` events per
//! second over the whole trail.
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
#[allow(dead_code)]
mod s3_server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use custodia::audit::{ActorKind, AuditLog, Event};
use custodia::clock::{Clock, SystemClock};

async fn rate(log: &AuditLog, writers: usize, budget: Duration) -> f64 {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while started.elapsed() < budget {
                log.append(
                    Event::new(
                        ActorKind::System,
                        Some(format!("bench-{w}")),
                        custodia::audit::Action::GrantExpire,
                    )
                    .detail(format!("event {n}")),
                )
                .await
                .unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

async fn appends(backend: helpers::Backend, label: &str) {
    let env = helpers::TestEnv::new(backend).await;
    let app = env.start().await.unwrap();
    let state = &app.state;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let grouped = AuditLog::start(
        state.store.clone(),
        clock.clone(),
        state.log_signer().unwrap(),
    )
    .await
    .unwrap();
    let single =
        AuditLog::start_with_batch(state.store.clone(), clock, state.log_signer().unwrap(), 1)
            .await
            .unwrap();
    println!("\n### Appends per second, {label}\n");
    println!("| writers | one commit per event | group commit | speed-up |");
    println!("|---|---|---|---|");
    for writers in [1, 16, 256] {
        let budget = Duration::from_secs(4);
        let one = rate(&single, writers, budget).await;
        let group = rate(&grouped, writers, budget).await;
        println!(
            "| {writers} | {one:.0} | {group:.0} | {:.1}× |",
            group / one
        );
    }
    let summary = custodia::audit::verify(&state.store, &state.audit_trust(), |_, _| {})
        .await
        .unwrap()
        .unwrap();
    println!(
        "\n(the {} events appended form one chain that verifies)",
        summary.events
    );
    app.stop().await;
}

async fn verify_rate(total: u64) {
    let mut env = helpers::TestEnv::new(helpers::Backend::Sqlite).await;
    // `CUSTODIA_BENCH_TRAIL=DIR` keeps the filled trail in DIR and reuses it next time.
    if let Ok(dir) = std::env::var("CUSTODIA_BENCH_TRAIL") {
        env.vars.insert("CUSTODIA_DATA_DIR".into(), dir);
    }
    let app = env.start().await.unwrap();
    let log = app.state.audit.clone();
    let started = Instant::now();
    let (have, _) = app.state.store.audit_extent().await.unwrap();
    let per_writer = total.saturating_sub(u64::try_from(have).unwrap_or(0)) / 256;
    let mut tasks = Vec::new();
    for w in 0..256 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..per_writer {
                log.append(
                    Event::new(
                        ActorKind::Agency,
                        Some(format!("agency-{w}")),
                        custodia::audit::Action::DocumentRead,
                    )
                    .officer(Some("officer-7"), Some("CASE-1"))
                    .citizen(Some("p-0123456789abcdef"))
                    .objects([format!("doc-{n}")])
                    .tier(
                        custodia::catalog::Tier::Fields,
                        Some(vec!["company_name".into()]),
                    )
                    .bytes(Some(512)),
                )
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let filled = started.elapsed();
    let store = app.state.store.clone();
    let started = Instant::now();
    let summary = custodia::audit::verify(&store, &app.state.audit_trust(), |_, _| {})
        .await
        .unwrap()
        .unwrap();
    let took = started.elapsed();
    println!("\n### audit verify\n");
    println!("| events | filled in (256 writers, group commit) | verified in | events/s |");
    println!("|---|---|---|---|");
    println!(
        "| {} | {:.1} s | {:.1} s | {:.0} |",
        summary.events,
        filled.as_secs_f64(),
        took.as_secs_f64(),
        summary.events as f64 / took.as_secs_f64()
    );
    app.stop().await;
}

#[tokio::main]
async fn main() {
    // `CUSTODIA_BENCH_ONLY=verify` skips the append cells.
    let only_verify = std::env::var("CUSTODIA_BENCH_ONLY").is_ok_and(|v| v == "verify");
    if !only_verify {
        appends(helpers::Backend::Sqlite, "SQLite (synchronous=FULL)").await;
        if std::env::var("CUSTODIA_BENCH_POSTGRES").is_ok() {
            appends(helpers::Backend::Postgres, "PostgreSQL").await;
        }
    }
    let total = std::env::var("CUSTODIA_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    verify_rate(total).await;
}
