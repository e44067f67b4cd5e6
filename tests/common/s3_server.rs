//! A real S3-protocol server for the object-storage tests: `moto` in server mode (PyPI
//! `moto[server]`), started once per test binary on a free loopback port and stopped when
//! the test binary exits. Each test gets a bucket of its own. Shared by the test binaries
//! (each includes it with `#[path]`).

use std::sync::LazyLock;
use std::time::Duration;

/// Credentials the server accepts (it checks none; the client signs with them all the same).
pub const ACCESS_KEY_ID: &str = "custodia-test";
pub const SECRET_ACCESS_KEY: &str = "custodia-test-secret";

static SERVER: LazyLock<tokio::sync::OnceCell<String>> = LazyLock::new(tokio::sync::OnceCell::new);

async fn start() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    // The server outlives no test binary: a watcher stops it once this process is gone.
    let script = "moto_server -H 127.0.0.1 -p \"$PORT\" >/dev/null 2>&1 & m=$!; \
                  trap 'kill $m 2>/dev/null' EXIT; \
                  while kill -0 \"$PARENT\" 2>/dev/null && kill -0 $m 2>/dev/null; do sleep 0.5; done";
    // Not waited for: it lives as long as this process, and its watcher ends it after.
    #[allow(clippy::zombie_processes)]
    std::process::Command::new("sh")
        .args(["-c", script])
        .env("PORT", port.to_string())
        .env("PARENT", std::process::id().to_string())
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("sh starts the S3 test server (pip install 'moto[server]')");
    let endpoint = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..120 {
        if http.get(&endpoint).send().await.is_ok() {
            return endpoint;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the S3 test server (moto_server) did not start on port {port} within 30 s");
}

/// The endpoint of the running server, started on first use.
pub async fn endpoint() -> String {
    SERVER.get_or_init(start).await.clone()
}

/// A fresh, empty bucket; returns the endpoint and the bucket's name.
pub async fn bucket() -> (String, String) {
    let endpoint = endpoint().await;
    let name = format!("custodia-{}", uuid::Uuid::new_v4().simple());
    let made = reqwest::Client::new()
        .put(format!("{endpoint}/{name}"))
        .send()
        .await
        .expect("create a bucket");
    assert!(
        made.status().is_success(),
        "create bucket: {}",
        made.status()
    );
    (endpoint, name)
}

/// The settings that put a server's blobs in a fresh bucket of the test server.
pub async fn blob_settings() -> Vec<(&'static str, String)> {
    let (endpoint, bucket) = bucket().await;
    vec![
        ("CUSTODIA_BLOB_STORE", format!("s3://{bucket}/blobs")),
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ALLOW_HTTP", "true".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_owned()),
    ]
}
