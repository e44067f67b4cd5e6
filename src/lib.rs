//! Custodia: a citizen data vault with consent.
//!
//! Layers, top to bottom (arrows point down only):
//! * [`http`] — the HTTP API and web pages: thin handlers, one problem+json error type.
//! * domain modules, one per noun ([`citizens`], [`sessions`], ...) — the rules, run in a
//!   [`context::Context`].
//! * [`store`] — SQLite and PostgreSQL behind one interface, and the blob store.
//! * `custodia_crypto` — all cryptography, no I/O.
//!
//! [`config`], [`clock`] and [`keyring`] are shared plumbing; [`server`] wires it together
//! and [`cli`] is the `custodia` command.
#![forbid(unsafe_code)]
// Library code returns errors instead of panicking: no indexing that can go out of
// bounds, no `panic!` (and, from the workspace lints, no `unwrap`/`expect`).
#![deny(clippy::indexing_slicing, clippy::panic)]
#![cfg_attr(test, allow(clippy::indexing_slicing, clippy::panic))]

pub mod activity;
pub mod agencies;
pub mod audit;
pub mod auditors;
pub mod backup;
pub mod catalog;
pub mod citizens;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod context;
pub mod delegations;
pub mod demo;
pub mod documents;
pub mod eid;
pub mod emergencies;
pub mod error;
pub mod grants;
pub mod http;
pub mod ids;
pub mod keyring;
pub mod passkeys;
pub mod ratelimit;
pub mod requests;
pub mod sealing;
pub mod server;
pub mod sessions;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod transparency;
pub mod webhooks;
pub mod witness;
