//! Configuration from environment variables (SPEC §4), with an embedded default that
//! needs no set-up: everything under `./custodia-data/`, listening on 127.0.0.1:8080.
//!
//! A wrong setting is reported as one [`ConfigError`] naming the variable; the CLI turns
//! it into exit code 2.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use custodia_crypto::kdf::Argon2Cost;
use url::Url;

/// A setting that cannot be used, with the variable that holds it.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// What is wrong and what would be right.
    pub message: String,
}

fn bad(variable: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        message: message.into(),
    }
}

/// Where the encrypted blobs live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobLocation {
    /// A directory on local disk (`file:///path`).
    File(PathBuf),
    /// A bucket of an S3 service (`s3://bucket/prefix`): AWS or any S3-compatible one.
    S3(S3Location),
}

/// An S3 bucket and how to reach it. The credentials come from the usual `AWS_*`
/// variables (or the machine's role when they are absent).
#[derive(Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket.
    pub bucket: String,
    /// The key prefix every blob is stored under (no leading or trailing `/`; may be empty).
    pub prefix: String,
    /// `AWS_ENDPOINT_URL`: the endpoint of an S3-compatible service; AWS's own when
    /// absent.
    pub endpoint: Option<String>,
    /// `AWS_ALLOW_HTTP=true`: a plain `http://` endpoint is allowed (a service on loopback
    /// or a private network, tests); otherwise only `https://`.
    pub allow_http: bool,
    /// `AWS_REGION` (or `AWS_DEFAULT_REGION`).
    pub region: Option<String>,
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<String>,
    /// `AWS_SESSION_TOKEN`.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Location")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("allow_http", &self.allow_http)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "***"),
            )
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .finish()
    }
}

impl std::fmt::Display for BlobLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(root) => write!(f, "file://{}", root.display()),
            Self::S3(s3) => {
                write!(f, "s3://{}/{}", s3.bucket, s3.prefix)?;
                match &s3.endpoint {
                    Some(endpoint) => write!(f, " at {endpoint}"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// How citizens prove who they are before an account is theirs (`CUSTODIA_REGISTRATION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// A one-time code bound to the national ID, issued by the operator or an enrolling
    /// agency and delivered out of band (the default).
    Enrolment,
    /// A national eID over OpenID Connect proves the ID, and signs citizens in
    /// (`CUSTODIA_OIDC_*`); enrolment codes stay valid for those without an eID.
    Oidc,
    /// Anyone may register any national ID: for demonstrations only (a warning at start).
    Open,
}

/// The national eID provider (`CUSTODIA_OIDC_*`), for `CUSTODIA_REGISTRATION=oidc`.
#[derive(Clone, PartialEq, Eq)]
pub struct OidcSettings {
    /// `CUSTODIA_OIDC_ISSUER`: the provider's issuer URL (https; http only on loopback,
    /// for tests), exactly as the provider writes it in its metadata and tokens (a
    /// trailing slash matters). Its metadata is discovered from
    /// `/.well-known/openid-configuration`.
    pub issuer: String,
    /// `CUSTODIA_OIDC_CLIENT_ID`: this service's client id at the provider.
    pub client_id: String,
    /// `CUSTODIA_OIDC_CLIENT_SECRET`: the client secret (absent: a public client, PKCE only).
    pub client_secret: Option<String>,
    /// `CUSTODIA_OIDC_NATIONAL_ID_CLAIM`: the ID token claim holding the national ID
    /// number (default `sub`).
    pub national_id_claim: String,
}

impl std::fmt::Debug for OidcSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("national_id_claim", &self.national_id_claim)
            .finish()
    }
}

/// Which database engine a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Embedded SQLite (one machine).
    Sqlite,
    /// PostgreSQL (many stateless nodes).
    Postgres,
}

/// The whole configuration of one Custodia process.
#[derive(Debug, Clone)]
pub struct Config {
    /// `CUSTODIA_DATA_DIR`: base directory of the embedded default (`./custodia-data`).
    pub data_dir: PathBuf,
    /// `CUSTODIA_DATABASE_URL`: `sqlite://PATH` or `postgres://...`
    /// (default `sqlite://<data dir>/custodia.db`).
    pub database_url: String,
    /// The engine `database_url` names.
    pub engine: Engine,
    /// `CUSTODIA_BLOB_STORE`: `file:///PATH` (default `<data dir>/blobs`).
    pub blob_store: BlobLocation,
    /// `CUSTODIA_MASTER_KEY_FILE`: the master key, created 0600 on first start
    /// (default `<data dir>/master.key`). The Ed25519 signing key lives beside it.
    pub master_key_file: PathBuf,
    /// `CUSTODIA_LISTEN`: socket address to listen on (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// `CUSTODIA_PUBLIC_URL`: the origin browsers see, used as the WebAuthn origin
    /// (default `http://localhost:<port of CUSTODIA_LISTEN>`).
    pub public_url: Url,
    /// `CUSTODIA_MAX_UPLOAD_BYTES`: largest accepted document file (default 50 MiB).
    pub max_upload_bytes: u64,
    /// `CUSTODIA_ARGON2_MEMORY_KIB`, `CUSTODIA_ARGON2_ITERATIONS`,
    /// `CUSTODIA_ARGON2_PARALLELISM`: cost of new passphrase wraps (default 65536, 3, 1).
    /// Existing wraps keep the parameters stored beside their salt.
    pub argon2: Argon2Cost,
    /// `CUSTODIA_CATALOG_FILE`: a catalog replacing the built-in one (document types and
    /// purposes); validated at start.
    pub catalog_file: Option<PathBuf>,
    /// `CUSTODIA_ARGON2_CONCURRENCY`: passphrase derivations run at once (default 2); each
    /// holds `CUSTODIA_ARGON2_MEMORY_KIB` of memory.
    pub argon2_concurrency: usize,
    /// `CUSTODIA_WITNESSES`: the witnesses that cosign the audit log's checkpoints, as
    /// `URL=VERIFIER_KEY` pairs separated by commas (each witness prints its verifier key
    /// when it starts). Empty: no witnesses.
    pub witnesses: Vec<WitnessSetting>,
    /// `CUSTODIA_WITNESS_QUORUM`: how many of them must cosign a checkpoint before verifiers
    /// accept it (default: a majority).
    pub witness_quorum: usize,
    /// `CUSTODIA_TRUSTED_PROXIES`: the reverse proxies (CIDRs or addresses, comma-separated)
    /// whose `Forwarded` / `X-Forwarded-For` headers name the client. Empty (the default):
    /// those headers are ignored and the peer is the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `CUSTODIA_REGISTRATION`: `enrolment` (default), `oidc` or `open` (demonstrations only).
    pub registration: Registration,
    /// The national eID provider, set exactly when `registration` is `oidc`.
    pub oidc: Option<OidcSettings>,
    /// `CUSTODIA_METRICS_TOKEN`: the bearer token `/metrics` asks for (at least 16
    /// characters). Without it and without `metrics_listen`, `/metrics` is not served.
    pub metrics_token: Option<String>,
    /// `CUSTODIA_METRICS_LISTEN`: a separate address serving only `/metrics` (a private
    /// interface for the scraper); `/metrics` is then not served on `CUSTODIA_LISTEN`.
    pub metrics_listen: Option<SocketAddr>,
    /// `CUSTODIA_QUOTA_MIB`: how many MiB of files each citizen may store (default 512).
    pub quota_bytes: u64,
    /// `CUSTODIA_WEBHOOK_ALLOW_LOOPBACK`: admits `http://` webhook receivers on this
    /// machine's loopback addresses (tests and demonstrations; default false).
    pub webhook_allow_loopback: bool,
    /// `CUSTODIA_WEBHOOK_ALLOW_PRIVATE`: admits webhook receivers at private and
    /// link-local addresses (an agency network reached privately; default false).
    pub webhook_allow_private: bool,
}

/// One witness of the audit log.
#[derive(Debug, Clone)]
pub struct WitnessSetting {
    /// Where it answers the witness protocol (`…/add-checkpoint`).
    pub url: Url,
    /// Its name and public key (a `cosignature/v1` verifier key).
    pub key: custodia_crypto::witness::NamedKey,
}

/// Every setting: environment variable, default, meaning. The config file takes the same
/// names in lower case without the prefix (`database_url = "…"`); `--help` and the README
/// list them from here.
pub const SETTINGS: &[(&str, &str, &str)] = &[
    (
        "CUSTODIA_DATA_DIR",
        "./custodia-data",
        "base directory of the embedded default",
    ),
    (
        "CUSTODIA_DATABASE_URL",
        "sqlite://<data dir>/custodia.db",
        "sqlite://… or postgres://…",
    ),
    (
        "CUSTODIA_BLOB_STORE",
        "file://<data dir>/blobs",
        "file:///PATH or s3://BUCKET/PREFIX (with AWS_* credentials)",
    ),
    (
        "AWS_ENDPOINT_URL",
        "AWS's own",
        "endpoint of an S3-compatible service (MinIO, Ceph RGW); http:// needs AWS_ALLOW_HTTP=true",
    ),
    (
        "CUSTODIA_MASTER_KEY_FILE",
        "<data dir>/master.key",
        "master key (created 0600 on first start); signing.key lives beside it",
    ),
    ("CUSTODIA_LISTEN", "127.0.0.1:8080", "address to listen on"),
    (
        "CUSTODIA_PUBLIC_URL",
        "http://localhost:<port>",
        "the origin browsers use (WebAuthn relying party)",
    ),
    (
        "CUSTODIA_MAX_UPLOAD_BYTES",
        "52428800",
        "largest document file accepted (50 MiB)",
    ),
    (
        "CUSTODIA_CATALOG_FILE",
        "(built in)",
        "document type and purpose catalog (JSON)",
    ),
    (
        "CUSTODIA_ARGON2_MEMORY_KIB",
        "65536",
        "Argon2id memory for new passphrase wraps",
    ),
    ("CUSTODIA_ARGON2_ITERATIONS", "3", "Argon2id iterations"),
    ("CUSTODIA_ARGON2_PARALLELISM", "1", "Argon2id lanes"),
    (
        "CUSTODIA_ARGON2_CONCURRENCY",
        "2",
        "passphrase derivations run at once",
    ),
    (
        "CUSTODIA_WITNESSES",
        "(none)",
        "audit witnesses: URL=VERIFIER_KEY, comma-separated",
    ),
    (
        "CUSTODIA_WITNESS_QUORUM",
        "(a majority)",
        "witness cosignatures a checkpoint needs",
    ),
    (
        "CUSTODIA_TRUSTED_PROXIES",
        "(none)",
        "reverse proxies (CIDRs) whose X-Forwarded-For / Forwarded name the client",
    ),
    (
        "CUSTODIA_QUOTA_MIB",
        "512",
        "files each citizen may store, in MiB",
    ),
    (
        "CUSTODIA_WEBHOOK_ALLOW_LOOPBACK",
        "false",
        "admit http:// webhook receivers on loopback addresses (tests)",
    ),
    (
        "CUSTODIA_WEBHOOK_ALLOW_PRIVATE",
        "false",
        "admit webhook receivers at private and link-local addresses",
    ),
    (
        "CUSTODIA_METRICS_TOKEN",
        "(none)",
        "bearer token /metrics asks for (16+ characters)",
    ),
    (
        "CUSTODIA_METRICS_LISTEN",
        "(none)",
        "separate address serving only /metrics",
    ),
    (
        "CUSTODIA_REGISTRATION",
        "enrolment",
        "proof of identity to register: enrolment (codes), oidc (national eID), open (demos)",
    ),
    (
        "CUSTODIA_OIDC_ISSUER",
        "(none)",
        "national eID provider's issuer URL (registration oidc)",
    ),
    (
        "CUSTODIA_OIDC_CLIENT_ID",
        "(none)",
        "this service's client id at the eID provider",
    ),
    (
        "CUSTODIA_OIDC_CLIENT_SECRET",
        "(none: public client)",
        "client secret at the eID provider",
    ),
    (
        "CUSTODIA_OIDC_NATIONAL_ID_CLAIM",
        "sub",
        "ID token claim holding the national ID number",
    ),
];

/// Whether `url` may name an eID provider: https, or http to this machine (tests).
fn acceptable_issuer(url: &Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => match url.host() {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

fn parse_oidc(
    get: &impl Fn(&str) -> Option<String>,
    registration: Registration,
) -> Result<Option<OidcSettings>, ConfigError> {
    const VARS: [&str; 4] = [
        "CUSTODIA_OIDC_ISSUER",
        "CUSTODIA_OIDC_CLIENT_ID",
        "CUSTODIA_OIDC_CLIENT_SECRET",
        "CUSTODIA_OIDC_NATIONAL_ID_CLAIM",
    ];
    if registration != Registration::Oidc {
        return match VARS.into_iter().find(|v| get(v).is_some()) {
            Some(var) => Err(bad(
                var,
                "is set but CUSTODIA_REGISTRATION is not `oidc`: set CUSTODIA_REGISTRATION=oidc \
                 to register and sign in with the national eID, or remove it",
            )),
            None => Ok(None),
        };
    }
    let raw = get("CUSTODIA_OIDC_ISSUER").ok_or_else(|| {
        bad(
            "CUSTODIA_OIDC_ISSUER",
            "is required with CUSTODIA_REGISTRATION=oidc: the eID provider's issuer URL",
        )
    })?;
    let issuer = raw.trim().to_owned();
    Url::parse(&issuer)
        .ok()
        .filter(acceptable_issuer)
        .filter(|u| u.query().is_none() && u.fragment().is_none())
        .ok_or_else(|| {
            bad(
                "CUSTODIA_OIDC_ISSUER",
                format!(
                    "'{raw}' is not an https URL without query or fragment (http is accepted \
                     for localhost only)"
                ),
            )
        })?;
    let client_id = get("CUSTODIA_OIDC_CLIENT_ID")
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            bad(
                "CUSTODIA_OIDC_CLIENT_ID",
                "is required with CUSTODIA_REGISTRATION=oidc: this service's client id at the \
                 eID provider",
            )
        })?;
    let client_secret = get("CUSTODIA_OIDC_CLIENT_SECRET").filter(|s| !s.is_empty());
    let national_id_claim = match get("CUSTODIA_OIDC_NATIONAL_ID_CLAIM") {
        None => "sub".to_owned(),
        Some(claim) => {
            let claim = claim.trim().to_owned();
            if claim.is_empty()
                || claim.len() > 64
                || !claim
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c))
            {
                return Err(bad(
                    "CUSTODIA_OIDC_NATIONAL_ID_CLAIM",
                    format!("'{claim}' is not a claim name (letters, digits, _ - . :)"),
                ));
            }
            claim
        }
    };
    Ok(Some(OidcSettings {
        issuer,
        client_id,
        client_secret,
        national_id_claim,
    }))
}

/// `CUSTODIA_TRUSTED_PROXIES`: CIDRs (`10.0.0.0/8`, `fd00::/8`) or single addresses,
/// comma-separated.
fn parse_proxies(raw: &str) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            item.parse::<ipnet::IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    bad(
                        "CUSTODIA_TRUSTED_PROXIES",
                        format!("'{item}' is not an address or a CIDR such as 10.0.0.0/8"),
                    )
                })
        })
        .collect()
}

/// Reads a TOML config file into setting names (`database_url` → `CUSTODIA_DATABASE_URL`).
/// Unknown keys are refused, naming the key.
pub fn read_file(path: &Path) -> Result<std::collections::HashMap<String, String>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad("CUSTODIA_CONFIG", format!("{}: {e}", path.display())))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| bad("CUSTODIA_CONFIG", format!("{}: {e}", path.display())))?;
    let mut out = std::collections::HashMap::new();
    for (key, value) in table {
        let name = format!("CUSTODIA_{}", key.to_ascii_uppercase());
        if !SETTINGS.iter().any(|(n, _, _)| *n == name) {
            return Err(bad(
                "CUSTODIA_CONFIG",
                format!("{}: unknown setting '{key}'", path.display()),
            ));
        }
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            other => {
                return Err(bad(
                    "CUSTODIA_CONFIG",
                    format!(
                        "{}: '{key}' must be a string or a number, not a {}",
                        path.display(),
                        other.type_str()
                    ),
                ));
            }
        };
        out.insert(name, text);
    }
    Ok(out)
}

impl Config {
    /// The environment over an optional config file (the environment wins).
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let from_file = match file {
            Some(f) => read_file(f)?,
            None => Default::default(),
        };
        Self::from_lookup(|name| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .or_else(|| from_file.get(name).cloned())
        })
    }

    /// One line saying what this process uses (never a secret: a database password is
    /// masked).
    pub fn describe(&self) -> String {
        let database = match Url::parse(&self.database_url) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("***"));
                u.to_string()
            }
            _ => self.database_url.clone(),
        };
        format!(
            "database {database}; blobs {}; listening on {}; public URL {}; master key file {}",
            self.blob_store,
            self.listen,
            self.public_url,
            self.master_key_file.display()
        )
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// Builds the configuration from any variable lookup (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let data_dir =
            PathBuf::from(get("CUSTODIA_DATA_DIR").unwrap_or_else(|| "./custodia-data".to_owned()));

        let database_url = get("CUSTODIA_DATABASE_URL")
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("custodia.db").display()));
        let engine = if database_url.starts_with("sqlite:") {
            Engine::Sqlite
        } else if database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://")
        {
            Engine::Postgres
        } else {
            return Err(bad(
                "CUSTODIA_DATABASE_URL",
                "must start with sqlite:// or postgres://",
            ));
        };
        if engine == Engine::Postgres {
            Url::parse(&database_url)
                .map_err(|e| bad("CUSTODIA_DATABASE_URL", format!("not a valid URL ({e})")))?;
        }

        let blob_store = match get("CUSTODIA_BLOB_STORE") {
            None => BlobLocation::File(data_dir.join("blobs")),
            Some(raw) => parse_blob_store(&raw, &get)?,
        };

        let master_key_file = get("CUSTODIA_MASTER_KEY_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|| data_dir.join("master.key"));

        let listen: SocketAddr = match get("CUSTODIA_LISTEN") {
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
            Some(raw) => raw.parse().map_err(|_| {
                bad(
                    "CUSTODIA_LISTEN",
                    format!("'{raw}' is not a socket address like 127.0.0.1:8080"),
                )
            })?,
        };

        let public_url = match get("CUSTODIA_PUBLIC_URL") {
            None => Url::parse(&format!("http://localhost:{}", listen.port()))
                .map_err(|e| bad("CUSTODIA_LISTEN", e.to_string()))?,
            Some(raw) => {
                let url = Url::parse(&raw).map_err(|e| {
                    bad("CUSTODIA_PUBLIC_URL", format!("'{raw}' is not a URL ({e})"))
                })?;
                if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                    return Err(bad(
                        "CUSTODIA_PUBLIC_URL",
                        "must be an http(s) origin such as https://vault.example.gov.cn",
                    ));
                }
                url
            }
        };

        let max_upload_bytes = match get("CUSTODIA_MAX_UPLOAD_BYTES") {
            None => 50 * 1024 * 1024,
            Some(raw) => raw.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                bad(
                    "CUSTODIA_MAX_UPLOAD_BYTES",
                    format!("'{raw}' is not a positive number of bytes"),
                )
            })?,
        };

        let number =
            |var: &'static str, default: u32, min: u32, max: u32| -> Result<u32, ConfigError> {
                match get(var) {
                    None => Ok(default),
                    Some(raw) => raw
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (min..=max).contains(n))
                        .ok_or_else(|| {
                            bad(
                                var,
                                format!("'{raw}' is not a whole number from {min} to {max}"),
                            )
                        }),
                }
            };
        let argon2 = Argon2Cost {
            m_kib: number(
                "CUSTODIA_ARGON2_MEMORY_KIB",
                64 * 1024,
                8 * 1024,
                4 * 1024 * 1024,
            )?,
            t: number("CUSTODIA_ARGON2_ITERATIONS", 3, 1, 100)?,
            p: number("CUSTODIA_ARGON2_PARALLELISM", 1, 1, 16)?,
        };
        let argon2_concurrency = number("CUSTODIA_ARGON2_CONCURRENCY", 2, 1, 64)? as usize;

        let catalog_file = get("CUSTODIA_CATALOG_FILE").map(PathBuf::from);

        let witnesses = match get("CUSTODIA_WITNESSES") {
            None => Vec::new(),
            Some(raw) => parse_witnesses(&raw)?,
        };
        let majority = witnesses.len() / 2 + usize::from(!witnesses.is_empty());
        let witness_quorum = match get("CUSTODIA_WITNESS_QUORUM") {
            None => majority,
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|k| (1..=witnesses.len()).contains(k))
                .ok_or_else(|| {
                    bad(
                        "CUSTODIA_WITNESS_QUORUM",
                        format!(
                            "'{raw}' is not a number from 1 to the {} witness(es) in CUSTODIA_WITNESSES",
                            witnesses.len()
                        ),
                    )
                })?,
        };

        let trusted_proxies = match get("CUSTODIA_TRUSTED_PROXIES") {
            None => Vec::new(),
            Some(raw) => parse_proxies(&raw)?,
        };

        let registration = match get("CUSTODIA_REGISTRATION").as_deref().map(str::trim) {
            None | Some("enrolment") => Registration::Enrolment,
            Some("oidc") => Registration::Oidc,
            Some("open") => Registration::Open,
            Some(other) => {
                return Err(bad(
                    "CUSTODIA_REGISTRATION",
                    format!(
                        "`{other}` is not a registration mode: use `enrolment`, `oidc` or `open`"
                    ),
                ));
            }
        };
        let oidc = parse_oidc(&get, registration)?;
        let metrics_token = match get("CUSTODIA_METRICS_TOKEN") {
            None => None,
            Some(t) if t.trim().len() >= 16 && t.trim().bytes().all(|b| b.is_ascii_graphic()) => {
                Some(t.trim().to_owned())
            }
            Some(_) => {
                return Err(bad(
                    "CUSTODIA_METRICS_TOKEN",
                    "must be at least 16 printable characters without spaces \
                     (e.g. `openssl rand -hex 32`)",
                ));
            }
        };
        let quota_bytes = match get("CUSTODIA_QUOTA_MIB") {
            None => 512 * 1024 * 1024,
            Some(raw) => raw
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|m| (1..=1024 * 1024).contains(m))
                .map(|m| m * 1024 * 1024)
                .ok_or_else(|| {
                    bad(
                        "CUSTODIA_QUOTA_MIB",
                        format!("'{raw}' is not a number of MiB from 1 to 1048576"),
                    )
                })?,
        };
        let flag = |name: &'static str| match get(name).as_deref().map(str::trim) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(_) => Err(bad(name, "must be true or false")),
        };
        let webhook_allow_loopback = flag("CUSTODIA_WEBHOOK_ALLOW_LOOPBACK")?;
        let webhook_allow_private = flag("CUSTODIA_WEBHOOK_ALLOW_PRIVATE")?;
        let metrics_listen = match get("CUSTODIA_METRICS_LISTEN") {
            None => None,
            Some(raw) => Some(raw.trim().parse::<SocketAddr>().map_err(|_| {
                bad(
                    "CUSTODIA_METRICS_LISTEN",
                    format!("'{raw}' is not a socket address such as 10.0.0.5:9100"),
                )
            })?),
        };

        Ok(Self {
            data_dir,
            database_url,
            engine,
            blob_store,
            master_key_file,
            listen,
            public_url,
            max_upload_bytes,
            argon2,
            argon2_concurrency,
            catalog_file,
            witnesses,
            witness_quorum,
            trusted_proxies,
            registration,
            oidc,
            metrics_token,
            metrics_listen,
            quota_bytes,
            webhook_allow_loopback,
            webhook_allow_private,
        })
    }

    /// The audit log's origin: the first line of its checkpoints and its signing key's
    /// name in them (C2SP), from the public URL's host, e.g. `custodia.gov.example/audit`.
    pub fn audit_origin(&self) -> String {
        format!(
            "{}/audit",
            self.public_url.host_str().unwrap_or("localhost")
        )
    }

    /// Where the server remembers the newest audit checkpoint it signed, outside the
    /// database (`<data dir>/audit-checkpoint`).
    pub fn audit_memory_file(&self) -> PathBuf {
        self.data_dir.join("audit-checkpoint")
    }

    /// The Ed25519 signing key file, kept beside the master key.
    pub fn signing_key_file(&self) -> PathBuf {
        sibling(&self.master_key_file, "signing.key")
    }
}

/// Parses `URL=VERIFIER_KEY,…`: http(s) URLs, `cosignature/v1` keys, distinct names.
fn parse_witnesses(raw: &str) -> Result<Vec<WitnessSetting>, ConfigError> {
    const VAR: &str = "CUSTODIA_WITNESSES";
    let mut out: Vec<WitnessSetting> = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (url, key) = item.split_once('=').ok_or_else(|| {
            bad(
                VAR,
                format!("'{item}' is not URL=VERIFIER_KEY (e.g. http://127.0.0.1:7001=witness.example+1a2b3c4d+BA…)"),
            )
        })?;
        let url = Url::parse(url.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| bad(VAR, format!("'{url}' is not an http(s) URL")))?;
        let key = custodia_crypto::witness::NamedKey::parse(key)
            .ok()
            .filter(|k| k.alg == custodia_crypto::witness::ALG_COSIGNATURE_V1)
            .ok_or_else(|| {
                bad(
                    VAR,
                    format!("'{key}' is not a witness verifier key (as `custodia witness serve` prints it)"),
                )
            })?;
        if out.iter().any(|w| w.key.name == key.name) {
            return Err(bad(VAR, format!("witness '{}' is named twice", key.name)));
        }
        out.push(WitnessSetting { url, key });
    }
    Ok(out)
}

fn sibling(path: &Path, name: &str) -> PathBuf {
    path.parent()
        .map(|dir| dir.join(name))
        .unwrap_or_else(|| PathBuf::from(name))
}

fn parse_blob_store(
    raw: &str,
    get: &impl Fn(&str) -> Option<String>,
) -> Result<BlobLocation, ConfigError> {
    const VAR: &str = "CUSTODIA_BLOB_STORE";
    let url = Url::parse(raw).map_err(|e| bad(VAR, format!("'{raw}' is not a URL ({e})")))?;
    match url.scheme() {
        "file" => url
            .to_file_path()
            .map(BlobLocation::File)
            .map_err(|()| bad(VAR, "a file:// URL must hold an absolute path")),
        "s3" => {
            let bucket = url
                .host_str()
                .filter(|b| !b.is_empty())
                .ok_or_else(|| bad(VAR, "an s3:// URL names a bucket: s3://BUCKET/PREFIX"))?;
            if url.query().is_some() || url.fragment().is_some() || url.password().is_some() {
                return Err(bad(
                    VAR,
                    "an s3:// URL is s3://BUCKET/PREFIX; credentials go in AWS_* variables",
                ));
            }
            const ENDPOINT: &str = "AWS_ENDPOINT_URL";
            let allow_http = match get("AWS_ALLOW_HTTP").as_deref() {
                None | Some("false") => false,
                Some("true") => true,
                Some(_) => return Err(bad("AWS_ALLOW_HTTP", "must be true or false")),
            };
            let endpoint = get(ENDPOINT);
            if let Some(e) = &endpoint {
                let parsed =
                    Url::parse(e).map_err(|err| bad(ENDPOINT, format!("not a URL ({err})")))?;
                match parsed.scheme() {
                    "https" => {}
                    "http" if allow_http => {}
                    "http" => {
                        return Err(bad(
                            ENDPOINT,
                            "is http://: set AWS_ALLOW_HTTP=true to allow an endpoint without TLS",
                        ));
                    }
                    _ => return Err(bad(ENDPOINT, "must be an https:// URL")),
                }
            }
            Ok(BlobLocation::S3(S3Location {
                bucket: bucket.to_owned(),
                prefix: url.path().trim_matches('/').to_owned(),
                endpoint,
                allow_http,
                region: get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")),
                access_key_id: get("AWS_ACCESS_KEY_ID"),
                secret_access_key: get("AWS_SECRET_ACCESS_KEY"),
                session_token: get("AWS_SESSION_TOKEN"),
            }))
        }
        other => Err(bad(
            VAR,
            format!("unknown scheme '{other}': use file:///PATH or s3://BUCKET/PREFIX"),
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn an_s3_blob_store_takes_its_bucket_prefix_and_aws_settings() {
        let c = cfg(&[
            ("CUSTODIA_BLOB_STORE", "s3://vault-blobs/province/a"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_REGION", "cn-north-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI"),
        ])
        .unwrap();
        let BlobLocation::S3(s3) = &c.blob_store else {
            panic!("not S3: {:?}", c.blob_store);
        };
        assert_eq!(
            (s3.bucket.as_str(), s3.prefix.as_str()),
            ("vault-blobs", "province/a")
        );
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(
            !format!("{s3:?}").contains("wJalrXUtnFEMI"),
            "the secret is never shown"
        );
        assert!(!c.describe().contains("wJalrXUtnFEMI"));
        // Plain HTTP only when allowed; a bucket is required.
        for vars in [
            &[
                ("CUSTODIA_BLOB_STORE", "s3://b/p"),
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
            ][..],
            &[("CUSTODIA_BLOB_STORE", "s3:///p")][..],
            &[("CUSTODIA_BLOB_STORE", "s3://b/p?secret=x")][..],
        ] {
            assert!(cfg(vars).is_err(), "{vars:?}");
        }
    }

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn oidc_registration_needs_a_provider_it_can_trust() {
        let oidc = |extra: &[(&'static str, &'static str)]| {
            let mut vars = vec![("CUSTODIA_REGISTRATION", "oidc")];
            vars.extend_from_slice(extra);
            cfg(&vars)
        };
        assert_eq!(
            oidc(&[("CUSTODIA_OIDC_CLIENT_ID", "custodia")])
                .unwrap_err()
                .variable,
            "CUSTODIA_OIDC_ISSUER"
        );
        assert_eq!(
            oidc(&[("CUSTODIA_OIDC_ISSUER", "https://eid.example")])
                .unwrap_err()
                .variable,
            "CUSTODIA_OIDC_CLIENT_ID"
        );
        // Plain http only to this machine.
        for bad in [
            "http://eid.example",
            "ftp://eid.example",
            "https://eid.example/?a=1",
        ] {
            let err = cfg(&[
                ("CUSTODIA_REGISTRATION", "oidc"),
                ("CUSTODIA_OIDC_ISSUER", bad),
                ("CUSTODIA_OIDC_CLIENT_ID", "custodia"),
            ])
            .unwrap_err();
            assert_eq!(err.variable, "CUSTODIA_OIDC_ISSUER", "{bad}");
        }
        let c = oidc(&[
            ("CUSTODIA_OIDC_ISSUER", "http://127.0.0.1:4000"),
            ("CUSTODIA_OIDC_CLIENT_ID", "custodia"),
        ])
        .unwrap();
        let settings = c.oidc.unwrap();
        assert_eq!(settings.national_id_claim, "sub");
        assert!(settings.client_secret.is_none());
        let c = oidc(&[
            ("CUSTODIA_OIDC_ISSUER", "https://eid.example"),
            ("CUSTODIA_OIDC_CLIENT_ID", "custodia"),
            ("CUSTODIA_OIDC_CLIENT_SECRET", "s3cret"),
            ("CUSTODIA_OIDC_NATIONAL_ID_CLAIM", "personal_code"),
        ])
        .unwrap();
        assert!(
            !format!("{:?}", c.oidc).contains("s3cret"),
            "the secret is not logged"
        );
        assert_eq!(c.oidc.unwrap().national_id_claim, "personal_code");
        // eID settings without the mode are a mistake, not silently ignored.
        let err = cfg(&[("CUSTODIA_OIDC_ISSUER", "https://eid.example")]).unwrap_err();
        assert_eq!(err.variable, "CUSTODIA_OIDC_ISSUER");
        assert!(cfg(&[]).unwrap().oidc.is_none());
    }

    #[test]
    fn embedded_default_needs_nothing() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.engine, Engine::Sqlite);
        assert_eq!(c.database_url, "sqlite://./custodia-data/custodia.db");
        assert_eq!(
            c.blob_store,
            BlobLocation::File("./custodia-data/blobs".into())
        );
        assert_eq!(
            c.master_key_file,
            PathBuf::from("./custodia-data/master.key")
        );
        assert_eq!(
            c.signing_key_file(),
            PathBuf::from("./custodia-data/signing.key")
        );
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.public_url.as_str(), "http://localhost:8080/");
    }

    #[test]
    fn each_bad_setting_names_its_variable() {
        for (var, value) in [
            ("CUSTODIA_DATABASE_URL", "mysql://x"),
            ("CUSTODIA_LISTEN", "localhost"),
            ("CUSTODIA_PUBLIC_URL", "ftp://x"),
            ("CUSTODIA_BLOB_STORE", "gopher://x"),
            ("CUSTODIA_MAX_UPLOAD_BYTES", "-1"),
            ("CUSTODIA_ARGON2_MEMORY_KIB", "16"),
            ("CUSTODIA_ARGON2_CONCURRENCY", "0"),
            ("CUSTODIA_TRUSTED_PROXIES", "10.0.0.0/33"),
            ("CUSTODIA_TRUSTED_PROXIES", "10.0.0.1, proxy.internal"),
        ] {
            let err = cfg(&[(var, value)]).unwrap_err();
            assert_eq!(err.variable, var);
            assert!(err.to_string().starts_with(var));
        }
    }

    #[test]
    fn trusted_proxies_are_cidrs_or_addresses() {
        let c = cfg(&[("CUSTODIA_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.7,fd00::/8")]).unwrap();
        let shown: Vec<String> = c.trusted_proxies.iter().map(|n| n.to_string()).collect();
        assert_eq!(shown, ["10.0.0.0/8", "192.0.2.7/32", "fd00::/8"]);
        assert!(cfg(&[]).unwrap().trusted_proxies.is_empty());
    }

    #[test]
    fn postgres_and_file_urls_are_accepted() {
        let c = cfg(&[
            ("CUSTODIA_DATABASE_URL", "postgres://u@127.0.0.1/db"),
            ("CUSTODIA_BLOB_STORE", "file:///var/lib/custodia/blobs"),
        ])
        .unwrap();
        assert_eq!(c.engine, Engine::Postgres);
        assert_eq!(
            c.blob_store,
            BlobLocation::File("/var/lib/custodia/blobs".into())
        );
    }

    #[test]
    fn witnesses_are_url_and_verifier_key_with_a_quorum() {
        let key = |name: &str| {
            custodia_crypto::witness::NamedKey {
                name: name.into(),
                alg: custodia_crypto::witness::ALG_COSIGNATURE_V1,
                key: custodia_crypto::sign::SigningKey::generate().verifying_key(),
            }
            .encode()
        };
        let (a, b, c) = (key("a/w"), key("b/w"), key("c/w"));
        let three = format!("http://127.0.0.1:7001={a}, https://w.example/b={b},http://h:1={c}");
        let config = cfg(&[("CUSTODIA_WITNESSES", &three)]).unwrap();
        assert_eq!(config.witnesses.len(), 3);
        assert_eq!(config.witness_quorum, 2, "a majority by default");
        assert_eq!(config.witnesses[1].key.name, "b/w");
        let all = cfg(&[
            ("CUSTODIA_WITNESSES", &three),
            ("CUSTODIA_WITNESS_QUORUM", "3"),
        ])
        .unwrap();
        assert_eq!(all.witness_quorum, 3);
        assert_eq!(cfg(&[]).unwrap().witness_quorum, 0);

        let refused = |vars: &[(&str, &str)]| cfg(vars).unwrap_err().variable;
        assert_eq!(
            refused(&[
                ("CUSTODIA_WITNESSES", &three),
                ("CUSTODIA_WITNESS_QUORUM", "4")
            ]),
            "CUSTODIA_WITNESS_QUORUM"
        );
        assert_eq!(
            refused(&[("CUSTODIA_WITNESSES", &format!("ftp://h={a}"))]),
            "CUSTODIA_WITNESSES"
        );
        assert_eq!(
            refused(&[("CUSTODIA_WITNESSES", "http://h:1")]),
            "CUSTODIA_WITNESSES"
        );
        let log_key = custodia_crypto::tlog::verifier_key(
            "log/audit",
            &custodia_crypto::sign::SigningKey::generate().verifying_key(),
        );
        assert_eq!(
            refused(&[("CUSTODIA_WITNESSES", &format!("http://h:1={log_key}"))]),
            "CUSTODIA_WITNESSES",
            "a log's key is no witness key"
        );
        assert_eq!(
            refused(&[(
                "CUSTODIA_WITNESSES",
                &format!("http://h:1={a},http://h:2={a}")
            )]),
            "CUSTODIA_WITNESSES"
        );
    }
}
