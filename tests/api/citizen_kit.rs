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
}

pub fn origin() -> Url {
    Url::parse(TEST_ORIGIN).unwrap()
}

impl Citizen {
    /// Registers a new citizen and returns them signed in and unlocked.
    pub async fn register(app: &TestApp, national_id: &str, display_name: &str) -> Self {
        let mut citizen = Self {
            http: app.new_client(),
            base: app.base.clone(),
            authenticator: SoftPasskey::new(true),
            national_id: national_id.to_owned(),
            display_name: display_name.to_owned(),
            passphrase: PASSPHRASE.to_owned(),
            csrf: String::new(),
            citizen_id: String::new(),
            recovery_code: String::new(),
        };
        let credential = citizen.registration_credential().await;
        let done = citizen
            .post(
                "/auth/register/finish",
                json!({ "credential": credential, "passphrase": PASSPHRASE }),
            )
            .await;
        assert_eq!(done.status(), 200, "register/finish");
        let body: Value = done.json().await.unwrap();
        citizen.csrf = body["csrf_token"].as_str().unwrap().to_owned();
        citizen.citizen_id = body["citizen_id"].as_str().unwrap().to_owned();
        citizen.recovery_code = body["recovery_code"].as_str().unwrap().to_owned();
        citizen
    }

    /// Starts registration and has the authenticator answer; returns the credential JSON.
    pub async fn registration_credential(&mut self) -> Value {
        let start = self
            .post(
                "/auth/register/start",
                json!({ "national_id": self.national_id, "display_name": self.display_name }),
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

    /// Signs in with the passkey (the vault stays locked).
    pub async fn login(&mut self) {
        let credential = self.assertion().await;
        let done = self
            .post("/auth/login/finish", json!({ "credential": credential }))
            .await;
        assert_eq!(done.status(), 200, "login/finish");
        let body: Value = done.json().await.unwrap();
        self.csrf = body["csrf_token"].as_str().unwrap().to_owned();
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
