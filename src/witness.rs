//! `custodia witness serve`: a witness for audit logs (C2SP `tlog-witness`), run apart from
//! the server it watches — by another office, on another machine — with its own key and
//! its own storage.
//!
//! A witness cosigns a log's checkpoint only when it is signed by the log's key and a
//! consistency proof shows it extends the last checkpoint the witness cosigned for that
//! log. It keeps that last checkpoint (one file per log, replaced atomically and synced
//! before the cosignature leaves), so a log that rewrites, cuts or rolls back its history
//! cannot get a cosignature for the new one, and one that shows two histories of the same
//! size leaves both signed heads with the witness as evidence.
//!
//! Which logs it witnesses: those named with `--log` (their verifier keys), or — started
//! without any — each log that first presents itself, trusting on first use the key it
//! names in the `Custodia-Log-Key` header (pinned in the witness's directory from then on;
//! the first checkpoint must have the witness holding nothing, and every later one must
//! verify under that key). Naming the logs is the stronger choice: a stranger who reaches
//! a trusting witness before the real log does would take its origin.
//!
//! Routes: `POST /add-checkpoint` (the protocol: 200 with the cosignature line; 409 with
//! the size it holds, as `text/x.tlog.size`; 422 for a proof that does not hold; 403 for a
//! signature that does not; 404 for an unknown log; 400 for a malformed body),
//! `GET /checkpoint?origin=…` (the newest checkpoint it cosigned, for verifiers) and
//! `GET /forks?origin=…` (fork evidence, JSON).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use custodia_crypto::sign::SigningKey;
use custodia_crypto::tlog::{self, TreeHash};
use custodia_crypto::witness::{self as cosig, AddCheckpoint, NamedKey};
use serde::{Deserialize, Serialize};

/// How a witness is run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where its key and its state live.
    pub data_dir: PathBuf,
    /// Its name in cosignatures (default `<host name>/witness`).
    pub name: Option<String>,
    /// The logs it witnesses: their verifier keys (`origin+id+base64`, as
    /// `/api/v1/audit/checkpoint` shows `verifier_key`). Empty: trust each log's key on
    /// first use.
    pub logs: Vec<String>,
}

/// A running witness's identity and state.
pub struct Witness {
    name: String,
    key: SigningKey,
    logs: Vec<NamedKey>,
    dir: PathBuf,
    /// One checkpoint at a time: the check and the write of a log's state are one step.
    lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness")
            .field("name", &self.name)
            .field("logs", &self.logs.len())
            .finish_non_exhaustive()
    }
}

/// The newest checkpoint a witness cosigned for one log.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Held {
    origin: String,
    size: u64,
    root: String,
    /// The checkpoint as cosigned (the log's signature and this witness's cosignature).
    note: String,
}

/// Two checkpoints of one log and one size with different roots.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForkEvidence {
    /// The log.
    pub origin: String,
    /// The size both claim.
    pub size: u64,
    /// The checkpoint the witness had cosigned.
    pub held: String,
    /// The other one, presented later (signed by the log).
    pub presented: String,
    /// When it was presented (ms since the epoch).
    pub at: i64,
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty() && !h.contains(char::is_whitespace) && !h.contains('+'))
        .unwrap_or_else(|| "localhost".to_owned())
}

fn now_ms() -> i64 {
    crate::clock::Clock::now_ms(&crate::clock::SystemClock)
}

impl Witness {
    /// Opens (creating on first start) the witness's key and state directory.
    pub fn open(options: &Options) -> anyhow::Result<Self> {
        crate::server::create_private_dir(&options.data_dir)?;
        let seed = crate::keyring::load_or_create_secret(&options.data_dir.join("witness.key"))?;
        let key = SigningKey::from_seed(&seed)
            .map_err(|_| anyhow::anyhow!("witness.key is not an Ed25519 seed"))?;
        let name = options
            .name
            .clone()
            .unwrap_or_else(|| format!("{}/witness", host_name()));
        if name.is_empty() || name.contains(char::is_whitespace) || name.contains('+') {
            anyhow::bail!("--name {name:?}: a witness name has no spaces and no '+'");
        }
        let mut logs = Vec::new();
        for text in &options.logs {
            let log = NamedKey::parse(text)
                .ok()
                .filter(|k| k.alg == cosig::ALG_ED25519)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--log {text}: not a log verifier key (origin+id+base64, as /api/v1/audit/checkpoint shows it)"
                    )
                })?;
            logs.push(log);
        }
        for dir in ["logs", "forks"] {
            crate::server::create_private_dir(&options.data_dir.join(dir))?;
        }
        Ok(Self {
            name,
            key,
            logs,
            dir: options.data_dir.clone(),
            lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The witness's verifier key, for the logs' `CUSTODIA_WITNESSES`.
    pub fn verifier_key(&self) -> String {
        NamedKey {
            name: self.name.clone(),
            alg: cosig::ALG_COSIGNATURE_V1,
            key: self.key.verifying_key(),
        }
        .encode()
    }

    /// The witness's routes.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/add-checkpoint", post(add_checkpoint))
            .route("/checkpoint", get(held_checkpoint))
            .route("/forks", get(forks))
            .layer(DefaultBodyLimit::max(64 * 1024))
            .with_state(self)
    }

    fn file_stem(origin: &str) -> String {
        custodia_crypto::digest::hex(&custodia_crypto::digest::sha256(origin.as_bytes()))
    }

    fn held_path(&self, origin: &str) -> PathBuf {
        self.dir
            .join("logs")
            .join(format!("{}.json", Self::file_stem(origin)))
    }

    fn pinned_path(&self, origin: &str) -> PathBuf {
        self.dir
            .join("logs")
            .join(format!("{}.key", Self::file_stem(origin)))
    }

    /// The key `origin`'s checkpoints must verify under: a configured one, or the one
    /// pinned on first use; with no logs configured, `offered` (the request's
    /// `Custodia-Log-Key`) is pinned for an origin seen for the first time.
    fn log_key(&self, origin: &str, offered: Option<&str>) -> Result<NamedKey, Refusal> {
        if let Some(log) = self.logs.iter().find(|l| l.name == origin) {
            return Ok(log.clone());
        }
        if !self.logs.is_empty() {
            return Err(Refusal::UnknownLog(origin.to_owned()));
        }
        match std::fs::read_to_string(self.pinned_path(origin)) {
            Ok(text) => NamedKey::parse(&text).map_err(|_| {
                Refusal::Internal(anyhow::anyhow!("the pinned key of {origin} is unreadable"))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = offered
                    .and_then(|k| NamedKey::parse(k).ok())
                    .filter(|k| k.alg == cosig::ALG_ED25519 && k.name == origin)
                    .ok_or_else(|| Refusal::UnknownLog(origin.to_owned()))?;
                Ok(key)
            }
            Err(e) => Err(Refusal::Internal(e.into())),
        }
    }

    fn held(&self, origin: &str) -> anyhow::Result<Option<Held>> {
        match std::fs::read(self.held_path(origin)) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn keep(&self, held: &Held) -> anyhow::Result<()> {
        write_synced(&self.held_path(&held.origin), &serde_json::to_vec(held)?)
    }

    fn keep_fork(&self, evidence: &ForkEvidence) -> anyhow::Result<()> {
        let path = self.dir.join("forks").join(format!(
            "{}-{}-{}.json",
            Self::file_stem(&evidence.origin),
            evidence.size,
            evidence.at
        ));
        write_synced(&path, &serde_json::to_vec_pretty(evidence)?)
    }

    fn forks_of(&self, origin: &str) -> anyhow::Result<Vec<ForkEvidence>> {
        let prefix = format!("{}-", Self::file_stem(origin));
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.dir.join("forks"))? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                out.push(serde_json::from_slice(&std::fs::read(entry.path())?)?);
            }
        }
        out.sort_by_key(|e: &ForkEvidence| e.at);
        Ok(out)
    }

    /// The protocol's decision on one request.
    fn add(&self, body: &str, offered_key: Option<&str>) -> Result<String, Refusal> {
        let request = AddCheckpoint::parse(body)
            .map_err(|_| Refusal::BadRequest("the body is not an add-checkpoint request".into()))?;
        let origin = request.note.lines().next().unwrap_or_default();
        let log = self.log_key(origin, offered_key)?;
        let head =
            tlog::open_checkpoint(&request.note, origin, std::slice::from_ref(&log.key), &[])
                .map_err(|e| Refusal::Forbidden(e.to_string()))?;
        if self.logs.is_empty() && !self.pinned_path(origin).exists() {
            // First use: the checkpoint verified under the offered key; pin it.
            write_synced(&self.pinned_path(origin), log.encode().as_bytes())
                .map_err(Refusal::Internal)?;
            tracing::info!(origin, key = %log.encode(), "trusting a new log's key on first use");
        }
        if request.old > head.size {
            return Err(Refusal::BadRequest(
                "the old size is larger than the checkpoint's".into(),
            ));
        }
        let held = self.held(origin).map_err(Refusal::Internal)?;
        let (held_size, held_root) = match &held {
            Some(h) => (h.size, decode_root(&h.root).map_err(Refusal::Internal)?),
            None => (0, tlog::EMPTY_ROOT),
        };
        if request.old != held_size {
            return Err(Refusal::Conflict(held_size));
        }
        if let Some(h) = held.as_ref().filter(|_| head.size == held_size)
            && head.root != held_root
        {
            let evidence = ForkEvidence {
                origin: origin.to_owned(),
                size: head.size,
                held: h.note.clone(),
                presented: request.note.clone(),
                at: now_ms(),
            };
            self.keep_fork(&evidence).map_err(Refusal::Internal)?;
            tracing::error!(
                origin,
                size = head.size,
                "fork: the log signed two checkpoints of one size with different roots; evidence kept"
            );
            return Err(Refusal::Conflict(held_size));
        }
        if !cosig::extends(held_size, &held_root, head.size, &head.root, &request.proof) {
            return Err(Refusal::Inconsistent(format!(
                "the consistency proof from {held_size} to {} does not hold",
                head.size
            )));
        }
        let time_s = u64::try_from(now_ms() / 1000).unwrap_or(0);
        let line = cosig::cosign(&request.note, &self.name, &self.key, time_s)
            .map_err(|e| Refusal::BadRequest(e.to_string()))?;
        let note = request
            .note
            .lines()
            .filter(|l| !l.starts_with(&format!("— {} ", self.name)))
            .map(|l| format!("{l}\n"))
            .collect::<String>();
        self.keep(&Held {
            origin: origin.to_owned(),
            size: head.size,
            root: STANDARD.encode(head.root),
            note: cosig::with_signatures(&note, std::slice::from_ref(&line)),
        })
        .map_err(Refusal::Internal)?;
        Ok(line)
    }
}

fn decode_root(text: &str) -> anyhow::Result<TreeHash> {
    STANDARD
        .decode(text)
        .ok()
        .and_then(|b| TreeHash::try_from(b.as_slice()).ok())
        .ok_or_else(|| anyhow::anyhow!("the witness's stored root is not a hash"))
}

/// Writes `bytes` to `path` atomically: a synced temporary file renamed over it, then the
/// directory synced, so a cosignature never leaves before the state it promises.
fn write_synced(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .ok_or_else(|| anyhow::anyhow!("{} has no directory", path.display()))?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Why a checkpoint was not cosigned.
#[derive(Debug)]
enum Refusal {
    BadRequest(String),
    UnknownLog(String),
    Forbidden(String),
    Conflict(u64),
    Inconsistent(String),
    Internal(anyhow::Error),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let text = |status: StatusCode, message: String| {
            (
                status,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("{message}\n"),
            )
                .into_response()
        };
        match self {
            Self::BadRequest(m) => text(StatusCode::BAD_REQUEST, m),
            Self::UnknownLog(origin) => text(
                StatusCode::NOT_FOUND,
                format!("this witness does not witness the log {origin:?}"),
            ),
            Self::Forbidden(m) => text(StatusCode::FORBIDDEN, m),
            Self::Conflict(size) => (
                StatusCode::CONFLICT,
                [(header::CONTENT_TYPE, "text/x.tlog.size")],
                format!("{size}\n"),
            )
                .into_response(),
            Self::Inconsistent(m) => text(StatusCode::UNPROCESSABLE_ENTITY, m),
            Self::Internal(e) => {
                tracing::error!(error = %e, "witness storage failed");
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the witness could not keep its state".into(),
                )
            }
        }
    }
}

pub use crate::transparency::witnesses::LOG_KEY_HEADER;

async fn add_checkpoint(
    State(witness): State<Arc<Witness>>,
    headers: axum::http::HeaderMap,
    body: String,
) -> Response {
    let offered = headers
        .get(LOG_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let _one_at_a_time = witness.lock.lock().await;
    let w = witness.clone();
    // File I/O and fsync: off the async workers.
    match tokio::task::spawn_blocking(move || w.add(&body, offered.as_deref())).await {
        Ok(Ok(line)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            line,
        )
            .into_response(),
        Ok(Err(refusal)) => refusal.into_response(),
        Err(e) => Refusal::Internal(e.into()).into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct OriginQuery {
    origin: String,
}

async fn held_checkpoint(
    State(witness): State<Arc<Witness>>,
    Query(q): Query<OriginQuery>,
) -> Response {
    match witness.held(&q.origin) {
        Ok(Some(held)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            held.note,
        )
            .into_response(),
        Ok(None) => Refusal::UnknownLog(q.origin).into_response(),
        Err(e) => Refusal::Internal(e).into_response(),
    }
}

async fn forks(State(witness): State<Arc<Witness>>, Query(q): Query<OriginQuery>) -> Response {
    match witness.forks_of(&q.origin) {
        Ok(list) => axum::Json(list).into_response(),
        Err(e) => Refusal::Internal(e).into_response(),
    }
}

/// Runs a witness until `shutdown` completes.
pub async fn serve(
    options: Options,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let witness = Arc::new(Witness::open(&options)?);
    let listener = tokio::net::TcpListener::bind(options.listen).await?;
    // One write, so a reader that stops after the key does not break a later line.
    let mut banner = format!(
        "witness name: {}\nwitness key:  {}\nlistening on: http://{}\n",
        witness.name,
        witness.verifier_key(),
        listener.local_addr()?
    );
    for log in &witness.logs {
        banner.push_str(&format!("witnessing:   {}\n", log.name));
    }
    if witness.logs.is_empty() {
        banner.push_str("witnessing:   each log that presents itself, its key trusted on first use (name logs with --log to choose)\n");
    }
    print!("{banner}");
    axum::serve(listener, witness.router())
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
