//! The agency guide walked with a client nobody here wrote: `openapi-python-client` (PyPI)
//! generates a Python package from the served `/api/v1/openapi.json`, and
//! `tests/python/walk_guide.py` uses it to ask, poll, list, read at each tier (the file
//! too), be refused after a revocation, and deposit. The citizen's side is played here.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use custodia::agencies::Level;
use custodia_crypto::sign::SigningKey;
use serde_json::{Value, json};

use crate::agency_kit::Agency;
use crate::citizen_kit::{Citizen, pdf_bytes};
use crate::helpers::{Backend, TestApp, national_id, spawn_app};

/// Generates the client from the served document into `dir`.
async fn generate(app: &TestApp, dir: &std::path::Path) {
    let doc = app.get("/api/v1/openapi.json").await.text().await.unwrap();
    let spec = dir.join("openapi.json");
    std::fs::write(&spec, doc).unwrap();
    let out = std::process::Command::new("openapi-python-client")
        .args(["generate", "--meta", "none", "--overwrite", "--path"])
        .arg(&spec)
        .arg("--output-path")
        .arg(dir.join("custodia_client"))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "openapi-python-client is needed (pip install openapi-python-client; .ci/run installs it): {e}"
            )
        });
    assert!(
        out.status.success(),
        "the generator refused the document: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs one step of the walk; returns its JSON line.
fn step(dir: &std::path::Path, args: &[&str]) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/walk_guide.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .args(args)
        .env("PYTHONPATH", dir)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "walk_guide.py {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_python_client_walks_the_guide() {
    let (_env, app) = spawn_app(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    generate(&app, dir.path()).await;
    let d = dir.path();

    let issuer_key = SigningKey::generate();
    let public = URL_SAFE_NO_PAD.encode(issuer_key.verifying_key().to_bytes());
    let agency = Agency::create_with(&app, "生成客户端局", Level::Provincial, Some(&public)).await;
    let c = Citizen::register(&app, &national_id(990), "Generated").await;
    let file = pdf_bytes(7000, "generated");
    let doc = c.licence("生成公司", Some(file.clone())).await;
    let (base, key) = (app.base.as_str(), agency.key.as_str());

    // Each tier, asked and approved, then read as the guide reads it.
    let mut grants = Vec::new();
    for (tier, fields) in [("verify", ""), ("fields", "company_name"), ("full", "")] {
        let asked = step(d, &["ask", base, key, &c.national_id, tier, fields]);
        assert_eq!(asked["status"], "pending");
        let id = asked["request_id"].as_str().unwrap().to_owned();
        let approved = c
            .post(&format!("/me/requests/{id}/approve"), json!({}))
            .await;
        assert_eq!(approved.status(), 201, "{tier} approved");
        let walked = step(d, &["read", base, key, &id]);
        assert_eq!(walked["documents"][0]["id"], doc.as_str());
        let read = &walked["reads"][0];
        assert_eq!(read["tier"], tier);
        match tier {
            "verify" => assert!(read["fields"].is_null(), "{read}"),
            "fields" => assert_eq!(read["fields"], json!({ "company_name": "生成公司" })),
            _ => {
                assert_eq!(read["fields"]["company_name"], "生成公司");
                assert_eq!(
                    read["file_sha256"],
                    custodia_crypto::digest::hex(&custodia_crypto::digest::sha256(&file))
                );
            }
        }
        grants.push(walked["grant_id"].as_str().unwrap().to_owned());
    }

    // Refused once revoked.
    let revoked = c
        .post(&format!("/me/grants/{}/revoke", grants[0]), json!({}))
        .await;
    assert_eq!(revoked.status(), 200);
    let refused = step(d, &["refused", base, key, &grants[0], &doc]);
    assert_eq!(refused["status"], 403);
    assert!(refused["detail"].as_str().unwrap().contains("revoked"));

    // A deposit, signed with the issuer's key.
    let signed = custodia::client::sign_deposit(
        &issuer_key,
        crate::agency_api::clearance(&c.national_id, None),
    )
    .unwrap();
    let deposited = step(d, &["deposit", base, key, &signed.to_string()]);
    assert_eq!(deposited["status"], "accepted");
}
