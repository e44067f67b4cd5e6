//! A real OpenID Provider for the national eID tests: the `oidc-provider` package on Node
//! running `tests/oidc/provider.mjs`. Shared by the test binaries (each includes it with
//! `#[path]`).

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::LazyLock;

use serde_json::{Value, json};

pub const CLIENT_ID: &str = "custodia";
pub const CLIENT_SECRET: &str = "custodia-test-secret";

/// The provider's packages, installed once per test run (`npm ci` from the lock file).
static NPM_READY: LazyLock<tokio::sync::OnceCell<()>> = LazyLock::new(tokio::sync::OnceCell::new);

fn provider_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

async fn install_provider() {
    NPM_READY
        .get_or_init(|| async {
            if provider_dir().join("node_modules/oidc-provider").exists() {
                return;
            }
            let status = tokio::task::spawn_blocking(|| {
                std::process::Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                    .current_dir(provider_dir())
                    .status()
            })
            .await
            .unwrap()
            .expect("npm (Node.js) is needed for the eID tests");
            assert!(status.success(), "npm ci in tests/oidc failed");
        })
        .await;
}

/// A running OpenID Provider, stopped when dropped.
pub struct Provider {
    pub issuer: String,
    http: reqwest::Client,
    child: std::process::Child,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Provider {
    /// Starts a provider whose one client returns to `redirect_uri`.
    pub async fn start(redirect_uri: &str) -> Self {
        install_provider().await;
        let mut child = std::process::Command::new("node")
            .arg(provider_dir().join("provider.mjs"))
            .args(["--redirect-uri", redirect_uri])
            .args(["--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET])
            .args(["--claim", "national_id"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs the test provider");
        let stdout = child.stdout.take().unwrap();
        // Read its first line, then keep reading what it prints so it never blocks on a
        // full pipe.
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok).unwrap_or_default();
            let _ = tx.send(first);
            for _ in lines {}
        });
        let first = tokio::time::timeout(std::time::Duration::from_secs(30), rx)
            .await
            .expect("the provider starts within 30 s")
            .unwrap();
        let ready: Value = serde_json::from_str(&first)
            .unwrap_or_else(|e| panic!("provider's first line {first:?}: {e}"));
        Self {
            issuer: ready["issuer"].as_str().unwrap().to_owned(),
            http: reqwest::Client::new(),
            child,
        }
    }

    /// The next token response for `nid` misbehaves in `mode`.
    #[allow(dead_code)]
    pub async fn tamper(&self, nid: &str, mode: &str) {
        let r = self
            .http
            .post(format!("{}/_test/tamper", self.issuer))
            .json(&json!({ "national_id": nid, "mode": mode }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }
}
