//! `custodia audit …`: verifying the trail (against the pinned keys and the witnesses),
//! checking a citizen's proof bundle offline, exporting.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::server;
use crate::store::Store;

/// The chain did not verify (exit code 3).
#[derive(Debug, thiserror::Error)]
#[error("the audit trail does not verify: {0}")]
pub(super) struct ChainBroken(pub(super) crate::audit::chain::Fault);

/// A proof bundle did not verify (exit code 3).
#[derive(Debug, thiserror::Error)]
#[error("the proofs do not verify: {0}")]
pub(super) struct ProofBroken(pub(super) String);

/// The keys a verifier trusts: the key directory's and those given with `--trusted-key`.
pub(super) fn trusted_keys(
    config: &Config,
    given: &[String],
) -> anyhow::Result<Vec<(String, custodia_crypto::sign::VerifyingKey)>> {
    let mut keys = crate::keyring::pinned_keys(&config.signing_key_file())?;
    for text in given {
        let key = crate::keyring::parse_public_key(text.trim()).ok_or_else(|| {
            anyhow::anyhow!(
                "--trusted-key {text}: not an Ed25519 public key (64 hex digits or base64url)"
            )
        })?;
        keys.push((crate::keyring::key_fingerprint(&key.to_bytes()), key));
    }
    Ok(keys)
}

pub(super) fn audit_verify_proof(
    config: &Config,
    file: &Path,
    given: &[String],
) -> anyhow::Result<()> {
    let keys: Vec<_> = trusted_keys(config, given)?
        .into_iter()
        .map(|(_, key)| key)
        .collect();
    if keys.is_empty() {
        anyhow::bail!(
            "no trusted key: pass --trusted-key with the key from /api/v1/audit/public-key"
        );
    }
    let text =
        std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let bundle: crate::transparency::Bundle = serde_json::from_str(&text)
        .map_err(|e| ProofBroken(format!("{}: not a proof bundle ({e})", file.display())))?;
    let witnesses = witness_keys(config);
    let checked =
        crate::transparency::check_bundle(&bundle, &keys, &witnesses, config.witness_quorum)
            .map_err(ProofBroken)?;
    println!(
        "{} event(s) proven in the log {} at size {} (checkpoint signed by a trusted key, cosigned by {} of {} witness(es))",
        checked.events,
        checked.origin,
        checked.size,
        checked.cosigners,
        witnesses.len()
    );
    Ok(())
}

pub(super) async fn audit_verify(
    config: Config,
    trusted_keys: &[String],
    from_checkpoint: Option<Option<PathBuf>>,
) -> anyhow::Result<()> {
    // Where the newest verified checkpoint is kept: always written after a success, read
    // back with --from-checkpoint.
    let kept = config.data_dir.join("audit-verified");
    let (resume, state) = match from_checkpoint {
        None => (false, kept),
        Some(None) => (true, kept),
        Some(Some(file)) => (true, file),
    };
    server::create_private_dir(&config.data_dir)?;
    let mut trust = crate::audit::Trust::new(
        config.audit_origin(),
        self::trusted_keys(&config, trusted_keys)?,
    );
    trust.witnesses = witness_keys(&config);
    trust.quorum = config.witness_quorum;
    trust.now_ms = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
    let (heads, unreachable) =
        crate::transparency::witnesses::ask_heads(&config.witnesses, &trust.origin).await;
    for why in &unreachable {
        eprintln!("custodia: warning: {why}; the trail is checked without its view");
    }
    trust.witness_heads = heads;
    let store = Store::connect(&config).await?;
    store.migrate().await?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "verifying {bar:40} {pos}/{len} events ({per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let since = if resume {
        match std::fs::read_to_string(&state) {
            Ok(note) => Some(note),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!(
                    "custodia: no verified checkpoint kept at {} yet; verifying the whole trail",
                    state.display()
                );
                None
            }
            Err(e) => anyhow::bail!("{}: {e}", state.display()),
        }
    } else {
        None
    };
    let started = std::time::Instant::now();
    let result = crate::audit::verify_since(&store, &trust, since.as_deref(), |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .await;
    bar.finish_and_clear();
    let newest = store.last_checkpoint().await;
    store.close().await;
    match result? {
        Ok(summary) => {
            if let Some(note) = newest?.and_then(|c| c.note) {
                keep_state(&state, &note)?;
            }
            let scope = if since.is_some() {
                "new events since the checkpoint verified before"
            } else {
                "events"
            };
            println!(
                "audit trail intact: {} {scope}, head {} at sequence {}, last signed checkpoint {} ({:.1?})",
                summary.events,
                summary.head_hash,
                summary.head_seq,
                summary
                    .last_checkpoint
                    .map_or_else(|| "none yet".to_owned(), |s| format!("at sequence {s}")),
                started.elapsed()
            );
            if let Some((seq, cosigners)) = summary.witnessed {
                println!(
                    "witnessed: checkpoint {seq} cosigned by {cosigners} of {} witness(es) (quorum {}); {} witness(es) agree with the trail",
                    config.witnesses.len(),
                    config.witness_quorum,
                    config.witnesses.len() - unreachable.len()
                );
            }
            Ok(())
        }
        Err(fault) => {
            for (i, evidence) in fault.evidence.iter().enumerate() {
                eprintln!("evidence {}:\n{evidence}", i + 1);
            }
            Err(ChainBroken(fault).into())
        }
    }
}

pub(super) async fn audit_export(
    config: Config,
    since: Option<&str>,
    until: Option<&str>,
    format: &str,
) -> anyhow::Result<()> {
    let format = crate::audit::Format::parse(format)?;
    let parse =
        |field: &'static str, t: Option<&str>| -> Result<Option<i64>, crate::error::Error> {
            t.map(|t| crate::error::rfc3339_time(field, t).map(crate::clock::to_ms))
                .transpose()
        };
    let (since, until) = (parse("since", since)?, parse("until", until)?);
    let store = Store::connect(&config).await?;
    store.migrate().await?;
    let mut out = std::io::BufWriter::new(std::io::stdout());
    let written = crate::audit::export(&store, since, until, format, &mut out).await;
    drop(out);
    store.close().await;
    eprintln!("custodia: exported {} events", written?);
    Ok(())
}

/// Keeps the newest verified checkpoint for the next `--from-checkpoint` run (replaced atomically).
fn keep_state(path: &Path, note: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(note.as_bytes())?;
    file.as_file().sync_all()?;
    file.persist(path)?;
    Ok(())
}

/// The witnesses the configuration names (name, key).
fn witness_keys(config: &Config) -> Vec<(String, custodia_crypto::sign::VerifyingKey)> {
    config
        .witnesses
        .iter()
        .map(|w| (w.key.name.clone(), w.key.key.clone()))
        .collect()
}
