//! wrk as the load generator of the HTTP benchmarks: `-t2 -c32 --latency`, its answer
//! parsed into requests per second and the 99th percentile.

use std::process::Command;

/// One wrk run.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// Requests per second.
    pub rps: f64,
    /// The 99th percentile latency, ms.
    pub p99_ms: f64,
}

/// Drives `url` for `seconds` with `headers`; panics on any non-2xx answer (every
/// request of a benchmark must be served, or the figure means nothing).
pub fn wrk(url: &str, headers: &[(&str, &str)], seconds: u32) -> Run {
    // `CUSTODIA_BENCH_CONNECTIONS` changes the 32 connections (to see whether a server is
    // bound by latency or by work).
    let connections = std::env::var("CUSTODIA_BENCH_CONNECTIONS").unwrap_or_else(|_| "32".into());
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t2",
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
        "--latency",
    ]);
    for (name, value) in headers {
        cmd.args(["-H", &format!("{name}: {value}")]);
    }
    let out = cmd
        .arg(url)
        .output()
        .expect("wrk (Debian: apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !text.contains("Non-2xx") && !text.contains("Socket errors"),
        "every request must succeed under load ({url}):\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `CUSTODIA_BENCH_VERBOSE` prints wrk's own report (the latency distribution).
    if std::env::var_os("CUSTODIA_BENCH_VERBOSE").is_some() {
        eprintln!("{url}\n{text}");
    }
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN);
    let p99_ms = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(|v| milliseconds(v.trim()))
        .unwrap_or(f64::NAN);
    Run { rps, p99_ms }
}

/// wrk's `812.00us`, `4.21ms`, `1.02s` in milliseconds.
fn milliseconds(v: &str) -> f64 {
    let number: f64 = v
        .trim_end_matches(|c: char| c.is_alphabetic())
        .parse()
        .unwrap_or(f64::NAN);
    match v.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.') {
        "us" => number / 1000.0,
        "s" => number * 1000.0,
        "m" => number * 60_000.0,
        _ => number,
    }
}
