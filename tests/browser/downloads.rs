//! Downloads as Chromium makes them: the page's download link saves a multi-megabyte PDF
//! byte for byte, and a `fetch()` with the browser's own headers (it asks for gzip, br and
//! zstd) receives the whole body.

use crate::browser::Browser;
use crate::journeys::{fill_licence_fields, national_id, register};
use crate::server::{Custodia, Engine};

/// A PDF-looking file of `len` bytes with varied contents.
fn pdf(len: usize) -> Vec<u8> {
    let mut bytes = b"%PDF-1.7\n".to_vec();
    let mut x: u32 = 0x9E37_79B9;
    while bytes.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        bytes.push(x.to_le_bytes()[0]);
    }
    bytes
}

fn sha256_hex(bytes: &[u8]) -> String {
    custodia_crypto::digest::hex(&custodia_crypto::digest::sha256(bytes))
}

pub async fn a_large_pdf_downloads_whole(lang: &'static str, engine: Engine, seq: u32) {
    let server = Custodia::start(engine).await;
    let b = Browser::launch(&server.origin, lang).await;
    b.add_authenticator().await;
    register(&b, &server, &national_id(seq), "李娜", false).await;

    // Upload a 3 MiB PDF through the page's form.
    let bytes = pdf(3 * 1024 * 1024 + 4321);
    let file = tempfile::Builder::new()
        .prefix("licence-")
        .suffix(".pdf")
        .tempfile()
        .expect("temporary file");
    std::fs::write(file.path(), &bytes).expect("write the PDF");
    b.goto("/documents/new?type=business_license").await;
    fill_licence_fields(&b, "下载示例有限公司").await;
    b.find("#file")
        .await
        .send_keys(&file.path().display().to_string())
        .await
        .expect("choose the file");
    b.click("#document-form button[type=submit]").await;
    for _ in 0..300 {
        let path = b.path().await;
        if path.starts_with("/documents/") && path != "/documents/new" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let page = b.path().await;
    assert!(
        page.starts_with("/documents/") && page != "/documents/new",
        "the upload leads to the document's page, not {page} (error: {:?})",
        b.error_text().await
    );

    // The page's download link: the saved file is the uploaded one, byte for byte.
    let link = b.find("a[href*='download=1']").await;
    let href = link
        .attr("href")
        .await
        .ok()
        .flatten()
        .expect("a download link");
    link.click().await.expect("click the download link");
    let saved = b.wait_download_bytes(".pdf").await;
    assert_eq!(saved.len(), bytes.len(), "the saved file is complete");
    assert!(saved == bytes, "the saved file is byte-identical");

    // fetch() with the browser's default headers: the whole body, uncompressed, verified.
    let script = format!(
        r#"return fetch("{href}").then(async (r) => {{
             const body = await r.arrayBuffer();
             const digest = await crypto.subtle.digest("SHA-256", body);
             const hex = Array.from(new Uint8Array(digest)).map(b => b.toString(16).padStart(2, "0")).join("");
             return JSON.stringify({{ status: r.status, length: body.byteLength, sha256: hex,
               declared: r.headers.get("content-length"), encoding: r.headers.get("content-encoding") }});
           }});"#
    );
    let got: serde_json::Value = serde_json::from_str(&b.js(&script).await).expect("JSON");
    assert_eq!(got["status"], 200, "{got}");
    assert_eq!(got["length"], bytes.len(), "{got}");
    assert_eq!(got["declared"], bytes.len().to_string(), "{got}");
    assert_eq!(got["encoding"], serde_json::Value::Null, "{got}");
    assert_eq!(got["sha256"], sha256_hex(&bytes), "{got}");

    // And a resumed fetch from the middle, as a download manager does.
    let script = format!(
        r#"return fetch("{href}", {{ headers: {{ "Range": "bytes=1500000-" }} }}).then(async (r) => {{
             const body = await r.arrayBuffer();
             const digest = await crypto.subtle.digest("SHA-256", body);
             const hex = Array.from(new Uint8Array(digest)).map(b => b.toString(16).padStart(2, "0")).join("");
             return JSON.stringify({{ status: r.status, length: body.byteLength, sha256: hex,
               range: r.headers.get("content-range") }});
           }});"#
    );
    let got: serde_json::Value = serde_json::from_str(&b.js(&script).await).expect("JSON");
    assert_eq!(got["status"], 206, "{got}");
    assert_eq!(got["sha256"], sha256_hex(&bytes[1_500_000..]), "{got}");
    assert_eq!(
        got["range"],
        format!("bytes 1500000-{}/{}", bytes.len() - 1, bytes.len()),
        "{got}"
    );
    b.close().await;
    server.assert_no_panic();
}
