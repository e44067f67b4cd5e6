//! The `custodia` command (SPEC §4).
//!
//! Exit codes: 0 success; 1 runtime failure; 2 unusable configuration or usage.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::server::{self, Server, StartError};
use crate::store::Store;

/// Custodia: a citizen data vault with consent.
#[derive(Debug, Parser)]
#[command(name = "custodia", version, about, after_help = settings_help())]
struct Cli {
    /// A TOML file with any of the settings below (lower case, without the prefix, e.g.
    /// `listen = "0.0.0.0:8080"`); environment variables override it.
    #[arg(long, global = true, env = "CUSTODIA_CONFIG", value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

fn settings_help() -> String {
    let mut out = String::from("Settings (environment variable, default, meaning):\n");
    for (name, default, meaning) in crate::config::SETTINGS {
        out.push_str(&format!("  {name:<28} {default:<34} {meaning}\n"));
    }
    out.push_str("  RUST_LOG                     info                               log filter\n");
    out.push_str("\nExit codes: 0 success, 1 runtime failure, 2 configuration or usage, 3 audit chain does not verify.");
    out
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (embedded default: SQLite and files under ./custodia-data,
    /// listening on 127.0.0.1:8080).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Take a consistent backup (database, blobs, keys) into a new directory, online.
    Backup {
        /// The directory to create (must not exist or be empty).
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Play the whole story against a throw-away server, narrating and checking each step.
    Demo {
        /// Keep the server running with the demo data afterwards.
        #[arg(long)]
        keep: bool,
    },
    /// Manage agencies.
    #[command(subcommand)]
    Agency(AgencyCommand),
    /// Verify or export the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Manage auditors.
    #[command(subcommand)]
    Auditor(AuditorCommand),
    /// Enrol citizens.
    #[command(subcommand)]
    Citizen(CitizenCommand),
    /// Rotate keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Witness another server's audit log.
    #[command(subcommand)]
    Witness(WitnessCommand),
}

#[derive(Debug, Subcommand)]
enum WitnessCommand {
    /// Run a witness (C2SP tlog-witness): cosigns a log's checkpoints only when each
    /// extends the last one it cosigned. Prints its verifier key (for the log's
    /// CUSTODIA_WITNESSES) when it starts; creates its key on first start.
    Serve {
        /// Address to listen on.
        #[arg(
            long,
            env = "CUSTODIA_WITNESS_LISTEN",
            default_value = "127.0.0.1:7001"
        )]
        listen: std::net::SocketAddr,
        /// Where its key and state live.
        #[arg(
            long,
            env = "CUSTODIA_WITNESS_DATA_DIR",
            default_value = "./custodia-witness"
        )]
        data_dir: PathBuf,
        /// Its name in cosignatures (default: <host name>/witness).
        #[arg(long, env = "CUSTODIA_WITNESS_NAME")]
        name: Option<String>,
        /// A log to witness: its verifier key, as /api/v1/audit/checkpoint shows
        /// `verifier_key`. Repeatable, or comma-separated in the variable. Without any, each
        /// log's key is trusted on first use.
        #[arg(long = "log", env = "CUSTODIA_WITNESS_LOGS", value_delimiter = ',')]
        logs: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Re-wrap every service key under a new master key while servers run; resumable.
    RotateMaster {
        /// Only make the next master key file (`master.key.next`) and print its fingerprint,
        /// to copy to every node before the rotation (docs/DEPLOYMENT.md).
        #[arg(long)]
        prepare: bool,
    },
    /// A new Ed25519 signing key for checkpoints and receipts; old ones stay published.
    RotateSigning,
}

#[derive(Debug, Subcommand)]
enum CitizenCommand {
    /// Print a one-time enrolment code (valid 14 days) that registration with this national
    /// ID requires; it supersedes any earlier code, and re-enrols a citizen who lost every
    /// passkey.
    Enrol {
        /// The citizen's national ID number (18 characters), as checked on their ID card.
        #[arg(long)]
        national_id: String,
    },
}

#[derive(Debug, Subcommand)]
enum AuditorCommand {
    /// Print a one-time enrolment link (valid 72 hours) for a new auditor.
    Invite {
        /// The auditor's name (they sign in with it).
        #[arg(long)]
        name: String,
    },
    /// End an auditor's access: every session ends now and no new one opens.
    Disable {
        /// The auditor's id (in the trail of their enrolment, `auditor.enrol`).
        id: crate::ids::AuditorId,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verify the whole chain, its Merkle tree and its signed checkpoints against the
    /// pinned keys (the key directory beside the key files, and any --trusted-key). Exit 0
    /// when intact; exit 3 naming the first bad sequence number when not.
    Verify {
        /// Also trust this signing key (64 hex digits or base64url), e.g. one published
        /// before a rotation. Repeatable.
        // A base64url key may begin with `-`: it is a value, not an option.
        #[arg(long = "trusted-key", value_name = "KEY", allow_hyphen_values = true)]
        trusted_keys: Vec<String>,
        /// Verify only the events added since the checkpoint the last successful verify
        /// kept (in FILE, default `<data dir>/audit-verified`): the trail must still hold
        /// it, and a consistency proof must lead from it to the newest checkpoint. Every
        /// successful verify keeps its newest checkpoint there.
        #[arg(long = "from-checkpoint", value_name = "FILE", num_args = 0..=1)]
        from_checkpoint: Option<Option<PathBuf>>,
    },
    /// Check a citizen's proof bundle (downloaded from /me/activity/proofs) offline: its
    /// checkpoint must be signed by a pinned key (or a --trusted-key) and every event's
    /// inclusion proof must hold. Exit 0 when all do; exit 3 naming the first that does not.
    VerifyProof {
        /// The bundle (JSON).
        file: PathBuf,
        /// Trust this signing key (64 hex digits or base64url, as
        /// /api/v1/audit/public-key shows it). Repeatable.
        // A base64url key may begin with `-`: it is a value, not an option.
        #[arg(long = "trusted-key", value_name = "KEY", allow_hyphen_values = true)]
        trusted_keys: Vec<String>,
    },
    /// Sign a checkpoint of the trail now (servers sign on their own within a minute of
    /// any event, and every 1,000 events); prints its size.
    Checkpoint,
    /// Create the oversight key pair: the private half is written to FILE (a new file, mode
    /// 0600) for the oversight office to keep off the server; national IDs are sealed to
    /// the public half from now on, and any still in the old escrow are moved to it.
    OversightKey {
        /// Where to write the private key (must not exist).
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Reveal the national ID behind a pseudonym with the oversight office's private key,
    /// for a written case reason; recorded in the trail before it is printed.
    Reveal {
        /// The oversight private key file (from `audit oversight-key`).
        #[arg(long)]
        key: std::path::PathBuf,
        /// The citizen's pseudonym (`p-…`).
        #[arg(long)]
        pseudonym: String,
        /// The case reason (10 to 1000 characters).
        #[arg(long)]
        reason: String,
    },
    /// Export events as CSV or JSON lines on standard output.
    Export {
        /// Only events at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Only events before this time (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// `csv` or `jsonl`.
        #[arg(long, default_value = "jsonl")]
        format: String,
    },
}

mod audit;
use audit::{ChainBroken, ProofBroken, audit_export, audit_verify, audit_verify_proof};

#[derive(Debug, Subcommand)]
enum WebhookCommand {
    /// Add an endpoint for the agency's events (https:// at a public address); prints its id.
    Add {
        /// The agency's id.
        id: crate::ids::AgencyId,
        /// Where events are POSTed.
        url: String,
    },
}

#[derive(Debug, Subcommand)]
enum AgencyCommand {
    /// Create an agency; prints its id and an API key, once.
    Create {
        /// The agency's name.
        #[arg(long)]
        name: String,
        /// Level of government: national, provincial, municipal or county.
        #[arg(long)]
        level: String,
        /// The agency also deposits signed documents.
        #[arg(long)]
        issuer: bool,
        /// The issuer's Ed25519 public key, base64url (with --issuer).
        // A base64url key may begin with `-`: it is a value, not an option.
        #[arg(long, requires = "issuer", allow_hyphen_values = true)]
        issuer_key: Option<String>,
        /// The document types the issuer may deposit, comma-separated catalog ids (with
        /// --issuer). An issuer without types deposits nothing until set-issuer-types.
        #[arg(long, requires = "issuer", value_delimiter = ',')]
        issuer_types: Vec<String>,
        /// The agency identifies citizens in person and issues their enrolment codes
        /// (a service hall), through `POST /api/v1/enrolment-codes`.
        #[arg(long)]
        enroller: bool,
        /// It declares guardianships (a court or civil-affairs office), through
        /// `POST /api/v1/guardianships`.
        #[arg(long)]
        guardianship_authority: bool,
        /// It may break the glass: emergency reads of the document types citizens have
        /// made emergency-available, through `POST /api/v1/emergency-access` (provincial
        /// level or above).
        #[arg(long)]
        emergency: bool,
    },
    /// Issue a new API key (printed once); the old key stops at once, or after --overlap.
    RotateKey {
        /// The agency's id.
        id: crate::ids::AgencyId,
        /// Seconds the old key keeps working (at most 86400).
        #[arg(long, default_value_t = 0)]
        overlap: u64,
    },
    /// The agency's webhook endpoints (signed events; SPEC §6).
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Disable an agency: its keys are refused at once.
    Disable {
        /// The agency's id.
        id: crate::ids::AgencyId,
    },
    /// Register an issuer's Ed25519 public key (base64url), making the agency an issuer.
    SetIssuerKey {
        /// The agency's id.
        id: crate::ids::AgencyId,
        /// The public key, base64url.
        // A base64url key may begin with `-`: it is a value, not an option.
        #[arg(allow_hyphen_values = true)]
        key: String,
    },
    /// Set the document types an issuer may deposit (replaces the list it had).
    SetIssuerTypes {
        /// The agency's id.
        id: crate::ids::AgencyId,
        /// Catalog type ids, comma-separated (an empty string: none).
        types: String,
    },
    /// Revoke an issuer key as compromised: it signs no more deposits, and `verify` reads
    /// report every deposit received under it since --compromised-since as untrusted.
    RevokeIssuerKey {
        /// The agency's id.
        id: crate::ids::AgencyId,
        /// Since when the key may have been in other hands (RFC 3339, not in the future).
        #[arg(long)]
        compromised_since: String,
        /// The key to revoke, base64url (default: the current key).
        // A base64url key may begin with `-`: it is a value, not an option.
        #[arg(long, allow_hyphen_values = true)]
        key: Option<String>,
    },
}

/// Parses the command line, runs the command and maps failures to exit codes.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Demo { .. } => crate::telemetry::init_with_default("warn"),
        _ => crate::telemetry::init(),
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("custodia: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("custodia: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve => serve(config).await,
            Command::Migrate => migrate(config).await,
            Command::Witness(WitnessCommand::Serve {
                listen,
                data_dir,
                name,
                logs,
            }) => {
                let options = crate::witness::Options {
                    listen,
                    data_dir,
                    name,
                    logs,
                };
                crate::witness::serve(options, server::shutdown_signal()).await
            }
            Command::Demo { keep } => crate::demo::run(keep).await,
            Command::Backup { out } => {
                let written = crate::backup::run(&config, &out).await?;
                println!("database: {}", written.database.display());
                println!("blobs:    {} copied", written.blobs);
                for k in &written.keys {
                    println!("key:      {}", k.display());
                }
                eprintln!("custodia: backup complete; it holds the keys — store it as carefully as the live data directory.");
                Ok(())
            }
            Command::Agency(AgencyCommand::Create {
                name,
                level,
                issuer,
                issuer_key,
                issuer_types,
                enroller,
                guardianship_authority,
                emergency,
            }) => {
                agency_create(
                    config,
                    &name,
                    &level,
                    (issuer, issuer_key.as_deref(), &issuer_types),
                    (enroller, guardianship_authority, emergency),
                )
                .await
            }
            Command::Audit(AuditCommand::Verify {
                trusted_keys,
                from_checkpoint,
            }) => audit_verify(config, &trusted_keys, from_checkpoint).await,
            Command::Audit(AuditCommand::Checkpoint) => {
                with_context(config, |ctx| async move {
                    let signer = ctx.log_signer()?;
                    match crate::audit::checkpoint_now(&ctx.store, &signer, ctx.clock.now_ms())
                        .await?
                    {
                        Some(size) => println!("checkpoint signed at {size} events"),
                        None => println!("no events since the last checkpoint; nothing to sign"),
                    }
                    Ok(())
                })
                .await
            }
            Command::Audit(AuditCommand::VerifyProof { file, trusted_keys }) => {
                audit_verify_proof(&config, &file, &trusted_keys)
            }
            Command::Keys(KeysCommand::RotateMaster { prepare: true }) => {
                let next = crate::keyring::prepare_next_master(&config.master_key_file)?;
                println!(
                    "next master key {next} is in {}; copy it to every node, restart each until its /readyz lists {next}, then run `custodia keys rotate-master` on one node",
                    crate::keyring::next_master_file(&config.master_key_file).display()
                );
                Ok(())
            }
            Command::Keys(KeysCommand::RotateMaster { prepare: false }) => {
                with_context(config, |ctx| async move {
                    let record = crate::audit::operator_record(crate::audit::Action::KeysRotateMaster);
                    let done = crate::keyring::rotate_master(
                        &ctx.store,
                        &ctx.config.master_key_file,
                        ctx.clock.now_ms(),
                        &record,
                    )
                    .await
                    .map_err(|e| crate::error::Error::Internal(e.into()))?;
                    ctx.audit.flush().await;
                    println!(
                        "master key rotated: {} → {} ({} service keys re-wrapped); the old key is retired",
                        done.old_id, done.new_id, done.rewrapped
                    );
                    Ok(())
                })
                .await
            }
            Command::Keys(KeysCommand::RotateSigning) => {
                with_context(config, |ctx| async move {
                    let record = crate::audit::operator_record(crate::audit::Action::KeysRotateSigning);
                    let id = crate::keyring::rotate_signing(
                        &ctx.store,
                        &ctx.config.signing_key_file(),
                        ctx.clock.now_ms(),
                        &record,
                    )
                    .await
                    .map_err(|e| crate::error::Error::Internal(e.into()))?;
                    ctx.audit.flush().await;
                    println!("signing key rotated: new key {id}; restart servers to sign with it (old checkpoints and receipts stay verifiable)");
                    Ok(())
                })
                .await
            }
            Command::Auditor(AuditorCommand::Invite { name }) => {
                with_context(config, |ctx| async move {
                    let link = crate::auditors::invite(&ctx, &name).await?;
                    println!("{link}");
                    eprintln!(
                        "custodia: give this link to {name} only; it enrols one passkey and expires in {} hours.",
                        crate::auditors::INVITE_HOURS
                    );
                    Ok(())
                })
                .await
            }
            Command::Auditor(AuditorCommand::Disable { id }) => {
                with_context(config, |ctx| async move {
                    crate::auditors::disable(&ctx, id).await?;
                    println!("auditor {id} disabled: every session ended");
                    Ok(())
                })
                .await
            }
            Command::Audit(AuditCommand::OversightKey { out }) => {
                with_context(config, |ctx| async move {
                    let key = crate::auditors::create_oversight_key(&ctx, &out).await?;
                    println!("oversight key: {}", key.id);
                    eprintln!(
                        "custodia: the private key is in {}; move it off this server to the oversight \
                         office now. National IDs are sealed to it from now on ({} moved from the old \
                         escrow); without it nobody can reveal them.",
                        out.display(),
                        key.moved
                    );
                    Ok(())
                })
                .await
            }
            Command::Audit(AuditCommand::Reveal {
                key,
                pseudonym,
                reason,
            }) => {
                with_context(config, |ctx| async move {
                    let id =
                        crate::auditors::reveal_with_key(&ctx, &key, &pseudonym, &reason).await?;
                    println!("{id}");
                    Ok(())
                })
                .await
            }
            Command::Citizen(CitizenCommand::Enrol { national_id }) => {
                with_context(config, |ctx| async move {
                    let issued = crate::citizens::enrol(
                        &ctx,
                        &national_id,
                        crate::citizens::Enroller::Operator,
                    )
                    .await?;
                    println!("{}", issued.code.as_str());
                    let until = crate::clock::rfc3339(issued.expires_at_ms);
                    eprintln!(
                        "custodia: hand this code to the citizen only (letter, counter, text message); \
                         it registers this national ID once and expires at {until}. Any earlier code \
                         for this ID no longer works."
                    );
                    Ok(())
                })
                .await
            }
            Command::Audit(AuditCommand::Export {
                since,
                until,
                format,
            }) => audit_export(config, since.as_deref(), until.as_deref(), &format).await,
            Command::Agency(AgencyCommand::RotateKey { id, overlap }) => {
                with_context(config, |ctx| async move {
                    let key = crate::agencies::rotate_key(
                        &ctx,
                        id,
                        std::time::Duration::from_secs(overlap),
                    )
                    .await?;
                    println!("api key:   {}", key.as_str());
                    eprintln!("custodia: the new API key is shown only now; store it safely.");
                    Ok(())
                })
                .await
            }
            Command::Agency(AgencyCommand::Webhook(WebhookCommand::Add { id, url })) => {
                with_context(config, |ctx| async move {
                    let agency = ctx.store.agency(id).await?;
                    let added = crate::webhooks::add(
                        &ctx,
                        &agency,
                        &crate::webhooks::NewWebhook { url },
                        crate::webhooks::AddedBy::Operator,
                    )
                    .await?;
                    println!("webhook id: {}", added.id);
                    eprintln!("custodia: events for agency {id} go to {}.", added.url);
                    Ok(())
                })
                .await
            }
            Command::Agency(AgencyCommand::Disable { id }) => {
                with_context(config, |ctx| async move {
                    crate::agencies::disable(&ctx, id).await?;
                    eprintln!("custodia: agency {id} disabled; its keys are refused.");
                    Ok(())
                })
                .await
            }
            Command::Agency(AgencyCommand::SetIssuerKey { id, key }) => {
                with_context(config, |ctx| async move {
                    crate::agencies::set_issuer_key(&ctx, id, &key).await?;
                    eprintln!("custodia: agency {id} is an issuer with the given key.");
                    Ok(())
                })
                .await
            }
            Command::Agency(AgencyCommand::SetIssuerTypes { id, types }) => {
                with_context(config, |ctx| async move {
                    let set = crate::agencies::set_issuer_types(&ctx, id, &[types]).await?;
                    eprintln!("custodia: agency {id} may deposit {set}.");
                    Ok(())
                })
                .await
            }
            Command::Agency(AgencyCommand::RevokeIssuerKey {
                id,
                compromised_since,
                key,
            }) => {
                let since = crate::error::rfc3339_time("compromised_since", &compromised_since)?;
                with_context(config, |ctx| async move {
                    let key =
                        crate::agencies::revoke_issuer_key(&ctx, id, key.as_deref(), since)
                            .await?;
                    eprintln!(
                        "custodia: issuer key {} of agency {id} revoked; deposits it signed since {compromised_since} now read as untrusted.",
                        crate::keyring::key_fingerprint(&key)
                    );
                    Ok(())
                })
                .await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e)
            if e.downcast_ref::<ChainBroken>().is_some()
                || e.downcast_ref::<ProofBroken>().is_some() =>
        {
            eprintln!("custodia: {e:#}");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("custodia: {e:#}");
            // A refused argument (an invalid level, a malformed key) is a usage error.
            let usage = e
                .downcast_ref::<crate::error::Error>()
                .is_some_and(|d| matches!(d, crate::error::Error::Invalid { .. }));
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let server = Server::build(config).await.map_err(describe_start_error)?;
    let addr = server.local_addr()?;
    tracing::info!(%addr, engine = ?server.state().store.engine(), "custodia is listening");
    eprintln!("custodia: {}", server.state().config.describe());
    if server
        .state()
        .store
        .current_oversight_key()
        .await?
        .is_none()
    {
        eprintln!(
            "custodia: no oversight key yet: national IDs are not sealed for a reasoned reveal. \
             The oversight office runs `custodia audit oversight-key --out FILE` and keeps FILE."
        );
    }
    if server.state().config.registration == crate::config::Registration::Open {
        tracing::warn!("registration is open: anyone can register any national ID");
        eprintln!(
            "custodia: WARNING: CUSTODIA_REGISTRATION=open — anyone can register any national ID \
             number. For demonstrations only; a real service uses `enrolment` (the default)."
        );
    }
    eprintln!("custodia: listening on http://{addr}");
    server.run_until(server::shutdown_signal()).await?;
    Ok(())
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    server::create_private_dir(&config.data_dir)?;
    let store = Store::connect(&config).await?;
    store.migrate().await?;
    store.close().await;
    eprintln!("custodia: migrations applied");
    Ok(())
}

async fn agency_create(
    config: Config,
    name: &str,
    level: &str,
    (issuer, issuer_key, issuer_types): (bool, Option<&str>, &[String]),
    (enroller, guardianship_authority, emergency): (bool, bool, bool),
) -> anyhow::Result<()> {
    let level = crate::agencies::Level::parse(level)?;
    let ctx = server::open_context(config, std::sync::Arc::new(crate::clock::SystemClock))
        .await
        .map_err(describe_start_error)?;
    let new = crate::agencies::NewAgency {
        name,
        level,
        issuer,
        issuer_key,
        issuer_types,
        enroller,
        guardianship_authority,
        emergency,
    };
    let created = crate::agencies::create(&ctx, &new).await;
    ctx.store.close().await;
    let created = created?;
    println!("agency id: {}", created.id);
    println!("api key:   {}", created.api_key.as_str());
    eprintln!("custodia: the API key is shown only now; store it safely.");
    if issuer && issuer_types.is_empty() {
        eprintln!(
            "custodia: this issuer may deposit no document type yet; name them with `custodia agency set-issuer-types {} TYPES`.",
            created.id
        );
    }
    Ok(())
}

/// Opens the context, runs `f`, closes the database whatever happened.
async fn with_context<F, Fut>(config: Config, f: F) -> anyhow::Result<()>
where
    F: FnOnce(std::sync::Arc<crate::context::Context>) -> Fut,
    Fut: std::future::Future<Output = Result<(), crate::error::Error>>,
{
    let ctx = server::open_context(config, std::sync::Arc::new(crate::clock::SystemClock))
        .await
        .map_err(describe_start_error)?;
    let ctx = std::sync::Arc::new(ctx);
    let result = f(ctx.clone()).await;
    ctx.store.close().await;
    result.map_err(|e| match e {
        crate::error::Error::NotFound => anyhow::anyhow!("no such agency"),
        other => anyhow::Error::from(other),
    })
}

fn describe_start_error(e: StartError) -> anyhow::Error {
    anyhow::anyhow!("cannot start: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_may_begin_with_a_hyphen() {
        // base64url keys are random: about one in 32 begins with `-`.
        let id = "0192f2a4-7c1e-7000-8000-000000000001";
        for args in [
            &["custodia", "agency", "set-issuer-key", id, "-_k3y"][..],
            &[
                "custodia",
                "agency",
                "create",
                "--name",
                "x",
                "--level",
                "county",
                "--issuer",
                "--issuer-key",
                "-_k3y",
            ],
            &[
                "custodia",
                "agency",
                "revoke-issuer-key",
                id,
                "--compromised-since",
                "2026-01-01T00:00:00Z",
                "--key",
                "-_k3y",
            ],
            &[
                "custodia",
                "audit",
                "verify-proof",
                "b.json",
                "--trusted-key",
                "-_k3y",
            ][..],
            &[
                "custodia",
                "audit",
                "verify",
                "--trusted-key",
                "-_k3y",
                "--trusted-key",
                "x",
            ],
        ] {
            assert!(Cli::try_parse_from(args).is_ok(), "{args:?}");
        }
    }
}
