//! The log's side of witnessing (C2SP `tlog-witness`): every new checkpoint goes to the
//! configured witnesses with a consistency proof from the last one each cosigned; their
//! cosignatures are checked against their pinned keys and kept beside the checkpoint.
//! Verifiers also ask each witness for the newest checkpoint it cosigned, to hold the
//! trail to it.
//!
//! Witnessing runs beside the request path, never in it: a witness that is down or slow
//! delays cosigning (it is retried with back-off, up to a minute apart), never a read.

use std::sync::Arc;
use std::time::Duration;

use custodia_crypto::tlog;
use custodia_crypto::witness::{AddCheckpoint, with_signatures};

use crate::audit::Trust;
use crate::config::WitnessSetting;
use crate::context::Context;
use crate::store::audit::CheckpointRow;

/// The header in which a log names its verifier key, for witnesses that trust on first use.
pub const LOG_KEY_HEADER: &str = "custodia-log-key";

/// How long one call to a witness may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the newest checkpoint is looked at.
const POLL: Duration = Duration::from_millis(500);
/// The longest wait between tries at a failing witness.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

fn endpoint(witness: &WitnessSetting, path: &str) -> String {
    format!("{}/{path}", witness.url.as_str().trim_end_matches('/'))
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(CALL_TIMEOUT)
        .build()
        // Building a client with only a time-out set fails only without a TLS backend,
        // which this build always has; fall back to the defaults all the same.
        .unwrap_or_default()
}

/// What the log knows of one witness.
#[derive(Debug, Default)]
struct Follower {
    /// The size of the newest checkpoint the witness holds for this log, once known.
    holds: Option<u64>,
    failures: u32,
    retry_at: Option<tokio::time::Instant>,
    last_error: Option<String>,
}

/// Sends each new checkpoint to every witness until the server stops. Does nothing when
/// no witnesses are configured.
pub async fn run(ctx: Arc<Context>) {
    if ctx.config.witnesses.is_empty() {
        return;
    }
    let client = client();
    let mut followers: Vec<Follower> = ctx
        .config
        .witnesses
        .iter()
        .map(|_| Follower::default())
        .collect();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let newest = match ctx.store.last_checkpoint().await {
            Ok(Some(c)) if c.note.is_some() => c,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "witnessing: cannot read the newest checkpoint");
                continue;
            }
        };
        let done = match ctx.store.cosignatures(newest.seq).await {
            Ok(rows) => rows.into_iter().map(|(w, _)| w).collect::<Vec<_>>(),
            Err(e) => {
                tracing::warn!(error = %e, "witnessing: cannot read cosignatures");
                continue;
            }
        };
        let now = tokio::time::Instant::now();
        let calls = ctx
            .config
            .witnesses
            .iter()
            .zip(followers.iter_mut())
            .filter(|(w, f)| !done.contains(&w.key.name) && f.retry_at.is_none_or(|at| at <= now))
            .map(|(w, f)| follow(&ctx, &client, w, f, &newest));
        futures_util::future::join_all(calls).await;
    }
}

/// One try at getting `checkpoint` cosigned by `witness`, recording the outcome.
async fn follow(
    ctx: &Context,
    client: &reqwest::Client,
    witness: &WitnessSetting,
    follower: &mut Follower,
    checkpoint: &CheckpointRow,
) {
    match push(ctx, client, witness, follower, checkpoint).await {
        Ok(()) => {
            if follower.last_error.take().is_some() {
                tracing::info!(witness = %witness.key.name, seq = checkpoint.seq, "witness cosigning again");
            }
            follower.failures = 0;
            follower.retry_at = None;
        }
        Err(message) => {
            follower.failures = follower.failures.saturating_add(1);
            let backoff = Duration::from_secs(1u64 << follower.failures.min(6)).min(MAX_BACKOFF);
            follower.retry_at = Some(tokio::time::Instant::now() + backoff);
            if follower.last_error.as_deref() != Some(message.as_str()) {
                tracing::warn!(witness = %witness.key.name, seq = checkpoint.seq, retry_in = ?backoff, "{message}");
                follower.last_error = Some(message);
            }
        }
    }
}

async fn push(
    ctx: &Context,
    client: &reqwest::Client,
    witness: &WitnessSetting,
    follower: &mut Follower,
    checkpoint: &CheckpointRow,
) -> Result<(), String> {
    let name = &witness.key.name;
    let note = checkpoint.note.clone().unwrap_or_default();
    let size = u64::try_from(checkpoint.seq).unwrap_or(0);
    let mut old = match follower.holds {
        Some(held) => held,
        None => ctx
            .store
            .last_cosigned_by(name)
            .await
            .map_err(|e| e.to_string())?
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(0),
    };
    // A 409 names the size the witness holds; one retry with it settles the proof.
    for _ in 0..2 {
        if old > size {
            return Err(format!(
                "witness {name} holds a checkpoint of {old} events, beyond this log's {size}: \
                 the trail was rolled back or cut after the witness saw it (`custodia audit verify` \
                 shows the evidence)"
            ));
        }
        let proof = if old == 0 || old == size {
            Vec::new()
        } else {
            crate::audit::consistency_proof(&ctx.store, old, size)
                .await
                .map_err(|e| e.to_string())?
        };
        let body = AddCheckpoint {
            old,
            proof,
            note: note.clone(),
        }
        .to_body();
        let response = client
            .post(endpoint(witness, "add-checkpoint"))
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .header(LOG_KEY_HEADER, log_key(ctx))
            .body(body)
            .send()
            .await
            .map_err(|e| format!("witness {name} is unreachable: {e}"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| format!("witness {name}: {e}"))?;
        match status.as_u16() {
            200 => {
                let line = text.trim_end().to_owned();
                if !cosigned_by(ctx, witness, &note, &line) {
                    return Err(format!(
                        "witness {name} answered with a cosignature that does not verify under its configured key"
                    ));
                }
                ctx.store
                    .insert_cosignature(checkpoint.seq, name, &line, ctx.clock.now_ms())
                    .await
                    .map_err(|e| e.to_string())?;
                follower.holds = Some(size);
                return Ok(());
            }
            409 => {
                old = text.trim().parse::<u64>().map_err(|_| {
                    format!("witness {name} answered 409 without the size it holds")
                })?;
                follower.holds = Some(old);
            }
            _ => {
                return Err(format!(
                    "witness {name} refused checkpoint {size} ({status}): {}",
                    text.trim()
                ));
            }
        }
    }
    Err(format!(
        "witness {name} keeps answering with another size; will retry"
    ))
}

/// This server's verifier key, as a witness that trusts on first use pins it.
fn log_key(ctx: &Context) -> String {
    let origin = ctx.config.audit_origin();
    custodia_crypto::tlog::verifier_key(&origin, &ctx.keys.signing.verifying_key())
}

fn cosigned_by(ctx: &Context, witness: &WitnessSetting, note: &str, line: &str) -> bool {
    let trust = ctx.audit_trust();
    let cosigned = with_signatures(note, &[line.to_owned()]);
    tlog::open_checkpoint(
        &cosigned,
        &trust.origin,
        &trust.log_keys(),
        &[(witness.key.name.clone(), witness.key.key.clone())],
    )
    .is_ok_and(|head| head.signers.contains(&witness.key.name))
}

/// Asks every configured witness for the newest checkpoint of this log it cosigned.
/// Returns the answers that came (witness name, note) and, for the others, why not.
pub async fn ask_heads(
    witnesses: &[WitnessSetting],
    origin: &str,
) -> (Vec<(String, String)>, Vec<String>) {
    let client = client();
    let calls = witnesses.iter().map(|w| {
        let client = &client;
        async move {
            let answer = client
                .get(endpoint(w, "checkpoint"))
                .query(&[("origin", origin)])
                .send()
                .await;
            match answer {
                Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => Ok(None),
                Ok(r) if r.status().is_success() => r
                    .text()
                    .await
                    .map(Some)
                    .map_err(|e| format!("witness {}: {e}", w.key.name)),
                Ok(r) => Err(format!("witness {} answered {}", w.key.name, r.status())),
                Err(e) => Err(format!("witness {} is unreachable: {e}", w.key.name)),
            }
        }
    });
    let answers = futures_util::future::join_all(calls).await;
    let mut heads = Vec::new();
    let mut unreachable = Vec::new();
    for (w, answer) in witnesses.iter().zip(answers) {
        match answer {
            Ok(Some(note)) => heads.push((w.key.name.clone(), note)),
            Ok(None) => {}
            Err(e) => unreachable.push(e),
        }
    }
    (heads, unreachable)
}

/// The deployment's trust with what its witnesses hold now (see [`ask_heads`]).
pub async fn trust_with_heads(ctx: &Context) -> (Trust, Vec<String>) {
    let mut trust = ctx.audit_trust();
    let (heads, unreachable) = ask_heads(&ctx.config.witnesses, &trust.origin).await;
    trust.witness_heads = heads;
    (trust, unreachable)
}
