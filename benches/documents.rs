//! Upload and download 1 GiB through the real HTTP API, against the machine's own limits.
//!
//! Run: `cargo bench --bench documents` (set `CUSTODIA_BENCH_MIB` for another size).
//! Reports, as a Markdown table for BENCHMARKS.md: raw AES-256-GCM (STREAM) throughput in
//! memory, the disk's synced write and read throughput, and Custodia's upload and download
//! throughput with the process's peak resident memory during each.
#![allow(
    dead_code,
    unused_imports,
    unused_macros,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods
)]

#[path = "../tests/api/citizen_kit.rs"]
mod citizen_kit;
#[path = "../tests/api/helpers.rs"]
mod helpers;
#[path = "../tests/common/ids.rs"]
mod ids;
#[path = "../tests/common/s3_server.rs"]
#[allow(dead_code)]
mod s3_server;

use std::io::{Read, Write};
use std::time::Instant;

use custodia_crypto::digest::Sha256Stream;
use custodia_crypto::stream::StreamEncryptor;
use custodia_crypto::{Aad, DataKey, SymmetricKey};
use futures_util::StreamExt;

/// The server runs in this process: it gets the allocator the `custodia` binary has, so the
/// memory measured is the binary's.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const MIB: usize = 1024 * 1024;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn reset_peak_rss() {
    // Linux: writing 5 to clear_refs resets the peak resident set size (VmHWM).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Deterministic, incompressible-looking bytes, PDF-headed so the upload is accepted.
fn chunk(i: usize, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    if i == 0 {
        out[..9].copy_from_slice(b"%PDF-1.7\n");
    }
    out
}

fn mb_per_s(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / MIB as f64 / secs
}

fn main() {
    let total_mib: usize = std::env::var("CUSTODIA_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let total = total_mib * MIB;
    let piece = MIB;

    // 1. AES-256-GCM STREAM in memory, one core, 256 MiB pushed a MiB at a time (small
    // buffers: the resident memory measured in step 3 is then the transfer's alone, not
    // what an allocator keeps of large buffers freed here).
    let aes = {
        let key = DataKey::generate();
        let data = chunk(7, MIB);
        let start = Instant::now();
        let mut enc = StreamEncryptor::new(&key, &Aad::new("bench"));
        let mut out = Vec::with_capacity(data.len() + 2 * MIB);
        let rounds = 256;
        for _ in 0..rounds {
            enc.push(&data, &mut out).unwrap();
            out.clear();
        }
        mb_per_s(rounds * data.len(), start.elapsed().as_secs_f64())
    };

    // 2. The disk: synced write, then read, of the same size.
    let dir = tempfile::tempdir_in(".").unwrap();
    let path = dir.path().join("disk-baseline");
    let start = Instant::now();
    {
        let mut f = std::fs::File::create(&path).unwrap();
        for i in 0..total / piece {
            f.write_all(&chunk(i, piece)).unwrap();
        }
        f.sync_all().unwrap();
    }
    let disk_write = mb_per_s(total, start.elapsed().as_secs_f64());
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
    let start = Instant::now();
    {
        let mut f = std::fs::File::open(&path).unwrap();
        let mut buf = vec![0u8; piece];
        while f.read(&mut buf).unwrap() > 0 {}
    }
    let disk_read = mb_per_s(total, start.elapsed().as_secs_f64());
    std::fs::remove_file(&path).unwrap();

    // 3. Custodia over HTTP.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (upload, upload_rss, download, download_rss, download_gzip, ttfb) =
        rt.block_on(async move {
            let mut env = helpers::TestEnv::new(helpers::Backend::Sqlite).await;
            env.vars.insert(
                "CUSTODIA_MAX_UPLOAD_BYTES".into(),
                (total + MIB).to_string(),
            );
            // The citizen's quota must hold the file too.
            env.vars
                .insert("CUSTODIA_QUOTA_MIB".into(), (total / MIB + 1).to_string());
            let app = env.start().await.unwrap();
            let c = citizen_kit::Citizen::register(&app, &helpers::national_id(900), "Bench").await;

            let pieces = total / piece;
            let body = futures_util::stream::iter(0..pieces)
                .map(move |i| Ok::<_, std::io::Error>(chunk(i, piece)));
            let form = reqwest::multipart::Form::new()
                .text("type", "business_license")
                .text(
                    "fields",
                    citizen_kit::licence_fields("基准测试公司").to_string(),
                )
                .part(
                    "file",
                    reqwest::multipart::Part::stream_with_length(
                        reqwest::Body::wrap_stream(body),
                        total as u64,
                    )
                    .file_name("bench.pdf"),
                );
            reset_peak_rss();
            let baseline_rss = peak_rss_mib();
            let start = Instant::now();
            let response = c
                .http
                .post(format!("{}/me/documents", c.base))
                .header("x-csrf-token", &c.csrf)
                .multipart(form)
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                201,
                "{}",
                response.text().await.unwrap_or_default()
            );
            let upload = mb_per_s(total, start.elapsed().as_secs_f64());
            let upload_rss = peak_rss_mib();
            eprintln!("resident before the upload: {baseline_rss:.1} MiB");
            let id = response.json::<serde_json::Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned();

            reset_peak_rss();
            let start = Instant::now();
            let response = c.get(&format!("/me/documents/{id}/file")).await;
            assert_eq!(response.status(), 200);
            let mut stream = response.bytes_stream();
            let mut got = 0usize;
            let mut sha = Sha256Stream::default();
            while let Some(bytes) = stream.next().await {
                let bytes = bytes.unwrap();
                sha.update(&bytes);
                got += bytes.len();
            }
            assert_eq!(got, total);
            let download = mb_per_s(total, start.elapsed().as_secs_f64());
            let download_rss = peak_rss_mib();
            let mut expected = Sha256Stream::default();
            for i in 0..pieces {
                expected.update(&chunk(i, piece));
            }
            let expected = expected.finish();
            assert_eq!(sha.finish(), expected, "downloaded bytes match");

            // As browsers, curl --compressed and Python ask: with Accept-Encoding. Files are
            // sent as they are, so this must cost the same and return the same bytes.
            let start = Instant::now();
            let response = c
                .http
                .get(format!("{}/me/documents/{id}/file", c.base))
                .header("accept-encoding", "gzip, deflate, br, zstd")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            assert!(response.headers().get("content-encoding").is_none());
            let mut stream = response.bytes_stream();
            let mut sha = Sha256Stream::default();
            let mut got = 0usize;
            while let Some(bytes) = stream.next().await {
                let bytes = bytes.unwrap();
                sha.update(&bytes);
                got += bytes.len();
            }
            assert_eq!(got, total);
            assert_eq!(sha.finish(), expected, "gzip-accepting download matches");
            let download_gzip = mb_per_s(total, start.elapsed().as_secs_f64());

            // A resumed download: time to the first byte from the start, the middle and the
            // last MiB (a ranged read decrypts only the chunks it sends).
            let mut ttfb = Vec::new();
            for offset in [0, total / 2, total - MIB] {
                let mut best = f64::INFINITY;
                for _ in 0..5 {
                    let start = Instant::now();
                    let response = c
                        .http
                        .get(format!("{}/me/documents/{id}/file", c.base))
                        .header("range", format!("bytes={offset}-"))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 206);
                    let mut stream = response.bytes_stream();
                    let first = stream.next().await.unwrap().unwrap();
                    assert!(
                        first.as_ref()
                            == &chunk(offset / piece, piece)[offset % piece..][..first.len()]
                    );
                    best = best.min(start.elapsed().as_secs_f64() * 1000.0);
                }
                ttfb.push((offset, best));
            }
            app.stop().await;
            (
                upload,
                upload_rss,
                download,
                download_rss,
                download_gzip,
                ttfb,
            )
        });

    println!("| measure ({total_mib} MiB) | result |");
    println!("|---|---|");
    println!("| AES-256-GCM STREAM, in memory, one core | {aes:.0} MiB/s |");
    println!("| disk, synced write | {disk_write:.0} MiB/s |");
    println!("| disk, read | {disk_read:.0} MiB/s |");
    println!("| Custodia upload (HTTP, multipart, encrypt, write, fsync) | {upload:.0} MiB/s |");
    println!("| Custodia download (HTTP, read, decrypt, verify) | {download:.0} MiB/s |");
    println!(
        "| Custodia download with `Accept-Encoding: gzip, deflate, br, zstd` | {download_gzip:.0} MiB/s |"
    );
    for (offset, ms) in ttfb {
        println!(
            "| resumed download from byte {offset} (`Range: bytes={offset}-`), time to first byte, best of 5 | {ms:.2} ms |"
        );
    }
    println!("| peak RSS during upload (server and client in one process) | {upload_rss:.1} MiB |");
    println!("| peak RSS during download | {download_rss:.1} MiB |");
}
