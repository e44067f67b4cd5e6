//! Agency reads through the proxy with 1, 2 and 3 nodes, and the S3 blob store against the
//! file store, in one run.
//!
//! Run: `cargo bench --bench cluster` (needs PostgreSQL, `moto_server`, `/usr/sbin/nginx`
//! and `wrk`, as the tests do; `CUSTODIA_BENCH_SECONDS` sets each wrk run, default 10).
//! Each cluster is what `tests/api/cluster.rs` starts: release `custodia serve` processes
//! on one PostgreSQL database and one bucket of a local S3 server, behind nginx running
//! `docs/deploy/nginx.conf`. wrk drives `GET /api/v1/grants/{id}/documents/{doc}/file`
//! (a `full` read of a 64 KiB file, officer and case headers) with `-t2 -c32`. Prints
//! Markdown tables for BENCHMARKS.md.
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

use std::time::Instant;

use serde_json::json;

use cluster::Cluster;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// wrk's requests per second and 99th percentile latency (ms) for an agency's read.
fn wrk(base: &str, path: &str, key: &str, seconds: u32) -> (f64, f64) {
    let auth = format!("Bearer {key}");
    let run = wrk::wrk(
        &format!("{base}{path}"),
        &[
            ("Authorization", &auth),
            ("X-Officer-Id", "officer-7"),
            ("X-Case-Id", "CASE-2026-001"),
        ],
        seconds,
    );
    (run.rps, run.p99_ms)
}

/// Upload and download of a `mib` MiB file through the proxy: MiB/s each way.
async fn transfer(c: &citizen_kit::Citizen, mib: usize) -> (f64, f64) {
    let file = citizen_kit::pdf_bytes(mib * MIB, "transfer");
    let started = Instant::now();
    let r = c
        .upload(
            None,
            "business_license",
            citizen_kit::licence_fields("传输公司"),
            Some(("big.pdf", file.clone())),
        )
        .await;
    assert_eq!(r.status(), 201);
    let up = mib as f64 / started.elapsed().as_secs_f64();
    let id = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let started = Instant::now();
    let body = c
        .get(&format!("/me/documents/{id}/file"))
        .await
        .bytes()
        .await
        .unwrap();
    let down = mib as f64 / started.elapsed().as_secs_f64();
    assert_eq!(body.len(), file.len());
    (up, down)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds: u32 = std::env::var("CUSTODIA_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    println!("| nodes behind nginx | reads/s | p99 |");
    println!("|---|---|---|");
    let mut first = f64::NAN;
    for nodes in 1..=3 {
        let cluster = Cluster::start_with(nodes, true).await;
        let granted = cluster.granted(990, 64 * KIB).await;
        let (path, key) = (&granted.path, &granted.agency.key);
        if nodes == 1 {
            // The same node without the proxy: what the hop through nginx costs.
            let (rps, p99) = wrk(&cluster.node_base(0), path, key, seconds);
            println!("| 1, direct (no proxy) | {rps:.0} | {p99:.1} ms |");
        }
        let (rps, p99) = wrk(&cluster.base, path, key, seconds);
        if nodes == 1 {
            first = rps;
        }
        println!("| {nodes} | {rps:.0} ({:.2}×) | {p99:.1} ms |", rps / first);
        drop(cluster);
    }

    // The same read on one node with local files (no S3 server in the path).
    {
        let cluster = Cluster::start_with(1, false).await;
        let granted = cluster.granted(990, 64 * KIB).await;
        let (rps, p99) = wrk(&cluster.base, &granted.path, &granted.agency.key, seconds);
        println!(
            "| 1, local files instead of S3 | {rps:.0} ({:.2}×) | {p99:.1} ms |",
            rps / first
        );
    }

    println!();
    println!("| blob store (one node, 32 MiB file) | upload | download |");
    println!("|---|---|---|");
    for (name, s3) in [("local files", false), ("S3 (moto server)", true)] {
        let cluster = Cluster::start_with(1, s3).await;
        let granted = cluster.granted(990, 64 * KIB).await;
        let (up, down) = transfer(&granted.citizen, 32).await;
        println!("| {name} | {up:.0} MiB/s | {down:.0} MiB/s |");
        drop(cluster);
    }
}
