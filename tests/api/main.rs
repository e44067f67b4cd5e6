//! Integration tests: the real server on a free port, over real HTTP, against a fresh
//! SQLite file or a fresh PostgreSQL database per test. All compile into one binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

#[path = "../common/ids.rs"]
mod ids;

#[path = "../common/eid_provider.rs"]
mod eid_provider;
#[path = "../common/s3_server.rs"]
mod s3_server;

mod helpers;

mod activity;
mod agencies;
mod agency_api;
mod agency_kit;
mod attacks;
mod audit;
mod auditors;
mod backup;
mod binary;
mod citizen_kit;
mod citizens;
mod cluster;
mod delegations;
mod documents;
mod downloads;
mod eid;
mod emergencies;
mod enrolment;
mod errors;
mod generated_client;
mod grants;
mod hardening;
mod health;
mod incremental;
mod issuers;
mod keys;
mod metrics;
mod openapi;
mod oversight;
mod requests;
mod schemathesis;
mod step_up;
mod storage;
mod transparency;
mod web;
mod webhooks;
mod witnesses;
