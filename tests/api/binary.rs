//! The `custodia` binary as an operator runs it: exit codes, the embedded default, a
//! PostgreSQL URL, graceful shutdown.

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::{Backend, TestEnv};

pub(crate) fn custodia() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_custodia"));
    for (key, _) in std::env::vars() {
        if key.starts_with("CUSTODIA_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("RUST_LOG", "warn");
    cmd
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) async fn wait_healthy(base: &str, child: &mut Child) {
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("custodia exited early with {status}");
        }
        if let Ok(r) = reqwest::get(format!("{base}/healthz")).await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("custodia did not become healthy at {base}");
}

pub(crate) fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    child.wait().unwrap()
}

/// Runs `custodia agency create --name NAME --level provincial` as `cmd` is set up (its
/// environment and directory) and returns the agency's id and the API key it prints once.
pub(crate) fn create_agency(mut cmd: Command, name: &str) -> (String, String) {
    let out = cmd
        .args(["agency", "create", "--name", name, "--level", "provincial"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let field = |label: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(label).map(|v| v.trim().to_owned()))
            .unwrap()
    };
    (field("agency id:"), field("api key:"))
}

/// Runs `custodia audit verify` as `cmd` is set up, asserts it exits 0, and returns what it
/// printed.
pub(crate) fn assert_verifies(mut cmd: Command) -> String {
    let verified = cmd.args(["audit", "verify"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&verified.stdout).into_owned();
    assert_eq!(
        verified.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    stdout
}

/// Runs `custodia citizen enrol --national-id ID` as `cmd` is set up and returns the code
/// it prints (stdout holds the code alone, so a script can hand it on).
pub(crate) fn enrol_citizen(mut cmd: Command, national_id: &str) -> String {
    let out = cmd
        .args(["citizen", "enrol", "--national-id", national_id])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("expires at"), "{stderr}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn serve_with_nothing_configured_creates_the_embedded_default() {
    let cwd = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = custodia()
        .arg("serve")
        .current_dir(cwd.path())
        .env("CUSTODIA_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&base, &mut child).await;
    let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);

    let data = cwd.path().join("custodia-data");
    assert!(data.join("custodia.db").is_file());
    assert!(data.join("blobs").is_dir());
    for key in ["master.key", "signing.key"] {
        let mode = std::fs::metadata(data.join(key))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{key} mode");
    }
    let dir_mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700, "data directory mode");
    assert!(terminate(&mut child).success(), "graceful shutdown exits 0");
}

#[tokio::test]
async fn serve_runs_on_postgres() {
    let env = TestEnv::new(Backend::Postgres).await;
    let port = free_port();
    let mut child = custodia()
        .arg("serve")
        .env("CUSTODIA_DATA_DIR", env.data_dir())
        .env("CUSTODIA_DATABASE_URL", &env.vars["CUSTODIA_DATABASE_URL"])
        .env("CUSTODIA_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&base, &mut child).await;
    let ready: serde_json::Value = reqwest::get(format!("{base}/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["database"], "ok");
    assert!(
        !env.data_dir().join("custodia.db").exists(),
        "no SQLite file on PostgreSQL"
    );
    assert!(terminate(&mut child).success());
}

#[test]
fn a_bad_setting_exits_2_naming_the_variable() {
    for (var, value) in [
        ("CUSTODIA_LISTEN", "not-an-address"),
        ("CUSTODIA_DATABASE_URL", "mysql://localhost/x"),
        ("CUSTODIA_BLOB_STORE", "s3:///no-bucket"),
    ] {
        let out = custodia().arg("serve").env(var, value).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(var), "{var} not named in: {stderr}");
    }
    let out = custodia().arg("no-such-command").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn migrate_applies_the_schema_and_exits_0() {
    let cwd = tempfile::tempdir().unwrap();
    let run = || {
        custodia()
            .arg("migrate")
            .current_dir(cwd.path())
            .output()
            .unwrap()
    };
    assert_eq!(run().status.code(), Some(0));
    assert_eq!(run().status.code(), Some(0), "migrate twice is harmless");
    assert!(cwd.path().join("custodia-data/custodia.db").is_file());
}

#[test]
fn agency_create_prints_an_id_and_a_key_once() {
    let cwd = tempfile::tempdir().unwrap();
    let out = custodia()
        .args([
            "agency",
            "create",
            "--name",
            "上海市税务局",
            "--level",
            "provincial",
        ])
        .current_dir(cwd.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("agency id: "));
    let key = stdout
        .lines()
        .find_map(|l| l.strip_prefix("api key:"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(key.starts_with("cus_"));

    for args in [
        vec!["agency", "create", "--name", "X", "--level", "galactic"],
        vec![
            "agency", "create", "--name", "X", "--level", "county", "--issuer",
        ],
        vec![
            "agency",
            "create",
            "--name",
            "X",
            "--level",
            "county",
            "--issuer-key",
            "abc",
        ],
    ] {
        let out = custodia()
            .args(&args)
            .current_dir(cwd.path())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// SPEC G6: secrets and personal values never reach the logs, even at the most verbose level.
#[tokio::test]
async fn secrets_never_reach_the_logs() {
    let cwd = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = cwd.path().join("server.log");
    let mut child = custodia()
        .arg("serve")
        .current_dir(cwd.path())
        .env("CUSTODIA_LISTEN", format!("127.0.0.1:{port}"))
        .env("CUSTODIA_PUBLIC_URL", crate::helpers::TEST_ORIGIN)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&base, &mut child).await;
    let nid = crate::helpers::national_id(99);
    let mut enrol = custodia();
    enrol.current_dir(cwd.path());
    let code = enrol_citizen(enrol, &nid);
    let mut c =
        crate::citizen_kit::Citizen::register_at(&base, &nid, "Secret Name 秘密", &code).await;
    c.post("/auth/logout", serde_json::json!({})).await;
    c.login().await;
    let wrong = c.unlock("a wrong passphrase typed here").await;
    assert_eq!(wrong.status(), 403);
    assert_eq!(c.unlock(crate::citizen_kit::PASSPHRASE).await.status(), 200);
    c.upload(
        None,
        "business_license",
        crate::citizen_kit::licence_fields("日志测试公司"),
        None,
    )
    .await;

    // The operator's and the other principals' secrets: an agency API key used on requests,
    // an auditor's one-time invitation token, and a national ID an auditor reveals.
    let mut cmd = custodia();
    cmd.current_dir(cwd.path());
    let (_, api_key) = create_agency(cmd, "日志测试局");
    let client = custodia::client::AgencyClient::new(&base, &api_key)
        .unwrap()
        .acting_as("officer-log", "CASE-LOG");
    let asked = client
        .request_access(&custodia::client::AccessRequest {
            national_id: nid.clone(),
            document_types: vec!["business_license".into()],
            tier: "verify".into(),
            fields: Vec::new(),
            purpose_code: "business_registration".into(),
            purpose: "log check".into(),
            legal_basis: None,
            duration_days: 1,
            retention_days: 1,
        })
        .await
        .unwrap();
    assert_eq!(asked.status, "pending");
    let invite = custodia()
        .args(["auditor", "invite", "--name", "Log Auditor"])
        .current_dir(cwd.path())
        .env("CUSTODIA_PUBLIC_URL", crate::helpers::TEST_ORIGIN)
        .output()
        .unwrap();
    assert!(invite.status.success());
    let link = String::from_utf8(invite.stdout)
        .unwrap()
        .lines()
        .find(|l| l.contains("token="))
        .unwrap()
        .trim()
        .to_owned();
    let token = link.split("token=").nth(1).unwrap().to_owned();
    let page = reqwest::get(format!("{base}/audit/enrol?token={token}"))
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let auditor = crate::auditors::enrol_at(&base, &link).await.unwrap();
    let events: serde_json::Value = auditor
        .get("/api/v1/audit/events?action=request.create")
        .await
        .json()
        .await
        .unwrap();
    let pseudonym = events["events"][0]["citizen"].as_str().unwrap().to_owned();
    let confirmed = auditor
        .post(
            "/api/v1/audit/confirm-identity",
            serde_json::json!({ "pseudonym": pseudonym, "national_id": nid, "reason": "Log check for case CASE-LOG" }),
        )
        .await;
    assert_eq!(confirmed.status(), 200);
    assert!(terminate(&mut child).success());

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.len() > 1000, "trace logging was on");
    for path in [
        "/api/v1/access-requests",
        "/audit/enrol",
        "/api/v1/audit/confirm-identity",
    ] {
        assert!(text.contains(path), "the log covers {path}");
    }
    for (what, secret) in [
        ("agency API key", api_key.as_str()),
        ("invitation token", token.as_str()),
    ] {
        assert!(!text.contains(secret), "{what} found in the logs");
    }
    for (what, secret) in [
        ("national ID", nid.as_str()),
        ("display name", "Secret Name"),
        ("passphrase", crate::citizen_kit::PASSPHRASE),
        ("wrong passphrase", "a wrong passphrase typed here"),
        ("recovery code", c.recovery_code.as_str()),
        ("enrolment code", code.as_str()),
        ("CSRF token", c.csrf.as_str()),
        ("field value", "日志测试公司"),
    ] {
        assert!(!text.contains(secret), "{what} found in the logs");
    }
}

/// `custodia agency rotate-key | disable | set-issuer-key | set-issuer-types |
/// revoke-issuer-key` and `custodia audit verify | export`, as an operator runs them.
#[test]
fn operator_commands_manage_agencies_and_verify_and_export_the_trail() {
    let cwd = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        custodia()
            .args(args)
            .current_dir(cwd.path())
            .output()
            .unwrap()
    };
    let created = run(&["agency", "create", "--name", "运维局", "--level", "county"]);
    let stdout = String::from_utf8(created.stdout).unwrap();
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("agency id:"))
        .unwrap()
        .trim()
        .to_owned();
    let rotated = run(&["agency", "rotate-key", &id, "--overlap", "30"]);
    assert_eq!(rotated.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&rotated.stdout).contains("api key:   cus_"));
    let key = custodia_crypto::sign::SigningKey::generate();
    let public = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        key.verifying_key().to_bytes(),
    );
    assert_eq!(
        run(&["agency", "set-issuer-key", &id, &public])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        run(&["agency", "set-issuer-key", &id, "abc"]).status.code(),
        Some(2)
    );
    // Webhooks: https to a public address only (registering connects to nothing).
    let hooked = run(&["agency", "webhook", "add", &id, "https://8.8.8.8/custodia"]);
    assert_eq!(hooked.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&hooked.stdout).starts_with("webhook id: "));
    let private = run(&["agency", "webhook", "add", &id, "https://10.0.0.7/hook"]);
    assert_eq!(private.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&private.stderr).contains("not a public address"));
    let typed = run(&[
        "agency",
        "set-issuer-types",
        &id,
        "tax_clearance,social_insurance_record",
    ]);
    assert_eq!(typed.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&typed.stderr)
            .contains(r#"["social_insurance_record","tax_clearance"]"#)
    );
    assert_eq!(
        run(&["agency", "set-issuer-types", &id, "starship_licence"])
            .status
            .code(),
        Some(2),
        "not a catalog type"
    );
    for (since, code) in [
        ("2999-01-01T00:00:00Z", 2),
        ("yesterday", 2),
        ("2026-01-01T00:00:00Z", 0),
        ("2026-01-01T00:00:00Z", 1),
    ] {
        assert_eq!(
            run(&[
                "agency",
                "revoke-issuer-key",
                &id,
                "--compromised-since",
                since
            ])
            .status
            .code(),
            Some(code),
            "revoke since {since}"
        );
    }
    assert_eq!(run(&["agency", "disable", &id]).status.code(), Some(0));
    assert_eq!(
        run(&["agency", "disable", &id]).status.code(),
        Some(1),
        "already disabled"
    );

    // Each operator action is in the trail, which verifies.
    let verified = run(&["audit", "verify"]);
    assert_eq!(
        verified.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(String::from_utf8_lossy(&verified.stdout).contains("audit trail intact: 7 events"));
    // The verify kept its newest checkpoint; the next one goes on from it.
    assert!(cwd.path().join("custodia-data/audit-verified").is_file());
    let resumed = run(&["audit", "verify", "--from-checkpoint"]);
    assert_eq!(
        resumed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert!(
        String::from_utf8_lossy(&resumed.stdout).contains("since the checkpoint verified before")
    );
    let jsonl = run(&["audit", "export", "--format", "jsonl"]);
    let lines: Vec<serde_json::Value> = String::from_utf8(jsonl.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actions: Vec<&str> = lines
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "agency.create",
            "agency.rotate-key",
            "agency.set-issuer-key",
            "webhook.add",
            "agency.set-issuer-types",
            "agency.revoke-issuer-key",
            "agency.disable"
        ]
    );
    assert!(lines.iter().all(|l| l["actor_kind"] == "operator"));
    let csv = run(&[
        "audit",
        "export",
        "--format",
        "csv",
        "--since",
        "2000-01-01T00:00:00Z",
    ]);
    let csv = String::from_utf8(csv.stdout).unwrap();
    assert!(csv.starts_with("seq,at,actor_kind,"));
    assert_eq!(csv.lines().count(), 8);
    let none = run(&[
        "audit",
        "export",
        "--format",
        "csv",
        "--until",
        "2000-01-01T00:00:00Z",
    ]);
    assert_eq!(String::from_utf8(none.stdout).unwrap().lines().count(), 0);
    assert_eq!(
        run(&["audit", "export", "--format", "xml"]).status.code(),
        Some(2)
    );

    // Tampering makes verify fail with exit 3, naming the sequence number.
    let db = cwd.path().join("custodia-data/custodia.db");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        // Columns are views of the bytes on SQLite: the edit is to the bytes.
        sqlx::query("UPDATE audit_events SET body = json_set(body, '$.detail', 'x') WHERE seq = 2")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    });
    let broken = run(&["audit", "verify"]);
    assert_eq!(broken.status.code(), Some(3));
    let message = String::from_utf8_lossy(&broken.stderr);
    assert!(message.contains("sequence 2: modified"), "{message}");
}

/// SPEC §5 and G3: two `custodia serve` processes on one PostgreSQL database, appending
/// concurrently, write one chain that `custodia audit verify` accepts.
#[tokio::test]
async fn two_server_processes_on_one_postgres_write_one_chain() {
    let env = TestEnv::new(Backend::Postgres).await;
    let with_env = |cmd: &mut Command| {
        cmd.env("CUSTODIA_DATA_DIR", env.data_dir())
            .env("CUSTODIA_DATABASE_URL", &env.vars["CUSTODIA_DATABASE_URL"]);
    };
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let port = free_port();
        let mut cmd = custodia();
        with_env(&mut cmd);
        let mut child = cmd
            .arg("serve")
            .env("CUSTODIA_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        wait_healthy(&base, &mut child).await;
        nodes.push((base, child));
    }
    let mut cmd = custodia();
    with_env(&mut cmd);
    let (_, key) = create_agency(cmd, "双节点局");

    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..160u32 {
        let base = nodes[(i % 2) as usize].0.clone();
        let (client, key) = (client.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            client
                .post(format!("{base}/api/v1/access-requests"))
                .bearer_auth(key)
                .json(&serde_json::json!({
                    "national_id": crate::helpers::national_id(600 + i % 300),
                    "document_types": ["business_license"],
                    "tier": "verify",
                    "purpose_code": "business_registration",
                    "purpose": "双节点测试",
                    "duration_days": 7,
                    "retention_days": 30,
                }))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 201);
    }
    for (_, child) in &mut nodes {
        assert!(terminate(child).success());
    }
    let mut cmd = custodia();
    with_env(&mut cmd);
    let stdout = assert_verifies(cmd);
    let events: u64 = stdout
        .split("intact: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(events >= 161, "{stdout}");
}

/// A TOML config file mirrors the environment variables (which override it); the startup
/// line says what is in use, never a secret; `--help` lists every setting with its default.
#[tokio::test]
async fn a_config_file_configures_serve_and_the_startup_line_says_what_is_used() {
    let cwd = tempfile::tempdir().unwrap();
    let port = free_port();
    let data = cwd.path().join("elsewhere");
    let file = cwd.path().join("custodia.toml");
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nmax_upload_bytes = 1048576\n",
            data.display()
        ),
    )
    .unwrap();
    let mut child = custodia()
        .arg("--config")
        .arg(&file)
        .arg("serve")
        .current_dir(cwd.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&base, &mut child).await;
    assert!(data.join("custodia.db").is_file(), "data_dir from the file");
    assert!(terminate(&mut child).success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("database sqlite://"), "{stderr}");
    assert!(stderr.contains(&format!("listening on 127.0.0.1:{port}")));
    assert!(stderr.contains("master key file"));
    let key = std::fs::read_to_string(data.join("master.key")).unwrap();
    assert!(
        !stderr.contains(key.trim()),
        "the key itself is never printed"
    );

    // The environment wins over the file; an unknown key is refused, named, exit 2.
    let out = custodia()
        .args(["--config", file.to_str().unwrap(), "migrate"])
        .env("CUSTODIA_DATA_DIR", cwd.path().join("from-env"))
        .current_dir(cwd.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(cwd.path().join("from-env/custodia.db").is_file());
    std::fs::write(&file, "lisen = \"127.0.0.1:1\"\n").unwrap();
    let out = custodia()
        .args(["--config", file.to_str().unwrap(), "migrate"])
        .current_dir(cwd.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown setting 'lisen'"));

    let help = custodia().arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for (name, default, _) in custodia::config::SETTINGS {
        assert!(
            help.contains(name) && help.contains(default),
            "{name} in --help"
        );
    }
}

/// SPEC G7 with G2/G3: `kill -9` in the middle of uploads and agency reads, three times.
/// Every upload that was answered `201` opens intact after the restart, and the audit chain
/// verifies.
async fn crash_story(backend: Backend) {
    use crate::citizen_kit::{Citizen, licence_fields, pdf_bytes};
    let env = TestEnv::new(backend).await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let start = || {
        let mut cmd = custodia();
        for (k, v) in &env.vars {
            cmd.env(k, v);
        }
        cmd.arg("serve")
            .env("CUSTODIA_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut child = start();
    wait_healthy(&base, &mut child).await;
    let mut cmd = custodia();
    for (k, v) in &env.vars {
        cmd.env(k, v);
    }
    let (_, key) = create_agency(cmd, "崩溃局");
    let mut cmd = custodia();
    for (k, v) in &env.vars {
        cmd.env(k, v);
    }
    let nid = crate::helpers::national_id(950);
    let code = enrol_citizen(cmd, &nid);
    let citizen = std::sync::Arc::new(Citizen::register_at(&base, &nid, "Crashed", &code).await);
    let first = citizen
        .licence("崩溃前公司", Some(pdf_bytes(10_000, "first")))
        .await;
    let agencies: serde_json::Value = citizen.get("/me/agencies").await.json().await.unwrap();
    let agency_id = agencies["agencies"][0]["id"].as_str().unwrap().to_owned();
    let grant = citizen
        .grant_to(&agency_id, serde_json::json!({ "document_types": ["business_license"], "tier": "full", "purpose": "崩溃测试", "purpose_code": "tax_filing" }))
        .await;

    let mut acknowledged: Vec<(String, Vec<u8>)> =
        vec![(first.clone(), pdf_bytes(10_000, "first"))];
    for round in 0..3u32 {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut uploads = Vec::new();
        for w in 0..3u32 {
            let (citizen, stop) = (citizen.clone(), stop.clone());
            uploads.push(tokio::spawn(async move {
                let mut done = Vec::new();
                let mut i = 0u32;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let bytes =
                        pdf_bytes(40_000 + (i as usize) * 997, &format!("r{round}w{w}i{i}"));
                    let sent = citizen
                        .http
                        .post(format!("{}/me/documents", citizen.base))
                        .header("x-csrf-token", &citizen.csrf)
                        .multipart(
                            reqwest::multipart::Form::new()
                                .text("type", "business_license")
                                .text(
                                    "fields",
                                    licence_fields(&format!("公司{round}-{w}-{i}")).to_string(),
                                )
                                .part(
                                    "file",
                                    reqwest::multipart::Part::bytes(bytes.clone())
                                        .file_name("c.pdf"),
                                ),
                        )
                        .send()
                        .await;
                    if let Ok(r) = sent
                        && r.status() == 201
                        && let Ok(v) = r.json::<serde_json::Value>().await
                    {
                        done.push((v["id"].as_str().unwrap().to_owned(), bytes));
                    }
                    i += 1;
                }
                done
            }));
        }
        let reads = {
            let (stop, key, base, grant, first) = (
                stop.clone(),
                key.clone(),
                base.clone(),
                grant.clone(),
                first.clone(),
            );
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let _ = http
                        .get(format!(
                            "{base}/api/v1/grants/{grant}/documents/{first}/file"
                        ))
                        .bearer_auth(&key)
                        .header("x-officer-id", "o-1")
                        .header("x-case-id", "c-1")
                        .send()
                        .await;
                }
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(
            300 + u64::from(round) * 150,
        ))
        .await;
        // kill -9: no shutdown, no flush.
        child.kill().unwrap();
        child.wait().unwrap();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for u in uploads {
            acknowledged.extend(u.await.unwrap());
        }
        reads.await.unwrap();
        child = start();
        wait_healthy(&base, &mut child).await;
    }

    // Every acknowledged upload opens intact (the session lives in the database).
    assert!(acknowledged.len() > 3, "some uploads were acknowledged");
    for (id, bytes) in &acknowledged {
        let r = citizen.get(&format!("/me/documents/{id}/file")).await;
        assert_eq!(r.status(), 200, "document {id} after the crashes");
        assert_eq!(r.bytes().await.unwrap().as_ref(), bytes.as_slice());
    }
    assert!(terminate(&mut child).success());
    let mut cmd = custodia();
    for (k, v) in &env.vars {
        cmd.env(k, v);
    }
    assert_verifies(cmd);
}

#[tokio::test]
async fn kill_9_during_uploads_and_reads_loses_nothing_committed_sqlite() {
    crash_story(Backend::Sqlite).await;
}

#[tokio::test]
async fn kill_9_during_uploads_and_reads_loses_nothing_committed_postgres() {
    crash_story(Backend::Postgres).await;
}
