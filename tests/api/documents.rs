//! Documents: encrypted, typed, versioned materials with streamed files (SPEC G4, G5, G7, G8).

use custodia::on_engine;
use serde_json::{Value, json};

use crate::citizen_kit::{Citizen, PASSPHRASE, licence_fields, pdf_bytes};
use crate::helpers::{Backend, TestEnv, assert_problem, every_store, national_id, spawn_app};

every_store!(
    fields_and_a_multi_chunk_file_round_trip_and_versions_stay,
    ciphertext_swapped_between_rows_or_chunks_fails,
    another_citizens_document_is_not_found,
    oversized_and_wrong_typed_uploads_leave_nothing,
    delete_destroys_keys_and_blobs,
    a_locked_vault_is_told_to_unlock_and_bad_fields_are_named,
    the_catalog_is_published,
);

pub(crate) async fn count(app: &crate::helpers::TestApp, sql: &'static str) -> i64 {
    let mut tx = app.state.store.begin().await.unwrap();
    let n: i64 = on_engine!(&mut tx, c => {
        sqlx::query_scalar(sql).fetch_one(&mut **c).await.unwrap()
    });
    n
}

/// Swaps one column's value between the version-1 rows of two documents (read first,
/// then written, so the swap is exact on every engine).
async fn swap_column(app: &crate::helpers::TestApp, a: uuid::Uuid, b: uuid::Uuid, column: &str) {
    let mut tx = app.state.store.begin().await.unwrap();
    let select = format!("SELECT {column} FROM document_versions WHERE document_id = $1");
    let update = format!("UPDATE document_versions SET {column} = $1 WHERE document_id = $2");
    on_engine!(&mut tx, conn => {
        if column == "blob_name" {
            let mut values = Vec::new();
            for id in [a, b] {
                let v: String = sqlx::query_scalar(sqlx::AssertSqlSafe(select.clone()))
                    .bind(id).fetch_one(&mut **conn).await.unwrap();
                values.push(v);
            }
            for (id, v) in [(a, &values[1]), (b, &values[0])] {
                sqlx::query(sqlx::AssertSqlSafe(update.clone()))
                    .bind(v).bind(id).execute(&mut **conn).await.unwrap();
            }
        } else {
            let mut values = Vec::new();
            for id in [a, b] {
                let v: Vec<u8> = sqlx::query_scalar(sqlx::AssertSqlSafe(select.clone()))
                    .bind(id).fetch_one(&mut **conn).await.unwrap();
                values.push(v);
            }
            for (id, v) in [(a, &values[1]), (b, &values[0])] {
                sqlx::query(sqlx::AssertSqlSafe(update.clone()))
                    .bind(v).bind(id).execute(&mut **conn).await.unwrap();
            }
        }
    });
    tx.commit().await.unwrap();
}

/// A download fails when it is refused, or when its body breaks off (a chunk did not verify).
/// The connection is not reused: a body that broke off leaves it unusable.
async fn download_fails(c: &Citizen, path: &str) -> bool {
    let sent = c
        .http
        .get(format!("{}{path}", c.base))
        .header("connection", "close")
        .send()
        .await;
    match sent {
        Err(_) => true,
        Ok(response) => response.status() != 200 || response.bytes().await.is_err(),
    }
}

/// Every committed blob, wherever the store keeps them (files or a bucket).
async fn blob_files(app: &crate::helpers::TestApp) -> Vec<String> {
    let mut names: Vec<String> = app
        .state
        .blobs
        .list()
        .await
        .unwrap()
        .iter()
        .map(|n| n.as_str().to_owned())
        .collect();
    names.sort();
    names
}

/// On local files, no upload's temporary file is left behind (S3 has none: an unfinished
/// upload is never visible).
fn no_temporaries(env: &TestEnv) {
    if !crate::helpers::on_s3() {
        assert_eq!(
            std::fs::read_dir(env.data_dir().join("blobs/tmp"))
                .unwrap()
                .count(),
            0
        );
    }
}

/// Every stored byte: the data directory's files and every blob's ciphertext.
async fn stored_bytes(env: &TestEnv, blobs: &custodia::store::blob::BlobStore) -> Vec<u8> {
    let mut everything = Vec::new();
    fn walk(dir: &std::path::Path, out: &mut Vec<u8>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            if entry.path().is_dir() {
                walk(&entry.path(), out);
            } else if let Ok(bytes) = std::fs::read(entry.path()) {
                out.extend_from_slice(&bytes);
            }
        }
    }
    walk(&env.data_dir(), &mut everything);
    for name in blobs.list().await.unwrap() {
        let mut reader = blobs.read_from(&name, 0).await.unwrap();
        tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut everything)
            .await
            .unwrap();
    }
    everything
}

async fn fields_and_a_multi_chunk_file_round_trip_and_versions_stay(backend: Backend) {
    let (env, app) = spawn_app(backend).await;
    let c = Citizen::register(&app, &national_id(40), "Wu Hao").await;
    let file = pdf_bytes(300 * 1024 + 17, "MARKER-FILE-ROUND-TRIP");
    let created = c
        .upload(
            None,
            "business_license",
            licence_fields("北京往返测试有限公司"),
            Some(("营业执照.pdf", file.clone())),
        )
        .await;
    assert_eq!(created.status(), 201);
    let stored: Value = created.json().await.unwrap();
    assert_eq!(stored["version"], 1);
    assert_eq!(stored["type"], "business_license");
    let id = stored["id"].as_str().unwrap().to_owned();

    let view: Value = c
        .get(&format!("/me/documents/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["fields"]["company_name"], "北京往返测试有限公司");
    assert_eq!(view["file"]["name"], "营业执照.pdf");
    assert_eq!(view["file"]["media_type"], "application/pdf");
    assert_eq!(view["file"]["size"], file.len());
    assert_eq!(view["content_sha256"].as_str().unwrap().len(), 64);

    let download = c.get(&format!("/me/documents/{id}/file?download=1")).await;
    assert_eq!(download.status(), 200);
    assert_eq!(download.headers()["content-type"], "application/pdf");
    assert_eq!(download.headers()["x-content-type-options"], "nosniff");
    let disposition = download.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(disposition.starts_with("attachment;") && disposition.contains("filename*=UTF-8''"));
    assert_eq!(download.bytes().await.unwrap().as_ref(), file.as_slice());

    // A new version; the old one stays readable.
    let replaced = c
        .upload(
            Some(&id),
            "business_license",
            licence_fields("北京第二版有限公司"),
            None,
        )
        .await;
    assert_eq!(replaced.status(), 200);
    assert_eq!(replaced.json::<Value>().await.unwrap()["version"], 2);
    let v2: Value = c
        .get(&format!("/me/documents/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v2["fields"]["company_name"], "北京第二版有限公司");
    assert_eq!(v2["file"], Value::Null);
    assert_eq!(v2["versions"].as_array().unwrap().len(), 2);
    let v1: Value = c
        .get(&format!("/me/documents/{id}?version=1"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v1["fields"]["company_name"], "北京往返测试有限公司");
    let old_file = c.get(&format!("/me/documents/{id}/file?version=1")).await;
    assert_eq!(old_file.bytes().await.unwrap().as_ref(), file.as_slice());
    let wrong_type = c
        .upload(Some(&id), "degree_certificate", json!({}), None)
        .await;
    assert_problem(wrong_type, 422).await;

    let list: Value = c.get("/me/documents").await.json().await.unwrap();
    assert_eq!(list["documents"].as_array().unwrap().len(), 1);
    assert_eq!(list["documents"][0]["version"], 2);
    let blobs = app.state.blobs.clone();
    app.stop().await;

    // Neither field values nor file bytes are anywhere in clear.
    let everything = stored_bytes(&env, &blobs).await;
    for needle in [
        "北京往返测试有限公司",
        "北京第二版有限公司",
        "MARKER-FILE-ROUND-TRIP",
        "营业执照.pdf",
    ] {
        assert!(
            !everything
                .windows(needle.len())
                .any(|w| w == needle.as_bytes()),
            "{needle} in clear on disk"
        );
    }
}

async fn ciphertext_swapped_between_rows_or_chunks_fails(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let c = Citizen::register(&app, &national_id(41), "Xu Jing").await;
    let file_a = pdf_bytes(200 * 1024, "A");
    let file_b = pdf_bytes(200 * 1024, "B");
    let a: Value = c
        .upload(
            None,
            "business_license",
            licence_fields("甲公司"),
            Some(("a.pdf", file_a.clone())),
        )
        .await
        .json()
        .await
        .unwrap();
    let b: Value = c
        .upload(
            None,
            "business_license",
            licence_fields("乙公司"),
            Some(("b.pdf", file_b)),
        )
        .await
        .json()
        .await
        .unwrap();
    let (a, b) = (
        a["id"].as_str().unwrap().to_owned(),
        b["id"].as_str().unwrap().to_owned(),
    );
    let a_id: uuid::Uuid = a.parse().unwrap();
    let b_id: uuid::Uuid = b.parse().unwrap();

    // Swap the sealed fields of the two rows: each now fails to open rather than showing the other.
    swap_column(&app, a_id, b_id, "meta_enc").await;
    let body = assert_problem(c.get(&format!("/me/documents/{a}")).await, 500).await;
    assert!(!body.to_string().contains("乙公司"));
    swap_column(&app, a_id, b_id, "meta_enc").await;

    // Swap the blobs: the right key and context cannot open the other file.
    swap_column(&app, a_id, b_id, "blob_name").await;
    assert!(download_fails(&c, &format!("/me/documents/{a}/file")).await);
    assert!(download_fails(&c, &format!("/me/documents/{b}/file")).await);
    swap_column(&app, a_id, b_id, "blob_name").await;

    // Restored, both open again.
    let ok = c
        .get(&format!("/me/documents/{a}/file"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(ok.as_ref(), file_a.as_slice());
    let view: Value = c
        .get(&format!("/me/documents/{a}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["fields"]["company_name"], "甲公司");

    // Two chunks swapped inside one blob: the download breaks off.
    let blobs = &app.state.blobs;
    let mut tampered = None;
    for name in blobs.list().await.unwrap() {
        let mut bytes = Vec::new();
        let mut reader = blobs.read_from(&name, 0).await.unwrap();
        tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut bytes)
            .await
            .unwrap();
        if bytes.len() > 100_000 {
            tampered = Some((name, bytes));
            break;
        }
    }
    let (name, mut bytes) = tampered.unwrap();
    let chunk = 64 * 1024 + 16;
    let (first, second) = bytes[8..8 + 2 * chunk].split_at_mut(chunk);
    first.swap_with_slice(second);
    let mut rewrite = blobs.create_named(&name).await.unwrap();
    rewrite.write(&bytes).await.unwrap();
    rewrite.commit().await.unwrap();
    let a_broken = download_fails(&c, &format!("/me/documents/{a}/file")).await;
    let b_broken = download_fails(&c, &format!("/me/documents/{b}/file")).await;
    assert!(
        a_broken != b_broken,
        "exactly the tampered blob fails to download"
    );
    app.stop().await;
}

async fn another_citizens_document_is_not_found(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let owner = Citizen::register(&app, &national_id(42), "Owner").await;
    let other = Citizen::register(&app, &national_id(43), "Other").await;
    let stored: Value = owner
        .upload(
            None,
            "business_license",
            licence_fields("私有公司"),
            Some(("x.pdf", pdf_bytes(1000, "x"))),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = stored["id"].as_str().unwrap();
    assert_problem(other.get(&format!("/me/documents/{id}")).await, 404).await;
    assert_problem(other.get(&format!("/me/documents/{id}/file")).await, 404).await;
    assert_problem(other.delete(&format!("/me/documents/{id}")).await, 404).await;
    assert_problem(
        other
            .upload(Some(id), "business_license", licence_fields("篡改"), None)
            .await,
        404,
    )
    .await;
    assert_problem(other.get("/me/documents/not-a-uuid").await, 400).await;
    let mine: Value = owner
        .get(&format!("/me/documents/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["fields"]["company_name"], "私有公司", "unchanged");
    app.stop().await;
}

async fn oversized_and_wrong_typed_uploads_leave_nothing(backend: Backend) {
    let mut env = TestEnv::new(backend).await;
    env.vars
        .insert("CUSTODIA_MAX_UPLOAD_BYTES".into(), (256 * 1024).to_string());
    let app = env.start().await.unwrap();
    let c = Citizen::register(&app, &national_id(44), "Big File").await;

    let too_big = c
        .upload(
            None,
            "business_license",
            licence_fields("大文件"),
            Some(("big.pdf", pdf_bytes(300 * 1024, "big"))),
        )
        .await;
    let body = assert_problem(too_big, 413).await;
    assert!(body["detail"].as_str().unwrap().contains("limit"));

    let html = b"<html><script>alert(1)</script></html>".to_vec();
    let disguised = c
        .upload(
            None,
            "business_license",
            licence_fields("伪装"),
            Some(("licence.pdf", html)),
        )
        .await;
    assert_problem(disguised, 415).await;

    let bad_fields = c
        .upload(
            None,
            "business_license",
            json!({ "company_name": "缺字段" }),
            Some(("ok.pdf", pdf_bytes(10_000, "ok"))),
        )
        .await;
    assert_problem(bad_fields, 422).await;

    assert_eq!(count(&app, "SELECT COUNT(*) FROM documents").await, 0);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM document_versions").await,
        0
    );
    assert_eq!(count(&app, "SELECT COUNT(*) FROM pending_blobs").await, 0);
    let left = blob_files(&app).await;
    assert!(left.is_empty(), "no blob left behind: {left:?}");
    no_temporaries(&env);
    app.stop().await;
}

async fn delete_destroys_keys_and_blobs(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let c = Citizen::register(&app, &national_id(45), "Shred").await;
    let stored: Value = c
        .upload(
            None,
            "business_license",
            licence_fields("待删除公司"),
            Some(("d.pdf", pdf_bytes(100_000, "d"))),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = stored["id"].as_str().unwrap();
    c.upload(
        Some(id),
        "business_license",
        licence_fields("待删除公司二"),
        Some(("d2.pdf", pdf_bytes(90_000, "e"))),
    )
    .await;
    assert_eq!(blob_files(&app).await.len(), 2);
    assert_eq!(c.delete(&format!("/me/documents/{id}")).await.status(), 204);
    assert_problem(c.get(&format!("/me/documents/{id}")).await, 404).await;
    assert_problem(c.delete(&format!("/me/documents/{id}")).await, 404).await;
    assert!(blob_files(&app).await.is_empty());
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM document_versions").await,
        0,
        "no key left"
    );
    assert_eq!(count(&app, "SELECT COUNT(*) FROM pending_blobs").await, 0);
    let list: Value = c.get("/me/documents").await.json().await.unwrap();
    assert!(list["documents"].as_array().unwrap().is_empty());
    app.stop().await;
}

async fn a_locked_vault_is_told_to_unlock_and_bad_fields_are_named(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let mut c = Citizen::register(&app, &national_id(46), "Locked").await;
    let stored: Value = c
        .upload(None, "degree_certificate", json!({
            "holder_name": "Locked", "degree": "master", "major": "法学", "institution": "北京大学",
            "certificate_number": "1000142019001234", "conferred_on": "2019-07-01"
        }), None)
        .await
        .json()
        .await
        .unwrap();
    let id = stored["id"].as_str().unwrap().to_owned();
    c.post("/auth/logout", json!({})).await;
    c.login().await;
    let body = assert_problem(c.get(&format!("/me/documents/{id}")).await, 423).await;
    assert_eq!(body["type"], "/problems/vault-locked");
    assert_problem(
        c.upload(None, "business_license", licence_fields("锁"), None)
            .await,
        423,
    )
    .await;
    // Listing needs no key: it shows only types and versions.
    assert_eq!(c.get("/me/documents").await.status(), 200);
    assert_eq!(c.unlock(PASSPHRASE).await.status(), 200);

    let unknown = c.upload(None, "spaceship_licence", json!({}), None).await;
    let body = assert_problem(unknown, 422).await;
    assert!(body["detail"].as_str().unwrap().starts_with("type"));
    let mut fields = licence_fields("格式");
    fields["unified_social_credit_code"] = json!("123");
    let body = assert_problem(c.upload(None, "business_license", fields, None).await, 422).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("unified_social_credit_code")
    );
    let no_file_type = c
        .upload(None, "social_insurance_record", json!({
            "insured_name": "x", "insurance_number": "1", "city": "北京", "contribution_months": 12
        }), Some(("s.pdf", pdf_bytes(1000, "s"))))
        .await;
    assert_problem(no_file_type, 422).await;
    app.stop().await;
}

async fn the_catalog_is_published(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let catalog: Value = app.get("/api/v1/catalog").await.json().await.unwrap();
    let types = catalog["document_types"].as_array().unwrap();
    assert!(types.len() >= 8);
    let licence = types
        .iter()
        .find(|t| t["id"] == "business_license")
        .unwrap();
    assert_eq!(licence["names"]["zh-CN"], "营业执照");
    assert_eq!(licence["sharing_class"], "unconditional");
    assert_eq!(licence["has_file"], true);
    let code = licence["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "unified_social_credit_code")
        .unwrap();
    assert!(code["pattern"].is_string() && code["example"].is_string() && code["required"] == true);
    let purposes = catalog["purposes"].as_array().unwrap();
    let p = purposes
        .iter()
        .find(|p| p["code"] == "business_registration")
        .unwrap();
    assert_eq!(p["max_tier"], "fields");
    app.stop().await;
}

every_store!(an_interrupted_upload_leaves_no_document_and_is_swept);

async fn an_interrupted_upload_leaves_no_document_and_is_swept(backend: Backend) {
    use tokio::io::AsyncWriteExt;
    let (env, app) = spawn_app(backend).await;
    let c = Citizen::register(&app, &national_id(47), "Cut Off").await;
    // Sign in on a raw connection's behalf: a fresh session whose cookie we can read.
    let mut raw = Citizen {
        http: app.new_client(),
        ..c
    };
    let assertion = raw.assertion().await;
    let finish = raw
        .post("/auth/login/finish", json!({ "credential": assertion }))
        .await;
    let session_cookie = finish
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("custodia-session="))
        .unwrap();
    let body: Value = finish.json().await.unwrap();
    raw.csrf = body["csrf_token"].as_str().unwrap().to_owned();
    assert_eq!(raw.unlock(PASSPHRASE).await.status(), 200);
    let cookie = (
        session_cookie.split(';').next().unwrap().to_owned(),
        raw.csrf.clone(),
    );

    // An upload whose connection drops half-way through the file.
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let boundary = "XyZ";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"type\"\r\n\r\nbusiness_license\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.pdf\"\r\n\
         Content-Type: application/pdf\r\n\r\n"
    );
    let request = format!(
        "POST /me/documents HTTP/1.1\r\nHost: {addr}\r\nCookie: {}\r\nX-CSRF-Token: {}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 10000000\r\n\r\n{head}",
        cookie.0, cookie.1
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
        .write_all(&pdf_bytes(500 * 1024, "half"))
        .await
        .unwrap();
    stream.flush().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    drop(stream);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM documents").await,
        0,
        "no visible document"
    );
    assert!(blob_files(&app).await.is_empty());
    no_temporaries(&env);
    // Whatever record the cut left is swept once it is stale.
    app.clock.advance(time::Duration::minutes(61));
    custodia::documents::sweep_orphans(&app.state)
        .await
        .unwrap();
    assert_eq!(count(&app, "SELECT COUNT(*) FROM pending_blobs").await, 0);
    app.stop().await;
}
