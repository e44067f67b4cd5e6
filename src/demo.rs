//! `custodia demo`: the whole story, end to end, against a real server on a free port with
//! a throw-away data directory, through the real HTTP API — a software passkey for the
//! citizen and the auditor, the typed client for the agencies. Every step is narrated in
//! one line and checked; the command fails if any step does not behave as stated, so CI
//! runs it as a smoke test. `--keep` leaves the server running with the demo data.

// The story reads JSON answers with `value["key"]`, which yields `null` for anything
// missing (it never panics on reads); every such value is then checked with `context`.
#![allow(clippy::indexing_slicing)]

use std::io::IsTerminal;

use anyhow::{Context as _, anyhow, bail, ensure};
use serde_json::{Value, json};
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::{CreationChallengeResponse, Url};

use crate::agencies::{self, Level, NewAgency};
use crate::client::{AccessRequest, AgencyClient, ClientError, sign_deposit};
use crate::config::Config;
use crate::server::Server;

/// The demo citizen's national ID (a valid GB 11643 number).
const NATIONAL_ID: &str = "110105198001010016";
const PASSPHRASE: &str = "lantern orchard copper seventeen";

struct Narrator {
    colour: bool,
    step: u32,
}

impl Narrator {
    fn ok(&mut self, line: &str) {
        self.step += 1;
        if self.colour {
            println!("\x1b[32m✓\x1b[0m \x1b[1m{:>2}.\x1b[0m {line}", self.step);
        } else {
            println!("ok {:>2}. {line}", self.step);
        }
    }

    fn detail(&self, line: &str) {
        if self.colour {
            println!("      \x1b[2m{line}\x1b[0m");
        } else {
            println!("      {line}");
        }
    }
}

/// A browser-like HTTP session for the citizen (cookies, CSRF token).
struct Browser {
    http: reqwest::Client,
    base: String,
    csrf: String,
}

impl Browser {
    fn new(base: &str) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder().cookie_store(true).build()?,
            base: base.to_owned(),
            csrf: String::new(),
        })
    }

    async fn send(&self, r: reqwest::RequestBuilder, want: u16) -> anyhow::Result<Value> {
        let r = r.header("x-csrf-token", &self.csrf).send().await?;
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        ensure!(status == want, "expected {want}, got {status}: {body}");
        Ok(body)
    }

    async fn post(&self, path: &str, body: Value, want: u16) -> anyhow::Result<Value> {
        self.send(
            self.http.post(format!("{}{path}", self.base)).json(&body),
            want,
        )
        .await
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base)), 200)
            .await
    }
}

fn pdf(marker: &str) -> Vec<u8> {
    let mut bytes = format!("%PDF-1.7\n% {marker}\n").into_bytes();
    bytes.extend(std::iter::repeat_n(b'.', 4096));
    bytes.extend_from_slice(b"\n%%EOF\n");
    bytes
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Runs the demo. With `keep`, the server stays up (until Ctrl-C) with the demo data.
pub async fn run(keep: bool) -> anyhow::Result<()> {
    let mut n = Narrator {
        colour: std::io::stdout().is_terminal(),
        step: 0,
    };
    let dir = tempfile::Builder::new()
        .prefix("custodia-demo-")
        .tempdir()?;
    let port = free_port()?;
    let origin = format!("http://localhost:{port}");
    let base = format!("http://127.0.0.1:{port}");
    let data = dir.path().to_path_buf();
    let config = Config::from_lookup(|name| match name {
        "CUSTODIA_DATA_DIR" => Some(data.display().to_string()),
        "CUSTODIA_LISTEN" => Some(format!("127.0.0.1:{port}")),
        "CUSTODIA_PUBLIC_URL" => Some(origin.clone()),
        _ => None,
    })
    .map_err(|e| anyhow!("{e}"))?;
    let server = Server::build(config).await.map_err(|e| anyhow!("{e}"))?;
    let state = server.state().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run_until(async {
        stopped.await.ok();
    }));
    n.ok(&format!(
        "Custodia is running at {origin} on a throw-away SQLite database in {}",
        dir.path().display()
    ));

    let result = story(&mut n, &state, &base, &origin).await;
    match result {
        Ok(agency_key) if keep => {
            let link = crate::auditors::invite(&state, "Demo Auditor (browser)").await?;
            println!();
            println!("The demo server keeps running with its data. Try it:");
            println!(
                "  citizen (browser):  {origin}/register   (register your own citizen; the demo one uses a software passkey)"
            );
            println!(
                "  agency (curl):      curl -H 'Authorization: Bearer {}' {base}/api/v1/grants",
                agency_key.as_str()
            );
            println!("  auditor (browser):  {link}");
            println!("  API reference:      {origin}/api/v1/docs");
            println!("Press Ctrl-C to stop; the data directory is removed then.");
            crate::server::shutdown_signal().await;
        }
        Ok(_) => {}
        Err(e) => {
            let _ = stop.send(());
            let _ = serving.await;
            return Err(e.context(format!("step {} did not behave as stated", n.step + 1)));
        }
    }
    let _ = stop.send(());
    serving.await??;
    println!("\nAll {} steps behaved as stated.", n.step);
    Ok(())
}

async fn story(
    n: &mut Narrator,
    state: &crate::http::AppState,
    base: &str,
    origin: &str,
) -> anyhow::Result<zeroize::Zeroizing<String>> {
    // The cast: a consumer agency and an issuing one.
    let consumer = agencies::create(
        state,
        &NewAgency {
            name: "北京市市场监督管理局",
            level: Level::Provincial,
            issuer: false,
            issuer_key: None,
            issuer_types: &[],
            enroller: false,
            guardianship_authority: false,
            emergency: false,
        },
    )
    .await?;
    let issuer_key = custodia_crypto::sign::SigningKey::generate();
    let issuer_public = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        issuer_key.verifying_key().to_bytes(),
    );
    let issuer = agencies::create(
        state,
        &NewAgency {
            name: "国家税务总局北京市税务局",
            level: Level::Provincial,
            issuer: true,
            issuer_key: Some(&issuer_public),
            issuer_types: &["tax_clearance".to_owned()],
            enroller: false,
            guardianship_authority: false,
            emergency: false,
        },
    )
    .await?;
    let hall = agencies::create(
        state,
        &NewAgency {
            name: "北京市政务服务中心",
            level: Level::Provincial,
            issuer: false,
            issuer_key: None,
            issuer_types: &[],
            enroller: true,
            guardianship_authority: false,
            emergency: false,
        },
    )
    .await?;
    n.ok("Three agencies exist: a market regulator (reads), a tax bureau (issues documents) and a service hall (enrols citizens)");

    // 1. The citizen proves who she is at the service hall, registers with a passkey and
    //    the hall's one-time code, and saves the recovery code.
    let code = AgencyClient::new(base, &hall.api_key)?
        .enrolment_code(NATIONAL_ID)
        .await?;
    n.ok("At the service hall an officer checks the citizen's ID card and hands her a one-time enrolment code");
    n.detail(&format!(
        "code {}… (valid 14 days, for this national ID only; `custodia citizen enrol` issues one too)",
        code.get(..4).unwrap_or_default()
    ));
    let origin_url = Url::parse(origin)?;
    let mut passkey = SoftPasskey::new(true);
    let mut citizen = Browser::new(base)?;
    let options: CreationChallengeResponse = serde_json::from_value(
        citizen
            .post(
                "/auth/register/start",
                json!({ "national_id": NATIONAL_ID, "display_name": "张伟", "enrolment_code": code }),
                200,
            )
            .await?,
    )?;
    let credential = passkey
        .do_registration(origin_url.clone(), options)
        .map_err(|e| anyhow!("software passkey: {e:?}"))?;
    let done = citizen
        .post(
            "/auth/register/finish",
            json!({ "credential": credential, "passphrase": PASSPHRASE }),
            200,
        )
        .await?;
    citizen.csrf = done["csrf_token"]
        .as_str()
        .context("csrf_token")?
        .to_owned();
    let recovery = done["recovery_code"].as_str().context("recovery_code")?;
    n.ok("A citizen registers with a passkey and a vault passphrase, and saves a recovery code");
    n.detail(&format!(
        "recovery code {}… (shown once; it can reset the passphrase)",
        recovery.get(..9).unwrap_or_default()
    ));

    // 2. Uploads a business licence with a PDF.
    let form = reqwest::multipart::Form::new()
        .text("type", "business_license")
        .text(
            "fields",
            json!({
                "company_name": "北京示例科技有限公司",
                "unified_social_credit_code": "91110105MA01ABCD2X",
                "legal_representative": "张伟",
                "company_type": "有限责任公司",
                "business_scope": "技术开发、技术咨询",
                "established_on": "2019-03-15",
                "registered_address": "北京市朝阳区建国路1号",
            })
            .to_string(),
        )
        .part(
            "file",
            reqwest::multipart::Part::bytes(pdf("business licence")).file_name("营业执照.pdf"),
        );
    let stored = citizen
        .send(
            citizen
                .http
                .post(format!("{base}/me/documents"))
                .multipart(form),
            201,
        )
        .await?;
    let licence = stored["id"].as_str().context("id")?.to_owned();
    n.ok("The citizen uploads a business licence with its PDF — encrypted under a key only their vault opens");

    // 3. The tax bureau deposits a signed tax clearance while the citizen is away.
    let bureau = AgencyClient::new(base, &issuer.api_key)?;
    let deposit = sign_deposit(
        &issuer_key,
        json!({
            "national_id": NATIONAL_ID,
            "type": "tax_clearance",
            "fields": {
                "taxpayer_name": "北京示例科技有限公司",
                "taxpayer_id": "91110105MA01ABCD2X",
                "period_from": "2025-01-01",
                "period_to": "2025-12-31",
                "tax_bureau": "国家税务总局北京市税务局",
                "certificate_number": "京税证〔2026〕0042",
            },
            "issued_at": "2026-01-15T09:00:00Z",
            "expires_at": "2027-01-15T09:00:00Z",
        }),
    )?;
    let accepted = bureau.deposit(&deposit, None).await?;
    ensure!(accepted.status == "accepted", "deposit not accepted");
    let docs = citizen.get("/me/documents").await?;
    let deposited = docs["documents"]
        .as_array()
        .context("documents")?
        .iter()
        .find(|d| d["type"] == "tax_clearance")
        .context("the deposited clearance is in the citizen's documents")?;
    ensure!(deposited["issuer_name"] == "国家税务总局北京市税务局");
    let opened = citizen
        .get(&format!(
            "/me/documents/{}",
            deposited["id"].as_str().unwrap_or_default()
        ))
        .await?;
    ensure!(opened["issuer"]["trust"] == "valid", "issuer signature");
    ensure!(
        deposited["status"] == "received",
        "a deposit waits to be accepted"
    );
    let taken = citizen
        .post(
            &format!(
                "/me/documents/{}/accept",
                deposited["id"].as_str().unwrap_or_default()
            ),
            json!({}),
            200,
        )
        .await?;
    ensure!(
        taken["status"] == "accepted",
        "the citizen accepts the deposit"
    );
    n.ok("The tax bureau deposits a signed tax clearance, sealed to the citizen; they see it with a verified badge and accept it");

    // 4. The regulator asks for both, for business registration.
    let regulator =
        AgencyClient::new(base, &consumer.api_key)?.acting_as("officer-7", "JSJ-2026-0815");
    let asked = regulator
        .request_access(&AccessRequest {
            national_id: NATIONAL_ID.into(),
            document_types: vec!["business_license".into(), "tax_clearance".into()],
            tier: "fields".into(),
            fields: vec![
                "company_name".into(),
                "business_scope".into(),
                "taxpayer_name".into(),
                "period_to".into(),
            ],
            purpose_code: "business_registration".into(),
            purpose: "企业设立登记：核验营业执照与完税情况".into(),
            legal_basis: Some("《市场主体登记管理条例》第十六条".into()),
            duration_days: 30,
            retention_days: 90,
        })
        .await?;
    ensure!(asked.status == "pending");
    n.ok("The regulator asks the citizen (by national ID) for both, for business_registration, at the fields tier");

    // 5. The citizen previews and approves, narrowed to 7 days.
    let preview = citizen
        .get(&format!("/me/requests/{}/preview", asked.id))
        .await?;
    let items = preview.as_array().context("preview")?;
    ensure!(items.len() == 2, "the preview shows both documents");
    ensure!(
        items.iter().all(|i| i["fields"]
            .as_object()
            .is_some_and(|f| !f.contains_key("legal_representative"))),
        "the preview shows only the asked fields"
    );
    let grant = citizen
        .post(
            &format!("/me/requests/{}/approve", asked.id),
            json!({ "duration_days": 7 }),
            201,
        )
        .await?;
    let grant_id: uuid::Uuid = grant["id"].as_str().context("grant id")?.parse()?;
    n.ok(
        "The citizen previews exactly what would be shared and approves, for 7 days instead of 30",
    );

    // 6. The regulator reads, naming officer and case.
    let status = regulator.request_status(asked.id).await?;
    ensure!(status.grant_id == Some(grant_id));
    let covered = regulator.documents(grant_id).await?;
    ensure!(covered.len() == 2, "the grant covers both documents");
    for d in &covered {
        let read = regulator.read(grant_id, d.id, None).await?;
        let fields = read["fields"].as_object().context("fields")?;
        ensure!(
            !fields.contains_key("legal_representative") && !fields.is_empty(),
            "only granted fields are disclosed"
        );
        if d.doc_type == "tax_clearance" {
            ensure!(read["issuer_signature"] == "valid");
        }
    }
    match regulator.read_file(grant_id, licence.parse()?).await {
        Err(ClientError::Problem { status: 403, .. }) => {}
        other => bail!("the file must be refused at the fields tier, got {other:?}"),
    }
    n.ok("The regulator reads both, officer and case named, and receives only the granted fields (the PDF is refused)");

    // 7. The citizen sees the reads.
    let trail = citizen.get("/me/activity?action=reads").await?;
    let reads = trail["events"].as_array().context("events")?;
    ensure!(
        reads.iter().filter(|e| e["outcome"] == "ok").count() == 2
            && reads.iter().all(|e| e["officer_id"] == "officer-7"),
        "the trail shows both reads with the officer"
    );
    n.ok("The citizen's trail shows each read: agency, officer, case, tier, fields, purpose");

    // 8. Revocation; the regulator is refused.
    citizen
        .post(&format!("/me/grants/{grant_id}/revoke"), json!({}), 200)
        .await?;
    let first = covered.first().context("a covered document")?;
    let refusal = match regulator.read(grant_id, first.id, None).await {
        Err(ClientError::Problem {
            status: 403,
            detail,
            ..
        }) => detail,
        other => bail!("a read after revocation must be refused, got {other:?}"),
    };
    n.ok("The citizen revokes the grant; the regulator's next read is refused at once");
    n.detail(&format!("403: {refusal}"));

    // 9. An auditor enrols and verifies the chain.
    let link = crate::auditors::invite(state, "Demo Auditor").await?;
    let token = link.split("token=").nth(1).context("token")?;
    let auditor = Browser::new(base)?;
    let options: CreationChallengeResponse = serde_json::from_value(
        auditor
            .post("/audit/auth/enrol/start", json!({ "token": token }), 200)
            .await?,
    )?;
    let mut auditor_passkey = SoftPasskey::new(true);
    let credential = auditor_passkey
        .do_registration(origin_url, options)
        .map_err(|e| anyhow!("software passkey: {e:?}"))?;
    let mut auditor = auditor;
    let done = auditor
        .post(
            "/audit/auth/enrol/finish",
            json!({ "credential": credential }),
            200,
        )
        .await?;
    auditor.csrf = done["csrf_token"].as_str().context("csrf")?.to_owned();
    let verified = auditor.get("/api/v1/audit/verify").await?;
    ensure!(verified["intact"] == true, "the chain verifies: {verified}");
    n.ok(&format!(
        "An auditor enrols from a one-time link and verifies the audit chain: intact, {} events",
        verified["summary"]["events"]
    ));
    Ok(consumer.api_key)
}
