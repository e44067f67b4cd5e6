//! The OpenAPI document and the server checked against each other by a tool nobody here
//! wrote: `schemathesis` (PyPI) runs every phase — the document's examples, coverage of
//! its constraints and statuses, fuzzing, and stateful sequences that follow its links —
//! against a running server, with an agency's key, a citizen's session and an auditor's
//! session (set up here, passkey ceremonies included). Every check runs: no 5xx, no
//! status, header, content type or body the document does not describe, no schema-invalid
//! request accepted, no schema-valid one refused (save the rules no schema can state,
//! listed with their reasons in the configuration below). Seeded and bounded.

use std::fmt::Write as _;

use serde_json::{Value, json};
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::CreationChallengeResponse;

use crate::agency_kit::Agency;
use crate::citizen_kit::{Citizen, PASSPHRASE, origin};
use crate::helpers::{Backend, TestApp, national_id, spawn_app};

/// The value of the session cookie a response sets.
fn session_set_by(response: &reqwest::Response) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, value)| *name == "custodia-session" && !value.is_empty())
        .map(|(_, value)| value.to_owned())
        .expect("a session cookie")
}

/// A citizen signed in afresh and unlocked, with documents and a grant to `agency`:
/// her session cookie and CSRF token.
async fn citizen_session(app: &TestApp, agency: &Agency) -> (String, String) {
    let mut c = Citizen::register(app, &national_id(4242), "Schemathesis").await;
    let doc = c.licence("契约测试公司", None).await;
    c.grant_to(
        &agency.id,
        json!({ "document_ids": [doc], "tier": "fields", "fields": ["company_name"], "purpose": "契约测试" }),
    )
    .await;
    let signed_in = c.finish_login().await;
    assert_eq!(signed_in.status(), 200, "login/finish");
    let cookie = session_set_by(&signed_in);
    let body: Value = signed_in.json().await.unwrap();
    c.csrf = body["csrf_token"].as_str().unwrap().to_owned();
    assert_eq!(c.unlock(PASSPHRASE).await.status(), 200, "unlock");
    (cookie, c.csrf.clone())
}

/// An auditor enrolled from the operator's invitation: her session cookie and CSRF token.
async fn auditor_session(app: &TestApp) -> (String, String) {
    let link = custodia::auditors::invite(&app.state, "契约审计")
        .await
        .unwrap();
    let token = link.split("token=").nth(1).unwrap();
    let http = app.new_client();
    let start = http
        .post(format!("{}/audit/auth/enrol/start", app.base))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 200, "enrol/start");
    let options: CreationChallengeResponse = start.json().await.unwrap();
    let mut authenticator = SoftPasskey::new(true);
    let credential = authenticator.do_registration(origin(), options).unwrap();
    let done = http
        .post(format!("{}/audit/auth/enrol/finish", app.base))
        .json(&json!({ "credential": credential }))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200, "enrol/finish");
    let cookie = session_set_by(&done);
    let body: Value = done.json().await.unwrap();
    (cookie, body["csrf_token"].as_str().unwrap().to_owned())
}

/// The schemathesis configuration: a credential per security scheme of the document, the
/// CSRF token of each session on the routes that take it, and the operations that would
/// end the run's own credentials left out (their own tests cover them).
fn config(agency_key: &str, citizen: &(String, String), auditor: &(String, String)) -> String {
    let mut toml = String::new();
    writeln!(
        toml,
        r#"[auth.openapi.agency_key]
bearer = "{agency_key}"

[auth.openapi.citizen_session]
api_key = "{}"

[auth.openapi.auditor_session]
api_key = "{}"

[[operations]]
include-path-regex = "^/(me|vault|auth)(/|$)"
headers = {{ "X-CSRF-Token" = "{}" }}

[[operations]]
include-path-regex = "^/api/v1/audit/"
headers = {{ "X-CSRF-Token" = "{}" }}

[[operations]]
include-path-regex = "^/(auth/logout|auth/logout-everywhere|vault/lock)$"
enabled = false

# Schema-valid requests refused, with 422 and the field named, for a rule no JSON Schema
# can state: a national ID's check character (ISO 7064 MOD 11-2); a cursor the API never
# issued; an https URL that does not parse; a reference to something that does not exist
# (an agency, a catalog document type, a trail size beyond the log's); a deposit whose
# signature does not verify; a passphrase too weak; a deletion time after now.
[[operations]]
include-operation-id-regex = "^(create_request|break_glass|declare|enrolment_code|list_grants|add_webhook|login_start|register_start|appoint|consistency|create_grant|set_availability|deposit|change_passphrase|recover|retention_ack|confirm_identity|register_finish)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429"]

# An upload's type must be one of the catalog's, and its file a PDF, PNG or JPEG by its
# bytes (415), which no schema of a binary part can state.
[[operations]]
include-operation-id-regex = "^(upload_document|replace)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "415", "422", "429"]"#,
        citizen.0, auditor.0, citizen.1, auditor.1
    )
    .unwrap();
    toml
}

/// An agency that may do everything the agency routes offer: ask, read, deposit (any
/// type, with its own issuer key), enrol, declare guardianships and break the glass.
async fn agency_of_every_kind(app: &TestApp) -> Agency {
    use base64::Engine as _;
    let issuer = custodia_crypto::sign::SigningKey::generate();
    let public =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(issuer.verifying_key().to_bytes());
    let types: Vec<String> = app
        .state
        .catalog
        .document_types()
        .iter()
        .map(|t| t.id.clone())
        .collect();
    Agency::create_as(
        app,
        &custodia::agencies::NewAgency {
            name: "契约测试局",
            level: custodia::agencies::Level::Provincial,
            issuer: true,
            issuer_key: Some(&public),
            issuer_types: &types,
            enroller: true,
            guardianship_authority: true,
            emergency: true,
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_the_document_and_the_server_in_agreement() {
    let (_env, app) = spawn_app(Backend::Sqlite).await;
    let agency = agency_of_every_kind(&app).await;
    let citizen = citizen_session(&app, &agency).await;
    let auditor = auditor_session(&app).await;

    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("schemathesis.toml");
    std::fs::write(&config_file, config(&agency.key, &citizen, &auditor)).unwrap();
    let out = tokio::task::spawn_blocking({
        let (config_file, workdir) = (config_file.clone(), dir.path().to_owned());
        let url = format!("{}/api/v1/openapi.json", app.base);
        move || {
            // Run from the temporary directory: schemathesis keeps a cache of past
            // crashes where it runs, and a run here must not read or leave one.
            std::process::Command::new("schemathesis")
                .current_dir(&workdir)
                .arg("--config-file")
                .arg(&config_file)
                .args(["run", &url])
                .args(["--phases", "examples,coverage,fuzzing,stateful"])
                .args(["--checks", "all"])
                .args(["--seed", "1", "--max-examples", "25", "--workers", "1"])
                .args(["--generation-deterministic", "--continue-on-failure"])
                .args(["--request-timeout", "20", "--no-color"])
                .output()
        }
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| {
        panic!("schemathesis is needed (pip install schemathesis; .ci/run installs it): {e}")
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found the document and the server disagreeing:\n{stdout}\n{stderr}"
    );
    // It really ran: every phase, over every operation but the three left out, and the
    // stateful phase followed the document's links.
    for phase in ["Examples", "Coverage", "Fuzzing", "Stateful"] {
        assert!(
            stdout.contains(phase),
            "phase {phase} did not run:\n{stdout}"
        );
    }
    let number_after = |label: &str| -> usize {
        let at = stdout
            .find(label)
            .unwrap_or_else(|| panic!("no {label:?}:\n{stdout}"));
        stdout[at + label.len()..]
            .trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no number after {label:?}:\n{stdout}"))
    };
    let operations = number_after("Operations:");
    assert_eq!(number_after("Tested:"), operations, "{stdout}");
    let total: usize = stdout
        .split("selected / ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no operation total:\n{stdout}"));
    assert_eq!(
        operations + 3,
        total,
        "every operation but logout, logout-everywhere and lock"
    );
    assert!(
        number_after("API Links:") > 0,
        "no link followed:\n{stdout}"
    );
}
