//! Does the time of an answer tell whether a national ID has an account? Times issuer
//! deposits (a 64 KiB PDF) and sign-in starts, alternating a registered and an unregistered
//! ID, through the real HTTP API on SQLite.
//!
//! Run: `cargo bench --bench oracle` (set `CUSTODIA_BENCH_ROUNDS`, default 200). Prints a
//! Markdown table of median and 90th-percentile latencies for BENCHMARKS.md.
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

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use custodia::agencies::{self, Level, NewAgency};
use custodia_crypto::digest;
use custodia_crypto::sign::SigningKey;
use serde_json::{Value, json};

fn percentile(times: &mut [Duration], p: f64) -> f64 {
    times.sort();
    let i = ((times.len() as f64 - 1.0) * p).round() as usize;
    times[i].as_secs_f64() * 1000.0
}

fn deposit(key: &SigningKey, nid: &str, sha: &str) -> Value {
    let mut doc = json!({
        "national_id": nid,
        "type": "tax_clearance",
        "fields": {
            "taxpayer_name": "计时测试公司",
            "taxpayer_id": "91110105MA01ABCD2X",
            "period_from": "2025-01-01",
            "period_to": "2025-12-31",
            "tax_bureau": "国家税务总局北京市税务局",
            "certificate_number": "京税证〔2026〕0042",
        },
        "issued_at": "2026-01-15T09:00:00Z",
        "file_sha256": sha,
    });
    let canonical = digest::canonical_json(&doc).unwrap();
    doc["signature"] = json!(URL_SAFE_NO_PAD.encode(key.sign_raw(canonical.as_bytes())));
    doc
}

fn main() {
    let rounds: usize = std::env::var("CUSTODIA_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        // Sign-in starts are limited per client address: each round comes from its own
        // (documentation-range) address, named by the trusted loopback proxy.
        let mut env = helpers::TestEnv::new(helpers::Backend::Sqlite).await;
        env.vars
            .insert("CUSTODIA_TRUSTED_PROXIES".into(), "127.0.0.1".into());
        let app = env.start().await.unwrap();
        let key = SigningKey::generate();
        let public = URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes());
        let issuer = agencies::create(
            &app.state,
            &NewAgency {
                name: "国家税务总局北京市税务局",
                level: Level::Provincial,
                issuer: true,
                issuer_key: Some(&public),
                issuer_types: &["tax_clearance".to_owned()],
                enroller: false,
                guardianship_authority: false,
                emergency: false,
            },
        )
        .await
        .unwrap();
        let api_key = issuer.api_key.to_string();
        let registered =
            citizen_kit::Citizen::register(&app, &helpers::national_id(950), "Timed").await;
        let unregistered = helpers::national_id(951);
        let pdf = citizen_kit::pdf_bytes(64 * 1024, "timing");
        let sha = digest::hex(&digest::sha256(&pdf));
        let http = reqwest::Client::new();

        let mut times: [Vec<Duration>; 4] = Default::default();
        for round in 0..rounds {
            for slot in [0, 1] {
                // Alternate which goes first, so neither always meets a warm cache.
                let slot = if round % 2 == 0 { slot } else { 1 - slot };
                let nid = if slot == 0 {
                    &registered.national_id
                } else {
                    &unregistered
                };
                let form = reqwest::multipart::Form::new()
                    .text("document", deposit(&key, nid, &sha).to_string())
                    .part(
                        "file",
                        reqwest::multipart::Part::bytes(pdf.clone()).file_name("完税证明.pdf"),
                    );
                let started = Instant::now();
                let r = http
                    .post(app.url("/api/v1/issued-documents"))
                    .bearer_auth(&api_key)
                    .multipart(form)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
                r.bytes().await.unwrap();
                times[slot].push(started.elapsed());

                let started = Instant::now();
                let r = http
                    .post(app.url("/auth/login/start"))
                    .header(
                        "x-forwarded-for",
                        format!("198.51.{}.{}", round / 250, round % 250),
                    )
                    .json(&json!({ "national_id": nid }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
                times[2 + slot].push(started.elapsed());
            }
        }
        println!(
            "| request | registered ID: median / p90 (ms) | unregistered ID: median / p90 (ms) |"
        );
        println!("|---|---|---|");
        let [mut dk, mut du, mut lk, mut lu] = times;
        for (what, known, unknown) in [
            ("issuer deposit, 64 KiB PDF", &mut dk, &mut du),
            ("sign-in start", &mut lk, &mut lu),
        ] {
            println!(
                "| {what} | {:.2} / {:.2} | {:.2} / {:.2} |",
                percentile(known, 0.5),
                percentile(known, 0.9),
                percentile(unknown, 0.5),
                percentile(unknown, 0.9)
            );
        }
        app.stop().await;
    });
}
