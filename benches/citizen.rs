//! The citizen's side under load, on SQLite (one `custodia serve`, release build):
//!
//! 1. **Listings**: `GET /me/documents` (50 documents) and `GET /me/activity` (the newest
//!    page of a trail of thousands of agency reads), driven by wrk with the session cookie.
//! 2. **An unlock flood**: 100 clients, each from its own address (through the trusted
//!    proxy header), send wrong passphrases to the vaults of 15 accounts as fast as they are
//!    answered. Meanwhile `/healthz`, an agency's `full` read and `/me/documents` are timed
//!    request by request; the node's resident memory is read from `/proc` before and at
//!    its peak (`VmHWM`, reset when the flood starts).
//!
//! Run: `cargo bench --bench citizen`. Needs PostgreSQL as the tests do (the kit's set-up)
//! and `wrk` (`bench/peers.sh` installs it). `CUSTODIA_BENCH_SECONDS` sets each wrk run and
//! the flood (default 10 and 20). Prints Markdown for BENCHMARKS.md.
#![allow(
    dead_code,
    unused_imports,
    unused_macros,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods
)]

#[path = "../tests/api/agency_kit.rs"]
mod agency_kit;
#[path = "../tests/api/binary.rs"]
mod binary;
#[path = "../tests/api/citizen_kit.rs"]
mod citizen_kit;
#[path = "../tests/api/cluster.rs"]
mod cluster;
#[path = "../tests/api/helpers.rs"]
mod helpers;
#[path = "../tests/common/ids.rs"]
mod ids;
#[path = "../tests/common/s3_server.rs"]
mod s3_server;
#[path = "common/wrk.rs"]
mod wrk;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use citizen_kit::{Citizen, PASSPHRASE};
use cluster::Cluster;
use helpers::Backend;

const ATTACKERS: usize = 100;
/// Registration is limited to 20 an hour per address, and the kit registers from one.
const ACCOUNTS: u32 = 15;
const DOCUMENTS: usize = 50;

/// The `Cookie` header of a fresh sign-in and unlock of `citizen` (for wrk, which keeps
/// no cookie jar).
async fn session_cookie(citizen: &mut Citizen) -> String {
    let mut cookies = std::collections::BTreeMap::new();
    let mut keep = |r: &reqwest::Response| {
        for v in r.headers().get_all("set-cookie") {
            let pair = v.to_str().unwrap().split(';').next().unwrap().to_owned();
            let (name, value) = pair.split_once('=').unwrap();
            cookies.insert(name.to_owned(), value.to_owned());
        }
    };
    let signed_in = citizen.finish_login().await;
    assert_eq!(signed_in.status(), 200);
    keep(&signed_in);
    let body: serde_json::Value = signed_in.json().await.unwrap();
    citizen.csrf = body["csrf_token"].as_str().unwrap().to_owned();
    let unlocked = citizen.unlock(PASSPHRASE).await;
    assert_eq!(unlocked.status(), 200);
    keep(&unlocked);
    cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

async fn drive(url: String, headers: Vec<(String, String)>, seconds: u32) -> wrk::Run {
    tokio::task::spawn_blocking(move || {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        wrk::wrk(&url, &headers, seconds)
    })
    .await
    .unwrap()
}

/// Kibibytes of a `/proc/<pid>/status` line (`VmRSS`, `VmHWM`).
fn proc_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| {
            v.trim_start_matches(':')
                .trim()
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap()
}

/// Times `request` one after another until `stop`; every answer must be `expect`.
async fn probe<F, Fut>(stop: Arc<AtomicBool>, expect: u16, request: F) -> Vec<f64>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = reqwest::Response>,
{
    let mut times = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        let r = request().await;
        let status = r.status().as_u16();
        let _ = r.bytes().await.unwrap();
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(status, expect, "a probe was refused during the flood");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    times
}

fn percentile(times: &mut [f64], p: f64) -> f64 {
    times.sort_by(f64::total_cmp);
    let i = ((times.len() as f64 - 1.0) * p).round() as usize;
    times.get(i).copied().unwrap_or(f64::NAN)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds: u32 = std::env::var("CUSTODIA_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let cluster = Cluster::start_on(Backend::Sqlite, 1, false).await;
    let base = cluster.node_base(0);
    let granted = cluster.granted(980, 64 * 1024).await;
    let mut owner = granted.citizen;
    owner.base = base.clone();
    for i in 1..DOCUMENTS {
        owner.licence(&format!("清单公司{i}"), None).await;
    }
    let agency = granted.agency.clone();
    let agency = agency_kit::Agency {
        base: base.clone(),
        ..agency
    };
    let agency_headers = vec![
        ("Authorization".to_owned(), format!("Bearer {}", agency.key)),
        ("X-Officer-Id".to_owned(), "officer-7".to_owned()),
        ("X-Case-Id".to_owned(), "CASE-2026-001".to_owned()),
    ];
    // The owner's trail: thousands of agency reads.
    let reads = drive(format!("{base}{}", granted.path), agency_headers, 5).await;
    let cookie = session_cookie(&mut owner).await;

    // 1. Listings.
    let listing = |path: &str| {
        (
            format!("{base}{path}"),
            vec![("Cookie".to_owned(), cookie.clone())],
        )
    };
    let (url, headers) = listing("/me/documents");
    let documents = drive(url, headers, seconds).await;
    let (url, headers) = listing("/me/activity");
    let activity = drive(url, headers, seconds).await;
    println!("Citizen listings, wrk -t2 -c32 -d{seconds}s (SQLite):");
    println!();
    println!("| route | req/s | p99 |");
    println!("|---|---|---|");
    println!(
        "| `GET /me/documents` ({DOCUMENTS} documents) | {:.0} | {:.1} ms |",
        documents.rps, documents.p99_ms
    );
    println!(
        "| `GET /me/activity` (newest 50 of ≈ {:.0} events) | {:.0} | {:.1} ms |",
        reads.rps * 5.0,
        activity.rps,
        activity.p99_ms
    );
    println!();

    // 2. The unlock flood.
    let mut victims = Vec::new();
    for n in 0..ACCOUNTS {
        let mut v = cluster.citizen(981 + n, &format!("Flooded {n}")).await;
        v.base = base.clone();
        victims.push(v);
    }
    let pid = cluster.pid(0);
    // The peak so far (registrations run Argon2 too) is forgotten: `VmHWM` restarts here.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    let rss_before = proc_kib(pid, "VmRSS");
    let flood_s = (2 * seconds) as u64;
    let stop = Arc::new(AtomicBool::new(false));
    let tried = Arc::new(AtomicU64::new(0));
    let mut attackers = Vec::new();
    for a in 0..ATTACKERS {
        let victim = &victims[a % victims.len()];
        let (http, csrf, url) = (
            victim.http.clone(),
            victim.csrf.clone(),
            format!("{base}/vault/unlock"),
        );
        let (stop, tried) = (stop.clone(), tried.clone());
        attackers.push(tokio::spawn(async move {
            let mut answers = std::collections::BTreeMap::<u16, u64>::new();
            while !stop.load(Ordering::Relaxed) {
                let r = http
                    .post(&url)
                    .header("x-csrf-token", &csrf)
                    .header("x-forwarded-for", format!("198.51.100.{}", a + 1))
                    .json(&json!({ "passphrase": format!("wrong guess {a}") }))
                    .send()
                    .await
                    .unwrap();
                *answers.entry(r.status().as_u16()).or_default() += 1;
                tried.fetch_add(1, Ordering::Relaxed);
                let _ = r.bytes().await;
            }
            answers
        }));
    }
    let http = reqwest::Client::new();
    let health = {
        let (stop, http, url) = (stop.clone(), http.clone(), format!("{base}/healthz"));
        tokio::spawn(async move {
            probe(stop, 200, || {
                let sent = http.get(&url).send();
                async move { sent.await.unwrap() }
            })
            .await
        })
    };
    let read = {
        let (stop, agency, path) = (stop.clone(), agency.clone(), granted.path.clone());
        tokio::spawn(async move { probe(stop, 200, || agency.read(&path)).await })
    };
    let list = {
        let stop = stop.clone();
        let (http, url) = (reqwest::Client::new(), format!("{base}/me/documents"));
        let cookie = cookie.clone();
        tokio::spawn(async move {
            probe(stop, 200, || {
                let sent = http.get(&url).header("cookie", &cookie).send();
                async move { sent.await.unwrap() }
            })
            .await
        })
    };
    let mut peak_during = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(flood_s) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        peak_during = peak_during.max(proc_kib(pid, "VmRSS"));
    }
    stop.store(true, Ordering::Relaxed);
    let mut answers = std::collections::BTreeMap::<u16, u64>::new();
    for a in attackers {
        for (status, n) in a.await.unwrap() {
            *answers.entry(status).or_default() += n;
        }
    }
    let hwm = proc_kib(pid, "VmHWM");
    let mut health = health.await.unwrap();
    let mut read = read.await.unwrap();
    let mut list = list.await.unwrap();
    // The rightful owner still unlocks: her account was not the one flooded.
    assert_eq!(owner.unlock(PASSPHRASE).await.status(), 200);

    println!(
        "Unlock flood: {ATTACKERS} clients, {ACCOUNTS} accounts, {flood_s} s, {} wrong unlocks answered ({}):",
        tried.load(Ordering::Relaxed),
        answers
            .iter()
            .map(|(s, n)| format!("{n} × {s}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!();
    println!("| during the flood | requests | p50 | p99 | target |");
    println!("|---|---|---|---|---|");
    for (name, times) in [
        ("`GET /healthz`", &mut health),
        ("agency `full` read (64 KiB)", &mut read),
        ("`GET /me/documents`", &mut list),
    ] {
        let n = times.len();
        let p50 = percentile(times, 0.5);
        let p99 = percentile(times, 0.99);
        println!("| {name} | {n} | {p50:.1} ms | {p99:.1} ms | p99 < 50 ms |");
    }
    println!();
    println!(
        "Resident memory: {:.1} MiB before, {:.1} MiB at the peak (VmHWM; {:.1} MiB sampled), growth {:.1} MiB (target < 300 MiB)",
        rss_before as f64 / 1024.0,
        hwm as f64 / 1024.0,
        peak_during as f64 / 1024.0,
        (hwm.saturating_sub(rss_before)) as f64 / 1024.0
    );
}
