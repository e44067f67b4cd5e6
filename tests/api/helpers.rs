//! The test kit: `spawn_app(backend)` starts Custodia on a free port with its own data
//! directory and database, `both_backends!` runs one story on SQLite and PostgreSQL, and
//! `every_store!` on PostgreSQL with S3 blobs too (a real S3 server, `s3_server`).
//!
//! PostgreSQL is required, not optional: `CUSTODIA_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) must reach a server that lets the user
//! create databases. If it cannot, the PostgreSQL tests fail loudly.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use custodia::clock::{Clock, ManualClock};
use custodia::config::Config;
use custodia::http::AppState;
use custodia::server::{Server, StartError};
use sqlx::Connection;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Which database engine a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named story `async fn name(backend: Backend)` once per engine, as
/// `name::sqlite` and `name::postgres`.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            }
        )*
    };
}
pub(crate) use both_backends;

tokio::task_local! {
    /// Set while a story runs on S3 blobs (see [`every_store`]).
    pub static ON_S3: bool;
}

/// Runs each named story on every storage layout a deployment can have: SQLite with local
/// files (`name::sqlite`), PostgreSQL with local files (`name::postgres`), and PostgreSQL
/// with an S3 bucket of the test S3 server (`name::postgres_s3`, the cluster's layout).
macro_rules! every_store {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres_s3() {
                    $crate::helpers::ON_S3
                        .scope(true, super::$name($crate::helpers::Backend::Postgres))
                        .await
                }
            }
        )*
    };
}
pub(crate) use every_store;

/// Whether the story running now keeps its blobs on S3.
pub fn on_s3() -> bool {
    ON_S3.try_with(|on| *on).unwrap_or(false)
}

pub fn admin_postgres_url() -> String {
    std::env::var("CUSTODIA_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A fresh, empty environment for one test: a temporary data directory and, on
/// PostgreSQL, a database of its own (dropped when the environment is dropped).
pub struct TestEnv {
    pub dir: TempDir,
    pub vars: HashMap<String, String>,
    pg_database: Option<String>,
}

impl TestEnv {
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let data = dir.path().join("data");
        let mut vars = HashMap::new();
        vars.insert("CUSTODIA_DATA_DIR".to_owned(), data.display().to_string());
        vars.insert("CUSTODIA_LISTEN".to_owned(), "127.0.0.1:0".to_owned());
        vars.insert("CUSTODIA_PUBLIC_URL".to_owned(), TEST_ORIGIN.to_owned());
        let mut pg_database = None;
        if backend == Backend::Postgres {
            let name = format!("custodia_test_{}", uuid::Uuid::new_v4().simple());
            let admin = admin_postgres_url();
            let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL is required for the test suite and is not reachable at {admin}: {e}. \
                     Start it, or point CUSTODIA_TEST_POSTGRES_URL at a server."
                )
            });
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .expect("create test database");
            conn.close().await.ok();
            let mut url = url::Url::parse(&admin).expect("admin URL");
            url.set_path(&name);
            vars.insert("CUSTODIA_DATABASE_URL".to_owned(), url.to_string());
            pg_database = Some(name);
        }
        if on_s3() {
            for (k, v) in crate::s3_server::blob_settings().await {
                vars.insert(k.to_owned(), v);
            }
        }
        Self {
            dir,
            vars,
            pg_database,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn config(&self) -> Config {
        Config::from_lookup(|k| self.vars.get(k).cloned()).expect("test configuration")
    }

    /// Starts a server on this environment (call again after stopping to "restart").
    pub async fn start(&self) -> Result<TestApp, StartError> {
        watch_server_panics();
        let clock = ManualClock::new(time::OffsetDateTime::now_utc());
        let server =
            Server::build_with_clock(self.config(), Arc::new(clock.clone()) as Arc<dyn Clock>)
                .await?;
        let addr = server.local_addr().expect("bound address");
        let metrics_base = server.metrics_addr().map(|a| format!("http://{a}"));
        let state = server.state().clone();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            server
                .run_until(async {
                    rx.await.ok();
                })
                .await
                .expect("server ran");
        });
        Ok(TestApp {
            base: format!("http://{addr}"),
            metrics_base,
            client: reqwest::Client::builder()
                .cookie_store(true)
                .build()
                .expect("HTTP client"),
            state,
            clock,
            shutdown: Some(tx),
            handle: Some(handle),
        })
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Some(name) = self.pg_database.take() {
            // Drop runs outside async context: use a short-lived runtime on its own thread.
            let admin = admin_postgres_url();
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    let mut conn = sqlx::PgConnection::connect(&admin).await?;
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await?;
                    Ok::<_, sqlx::Error>(())
                })
                .map_err(std::io::Error::other)
            })
            .join();
        }
    }
}

/// A running server and a client for it.
pub struct TestApp {
    pub base: String,
    /// The separate metrics listener (`CUSTODIA_METRICS_LISTEN`), when configured.
    #[allow(dead_code)]
    pub metrics_base: Option<String>,
    pub client: reqwest::Client,
    pub state: AppState,
    #[allow(dead_code)]
    pub clock: ManualClock,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl TestApp {
    /// What `custodia audit verify` says of this server's database, against its pinned keys.
    pub async fn verify_trail(
        &self,
    ) -> Result<custodia::audit::chain::Summary, custodia::audit::chain::Fault> {
        custodia::audit::verify(&self.state.store, &self.state.audit_trust(), |_, _| {})
            .await
            .unwrap()
    }

    /// Signs a checkpoint of the trail now (the sequencer would within a minute); the
    /// checkpoint's sequence number, if events were added since the last one.
    pub async fn checkpoint_now(&self) -> Option<i64> {
        custodia::audit::checkpoint_now(
            &self.state.store,
            &self.state.log_signer().unwrap(),
            self.state.clock.now_ms(),
        )
        .await
        .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    /// Stops the server gracefully and waits until it has closed the database.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.expect("server task");
        }
    }
}

/// Panics on the servers' threads (tokio workers), recorded by a process-wide hook. Every
/// server is stopped or dropped by its test, which then fails if any server panicked: a
/// panic is a defect even when a client never saw it (a torn body, a lost connection).
static SERVER_PANICS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn watch_server_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // Runtime worker threads ("tokio-rt-worker", "tokio-runtime-worker"); a test
            // body runs on its own thread, named after the test.
            if std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("tokio-"))
                && let Ok(mut seen) = SERVER_PANICS.lock()
            {
                seen.push(info.to_string());
            }
            previous(info);
        }));
    });
}

/// Fails if a server thread has panicked (see [`SERVER_PANICS`]).
pub fn assert_no_server_panic() {
    let seen = SERVER_PANICS.lock().map(|s| s.clone()).unwrap_or_default();
    assert!(seen.is_empty(), "a server thread panicked: {seen:#?}");
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            assert_no_server_panic();
        }
    }
}

/// Starts a fresh environment and a server on it.
pub async fn spawn_app(backend: Backend) -> (TestEnv, TestApp) {
    // `CUSTODIA_TEST_LOG=1` shows the servers' logs (errors with their causes).
    if std::env::var_os("CUSTODIA_TEST_LOG").is_some() {
        custodia::telemetry::init_with_default("warn");
    }
    let env = TestEnv::new(backend).await;
    let app = env.start().await.expect("server starts");
    (env, app)
}

/// Asserts a response is an RFC 9457 problem with this status, and returns its body.
pub async fn assert_problem(response: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: serde_json::Value = response.json().await.expect("problem body is JSON");
    assert_eq!(body["status"], status);
    for member in ["type", "title", "detail"] {
        assert!(
            body[member].as_str().is_some_and(|s| !s.is_empty()),
            "problem member {member} missing in {body}"
        );
    }
    body
}

/// A valid national ID number (GB 11643-1999 checksum) distinct for each `seq`.
pub fn national_id(seq: u32) -> String {
    crate::ids::national_id("19800101", seq)
}

/// The WebAuthn origin the tests' software authenticators use (CUSTODIA_PUBLIC_URL).
pub const TEST_ORIGIN: &str = "http://localhost:8080";

impl TestApp {
    /// A fresh HTTP client with its own cookie jar (another browser).
    pub fn new_client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .expect("HTTP client")
    }
}

/// Every event of the trail, oldest first.
pub async fn events(app: &TestApp) -> Vec<custodia::store::audit::AuditRow> {
    app.state
        .store
        .audit_events_after(0, 1_000_000)
        .await
        .unwrap()
}

/// How many events of `action` the trail holds.
pub async fn recorded(app: &TestApp, action: &str) -> usize {
    events(app)
        .await
        .into_iter()
        .filter(|e| e.action == action)
        .count()
}
