//! Witnesses (C2SP tlog-witness): separate processes with their own keys and storage that
//! cosign each new checkpoint only when it extends the last one they cosigned. The server
//! sends them every checkpoint over real HTTP; verifiers require the quorum and hold the
//! trail to what the witnesses saw, so a rolled-back database and a forked history are
//! caught with the signed heads as evidence, and a witness that is down delays cosigning,
//! never a read.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use custodia::audit::chain::{Fault, Summary};
use custodia::witness::{Options, Witness};
use custodia_crypto::sign::SigningKey;
use custodia_crypto::tlog;
use custodia_crypto::witness::{AddCheckpoint, NamedKey, with_signatures};
use serde_json::Value;

use crate::helpers::{Backend, TestApp, TestEnv, both_backends};
use crate::transparency::{advance, append, recompute_everything, sql};

both_backends!(
    witnesses_cosign_each_new_checkpoint_and_verifiers_require_the_quorum,
    a_rolled_back_database_is_caught_by_the_witness,
);

/// A witness on a free port, served in this process over real HTTP.
struct RunningWitness {
    url: String,
    key: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningWitness {
    /// Stops it, closing its connections (a witness that is down).
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }
}

async fn spawn_witness(dir: &Path, name: &str, logs: &[String]) -> RunningWitness {
    let options = Options {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.to_owned(),
        name: Some(name.to_owned()),
        logs: logs.to_vec(),
    };
    let witness = Arc::new(Witness::open(&options).expect("witness opens"));
    let key = witness.verifier_key();
    let listener = tokio::net::TcpListener::bind(options.listen).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, witness.router())
            .with_graceful_shutdown(async {
                stopped.await.ok();
            })
            .await
            .unwrap();
    });
    RunningWitness {
        url,
        key,
        stop,
        task,
    }
}

/// The log's verifier key, as its checkpoint endpoint publishes it.
async fn log_key(app: &TestApp) -> String {
    let checkpoint = public_checkpoint(app).await;
    checkpoint["verifier_key"].as_str().unwrap().to_owned()
}

/// The public checkpoint, as any reader fetches it.
async fn public_checkpoint(app: &TestApp) -> Value {
    app.client
        .get(app.url("/api/v1/audit/checkpoint"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// An environment whose server is witnessed by `names`: the server starts once to make
/// its key, the witnesses start knowing it, and the server restarts naming them.
async fn witnessed(
    backend: Backend,
    names: &[&str],
    quorum: Option<usize>,
) -> (TestEnv, TestApp, Vec<RunningWitness>) {
    let mut env = TestEnv::new(backend).await;
    let app = env.start().await.unwrap();
    let log = log_key(&app).await;
    app.stop().await;
    let mut witnesses = Vec::new();
    for name in names {
        let dir = env.dir.path().join(name.replace('/', "_"));
        witnesses.push(spawn_witness(&dir, name, std::slice::from_ref(&log)).await);
    }
    let setting: Vec<String> = witnesses
        .iter()
        .map(|w| format!("{}={}", w.url, w.key))
        .collect();
    env.vars
        .insert("CUSTODIA_WITNESSES".into(), setting.join(","));
    if let Some(k) = quorum {
        env.vars
            .insert("CUSTODIA_WITNESS_QUORUM".into(), k.to_string());
    }
    let app = env.start().await.unwrap();
    (env, app, witnesses)
}

/// Waits (bounded) until the checkpoint at `seq` carries `count` cosignatures.
async fn cosigned(app: &TestApp, seq: i64, count: usize) {
    for _ in 0..200 {
        if app.state.store.cosignatures(seq).await.unwrap().len() >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("checkpoint {seq} did not get {count} cosignature(s) within 10 s");
}

/// What `custodia audit verify` says, asking the witnesses what they hold.
async fn verify(app: &TestApp) -> Result<Summary, Fault> {
    let (trust, _) = custodia::transparency::witnesses::trust_with_heads(&app.state).await;
    custodia::audit::verify(&app.state.store, &trust, |_, _| {})
        .await
        .unwrap()
}

async fn witnesses_cosign_each_new_checkpoint_and_verifiers_require_the_quorum(backend: Backend) {
    let (_env, app, mut witnesses) =
        witnessed(backend, &["w1.example/witness", "w2.example/witness"], None).await;
    append(&app, 10).await;
    let seq = app.checkpoint_now().await.expect("a checkpoint");
    cosigned(&app, seq, 2).await;

    // The public checkpoint carries both cosignatures, checkable by anyone with the keys.
    let checkpoint = public_checkpoint(&app).await;
    assert_eq!(checkpoint["size"], seq);
    assert_eq!(checkpoint["witnessed"], true);
    assert_eq!(
        checkpoint["cosigned_by"],
        serde_json::json!(["w1.example/witness", "w2.example/witness"])
    );
    let log = NamedKey::parse(checkpoint["verifier_key"].as_str().unwrap()).unwrap();
    let cosigners: Vec<(String, _)> = witnesses
        .iter()
        .map(|w| NamedKey::parse(&w.key).unwrap())
        .map(|k| (k.name, k.key))
        .collect();
    let head = tlog::open_checkpoint(
        checkpoint["note"].as_str().unwrap(),
        &log.name,
        &[log.key],
        &cosigners,
    )
    .unwrap();
    assert_eq!(head.signers.len(), 3, "the log and both witnesses");
    let summary = verify(&app).await.expect("intact and witnessed");
    assert_eq!(summary.witnessed, None, "nothing is past the grace yet");
    advance(&app, 6 * 60_000);
    let summary = verify(&app).await.expect("intact and witnessed");
    assert_eq!(summary.witnessed, Some((seq, 2)));

    // One witness goes down: appends (and so reads) go on at once, the new checkpoint
    // waits for its cosignature, and readers keep getting the newest witnessed one.
    witnesses.remove(1).stop().await;
    append(&app, 5).await;
    let newer = app.checkpoint_now().await.expect("a newer checkpoint");
    cosigned(&app, newer, 1).await;
    let shown = public_checkpoint(&app).await;
    assert_eq!(shown["size"], seq, "the newest checkpoint with the quorum");
    assert!(verify(&app).await.is_ok(), "still within the grace");
    advance(&app, 6 * 60_000);
    let fault = verify(&app).await.expect_err("the quorum is missing");
    assert_eq!((fault.kind, fault.seq), ("unwitnessed", newer), "{fault}");
    assert!(fault.detail.contains("1 valid witness"), "{fault}");

    // A cosignature row that does not verify counts for nothing.
    sql(
        &app,
        &format!(
            "INSERT INTO audit_cosignatures (seq, witness, signature, at) VALUES ({newer}, \
             'w2.example/witness', '— w2.example/witness AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=', 0)"
        ),
    )
    .await;
    assert_eq!(verify(&app).await.unwrap_err().kind, "unwitnessed");
}

async fn a_rolled_back_database_is_caught_by_the_witness(backend: Backend) {
    let (env, app, _witnesses) = witnessed(backend, &["w1.example/witness"], Some(1)).await;
    append(&app, 10).await;
    let first = app.checkpoint_now().await.unwrap();
    cosigned(&app, first, 1).await;
    append(&app, 10).await;
    let second = app.checkpoint_now().await.unwrap();
    cosigned(&app, second, 1).await;
    assert!(verify(&app).await.is_ok());

    // The operator restores an older copy: the trail as it was at the first checkpoint,
    // every hash consistent, and the server's own memory of what it signed removed.
    sql(
        &app,
        &format!("DELETE FROM audit_events WHERE seq > {first}"),
    )
    .await;
    sql(
        &app,
        &format!("DELETE FROM audit_checkpoints WHERE seq > {first}"),
    )
    .await;
    sql(
        &app,
        &format!("DELETE FROM audit_cosignatures WHERE seq > {first}"),
    )
    .await;
    recompute_everything(&app).await;
    app.stop().await;
    match std::fs::remove_file(env.data_dir().join("audit-checkpoint")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("{e}"),
        _ => {}
    }
    let app = env
        .start()
        .await
        .expect("nothing beside the database remembers");

    // The restored server goes on; the witness saw more than it has.
    append(&app, 3).await;
    let restored = app.checkpoint_now().await.unwrap();
    assert!(restored < second);
    let fault = verify(&app)
        .await
        .expect_err("the witness saw a longer log");
    assert_eq!(fault.kind, "rolled-back", "{fault}");
    assert_eq!(
        fault.evidence.len(),
        2,
        "the witness's head and the log's newest"
    );
    assert!(
        fault.evidence[0].contains(&format!("\n{second}\n")),
        "{}",
        fault.evidence[0]
    );
    // The auditor console asks the witnesses too, and shows the evidence.
    let link = custodia::auditors::invite(&app.state, "审计员")
        .await
        .unwrap();
    let auditor = crate::auditors::enrol_at(&app.base, &link).await.unwrap();
    let verified: Value = auditor
        .get("/api/v1/audit/verify")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(verified["intact"], false);
    assert_eq!(verified["fault"]["kind"], "rolled-back", "{verified:#}");
    assert_eq!(verified["fault"]["evidence"][0], fault.evidence[0].as_str());
    let page = auditor.get("/audit?verify=1").await.text().await.unwrap();
    assert!(page.contains("rolled-back") && page.contains("class=\"evidence\""));
    // It gets no cosignature for its new history, however far it grows past the witness.
    append(&app, 30).await;
    let grown = app.checkpoint_now().await.unwrap();
    assert!(grown > second);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        app.state
            .store
            .cosignatures(grown)
            .await
            .unwrap()
            .is_empty()
    );
    let fault = verify(&app).await.expect_err("two histories at one size");
    assert_eq!((fault.kind, fault.seq), ("fork", second), "{fault}");
    assert_eq!(fault.evidence.len(), 2);
}

/// The witness protocol as any log would speak it, against the witness alone.
#[tokio::test]
async fn a_witness_cosigns_only_extensions_and_keeps_forks_as_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let log = SigningKey::generate();
    let origin = "gov.example/audit";
    let log_vkey = tlog::verifier_key(origin, &log.verifying_key());
    let witness = spawn_witness(dir.path(), "w.example/witness", &[log_vkey]).await;
    let witness_key = NamedKey::parse(&witness.key).unwrap();
    let http = reqwest::Client::new();
    let add = |body: String| {
        let http = http.clone();
        let url = format!("{}/add-checkpoint", witness.url);
        async move {
            let r = http.post(url).body(body).send().await.unwrap();
            let status = r.status().as_u16();
            let content_type = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, content_type, r.text().await.unwrap())
        }
    };

    // A tree of 8 leaves; checkpoints at 5 and 8.
    let leaves: Vec<_> = (0..8u8).map(|i| tlog::leaf_hash(&[i])).collect();
    let mut known = tlog::Known::new();
    for (i, leaf) in leaves.iter().enumerate() {
        for (index, hash) in tlog::append(i as u64, *leaf, &known).unwrap() {
            known.insert(index, hash);
        }
    }
    let root5 = tlog::root(5, &known).unwrap();
    let root8 = tlog::root(8, &known).unwrap();
    let note5 = tlog::sign_checkpoint(&log, origin, 5, &root5, 1).unwrap();
    let note8 = tlog::sign_checkpoint(&log, origin, 8, &root8, 2).unwrap();
    let body = |old: u64, proof: Vec<[u8; 32]>, note: &str| {
        AddCheckpoint {
            old,
            proof,
            note: note.to_owned(),
        }
        .to_body()
    };

    // First sight: trusted on first use, cosigned; the cosignature verifies.
    let (status, _, line) = add(body(0, vec![], &note5)).await;
    assert_eq!(status, 200, "{line}");
    let head = tlog::open_checkpoint(
        &with_signatures(&note5, &[line]),
        origin,
        &[log.verifying_key()],
        &[(witness_key.name.clone(), witness_key.key.clone())],
    )
    .unwrap();
    assert_eq!(head.signers, [origin, "w.example/witness"]);

    // The log must know what the witness holds.
    let (status, content_type, text) = add(body(0, vec![], &note8)).await;
    assert_eq!((status, text.trim()), (409, "5"));
    assert_eq!(content_type.as_deref(), Some("text/x.tlog.size"));
    // A proof that does not hold.
    let (status, _, _) = add(body(5, vec![[7; 32]], &note8)).await;
    assert_eq!(status, 422);
    // Signed by someone else, for an unknown log, malformed.
    let stranger = SigningKey::generate();
    let forged = tlog::sign_checkpoint(&stranger, origin, 8, &root8, 2).unwrap();
    let proof = tlog::prove_consistency(8, 5, &known).unwrap();
    assert_eq!(add(body(5, proof.clone(), &forged)).await.0, 403);
    let other = tlog::sign_checkpoint(&log, "other.example/audit", 8, &root8, 2).unwrap();
    assert_eq!(add(body(5, proof.clone(), &other)).await.0, 404);
    assert_eq!(add("old five\n\nx".into()).await.0, 400);
    // A real extension.
    let (status, _, _) = add(body(5, proof, &note8)).await;
    assert_eq!(status, 200);

    // A second history of size 8: refused, and both signed heads kept.
    let fork_root = tlog::leaf_hash(b"another history");
    let fork = tlog::sign_checkpoint(&log, origin, 8, &fork_root, 3).unwrap();
    let (status, _, text) = add(body(8, vec![], &fork)).await;
    assert_eq!((status, text.trim()), (409, "8"));
    let forks: Value = http
        .get(format!("{}/forks", witness.url))
        .query(&[("origin", origin)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(forks.as_array().unwrap().len(), 1);
    assert_eq!(forks[0]["size"], 8);
    assert!(forks[0]["held"].as_str().unwrap().starts_with(&note8[..20]));
    assert_eq!(forks[0]["presented"], fork);
    // What it holds is still the first history, cosigned.
    let held = http
        .get(format!("{}/checkpoint", witness.url))
        .query(&[("origin", origin)])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let head = tlog::open_checkpoint(
        &held,
        origin,
        &[log.verifying_key()],
        &[(witness_key.name, witness_key.key)],
    )
    .unwrap();
    assert_eq!((head.size, head.root), (8, root8));
    assert_eq!(head.signers.len(), 2);
    witness.stop().await;
}

/// The witness as an operator runs it, exactly as documented (`custodia witness serve
/// --listen A --data-dir D`): its own process, key and directory, found by the key it
/// prints, trusting the log's key on first use, and the server sending it checkpoints over
/// the network.
#[tokio::test]
async fn the_witness_binary_cosigns_what_custodia_serve_sends_it() {
    use crate::binary::{custodia, free_port, terminate};

    let cwd = tempfile::tempdir().unwrap();
    let witness_port = free_port();
    let start_witness = || start_witness_binary(witness_port, &cwd.path().join("witness"));
    let (mut witness, key) = start_witness();
    let witness_name = NamedKey::parse(&key).expect("a verifier key").name;
    assert!(witness_name.ends_with("/witness"), "{witness_name}");
    let mode = std::fs::metadata(cwd.path().join("witness/witness.key"))
        .unwrap()
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );

    let witnesses = format!("http://127.0.0.1:{witness_port}={key}");
    let (mut server, base) = serve_with_witnesses(cwd.path(), &witnesses).await;
    let shown = witnessed_beyond(&base, -1).await;
    assert_eq!(
        shown["cosigned_by"],
        serde_json::json!([witness_name]),
        "{shown:#}"
    );
    assert!(terminate(&mut server).success());

    // The witness keeps its key, the log's pinned key and what it cosigned across restarts.
    assert!(terminate(&mut witness).success());
    let (mut witness, again) = start_witness();
    assert_eq!(again, key);
    let verify = custodia()
        .args(["audit", "verify"])
        .current_dir(cwd.path())
        .env("CUSTODIA_WITNESSES", &witnesses)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(terminate(&mut witness).success());
}

/// Starts `custodia witness serve --listen 127.0.0.1:PORT --data-dir DIR` and reads the
/// verifier key it prints.
fn start_witness_binary(port: u16, dir: &Path) -> (std::process::Child, String) {
    use std::io::BufRead as _;
    let mut child = crate::binary::custodia()
        .args(["witness", "serve"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--data-dir", &dir.display().to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let key = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("witness key:").map(|k| k.trim().to_owned()))
        .expect("the witness prints its key");
    // Keep reading what it prints, as a terminal would.
    std::thread::spawn(move || lines.for_each(drop));
    (child, key)
}

/// Starts `custodia serve` in `dir` on a free port, sending checkpoints to `witnesses`,
/// and waits until it answers; returns it and its base URL.
async fn serve_with_witnesses(dir: &Path, witnesses: &str) -> (std::process::Child, String) {
    let port = crate::binary::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = crate::binary::custodia()
        .arg("serve")
        .current_dir(dir)
        .env("CUSTODIA_LISTEN", format!("127.0.0.1:{port}"))
        .env("CUSTODIA_WITNESSES", witnesses)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    crate::binary::wait_healthy(&base, &mut server).await;
    (server, base)
}

/// Waits (up to ten seconds) until the server at `base` serves a witnessed checkpoint of
/// more than `size` events, and returns it.
async fn witnessed_beyond(base: &str, size: i64) -> Value {
    let mut shown = Value::Null;
    for _ in 0..100 {
        shown = reqwest::get(format!("{base}/api/v1/audit/checkpoint"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if shown["witnessed"] == true && shown["size"].as_i64().is_some_and(|s| s > size) {
            return shown;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no witnessed checkpoint beyond {size}: {shown:#}");
}

/// SPEC G3: an operator restores an older `custodia backup` — a real one, taken while the
/// server ran, every hash in it consistent. The database alone cannot tell (verify without
/// witnesses passes); the witness, which cosigned a longer log since, catches the rollback.
#[tokio::test]
async fn a_restored_older_backup_is_caught_by_the_witness() {
    use crate::binary::{custodia, free_port, terminate};

    let cwd = tempfile::tempdir().unwrap();
    let witness_port = free_port();
    let (mut witness, key) = start_witness_binary(witness_port, &cwd.path().join("witness"));
    let witnesses = format!("http://127.0.0.1:{witness_port}={key}");
    let (mut server, base) = serve_with_witnesses(cwd.path(), &witnesses).await;
    let first = witnessed_beyond(&base, -1).await["size"].as_i64().unwrap();

    let run = |args: &[&str], data: &str| {
        custodia()
            .args(args)
            .current_dir(cwd.path())
            .env("CUSTODIA_DATA_DIR", data)
            .env("CUSTODIA_WITNESSES", &witnesses)
            .output()
            .unwrap()
    };
    let backup = run(&["backup", "--out", "old-copy"], "custodia-data");
    assert!(
        backup.status.success(),
        "{}",
        String::from_utf8_lossy(&backup.stderr)
    );

    // Life goes on: an operator action, a checkpoint over it, cosigned by the witness.
    let created = run(
        &[
            "agency",
            "create",
            "--name",
            "某市税务局",
            "--level",
            "municipal",
        ],
        "custodia-data",
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let signed = run(&["audit", "checkpoint"], "custodia-data");
    assert!(
        signed.status.success(),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );
    let later = witnessed_beyond(&base, first).await["size"]
        .as_i64()
        .unwrap();
    assert!(terminate(&mut server).success());

    // The older copy, restored as the README says (a SQLite backup is a data directory),
    // is a consistent trail on its own ...
    let alone = custodia()
        .args(["audit", "verify"])
        .current_dir(cwd.path())
        .env("CUSTODIA_DATA_DIR", "old-copy")
        .output()
        .unwrap();
    assert!(
        alone.status.success(),
        "{}",
        String::from_utf8_lossy(&alone.stderr)
    );
    // ... which the witness has seen grow past it.
    let caught = run(&["audit", "verify"], "old-copy");
    assert_eq!(
        caught.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&caught.stdout)
    );
    let said = String::from_utf8_lossy(&caught.stderr);
    assert!(said.contains("rolled-back"), "{said}");
    assert!(said.contains(&format!("\n{later}\n")), "{said}");
    assert!(terminate(&mut witness).success());
}

/// A witness started without `--log` pins each log's key on first use and holds the log to
/// it from then on.
#[tokio::test]
async fn a_witness_trusts_a_log_key_on_first_use_only() {
    let dir = tempfile::tempdir().unwrap();
    let witness = spawn_witness(dir.path(), "w.example/witness", &[]).await;
    let origin = "gov.example/audit";
    let log = SigningKey::generate();
    let vkey = tlog::verifier_key(origin, &log.verifying_key());
    let root = tlog::leaf_hash(b"one");
    let note = tlog::sign_checkpoint(&log, origin, 1, &root, 1).unwrap();
    let body = AddCheckpoint {
        old: 0,
        proof: vec![],
        note: note.clone(),
    }
    .to_body();
    let http = reqwest::Client::new();
    let add = |key: Option<String>, body: String| {
        let mut request = http
            .post(format!("{}/add-checkpoint", witness.url))
            .body(body);
        if let Some(key) = key {
            request = request.header(custodia::witness::LOG_KEY_HEADER, key);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(
        add(None, body.clone()).await,
        404,
        "an unknown log, no key offered"
    );
    assert_eq!(
        add(Some(vkey.clone()), body.clone()).await,
        200,
        "first use"
    );

    // Another key for the same origin is refused, offered or not.
    let impostor = SigningKey::generate();
    let forged = tlog::sign_checkpoint(&impostor, origin, 1, &root, 2).unwrap();
    let forged_body = AddCheckpoint {
        old: 1,
        proof: vec![],
        note: forged,
    }
    .to_body();
    let impostor_key = tlog::verifier_key(origin, &impostor.verifying_key());
    assert_eq!(add(Some(impostor_key), forged_body).await, 403);
    witness.stop().await;
}
