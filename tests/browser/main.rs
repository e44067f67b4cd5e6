//! Browser journeys: a real `custodia serve` process, headless Chromium under chromedriver,
//! passkeys through Chromium's virtual authenticator, in both UI languages and on both
//! storage engines. Screenshots land in `target/screenshots/<lang>/`.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian: `apt-get install chromium
//! chromium-driver`; `.ci/run` installs them), or `CUSTODIA_CHROMIUM` and
//! `CUSTODIA_CHROMEDRIVER` pointing elsewhere. Without them these tests fail, naming what
//! is missing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

#[path = "../common/ids.rs"]
mod ids;

#[path = "../common/eid_provider.rs"]
mod eid_provider;

mod browser;
mod delegations;
mod downloads;
mod eid;
mod emergencies;
mod journeys;
mod keyboard;
mod security;
mod server;

use server::Engine;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn citizen_and_auditor_journeys_in_chinese_on_sqlite() {
    journeys::citizen_and_auditor("zh-CN", Engine::Sqlite, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn citizen_and_auditor_journeys_in_english_on_postgres() {
    journeys::citizen_and_auditor("en", Engine::Postgres, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_and_approval_by_keyboard_alone() {
    keyboard::registration_and_approval("en", Engine::Sqlite, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csp_blocks_injected_script_cookies_are_guarded_and_pages_cannot_be_framed() {
    security::csp_cookies_and_framing("zh-CN", Engine::Sqlite, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_and_sign_in_with_the_national_eid() {
    eid::registration_and_sign_in("en", Engine::Sqlite, 6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_pdf_downloads_whole_through_the_page_and_fetch() {
    downloads::a_large_pdf_downloads_whole("zh-CN", Engine::Sqlite, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegate_is_appointed_accepts_acts_and_is_ended() {
    delegations::appoint_accept_switch_approve_end("zh-CN", Engine::Postgres, 7).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emergency_availability_is_chosen_used_disclosed_and_judged() {
    emergencies::chosen_in_settings_read_disclosed_and_judged("en", Engine::Sqlite, 8).await;
}
