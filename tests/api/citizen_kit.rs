//! A citizen driven through the real HTTP API with a software passkey.

use serde_json::{Value, json};
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};

use crate::helpers::{TEST_ORIGIN, TestApp};

pub const PASSPHRASE: &str = "lantern orchard copper seventeen";

pub struct Citizen {
    pub http: reqwest::Client,
    pub base: String,
    pub authenticator: SoftPasskey,
    pub national_id: String,
    pub display_name: String,
    pub passphrase: String,
    pub csrf: String,
    pub citizen_id: String,
    pub recovery_code: String,
    /// The one-time code registration presents (issued as an operator would).
    pub enrolment_code: Option<String>,
}

/// A fresh enrolment code for `national_id`, issued as `custodia citizen enrol` does.
pub async fn enrolment_code(app: &TestApp, national_id: &str) -> String {
    custodia::citizens::enrol(
        &app.state,
        national_id,
        custodia::citizens::Enroller::Operator,
    )
    .await
    .expect("enrolment code")
    .code
    .to_string()
}

pub fn origin() -> Url {
    Url::parse(TEST_ORIGIN).unwrap()
}

impl Citizen {
    /// Registers a new citizen and returns them signed in and unlocked.
    pub async fn register(app: &TestApp, national_id: &str, display_name: &str) -> Self {
        let code = enrolment_code(app, national_id).await;
        Self::register_at(&app.base, national_id, display_name, &code).await
    }

    /// As [`Citizen::register`], against any server base URL, with an enrolment code.
    pub async fn register_at(
        base: &str,
        national_id: &str,
        display_name: &str,
        enrolment_code: &str,
    ) -> Self {
        let mut citizen = Self::unregistered(base, national_id, display_name, enrolment_code);
        let done = citizen.finish_registration().await;
        assert_eq!(done.status(), 200, "register/finish");
        let body: Value = done.json().await.unwrap();
        citizen.csrf = body["csrf_token"].as_str().unwrap().to_owned();
        citizen.citizen_id = body["citizen_id"].as_str().unwrap().to_owned();
        citizen.recovery_code = body["recovery_code"].as_str().unwrap().to_owned();
        citizen
    }

    /// Someone about to register, with a browser and an authenticator of their own.
    pub fn unregistered(
        base: &str,
        national_id: &str,
        display_name: &str,
        enrolment_code: &str,
    ) -> Self {
        Self {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .build()
                .unwrap(),
            base: base.to_owned(),
            authenticator: SoftPasskey::new(true),
            national_id: national_id.to_owned(),
            display_name: display_name.to_owned(),
            passphrase: PASSPHRASE.to_owned(),
            csrf: String::new(),
            citizen_id: String::new(),
            recovery_code: String::new(),
            enrolment_code: Some(enrolment_code.to_owned()),
        }
    }

    /// Runs the registration ceremony and answers `register/finish`.
    pub async fn finish_registration(&mut self) -> reqwest::Response {
        let credential = self.registration_credential().await;
        self.post(
            "/auth/register/finish",
            json!({ "credential": credential, "passphrase": PASSPHRASE }),
        )
        .await
    }

    /// Another tab of the same browser: the same cookies and CSRF token, for requests sent
    /// at once from several tasks (no ceremonies: it has no passkey of its own).
    pub fn same_browser(&self) -> Self {
        Self {
            http: self.http.clone(),
            base: self.base.clone(),
            authenticator: SoftPasskey::new(true),
            national_id: self.national_id.clone(),
            display_name: self.display_name.clone(),
            passphrase: self.passphrase.clone(),
            csrf: self.csrf.clone(),
            citizen_id: self.citizen_id.clone(),
            recovery_code: self.recovery_code.clone(),
            enrolment_code: None,
        }
    }

    /// The same citizen in another browser (its own cookies), signing in with `authenticator`.
    pub fn in_another_browser(&self, app: &TestApp, authenticator: SoftPasskey) -> Self {
        Self {
            http: app.new_client(),
            base: self.base.clone(),
            authenticator,
            national_id: self.national_id.clone(),
            display_name: self.display_name.clone(),
            passphrase: self.passphrase.clone(),
            csrf: String::new(),
            citizen_id: self.citizen_id.clone(),
            recovery_code: String::new(),
            enrolment_code: None,
        }
    }

    /// Starts registration and has the authenticator answer; returns the credential JSON.
    pub async fn registration_credential(&mut self) -> Value {
        let start = self
            .post(
                "/auth/register/start",
                json!({
                    "national_id": self.national_id,
                    "display_name": self.display_name,
                    "enrolment_code": self.enrolment_code,
                }),
            )
            .await;
        assert_eq!(start.status(), 200, "register/start");
        let options: CreationChallengeResponse = start.json().await.unwrap();
        let credential = self
            .authenticator
            .do_registration(origin(), options)
            .unwrap();
        serde_json::to_value(credential).unwrap()
    }

    /// Starts a sign-in and has the authenticator answer; returns the assertion JSON.
    pub async fn assertion(&mut self) -> Value {
        let start = self
            .post(
                "/auth/login/start",
                json!({ "national_id": self.national_id }),
            )
            .await;
        assert_eq!(start.status(), 200, "login/start");
        let options: RequestChallengeResponse = start.json().await.unwrap();
        let credential = self
            .authenticator
            .do_authentication(origin(), options)
            .unwrap();
        serde_json::to_value(credential).unwrap()
    }

    /// Confirms with the passkey in this session (step-up), for account changes.
    pub async fn step_up(&mut self) -> reqwest::Response {
        let start = self.post("/me/step-up/start", json!({})).await;
        assert_eq!(start.status(), 200, "step-up/start");
        let options: RequestChallengeResponse = start.json().await.unwrap();
        let credential = self
            .authenticator
            .do_authentication(origin(), options)
            .unwrap();
        self.post("/me/step-up/finish", json!({ "credential": credential }))
            .await
    }

    /// Signs in with the passkey (the vault stays locked).
    pub async fn login(&mut self) {
        let done = self.finish_login().await;
        assert_eq!(done.status(), 200, "login/finish");
        let body: Value = done.json().await.unwrap();
        self.csrf = body["csrf_token"].as_str().unwrap().to_owned();
    }

    /// Runs the sign-in ceremony and answers `login/finish`.
    pub async fn finish_login(&mut self) -> reqwest::Response {
        let credential = self.assertion().await;
        self.post("/auth/login/finish", json!({ "credential": credential }))
            .await
    }

    pub async fn unlock(&self, passphrase: &str) -> reqwest::Response {
        self.post("/vault/unlock", json!({ "passphrase": passphrase }))
            .await
    }

    pub async fn me(&self) -> reqwest::Response {
        self.http
            .get(format!("{}/me", self.base))
            .send()
            .await
            .unwrap()
    }

    /// PUT JSON with the CSRF token.
    pub async fn put(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .put(format!("{}{path}", self.base))
            .header("x-csrf-token", &self.csrf)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// POST JSON with the CSRF token.
    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .header("x-csrf-token", &self.csrf)
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

/// The multipart body of a document upload: `type`, `fields` and an optional `file`.
fn document_form(
    doc_type: &str,
    fields: Value,
    file: Option<(&str, Vec<u8>)>,
) -> reqwest::multipart::Form {
    let form = reqwest::multipart::Form::new()
        .text("type", doc_type.to_owned())
        .text("fields", fields.to_string());
    match file {
        Some((name, bytes)) => form.part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()),
        ),
        None => form,
    }
}

/// A PDF-looking file of `len` bytes whose contents include `marker`.
pub fn pdf_bytes(len: usize, marker: &str) -> Vec<u8> {
    let mut bytes = b"%PDF-1.7\n".to_vec();
    bytes.extend_from_slice(marker.as_bytes());
    let mut i: u32 = 0;
    while bytes.len() < len {
        bytes.push((i.wrapping_mul(2654435761) >> 24) as u8);
        i += 1;
    }
    bytes.truncate(len);
    bytes
}

impl Citizen {
    /// Uploads a document as `multipart/form-data` (to `POST /me/documents`, or `PUT` to
    /// replace when `replace` names one).
    pub async fn upload(
        &self,
        replace: Option<&str>,
        doc_type: &str,
        fields: Value,
        file: Option<(&str, Vec<u8>)>,
    ) -> reqwest::Response {
        let form = document_form(doc_type, fields, file);
        let request = match replace {
            None => self.http.post(format!("{}/me/documents", self.base)),
            Some(id) => self.http.put(format!("{}/me/documents/{id}", self.base)),
        };
        request
            .header("x-csrf-token", &self.csrf)
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.http
            .delete(format!("{}{path}", self.base))
            .header("x-csrf-token", &self.csrf)
            .send()
            .await
            .unwrap()
    }
}

impl Citizen {
    /// Stores a business licence for `company` (with `file`, if any); returns its id.
    pub async fn licence(&self, company: &str, file: Option<Vec<u8>>) -> String {
        let r = self
            .upload(
                None,
                "business_license",
                licence_fields(company),
                file.map(|f| ("licence.pdf", f)),
            )
            .await;
        assert_eq!(r.status(), 201, "licence stored");
        let v: Value = r.json().await.unwrap();
        v["id"].as_str().unwrap().to_owned()
    }

    /// Gives `agency_id` a grant (`POST /me/grants` with `body`); returns its id.
    pub async fn grant_to(&self, agency_id: &str, mut body: Value) -> String {
        body["agency_id"] = json!(agency_id);
        let r = self.post("/me/grants", body).await;
        assert_eq!(r.status(), 201, "grant given");
        let v: Value = r.json().await.unwrap();
        v["id"].as_str().unwrap().to_owned()
    }
}

/// Valid fields of a business licence, with a distinctive company name.
pub fn licence_fields(company: &str) -> Value {
    serde_json::json!({
        "company_name": company,
        "unified_social_credit_code": "91110105MA01ABCD2X",
        "legal_representative": "张伟",
        "company_type": "有限责任公司",
        "business_scope": "技术开发、技术咨询",
        "established_on": "2019-03-15",
        "registered_address": "北京市朝阳区建国路1号",
    })
}

/// Requests a delegate sends for her principal (`X-Acting-For`).
impl Citizen {
    pub async fn get_for(&self, principal: &str, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .header("x-acting-for", principal)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_for(&self, principal: &str, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .header("x-acting-for", principal)
            .header("x-csrf-token", &self.csrf)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete_for(&self, principal: &str, path: &str) -> reqwest::Response {
        self.http
            .delete(format!("{}{path}", self.base))
            .header("x-acting-for", principal)
            .header("x-csrf-token", &self.csrf)
            .send()
            .await
            .unwrap()
    }

    /// Stores a document for the principal (multipart, as [`Citizen::upload`]).
    pub async fn upload_for(
        &self,
        principal: &str,
        doc_type: &str,
        fields: Value,
        file: Option<(&str, Vec<u8>)>,
    ) -> reqwest::Response {
        let form = document_form(doc_type, fields, file);
        self.http
            .post(format!("{}/me/documents", self.base))
            .header("x-acting-for", principal)
            .header("x-csrf-token", &self.csrf)
            .multipart(form)
            .send()
            .await
            .unwrap()
    }
}
