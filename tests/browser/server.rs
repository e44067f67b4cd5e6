//! A real `custodia serve` process on a free port, on SQLite or on a PostgreSQL database of
//! its own, and the operator commands run beside it.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sqlx::Connection;
use tempfile::TempDir;

/// The storage engine under the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

pub struct Custodia {
    /// The public URL (`http://localhost:PORT`): WebAuthn needs a host name, not an IP.
    pub origin: String,
    vars: Vec<(String, String)>,
    child: Child,
    dir: TempDir,
    pg: Option<(String, String)>,
}

fn admin_postgres_url() -> String {
    std::env::var("CUSTODIA_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A port nothing listens on just now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Custodia {
    pub async fn start(engine: Engine) -> Custodia {
        Self::start_with(engine, free_port(), &[]).await
    }

    /// Starts on `port` (the public URL is `http://localhost:PORT`) with `extra` settings.
    pub async fn start_with(engine: Engine, port: u16, extra: &[(&str, &str)]) -> Custodia {
        let dir = tempfile::tempdir().expect("temporary directory");
        let origin = format!("http://localhost:{port}");
        let mut vars = vec![
            (
                "CUSTODIA_DATA_DIR".to_owned(),
                dir.path().join("data").display().to_string(),
            ),
            ("CUSTODIA_LISTEN".to_owned(), format!("127.0.0.1:{port}")),
            ("CUSTODIA_PUBLIC_URL".to_owned(), origin.clone()),
        ];
        vars.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let mut pg = None;
        if engine == Engine::Postgres {
            let admin = admin_postgres_url();
            let name = format!("custodia_browser_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(&admin)
                .await
                .unwrap_or_else(|e| {
                    panic!("PostgreSQL is required for the test suite and is not reachable at {admin}: {e}")
                });
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .expect("create the test database");
            conn.close().await.ok();
            let mut url = url::Url::parse(&admin).expect("admin URL");
            url.set_path(&name);
            vars.push(("CUSTODIA_DATABASE_URL".to_owned(), url.to_string()));
            pg = Some((admin, name));
        }
        let log = std::fs::File::create(dir.path().join("serve.log")).expect("log file");
        let child = command(&vars)
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start custodia serve");
        let mut server = Custodia {
            origin,
            vars,
            child,
            dir,
            pg,
        };
        server.wait_healthy(port).await;
        server
    }

    async fn wait_healthy(&mut self, port: u16) {
        let url = format!("http://127.0.0.1:{port}/healthz");
        for _ in 0..300 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "custodia serve exited with {status}: {}",
                    std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
                );
            }
            if let Ok(r) = reqwest::get(&url).await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("custodia serve did not answer at {url}");
    }

    /// Fails if the server's log shows a panic (a panic is a defect even when no client saw
    /// it: a torn body, a dropped connection).
    pub fn assert_no_panic(&self) {
        let log = std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default();
        assert!(
            !log.contains("panicked"),
            "the server panicked; its log:\n{log}"
        );
    }

    /// Runs an operator command against this server's database and keys; returns stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let out = command(&self.vars)
            .args(args)
            .output()
            .expect("run custodia");
        assert!(
            out.status.success(),
            "custodia {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }

    /// `custodia agency create`: returns the API key.
    pub fn create_agency(&self, name: &str, level: &str) -> String {
        let out = self.run(&["agency", "create", "--name", name, "--level", level]);
        out.lines()
            .find_map(|l| l.strip_prefix("api key:"))
            .expect("the API key is printed")
            .trim()
            .to_owned()
    }

    /// `custodia citizen enrol`: returns the one-time code (stdout holds only the code).
    pub fn enrol_citizen(&self, national_id: &str) -> String {
        self.run(&["citizen", "enrol", "--national-id", national_id])
            .trim()
            .to_owned()
    }

    /// `custodia auditor invite`: returns the enrolment link.
    pub fn invite_auditor(&self, name: &str) -> String {
        let out = self.run(&["auditor", "invite", "--name", name]);
        out.lines()
            .find(|l| l.starts_with(&self.origin))
            .expect("the enrolment link is printed")
            .trim()
            .to_owned()
    }

    /// `custodia audit verify`: whether the chain is intact.
    pub fn chain_verifies(&self) -> bool {
        command(&self.vars)
            .args(["audit", "verify"])
            .output()
            .expect("run custodia audit verify")
            .status
            .success()
    }
}

fn command(vars: &[(String, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_custodia"));
    for (key, _) in std::env::vars() {
        if key.starts_with("CUSTODIA_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("RUST_LOG", "warn");
    cmd.envs(vars.iter().map(|(k, v)| (k, v)));
    cmd
}

impl Drop for Custodia {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
        if let Some((admin, name)) = self.pg.take() {
            // Best effort, on a thread of its own: Drop cannot await.
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(rt) = rt {
                    rt.block_on(async {
                        if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                            sqlx::query(sqlx::AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            )))
                            .execute(&mut conn)
                            .await
                            .ok();
                        }
                    });
                }
            })
            .join()
            .ok();
        }
        if !std::thread::panicking() {
            self.assert_no_panic();
        }
    }
}
