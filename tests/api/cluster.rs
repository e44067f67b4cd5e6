//! Beyond one machine (SPEC §5): three `custodia serve` processes on one PostgreSQL
//! database and one S3 bucket, behind nginx running the documented configuration
//! (`docs/deploy/nginx.conf`, only its ports replaced). Ceremonies and sessions hop between
//! nodes; a node killed with `kill -9` mid-load loses nothing; a revoke through one node
//! stops reads on the others at once; the master key rotates across the nodes while they
//! serve.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::agency_kit::Agency;
use crate::binary::{
    assert_verifies, create_agency, custodia, enrol_citizen, free_port, terminate, wait_healthy,
};
use crate::citizen_kit::{Citizen, PASSPHRASE, pdf_bytes};
use crate::helpers::{Backend, TEST_ORIGIN, TestEnv, national_id};

const NODES: usize = 3;

struct Node {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// The nodes, their shared database and bucket, and the proxy in front.
pub(crate) struct Cluster {
    env: TestEnv,
    s3: Vec<(&'static str, String)>,
    nodes: Vec<Node>,
    proxy: Child,
    /// The proxy's base URL: what citizens and agencies use.
    pub(crate) base: String,
    root: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = self.proxy.kill();
        let _ = self.proxy.wait();
    }
}

fn copy_keys(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("audit-keys")).unwrap();
    for name in ["master.key", "signing.key"] {
        std::fs::copy(from.join(name), to.join(name)).unwrap();
    }
    for entry in std::fs::read_dir(from.join("audit-keys"))
        .unwrap()
        .flatten()
    {
        std::fs::copy(entry.path(), to.join("audit-keys").join(entry.file_name())).unwrap();
    }
}

impl Cluster {
    async fn start() -> Self {
        Self::start_with(NODES, true).await
    }

    /// `count` nodes, with their blobs in a bucket of the test S3 server (`s3`) or, for one
    /// node, in its own data directory.
    pub(crate) async fn start_with(count: usize, s3: bool) -> Self {
        Self::start_on(Backend::Postgres, count, s3).await
    }

    /// As [`Cluster::start_with`] on `backend`; one node only on SQLite (the embedded
    /// default, its database in the node's data directory).
    pub(crate) async fn start_on(backend: Backend, count: usize, s3: bool) -> Self {
        assert!(s3 || count == 1, "several nodes share blobs through S3");
        assert!(
            backend == Backend::Postgres || count == 1,
            "several nodes share one PostgreSQL database"
        );
        let env = TestEnv::new(backend).await;
        let s3 = match s3 {
            true => crate::s3_server::blob_settings().await,
            false => Vec::new(),
        };
        let root = tempfile::tempdir().unwrap();
        let nodes: Vec<Node> = (0..count)
            .map(|i| Node {
                port: free_port(),
                dir: root.path().join(format!("node{i}")),
                child: None,
            })
            .collect();
        let proxy_port = free_port();
        let proxy = start_proxy(root.path(), proxy_port, &nodes_ports(&nodes));
        let mut cluster = Self {
            env,
            s3,
            nodes,
            proxy,
            base: format!("http://127.0.0.1:{proxy_port}"),
            root,
        };
        // The first node makes the master and signing keys; they reach the others by file.
        cluster.start_node(0).await;
        for i in 1..count {
            copy_keys(&cluster.nodes[0].dir, &cluster.nodes[i].dir);
            cluster.start_node(i).await;
        }
        for _ in 0..100 {
            if let Ok(r) = reqwest::get(format!("{}/readyz", cluster.base)).await
                && r.status() == 200
            {
                return cluster;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the proxy did not answer at {}", cluster.base);
    }

    /// `custodia` set up as node `i` is.
    pub(crate) fn command(&self, i: usize) -> Command {
        let node = &self.nodes[i];
        let mut cmd = custodia();
        cmd.env("CUSTODIA_DATA_DIR", &node.dir)
            .env("CUSTODIA_LISTEN", format!("127.0.0.1:{}", node.port))
            .env("CUSTODIA_PUBLIC_URL", TEST_ORIGIN)
            .env("CUSTODIA_TRUSTED_PROXIES", "127.0.0.1/32");
        if let Some(url) = self.env.vars.get("CUSTODIA_DATABASE_URL") {
            cmd.env("CUSTODIA_DATABASE_URL", url);
        }
        for (k, v) in &self.s3 {
            cmd.env(k, v);
        }
        cmd
    }

    /// The process id of node `i` (benchmarks read its memory from `/proc`).
    #[allow(dead_code)]
    pub(crate) fn pid(&self, i: usize) -> u32 {
        self.nodes[i].child.as_ref().unwrap().id()
    }

    pub(crate) fn node_base(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].port)
    }

    async fn start_node(&mut self, i: usize) {
        std::fs::create_dir_all(&self.nodes[i].dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.path().join(format!("node{i}.log")))
            .unwrap();
        let mut child = self
            .command(i)
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        wait_healthy(&self.node_base(i), &mut child).await;
        self.nodes[i].child = Some(child);
    }

    /// `kill -9`: no shutdown, no flush, connections cut.
    fn kill_node(&mut self, i: usize) {
        let mut child = self.nodes[i].child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// A graceful stop (SIGTERM), as a rolling restart does.
    fn stop_node(&mut self, i: usize) {
        let mut child = self.nodes[i].child.take().unwrap();
        assert!(terminate(&mut child).success());
    }

    async fn readyz(&self, i: usize) -> Value {
        reqwest::get(format!("{}/readyz", self.node_base(i)))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// No node logged a panic.
    fn assert_no_panic(&self) {
        for i in 0..self.nodes.len() {
            let log = std::fs::read_to_string(self.root.path().join(format!("node{i}.log")))
                .unwrap_or_default();
            assert!(!log.contains("panicked"), "node {i} panicked:\n{log}");
        }
    }

    /// A registered citizen whose ceremonies hop: registration starts on one node and
    /// finishes on the next; sign-in starts on the third and finishes on the first; the
    /// session then works on every node and through the proxy.
    pub(crate) async fn citizen(&self, n: u32, name: &str) -> Citizen {
        let nid = national_id(n);
        let code = enrol_citizen(self.command(0), &nid);
        let mut c = Citizen::unregistered(&self.node_base(0), &nid, name, &code);
        let credential = c.registration_credential().await;
        c.base = self.node_base(1 % self.nodes.len());
        let done = c
            .post(
                "/auth/register/finish",
                json!({ "credential": credential, "passphrase": PASSPHRASE }),
            )
            .await;
        assert_eq!(done.status(), 200, "registration finished on another node");
        let body: Value = done.json().await.unwrap();
        c.citizen_id = body["citizen_id"].as_str().unwrap().to_owned();
        c.base = self.node_base(2 % self.nodes.len());
        let assertion = c.assertion().await;
        c.base = self.node_base(0);
        let signed_in = c
            .post("/auth/login/finish", json!({ "credential": assertion }))
            .await;
        assert_eq!(signed_in.status(), 200, "sign-in finished on another node");
        let body: Value = signed_in.json().await.unwrap();
        c.csrf = body["csrf_token"].as_str().unwrap().to_owned();
        c.base = self.node_base(1 % self.nodes.len());
        assert_eq!(c.unlock(PASSPHRASE).await.status(), 200);
        for i in 0..self.nodes.len() {
            c.base = self.node_base(i);
            let me: Value = c.me().await.json().await.unwrap();
            assert_eq!(me["unlocked"], true, "node {i} serves the session");
        }
        c.base = self.base.clone();
        c
    }
}

/// An agency holding a `full` grant to one file of a citizen's, as each story starts.
pub(crate) struct Granted {
    pub(crate) agency: Agency,
    pub(crate) citizen: Citizen,
    pub(crate) grant: String,
    /// The document the grant covers (the peers benchmark grants it at another tier too).
    #[allow(dead_code)]
    pub(crate) doc: String,
    /// The agency's file read: `/api/v1/grants/{grant}/documents/{doc}/file`.
    pub(crate) path: String,
    pub(crate) file: Vec<u8>,
}

impl Granted {
    /// The agency again, reading through `base`, on a connection pool of its own.
    pub(crate) fn agency_at(&self, base: &str) -> Agency {
        Agency {
            id: self.agency.id.clone(),
            key: self.agency.key.clone(),
            base: base.to_owned(),
            http: reqwest::Client::new(),
        }
    }
}

impl Cluster {
    /// An agency (made with `custodia agency create` on node 0) with a `full` grant, with
    /// reads to spare, to a file of `len` bytes of citizen `n`, made through the proxy.
    pub(crate) async fn granted(&self, n: u32, len: usize) -> Granted {
        let (agency_id, key) = create_agency(self.command(0), &format!("集群局{n}"));
        let agency = Agency {
            id: agency_id.clone(),
            key,
            base: self.base.clone(),
            http: reqwest::Client::new(),
        };
        let citizen = self.citizen(n, &format!("Clustered {n}")).await;
        let file = pdf_bytes(len, &format!("cluster-{n}"));
        let doc = citizen
            .licence(&format!("集群公司{n}"), Some(file.clone()))
            .await;
        let grant = citizen
            .grant_to(
                &agency_id,
                json!({ "document_ids": [doc], "tier": "full", "purpose": "集群", "max_reads": 100_000_000 }),
            )
            .await;
        Granted {
            path: format!("/api/v1/grants/{grant}/documents/{doc}/file"),
            agency,
            citizen,
            grant,
            doc,
            file,
        }
    }
}

fn nodes_ports(nodes: &[Node]) -> Vec<u16> {
    nodes.iter().map(|n| n.port).collect()
}

/// nginx with `docs/deploy/nginx.conf`, its ports replaced, in the foreground.
fn start_proxy(root: &Path, port: u16, nodes: &[u16]) -> Child {
    let documented = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/deploy/nginx.conf"),
    )
    .unwrap();
    let mut conf = documented.replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    for (i, node) in nodes.iter().enumerate() {
        conf = conf.replace(
            &format!("127.0.0.1:{}", 8081 + i),
            &format!("127.0.0.1:{node}"),
        );
    }
    // Fewer nodes than the documented three: their upstream lines go.
    let conf: String = conf
        .lines()
        .filter(|l| {
            !["8081", "8082", "8083"]
                .iter()
                .any(|p| l.contains(&format!("server 127.0.0.1:{p} ")))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(conf, documented);
    let prefix = root.join("nginx");
    std::fs::create_dir_all(prefix.join("logs")).unwrap();
    std::fs::write(prefix.join("nginx.conf"), conf).unwrap();
    let nginx = std::env::var("CUSTODIA_NGINX").unwrap_or_else(|_| "/usr/sbin/nginx".to_owned());
    Command::new(&nginx)
        .arg("-p")
        .arg(&prefix)
        .arg("-c")
        .arg(prefix.join("nginx.conf"))
        .arg("-g")
        .arg(format!(
            "daemon off; pid {}; error_log {} warn;",
            prefix.join("nginx.pid").display(),
            prefix.join("logs/error.log").display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{nginx} starts ({e}); install Debian's nginx-light"))
}

/// Reads the file through the proxy `rounds` times; returns how many answered 200 with the
/// exact bytes (any other 200 fails the test) and the other statuses seen.
async fn read_loop(
    agency: Agency,
    path: String,
    rounds: usize,
    file: Vec<u8>,
) -> (usize, Vec<u16>) {
    let (mut ok, mut other) = (0, Vec::new());
    for _ in 0..rounds {
        let sent = agency
            .reading(&path)
            .header("accept-encoding", "gzip, br, zstd")
            .send()
            .await;
        match sent {
            Ok(r) if r.status() == 200 => {
                let body = r.bytes().await;
                // A body cut off by the kill is a failed read, not a wrong one.
                if let Ok(body) = body {
                    assert_eq!(
                        body.as_ref(),
                        file.as_slice(),
                        "a 200 carries the exact bytes"
                    );
                    ok += 1;
                } else {
                    other.push(0);
                }
            }
            Ok(r) => other.push(r.status().as_u16()),
            Err(_) => other.push(0),
        }
    }
    (ok, other)
}

/// Three nodes lose nothing when one is killed mid-load, and a revoke through one node
/// stops reads on the others at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_lose_nothing_when_one_dies() {
    let mut cluster = Cluster::start().await;
    let granted = cluster.granted(960, 200_000).await;
    let (agency, c, grant, path) = (
        &granted.agency,
        &granted.citizen,
        &granted.grant,
        &granted.path,
    );

    // Agencies read and the citizen uploads, all through the proxy, while node 1 is
    // killed and started again.
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let a = granted.agency_at(&cluster.base);
            tokio::spawn(read_loop(a, path.clone(), 150, granted.file.clone()))
        })
        .collect();
    let uploader = {
        let c = c.same_browser();
        tokio::spawn(async move {
            let mut stored = Vec::new();
            for i in 0..12 {
                let bytes = pdf_bytes(70_000 + i * 997, &format!("upload-{i}"));
                let r = c
                    .upload(
                        None,
                        "business_license",
                        crate::citizen_kit::licence_fields(&format!("上传公司{i}")),
                        Some(("licence.pdf", bytes.clone())),
                    )
                    .await;
                if r.status() == 201 {
                    let v: Value = r.json().await.unwrap();
                    stored.push((v["id"].as_str().unwrap().to_owned(), bytes));
                }
            }
            stored
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        readers.iter().all(|r| !r.is_finished()) && !uploader.is_finished(),
        "the node dies mid-load"
    );
    cluster.kill_node(1);
    tokio::time::sleep(Duration::from_millis(700)).await;
    cluster.start_node(1).await;

    let mut ok = 0;
    let mut failed = Vec::new();
    for r in readers {
        let (n, other) = r.await.unwrap();
        ok += n;
        failed.extend(other);
    }
    let stored = uploader.await.unwrap();
    assert!(
        ok >= 500,
        "most reads went through: {ok} ok, failed {failed:?}"
    );
    println!(
        "reads: {ok} answered 200, {} not ({failed:?})",
        failed.len()
    );
    assert!(
        stored.len() >= 9,
        "most uploads were acknowledged: {}",
        stored.len()
    );

    // Every acknowledged upload opens byte-identical afterwards, on any node.
    for (i, (id, bytes)) in stored.iter().enumerate() {
        let mut reader = c.same_browser();
        reader.base = cluster.node_base(i % NODES);
        let got = reader.get(&format!("/me/documents/{id}/file")).await;
        assert_eq!(got.status(), 200);
        assert_eq!(got.bytes().await.unwrap().as_ref(), bytes.as_slice());
    }

    // Every read that got a 200 has its event, and no read is counted twice: the grant's
    // counter equals the recorded reads.
    let store = custodia::store::Store::connect(&cluster.env.config())
        .await
        .unwrap();
    let recorded = store
        .audit_events_after(0, 1_000_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "document.file" && e.outcome == "ok")
        .count();
    assert!(
        recorded >= ok,
        "{recorded} recorded reads for {ok} answered"
    );
    let seen: Value = agency
        .get(&format!("/api/v1/grants/{grant}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        seen["reads"], recorded as u64,
        "each read counted once: {seen}"
    );
    store.close().await;

    // A revoke through node 0 stops reads on nodes 1 and 2 at once.
    let mut owner = c.same_browser();
    owner.base = cluster.node_base(0);
    assert_eq!(
        owner
            .post(&format!("/me/grants/{grant}/revoke"), json!({}))
            .await
            .status(),
        200
    );
    for i in 1..NODES {
        let on_node = Agency {
            base: cluster.node_base(i),
            id: agency.id.clone(),
            key: agency.key.clone(),
            http: reqwest::Client::new(),
        };
        assert_eq!(
            on_node.read(path).await.status(),
            403,
            "node {i} refuses at once"
        );
    }

    // A delegation ended through node 0 stops the delegate on nodes 1 and 2 at once.
    let mut delegate = cluster.citizen(961, "Delegate").await;
    let appointed: Value = owner
        .post(
            "/me/delegations",
            json!({ "delegate_national_id": national_id(961), "document_types": ["business_license"],
                    "actions": ["view"], "duration_days": 5 }),
        )
        .await
        .json()
        .await
        .unwrap();
    let delegation = appointed["id"].as_str().unwrap().to_owned();
    delegate.base = cluster.node_base(1);
    let accepted = delegate
        .post(&format!("/me/delegations/{delegation}/accept"), json!({}))
        .await;
    assert_eq!(accepted.status(), 200);
    for i in 0..NODES {
        delegate.base = cluster.node_base(i);
        let listed = delegate.get_for(&owner.citizen_id, "/me/documents").await;
        assert_eq!(listed.status(), 200, "node {i} lets the delegate act");
    }
    let ended = owner
        .post(&format!("/me/delegations/{delegation}/end"), json!({}))
        .await;
    assert_eq!(ended.status(), 200);
    for i in 1..NODES {
        delegate.base = cluster.node_base(i);
        let listed = delegate.get_for(&owner.citizen_id, "/me/documents").await;
        assert_eq!(
            listed.status(),
            403,
            "node {i} refuses the ended delegation at once"
        );
    }

    // One chain, whatever node appended what.
    for i in 0..NODES {
        cluster.stop_node(i);
    }
    assert_verifies(cluster.command(2));
    cluster.assert_no_panic();
}

/// The master key rotates across three serving nodes: the next key is distributed first
/// (each node's `/readyz` lists it), the rotation runs on one node under read load with no
/// failed read, the old key is retired everywhere, and no node starts with it alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_key_rotates_across_serving_nodes() {
    let mut cluster = Cluster::start().await;
    let granted = cluster.granted(961, 50_000).await;
    let (agency, path) = (&granted.agency, &granted.path);
    let old_key = std::fs::read(cluster.nodes[0].dir.join("master.key")).unwrap();
    let old_id = cluster.readyz(0).await["master_keys"][0].clone();

    // 1. The next key is made once and distributed; a rolling restart has every node hold it.
    let prepared = cluster
        .command(0)
        .args(["keys", "rotate-master", "--prepare"])
        .output()
        .unwrap();
    assert!(
        prepared.status.success(),
        "{}",
        String::from_utf8_lossy(&prepared.stderr)
    );
    let next = cluster.nodes[0].dir.join("master.key.next");
    for i in 0..NODES {
        if i > 0 {
            std::fs::copy(&next, cluster.nodes[i].dir.join("master.key.next")).unwrap();
        }
        cluster.stop_node(i);
        cluster.start_node(i).await;
        let ready = cluster.readyz(i).await;
        assert_eq!(ready["master_keys"].as_array().unwrap().len(), 2, "{ready}");
        assert_eq!(ready["master_keys"][0], old_id);
    }
    let new_id = cluster.readyz(0).await["master_keys"][1].clone();

    // 2. The rotation runs on one node while agencies read through the proxy.
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let a = granted.agency_at(&cluster.base);
            tokio::spawn(read_loop(a, path.clone(), 40, granted.file.clone()))
        })
        .collect();
    let rotated = cluster
        .command(0)
        .args(["keys", "rotate-master"])
        .output()
        .unwrap();
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    for r in readers {
        let (ok, failed) = r.await.unwrap();
        assert!(
            failed.is_empty(),
            "no failed read during the rotation: {failed:?}"
        );
        assert_eq!(ok, 40);
    }

    // 3. The old key is retired on every node; each then holds only the new one.
    let new_key = std::fs::read(cluster.nodes[0].dir.join("master.key")).unwrap();
    assert_ne!(new_key, old_key);
    for i in 0..NODES {
        std::fs::write(cluster.nodes[i].dir.join("master.key"), &new_key).unwrap();
        let _ = std::fs::remove_file(cluster.nodes[i].dir.join("master.key.next"));
        cluster.stop_node(i);
        cluster.start_node(i).await;
        assert_eq!(cluster.readyz(i).await["master_keys"], json!([new_id]));
    }
    assert_eq!(agency.read(path).await.status(), 200);

    // No node starts with the old key alone.
    std::fs::write(cluster.nodes[2].dir.join("master.key"), &old_key).unwrap();
    cluster.stop_node(2);
    let refused = cluster.command(2).arg("serve").output().unwrap();
    assert!(
        !refused.status.success(),
        "a node with the retired key alone must not start"
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("master key"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    for i in 0..2 {
        cluster.stop_node(i);
    }
    cluster.assert_no_panic();
}
