//! Storage conformance: the same stories on SQLite and PostgreSQL.

use custodia::keyring::KeyError;
use custodia::on_engine;
use custodia::server::StartError;
use custodia::store::StoreError;
use custodia_crypto::SymmetricKey;

use crate::helpers::{Backend, TestEnv, both_backends, spawn_app};

both_backends!(
    migrations_apply_once_and_are_idempotent,
    service_keys_survive_restart_and_never_sit_in_clear,
    a_different_master_key_refuses_to_start,
    concurrent_write_transactions_all_commit,
    constraint_violations_are_conflicts_and_roll_back,
);

async fn migrations_apply_once_and_are_idempotent(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    app.state.store.migrate().await.unwrap();
    app.state.store.migrate().await.unwrap();
    app.stop().await;
}

async fn service_keys_survive_restart_and_never_sit_in_clear(backend: Backend) {
    let env = TestEnv::new(backend).await;
    let app = env.start().await.unwrap();
    let blind = *app.state.keys.blind_index.expose();
    let grant = *app.state.keys.grant_wrap.expose();
    let signing_id = app.state.keys.signing_key_id.clone();
    assert_ne!(blind, grant);
    app.stop().await;

    let again = env.start().await.unwrap();
    assert_eq!(*again.state.keys.blind_index.expose(), blind);
    assert_eq!(*again.state.keys.grant_wrap.expose(), grant);
    assert_eq!(again.state.keys.signing_key_id, signing_id);
    let published = again.state.store.signing_keys().await.unwrap();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].0, signing_id);

    for name in ["grant-wrap", "blind-index"] {
        let row = again.state.store.service_key(name).await.unwrap().unwrap();
        assert_eq!(row.master_key_id, again.state.keys.master_key_id);
        assert!(!contains(&row.wrapped, &blind) && !contains(&row.wrapped, &grant));
    }
    again.stop().await;

    if backend == Backend::Sqlite {
        // The whole database file (and its log) holds the keys only wrapped.
        for file in ["custodia.db", "custodia.db-wal"] {
            let path = env.data_dir().join(file);
            if let Ok(bytes) = std::fs::read(&path) {
                assert!(
                    !contains(&bytes, &blind),
                    "{file} holds the blind-index key in clear"
                );
                assert!(
                    !contains(&bytes, &grant),
                    "{file} holds the grant key in clear"
                );
            }
        }
    }
}

async fn a_different_master_key_refuses_to_start(backend: Backend) {
    let env = TestEnv::new(backend).await;
    env.start().await.unwrap().stop().await;
    let key_file = env.data_dir().join("master.key");
    std::fs::write(&key_file, format!("{}\n", "ab".repeat(32))).unwrap();
    match env.start().await {
        Err(StartError::Keys(KeyError::WrongMasterKey(name))) => assert_eq!(name, "grant-wrap"),
        Err(other) => panic!("unexpected start error: {other}"),
        Ok(_) => panic!("server started with the wrong master key"),
    }
}

async fn concurrent_write_transactions_all_commit(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    // Counters from now on, so the maintenance sweep (stale counters) leaves them alone.
    let now = custodia::clock::Clock::now_ms(&app.clock);
    let mut tasks = Vec::new();
    for i in 0..24i64 {
        let store = app.state.store.clone();
        tasks.push(tokio::spawn(async move {
            let mut tx = store.begin().await?;
            on_engine!(&mut tx, c => {
                sqlx::query("INSERT INTO rate_limits (bucket, window_start, hits) VALUES ($1, $2, $3)")
                    .bind(format!("bucket-{i}"))
                    .bind(now + i)
                    .bind(1i64)
                    .execute(&mut **c)
                    .await?;
            });
            tx.commit().await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let mut tx = app.state.store.begin().await.unwrap();
    let count: i64 = on_engine!(&mut tx, c => {
        sqlx::query_scalar("SELECT COUNT(*) FROM rate_limits").fetch_one(&mut **c).await.unwrap()
    });
    assert_eq!(count, 24);
    drop(tx);
    app.stop().await;
}

async fn constraint_violations_are_conflicts_and_roll_back(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let now = custodia::clock::Clock::now_ms(&app.clock);
    let insert = |bucket: &'static str| {
        let store = app.state.store.clone();
        async move {
            let mut tx = store.begin().await?;
            on_engine!(&mut tx, c => {
                sqlx::query("INSERT INTO rate_limits (bucket, window_start, hits) VALUES ($1, $2, 1)")
                    .bind(bucket)
                    .bind(now)
                    .execute(&mut **c)
                    .await?;
                sqlx::query("INSERT INTO rate_limits (bucket, window_start, hits) VALUES ($1, $2, 1)")
                    .bind("shared")
                    .bind(now)
                    .execute(&mut **c)
                    .await?;
            });
            tx.commit().await
        }
    };
    insert("first").await.unwrap();
    let err = insert("second").await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "got {err:?}");
    // The failed transaction left nothing behind.
    let mut tx = app.state.store.begin().await.unwrap();
    let buckets: Vec<String> = on_engine!(&mut tx, c => {
        sqlx::query_scalar("SELECT bucket FROM rate_limits ORDER BY bucket")
            .fetch_all(&mut **c)
            .await
            .unwrap()
    });
    assert_eq!(buckets, ["first", "shared"]);
    drop(tx);
    app.stop().await;
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
