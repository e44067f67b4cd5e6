//! Every download works in every client: sizes around the 64 KiB chunk edges, every
//! `Accept-Encoding` a real client sends, ranges, revalidation and `HEAD`, on the citizen's
//! and the agency's file routes alike — byte-identical bodies and honest headers.

use custodia::agencies::Level;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::agency_kit::Agency;
use crate::citizen_kit::{Citizen, pdf_bytes};
use crate::helpers::{Backend, TestApp, every_store, national_id, spawn_app};

every_store!(
    every_size_and_encoding_arrives_whole,
    ranges_and_validators_behave_as_on_a_file_server,
    ranged_agency_reads_are_recorded_with_their_range,
    text_answers_are_compressed_as_the_client_asks,
    real_clients_download_and_resume,
);

const KIB: usize = 1024;
const ENCODINGS: &[Option<&str>] = &[
    None,
    Some("identity"),
    Some("gzip"),
    Some("br"),
    Some("zstd"),
    Some("gzip, deflate, br, zstd"),
];

/// A reply, read whole.
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Who downloads: the citizen from her vault, or the agency under its grant.
enum Reader<'a> {
    Citizen(&'a Citizen),
    Agency(&'a Agency, String),
}

impl Reader<'_> {
    fn name(&self) -> &'static str {
        match self {
            Self::Citizen(_) => "citizen",
            Self::Agency(..) => "agency",
        }
    }

    async fn fetch(&self, method: reqwest::Method, doc: &str, headers: &[(&str, &str)]) -> Reply {
        let request = match self {
            Self::Citizen(c) => c
                .http
                .request(method, format!("{}/me/documents/{doc}/file", c.base)),
            Self::Agency(a, grant) => a
                .http
                .request(
                    method,
                    format!("{}/api/v1/grants/{grant}/documents/{doc}/file", a.base),
                )
                .bearer_auth(&a.key)
                .header("x-officer-id", "officer-7")
                .header("x-case-id", "CASE-2026-088"),
        };
        let mut request = request;
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("whole body").to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, doc: &str, headers: &[(&str, &str)]) -> Reply {
        self.fetch(reqwest::Method::GET, doc, headers).await
    }
}

async fn store(c: &Citizen, bytes: Vec<u8>) -> String {
    c.licence("下载测试有限公司", Some(bytes)).await
}

/// A citizen with the documents `sizes` and an agency holding a full grant over them.
async fn setup(
    app: &TestApp,
    seq: u32,
    sizes: &[usize],
) -> (Citizen, Agency, String, Vec<(String, Vec<u8>)>) {
    let agency = Agency::create(app, "下载核验局", Level::Provincial).await;
    let c = Citizen::register(app, &national_id(seq), "Downloader").await;
    let mut docs = Vec::new();
    for &size in sizes {
        let bytes = pdf_bytes(size, &format!("size {size}"));
        docs.push((store(&c, bytes.clone()).await, bytes));
    }
    let grant = c
        .grant_to(
            &agency.id,
            json!({ "document_types": ["business_license"], "tier": "full", "purpose": "核验" }),
        )
        .await;
    (c, agency, grant, docs)
}

fn assert_whole(reply: &Reply, expected: &[u8], what: &str) {
    assert_eq!(reply.status, 200, "{what}");
    assert_eq!(
        reply.header("content-encoding"),
        None,
        "{what}: a file is sent as it is"
    );
    assert_eq!(
        reply.header("content-length"),
        Some(expected.len().to_string().as_str()),
        "{what}: Content-Length"
    );
    assert_eq!(reply.header("accept-ranges"), Some("bytes"), "{what}");
    assert_eq!(
        reply.header("content-type"),
        Some("application/pdf"),
        "{what}"
    );
    assert!(reply.header("etag").is_some(), "{what}: ETag");
    assert_eq!(reply.body.len(), expected.len(), "{what}: length");
    assert!(reply.body == expected, "{what}: bytes differ");
}

async fn every_size_and_encoding_arrives_whole(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let sizes = [
        KIB / 2,
        64 * KIB - 1,
        64 * KIB,
        64 * KIB + 1,
        1024 * KIB,
        10 * 1024 * KIB,
    ];
    let (c, agency, grant, docs) = setup(&app, 1401, &sizes).await;
    let readers = [Reader::Citizen(&c), Reader::Agency(&agency, grant)];
    for reader in &readers {
        for (doc, bytes) in &docs {
            for encoding in ENCODINGS {
                let headers: Vec<(&str, &str)> = encoding
                    .map(|e| ("accept-encoding", e))
                    .into_iter()
                    .collect();
                let reply = reader.get(doc, &headers).await;
                let what = format!("{} {} bytes, {encoding:?}", reader.name(), bytes.len());
                assert_whole(&reply, bytes, &what);
            }
        }
    }
    app.stop().await;
}

async fn ranges_and_validators_behave_as_on_a_file_server(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let size = 3 * 64 * KIB + 100;
    let (c, agency, grant, docs) = setup(&app, 1402, &[size]).await;
    let (doc, bytes) = &docs[0];
    let readers = [Reader::Citizen(&c), Reader::Agency(&agency, grant)];
    let chunk = 64 * KIB;
    for reader in &readers {
        let who = reader.name();
        let whole = reader.get(doc, &[]).await;
        assert_whole(&whole, bytes, who);
        let etag = whole.header("etag").unwrap().to_owned();

        // Single ranges: within a chunk, across a chunk edge, exactly a chunk, open-ended
        // from a chunk edge, suffixes, the last byte, past the end (clamped).
        let cases: Vec<(String, usize, usize)> = vec![
            ("bytes=0-0".into(), 0, 0),
            // The whole file as a range (how download managers probe): still 206.
            ("bytes=0-".into(), 0, size - 1),
            ("bytes=10-99".into(), 10, 99),
            (format!("bytes={}-{}", chunk - 1, chunk), chunk - 1, chunk),
            (
                format!("bytes={}-{}", chunk, 2 * chunk - 1),
                chunk,
                2 * chunk - 1,
            ),
            (format!("bytes={}-", 2 * chunk), 2 * chunk, size - 1),
            (format!("bytes={}-", chunk + 7), chunk + 7, size - 1),
            ("bytes=-100".into(), size - 100, size - 1),
            ("bytes=-1".into(), size - 1, size - 1),
            (
                format!("bytes={}-{}", size - 10, size + 5000),
                size - 10,
                size - 1,
            ),
            (format!("bytes=0-{}", chunk - 1), 0, chunk - 1),
            // Adjacent ranges make one.
            ("bytes=100-199,200-299".into(), 100, 299),
        ];
        for (range, first, last) in cases {
            for encoding in ["identity", "gzip, deflate, br, zstd"] {
                let r = reader
                    .get(doc, &[("range", &range), ("accept-encoding", encoding)])
                    .await;
                let what = format!("{who} {range} {encoding}");
                assert_eq!(r.status, 206, "{what}");
                assert_eq!(r.header("content-encoding"), None, "{what}");
                assert_eq!(
                    r.header("content-range"),
                    Some(format!("bytes {first}-{last}/{size}").as_str()),
                    "{what}"
                );
                assert_eq!(
                    r.header("content-length"),
                    Some((last - first + 1).to_string().as_str()),
                    "{what}"
                );
                assert!(r.body == bytes[first..=last], "{what}: bytes differ");
                assert_eq!(r.header("etag"), Some(etag.as_str()), "{what}");
            }
        }

        // Scattered ranges are answered with the whole file (no multipart/byteranges).
        let r = reader.get(doc, &[("range", "bytes=0-9,5000-5009")]).await;
        assert_whole(&r, bytes, &format!("{who} scattered ranges"));
        // A malformed range is ignored.
        let r = reader.get(doc, &[("range", "bytes=99-10")]).await;
        assert_whole(&r, bytes, &format!("{who} reversed range"));

        // Past the end: 416, problem+json, and the size in Content-Range.
        let r = reader
            .get(doc, &[("range", &format!("bytes={size}-"))])
            .await;
        assert_eq!(r.status, 416, "{who}");
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes */{size}").as_str())
        );
        let problem: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(problem["status"], 416);

        // Revalidation: the current ETag is 304 with no body, an old one the whole file.
        let r = reader.get(doc, &[("if-none-match", &etag)]).await;
        assert_eq!(r.status, 304, "{who}");
        assert!(r.body.is_empty());
        assert_eq!(r.header("etag"), Some(etag.as_str()));
        let r = reader
            .get(
                doc,
                &[("if-none-match", "\"0000\""), ("accept-encoding", "gzip")],
            )
            .await;
        assert_whole(&r, bytes, &format!("{who} stale If-None-Match"));

        // If-Range: the current tag resumes, an old one restarts from byte 0.
        let r = reader
            .get(doc, &[("range", "bytes=1000-"), ("if-range", &etag)])
            .await;
        assert_eq!(r.status, 206, "{who}");
        assert!(r.body == bytes[1000..]);
        let r = reader
            .get(
                doc,
                &[
                    ("range", "bytes=1000-"),
                    ("if-range", "\"an-older-version\""),
                ],
            )
            .await;
        assert_whole(&r, bytes, &format!("{who} If-Range with an old tag"));

        // HEAD: the headers of a GET, no body.
        let r = reader
            .fetch(reqwest::Method::HEAD, doc, &[("accept-encoding", "gzip")])
            .await;
        assert_eq!(r.status, 200, "{who} HEAD");
        assert_eq!(
            r.header("content-length"),
            Some(size.to_string().as_str()),
            "{who} HEAD"
        );
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
        assert_eq!(r.header("etag"), Some(etag.as_str()));
        assert!(r.body.is_empty());
    }

    // A new version gets a new ETag: a client holding the old one gets the new bytes.
    let newer = pdf_bytes(size, "the second version");
    let r = c
        .upload(
            Some(doc),
            "business_license",
            crate::citizen_kit::licence_fields("下载测试有限公司"),
            Some(("v2.pdf", newer.clone())),
        )
        .await;
    assert_eq!(r.status(), 200);
    let citizen = Reader::Citizen(&c);
    let old_tag = format!(
        "\"{}\"",
        custodia_crypto::digest::hex(&custodia_crypto::digest::sha256(bytes))
    );
    let r = citizen.get(doc, &[("if-none-match", &old_tag)]).await;
    assert_whole(&r, &newer, "new version, old ETag");
    let r = citizen
        .get(doc, &[("range", "bytes=5-"), ("if-range", &old_tag)])
        .await;
    assert_whole(&r, &newer, "resume against an older version");
    app.stop().await;
}

async fn ranged_agency_reads_are_recorded_with_their_range(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let size = 200 * KIB;
    let (_c, agency, grant, docs) = setup(&app, 1403, &[size]).await;
    let (doc, _) = &docs[0];
    let reader = Reader::Agency(&agency, grant);
    let (_, before) = app.state.store.audit_extent().await.unwrap();
    let whole = reader.get(doc, &[]).await;
    let etag = whole.header("etag").unwrap().to_owned();
    assert_eq!(
        reader
            .get(doc, &[("range", "bytes=70000-70999")])
            .await
            .status,
        206
    );
    assert_eq!(
        reader.get(doc, &[("if-none-match", &etag)]).await.status,
        304
    );
    assert_eq!(
        reader.fetch(reqwest::Method::HEAD, doc, &[]).await.status,
        200
    );
    assert_eq!(
        reader
            .get(doc, &[("range", &format!("bytes={}-", size + 1))])
            .await
            .status,
        416
    );
    let events = app
        .state
        .store
        .audit_events_after(before.unwrap_or(0), 100)
        .await
        .unwrap();
    let reads: Vec<_> = events
        .iter()
        .filter(|e| e.action == "document.file")
        .map(|e| (e.outcome.as_str(), e.bytes_sent, e.detail.as_deref()))
        .collect();
    let range_note = format!("range bytes 70000-70999/{size}");
    let unsatisfiable = format!("range not satisfiable (size {size})");
    assert_eq!(
        reads,
        vec![
            ("ok", Some(size as i64), None),
            ("ok", Some(1000), Some(range_note.as_str())),
            (
                "ok",
                Some(0),
                Some("not modified (the agency's copy is current)")
            ),
            ("ok", Some(0), Some("headers only")),
            ("ok", Some(0), Some(unsatisfiable.as_str())),
        ],
        "one record per request, naming what was sent"
    );
    custodia::audit::verify(&app.state.store, &app.state.audit_trust(), |_, _| {})
        .await
        .expect("the trail reads")
        .expect("the chain is intact");
    app.stop().await;
}

fn decode(encoding: &str, body: &[u8]) -> Vec<u8> {
    use std::io::Read as _;
    let mut out = Vec::new();
    match encoding {
        "gzip" => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .unwrap();
        }
        "br" => {
            brotli::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        "zstd" => out = zstd::stream::decode_all(body).unwrap(),
        other => panic!("unexpected encoding {other}"),
    }
    out
}

async fn text_answers_are_compressed_as_the_client_asks(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let (c, _agency, _grant, _docs) = setup(&app, 1404, &[KIB]).await;
    let plain = app
        .client
        .get(app.url("/api/v1/catalog"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.headers().get("content-encoding"), None);
    let plain = plain.bytes().await.unwrap().to_vec();
    for encoding in ["gzip", "br", "zstd"] {
        let r = app
            .client
            .get(app.url("/api/v1/catalog"))
            .header("accept-encoding", encoding)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()
                .get("content-encoding")
                .and_then(|v| v.to_str().ok()),
            Some(encoding)
        );
        let body = r.bytes().await.unwrap();
        assert!(body.len() < plain.len(), "{encoding} shrinks the catalog");
        assert_eq!(
            decode(encoding, &body),
            plain,
            "{encoding} decodes to the same JSON"
        );
    }
    // A browser's header picks one it supports; pages are compressed too.
    let page = c
        .http
        .get(format!("{}/documents", c.base))
        .header("accept-encoding", "gzip, deflate, br, zstd")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let encoding = page
        .headers()
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .expect("the page is compressed");
    let html = decode(&encoding, &page.bytes().await.unwrap());
    assert!(String::from_utf8(html).unwrap().contains("</html>"));
    app.stop().await;
}

/// curl as people run it: `--compressed` for a whole file, `-C -` to resume a cut one.
async fn real_clients_download_and_resume(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let size = 3 * 1024 * KIB + 123;
    let (_c, agency, grant, docs) = setup(&app, 1405, &[size]).await;
    let (doc, bytes) = &docs[0];
    let url = format!("{}/api/v1/grants/{grant}/documents/{doc}/file", agency.base);
    let dir = tempfile::tempdir().unwrap();
    let auth = format!("Authorization: Bearer {}", agency.key);
    let curl = |out: &std::path::Path, extra: &[&str]| {
        let status = std::process::Command::new("curl")
            .args(["--silent", "--show-error", "--fail"])
            .args([
                "-H",
                &auth,
                "-H",
                "X-Officer-Id: officer-7",
                "-H",
                "X-Case-Id: CASE-9",
            ])
            .args(extra)
            .arg("-o")
            .arg(out)
            .arg(&url)
            .status()
            .expect("curl runs");
        assert!(status.success(), "curl {extra:?}");
    };
    let whole = dir.path().join("whole.pdf");
    curl(&whole, &["--compressed"]);
    assert!(
        std::fs::read(&whole).unwrap() == *bytes,
        "curl --compressed"
    );

    // A download cut in the middle of a chunk, resumed with curl -C -.
    let cut = dir.path().join("cut.pdf");
    std::fs::write(&cut, &bytes[..1_500_000]).unwrap();
    curl(&cut, &["--compressed", "-C", "-"]);
    assert!(std::fs::read(&cut).unwrap() == *bytes, "curl -C - resumed");
    app.stop().await;
}
