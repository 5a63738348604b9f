//! The registry model over real backends. Each test runs against every backend the crate has,
//! so a new backend inherits the whole suite.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream;
use wharf_oci::{Digest, Reference};
use wharf_store::{
    ByteStream, FsBlobStore, Limits, MountOutcome, PostgresMetadataStore, Registry, S3BlobStore,
    S3Config, SqliteMetadataStore, StoreError,
};

struct Backend {
    _dir: tempfile::TempDir,
    registry: Registry,
    api_keys: Arc<dyn wharf_auth::ApiKeyStore>,
}

/// The bucket tests/run started, with the credentials object_store reads from AWS_*.
fn test_bucket() -> Option<S3Config> {
    let Ok(endpoint) = std::env::var("WHARF_TEST_S3_ENDPOINT") else {
        assert!(
            std::env::var("WHARF_TESTS_RUN").is_err(),
            "tests/run must provide WHARF_TEST_S3_ENDPOINT"
        );
        return None;
    };
    Some(S3Config {
        bucket: std::env::var("WHARF_TEST_S3_BUCKET").unwrap(),
        endpoint: Some(endpoint),
        region: Some("garage".into()),
        access_key_id: std::env::var("WHARF_TEST_S3_KEY_ID").ok(),
        secret_access_key: std::env::var("WHARF_TEST_S3_SECRET").ok(),
        presigned_redirect: None,
    })
}

/// The URL of a new, empty database on the cluster `tests/run` started.
async fn fresh_postgres_url() -> Option<String> {
    let Ok(url) = std::env::var("WHARF_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var("WHARF_TESTS_RUN").is_err(),
            "tests/run must provide WHARF_TEST_POSTGRES_URL"
        );
        return None;
    };
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test cluster");
    tokio::spawn(conn);
    let db = format!("wharf_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    let (base, _) = url.rsplit_once('/').unwrap();
    Some(format!("{base}/{db}"))
}

/// A migrated PostgreSQL store of its own for one test.
async fn fresh_postgres() -> Option<PostgresMetadataStore> {
    let store = PostgresMetadataStore::connect(&fresh_postgres_url().await?).unwrap();
    store.migrate().await.unwrap();
    Some(store)
}

/// The registry over every metadata backend available: SQLite always, PostgreSQL when
/// tests/run provides a cluster.
async fn backends() -> Vec<Backend> {
    let mut out = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let blobs = FsBlobStore::open(dir.path().join("blobs")).unwrap();
    let meta = Arc::new(SqliteMetadataStore::open(dir.path().join("meta.db")).unwrap());
    out.push(Backend {
        registry: Registry::new(Arc::new(blobs), meta.clone(), Limits::default()),
        api_keys: meta,
        _dir: dir,
    });
    if let Some(pg) = fresh_postgres().await {
        let dir = tempfile::tempdir().unwrap();
        let blobs = FsBlobStore::open(dir.path().join("blobs")).unwrap();
        let pg = Arc::new(pg);
        out.push(Backend {
            registry: Registry::new(Arc::new(blobs), pg.clone(), Limits::default()),
            api_keys: pg,
            _dir: dir,
        });
    }
    // The scale-out pair: PostgreSQL metadata, S3 blobs.
    if let (Some(pg), Some(bucket)) = (fresh_postgres().await, test_bucket()) {
        let pg = Arc::new(pg);
        out.push(Backend {
            registry: Registry::new(
                Arc::new(S3BlobStore::new(&bucket).unwrap()),
                pg.clone(),
                Limits::default(),
            ),
            api_keys: pg,
            _dir: tempfile::tempdir().unwrap(),
        });
    }
    out
}

fn body(parts: &[&[u8]]) -> ByteStream {
    let items: Vec<std::io::Result<Bytes>> = parts
        .iter()
        .map(|p| Ok(Bytes::copy_from_slice(p)))
        .collect();
    Box::pin(stream::iter(items))
}

fn failing_body(first: &[u8]) -> ByteStream {
    let items: Vec<std::io::Result<Bytes>> = vec![
        Ok(Bytes::copy_from_slice(first)),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "peer went away",
        )),
    ];
    Box::pin(stream::iter(items))
}

async fn read_all(r: &Registry, d: &Digest, size: u64) -> Vec<u8> {
    use futures_util::StreamExt;
    let mut s = r.blob_read(d, 0..size, size).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

fn image_manifest(config: &Digest, layer: &Digest, extra: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":5}}]{extra}}}"#
    ))
}

#[tokio::test]
async fn chunked_upload_then_read() {
    for b in backends().await {
        let r = &b.registry;
        let u = r.upload_start("repo").await.unwrap();
        let u = r
            .upload_append("repo", &u.id, Some((0, 2)), body(&[b"abc"]))
            .await
            .unwrap();
        assert_eq!(u.size, 3);
        let err = r
            .upload_append("repo", &u.id, Some((0, 2)), body(&[b"abc"]))
            .await;
        assert!(matches!(
            err,
            Err(StoreError::RangeNotSatisfiable { size: 3 })
        ));
        let d = Digest::sha256_of(b"abcdef");
        let size = r
            .upload_finish("repo", &u.id, &d, Some((None, body(&[b"d", b"ef"]))))
            .await
            .unwrap();
        assert_eq!(size, 6);
        assert_eq!(r.blob_size("repo", &d).await.unwrap(), 6);
        assert_eq!(read_all(r, &d, 6).await, b"abcdef");
        assert!(matches!(
            r.upload_status("repo", &u.id).await,
            Err(StoreError::UploadUnknown)
        ));
    }
}

#[tokio::test]
async fn failed_append_keeps_acknowledged_length() {
    for b in backends().await {
        let r = &b.registry;
        let u = r.upload_start("repo").await.unwrap();
        r.upload_append("repo", &u.id, None, body(&[b"keep"]))
            .await
            .unwrap();
        let err = r
            .upload_append("repo", &u.id, None, failing_body(b"lost"))
            .await;
        assert!(matches!(err, Err(StoreError::BodyIncomplete(_))));
        assert_eq!(r.upload_status("repo", &u.id).await.unwrap().size, 4);
        let d = Digest::sha256_of(b"keep+more");
        r.upload_finish("repo", &u.id, &d, Some((None, body(&[b"+more"]))))
            .await
            .unwrap();
        assert_eq!(read_all(r, &d, 9).await, b"keep+more");
    }
}

#[tokio::test]
async fn digest_mismatch_stores_nothing() {
    for b in backends().await {
        let r = &b.registry;
        let wrong = Digest::sha256_of(b"expected");
        let err = r.blob_put("repo", &wrong, body(&[b"actual"])).await;
        assert!(matches!(err, Err(StoreError::DigestMismatch { .. })));
        assert!(matches!(
            r.blob_size("repo", &wrong).await,
            Err(StoreError::BlobUnknown)
        ));
        let u = r.upload_start("repo").await.unwrap();
        r.upload_append("repo", &u.id, None, body(&[b"actual"]))
            .await
            .unwrap();
        let err = r.upload_finish("repo", &u.id, &wrong, None).await;
        assert!(matches!(err, Err(StoreError::DigestMismatch { .. })));
        // the session survives, so the client can close it with the right digest
        let right = Digest::sha256_of(b"actual");
        r.upload_finish("repo", &u.id, &right, None).await.unwrap();
    }
}

#[tokio::test]
async fn sha512_uploads() {
    for b in backends().await {
        let r = &b.registry;
        let d = Digest::of(wharf_oci::Algorithm::Sha512, b"five!");
        r.blob_put("mono", &d, body(&[b"five!"])).await.unwrap();
        assert_eq!(read_all(r, &d, 5).await, b"five!");
        let u = r.upload_start("repo").await.unwrap();
        r.upload_append("repo", &u.id, None, body(&[b"five!"]))
            .await
            .unwrap();
        // A chunked session hashes as sha256; a sha512 close is verified another way, and a
        // wrong sha512 digest is still refused with the session left open.
        let wrong = Digest::of(wharf_oci::Algorithm::Sha512, b"five?");
        let err = r.upload_finish("repo", &u.id, &wrong, None).await;
        assert!(
            matches!(err, Err(StoreError::DigestMismatch { .. })),
            "{err:?}"
        );
        assert!(r.blob_size("repo", &wrong).await.is_err());
        r.upload_finish("repo", &u.id, &d, None).await.unwrap();
        assert_eq!(read_all(r, &d, 5).await, b"five!");
    }
}

#[tokio::test]
async fn uploads_span_part_boundaries() {
    // 5 MiB is S3's smallest part: chunks below, across and above it must reassemble exactly.
    let data: Vec<u8> = (0..19_000_000u32).map(|i| (i % 251) as u8).collect();
    let d = Digest::sha256_of(&data);
    for b in backends().await {
        let r = &b.registry;
        let u = r.upload_start("big").await.unwrap();
        let mut at = 0;
        for len in [1_000_000usize, 6_000_000, 9_000_000] {
            let range = Some((at as u64, (at + len - 1) as u64));
            r.upload_append("big", &u.id, range, body(&[&data[at..at + len]]))
                .await
                .unwrap();
            at += len;
        }
        r.upload_finish("big", &u.id, &d, Some((None, body(&[&data[at..]]))))
            .await
            .unwrap();
        assert_eq!(r.blob_size("big", &d).await.unwrap(), data.len() as u64);
        assert!(read_all(r, &d, data.len() as u64).await == data);
    }
}

#[tokio::test]
async fn mount_and_fallback() {
    for b in backends().await {
        let r = &b.registry;
        let d = Digest::sha256_of(b"layer");
        r.blob_put("src", &d, body(&[b"layer"])).await.unwrap();
        assert!(matches!(
            r.blob_mount("dst", &d, Some("src")).await.unwrap(),
            MountOutcome::Mounted { size: 5 }
        ));
        assert!(matches!(
            r.blob_mount("dst2", &d, Some("elsewhere")).await.unwrap(),
            MountOutcome::Upload(_)
        ));
        assert!(matches!(
            r.blob_mount("dst3", &d, None).await.unwrap(),
            MountOutcome::Mounted { .. }
        ));
    }
}

#[tokio::test]
async fn manifests_tags_and_referrers() {
    for b in backends().await {
        let r = &b.registry;
        let config = Digest::sha256_of(b"{}");
        let layer = Digest::sha256_of(b"layer");
        let m = image_manifest(&config, &layer, "");
        let tag = Reference::Tag("v1".into());
        let err = r.manifest_put("repo", &tag, None, m.clone()).await;
        assert!(matches!(err, Err(StoreError::ManifestBlobUnknown(d)) if d == config));
        r.blob_put("repo", &config, body(&[b"{}"])).await.unwrap();
        r.blob_put("repo", &layer, body(&[b"layer"])).await.unwrap();
        let put = r.manifest_put("repo", &tag, None, m.clone()).await.unwrap();
        assert_eq!(put.digest, Digest::sha256_of(&m));
        let got = r.manifest_get("repo", &tag).await.unwrap();
        assert_eq!(got.content, m);

        let sig = image_manifest(
            &config,
            &layer,
            &format!(
                r#","artifactType":"application/x-sig","subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":1}}"#,
                put.digest
            ),
        );
        let sig_put = r
            .manifest_put("repo", &Reference::Tag("sig".into()), None, sig)
            .await
            .unwrap();
        assert_eq!(sig_put.subject.as_ref(), Some(&put.digest));
        let refs = r.referrers("repo", &put.digest, None).await.unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].artifact_type.as_deref(), Some("application/x-sig"));
        assert!(r
            .referrers("repo", &put.digest, Some("application/other"))
            .await
            .unwrap()
            .is_empty());

        assert_eq!(r.tags("repo", None, 10).await.unwrap(), vec!["sig", "v1"]);
        assert_eq!(r.tags("repo", Some("sig"), 10).await.unwrap(), vec!["v1"]);
        assert!(matches!(
            r.tags("nope", None, 10).await,
            Err(StoreError::NameUnknown)
        ));
        assert_eq!(r.repositories(None, 10).await.unwrap(), vec!["repo"]);

        r.manifest_delete("repo", &tag).await.unwrap();
        assert!(matches!(
            r.manifest_get("repo", &tag).await,
            Err(StoreError::ManifestUnknown)
        ));
        r.manifest_get("repo", &Reference::Digest(put.digest.clone()))
            .await
            .unwrap();
        r.manifest_delete("repo", &Reference::Digest(put.digest.clone()))
            .await
            .unwrap();
        assert!(matches!(
            r.manifest_delete("repo", &Reference::Digest(put.digest))
                .await,
            Err(StoreError::ManifestUnknown)
        ));
    }
}

#[tokio::test]
async fn oversized_manifest_is_refused() {
    for b in backends().await {
        let big = Bytes::from(vec![b' '; Limits::default().max_manifest_size + 1]);
        let err = b
            .registry
            .manifest_put("repo", &Reference::Tag("t".into()), None, big)
            .await;
        assert!(matches!(err, Err(StoreError::ManifestTooLarge { .. })));
    }
}

#[tokio::test]
async fn reconcile_discards_orphan_upload_files() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = FsBlobStore::open(dir.path().join("b")).unwrap();
    let orphan = "7f3c0a52-6c1e-4c55-9d0e-3a7f1a2b3c4d";
    std::fs::write(dir.path().join("b/uploads").join(orphan), b"junk").unwrap();
    let meta = SqliteMetadataStore::open(dir.path().join("m.db")).unwrap();
    let r = Registry::new(Arc::new(blobs), Arc::new(meta), Limits::default());
    let live = r.upload_start("repo").await.unwrap();
    assert_eq!(r.reconcile().await.unwrap(), 1);
    assert!(!dir.path().join("b/uploads").join(orphan).exists());
    assert!(dir.path().join("b/uploads").join(&live.id).exists());
}

#[test]
fn newer_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    drop(SqliteMetadataStore::open(&path).unwrap());
    let c = rusqlite::Connection::open(&path).unwrap();
    c.pragma_update(None, "user_version", 999).unwrap();
    drop(c);
    let err = SqliteMetadataStore::open(&path).err().unwrap().to_string();
    assert!(err.contains("newer than this Wharf knows"), "{err}");
}

#[tokio::test]
async fn tags_sort_by_bytes_on_every_backend() {
    for b in backends().await {
        let r = &b.registry;
        let config = Digest::sha256_of(b"{}");
        let layer = Digest::sha256_of(b"layer");
        r.blob_put("repo", &config, body(&[b"{}"])).await.unwrap();
        r.blob_put("repo", &layer, body(&[b"layer"])).await.unwrap();
        let m = image_manifest(&config, &layer, "");
        for t in ["b", "B", "a", "_x", "A-1", "a.b"] {
            r.manifest_put("repo", &Reference::Tag(t.into()), None, m.clone())
                .await
                .unwrap();
        }
        // byte order, not a locale's: uppercase before '_' before lowercase
        assert_eq!(
            r.tags("repo", None, 100).await.unwrap(),
            vec!["A-1", "B", "_x", "a", "a.b", "b"]
        );
        assert_eq!(r.tags("repo", Some("B"), 2).await.unwrap(), vec!["_x", "a"]);
    }
}

#[tokio::test]
async fn concurrent_pushes_of_one_tag_leave_one_winner() {
    for b in backends().await {
        let r = Arc::new(b.registry);
        let config = Digest::sha256_of(b"{}");
        r.blob_put("race", &config, body(&[b"{}"])).await.unwrap();
        let mut digests = Vec::new();
        let mut tasks = Vec::new();
        for i in 0..16 {
            let data = format!("layer {i}");
            let layer = Digest::sha256_of(data.as_bytes());
            r.blob_put("race", &layer, body(&[data.as_bytes()]))
                .await
                .unwrap();
            let m = Bytes::from(
                String::from_utf8(image_manifest(&config, &layer, "").to_vec())
                    .unwrap()
                    .replace("\"size\":5", &format!("\"size\":{}", data.len())),
            );
            digests.push(Digest::sha256_of(&m));
            let r = r.clone();
            tasks.push(tokio::spawn(async move {
                r.manifest_put("race", &Reference::Tag("latest".into()), None, m)
                    .await
                    .unwrap()
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let winner = r
            .manifest_get("race", &Reference::Tag("latest".into()))
            .await
            .unwrap();
        assert!(digests.contains(&winner.digest));
        assert_eq!(Digest::sha256_of(&winner.content), winner.digest);
        assert_eq!(r.tags("race", None, 10).await.unwrap(), vec!["latest"]);
    }
}

#[tokio::test]
async fn postgres_migrations_are_idempotent_and_refuse_newer() {
    let Some(pg) = fresh_postgres().await else {
        return;
    };
    let again = pg.migrate().await.unwrap();
    assert_eq!(again.before, again.after);
    let url = fresh_postgres_url().await.unwrap();
    let (c2, conn2) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn2);
    c2.batch_execute(
        "CREATE TABLE wharf_schema (version INTEGER NOT NULL); INSERT INTO wharf_schema VALUES (999)",
    )
    .await
    .unwrap();
    let newer = PostgresMetadataStore::connect(&url).unwrap();
    let err = newer.migrate().await.unwrap_err().to_string();
    assert!(err.contains("newer than this Wharf knows"), "{err}");
}

#[tokio::test]
async fn a_failing_write_among_concurrent_ones_fails_alone() {
    for b in backends().await {
        let r = Arc::new(b.registry);
        let config = Digest::sha256_of(b"{}");
        let layer = Digest::sha256_of(b"layer");
        r.blob_put("mix", &config, body(&[b"{}"])).await.unwrap();
        r.blob_put("mix", &layer, body(&[b"layer"])).await.unwrap();
        let good = image_manifest(&config, &layer, "");
        let bad = image_manifest(&config, &Digest::sha256_of(b"missing"), "");
        let mut tasks = Vec::new();
        for i in 0..40 {
            let r = r.clone();
            let m = if i % 3 == 0 {
                bad.clone()
            } else {
                good.clone()
            };
            tasks.push(tokio::spawn(async move {
                r.manifest_put("mix", &Reference::Tag(format!("t{i:02}")), None, m)
                    .await
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            let res = t.await.unwrap();
            if i % 3 == 0 {
                assert!(
                    matches!(res, Err(StoreError::ManifestBlobUnknown(_))),
                    "t{i}"
                );
            } else {
                res.unwrap();
            }
        }
        let tags = r.tags("mix", None, 100).await.unwrap();
        let want: Vec<String> = (0..40)
            .filter(|i| i % 3 != 0)
            .map(|i| format!("t{i:02}"))
            .collect();
        assert_eq!(tags, want);
    }
}

#[tokio::test]
async fn api_keys_create_list_revoke() {
    for b in backends().await {
        let m = &b.api_keys;
        let key = |name: &str| wharf_auth::ApiKeyRecord {
            name: name.into(),
            secret_sha256: "ab".repeat(32),
            grants: r#"[{"repositories":["team/*"],"actions":["pull"]}]"#.into(),
            created_at: 100,
            expires_at: Some(200),
            revoked_at: None,
        };
        assert!(m.api_key_create(&key("ci")).await.unwrap());
        assert!(
            !m.api_key_create(&key("ci")).await.unwrap(),
            "names are unique"
        );
        assert!(m.api_key_create(&key("b-robot")).await.unwrap());
        assert_eq!(m.api_key_get("ci").await.unwrap(), Some(key("ci")));
        assert_eq!(m.api_key_get("nope").await.unwrap(), None);
        let names: Vec<String> = m
            .api_key_list()
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.name)
            .collect();
        assert_eq!(names, ["b-robot", "ci"]);
        assert!(m.api_key_revoke("ci", 150).await.unwrap());
        assert!(
            !m.api_key_revoke("ci", 160).await.unwrap(),
            "already revoked"
        );
        assert_eq!(
            m.api_key_get("ci").await.unwrap().unwrap().revoked_at,
            Some(150)
        );
        assert!(
            !m.api_key_create(&key("ci")).await.unwrap(),
            "a revoked name stays taken"
        );
    }
}

#[tokio::test]
async fn a_protected_tag_is_not_moved() {
    for b in backends().await {
        let r = &b.registry;
        let config = Digest::sha256_of(b"{}");
        let layer = Digest::sha256_of(b"five!");
        r.blob_put("prot", &config, body(&[b"{}"])).await.unwrap();
        r.blob_put("prot", &layer, body(&[b"five!"])).await.unwrap();
        let first = image_manifest(&config, &layer, r#","annotations":{"n":"1"}"#);
        let second = image_manifest(&config, &layer, r#","annotations":{"n":"2"}"#);
        let tag = Reference::Tag("v1".into());
        let put =
            |m: &Bytes, may_move| r.manifest_put_guarded("prot", &tag, None, m.clone(), may_move);
        put(&first, false).await.unwrap();
        // the same content again is not a move
        put(&first, false).await.unwrap();
        let err = put(&second, false).await;
        assert!(
            matches!(err, Err(StoreError::TagProtected(ref t)) if t == "v1"),
            "{err:?}"
        );
        let now = r.manifest_get("prot", &tag).await.unwrap().digest;
        assert_eq!(now, Digest::sha256_of(&first), "the tag stayed");
        put(&second, true).await.unwrap();
        let now = r.manifest_get("prot", &tag).await.unwrap().digest;
        assert_eq!(now, Digest::sha256_of(&second));
    }
}

/// A blob whose object the bucket no longer has is reported missing (never served as empty
/// or short), is not mounted, and the next push of it repairs it.
#[tokio::test]
async fn a_blob_gone_from_the_bucket_is_missing_until_pushed_again() {
    let Some(bucket) = test_bucket() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let meta = Arc::new(SqliteMetadataStore::open(dir.path().join("meta.db")).unwrap());
    let r = Registry::new(
        Arc::new(S3BlobStore::new(&bucket).unwrap()),
        meta,
        Limits::default(),
    );
    let data = uuid::Uuid::new_v4().to_string().into_bytes();
    let d = Digest::sha256_of(&data);
    let size = data.len() as u64;
    r.blob_put("gone/app", &d, body(&[&data])).await.unwrap();
    assert_eq!(r.blob_size_checked("gone/app", &d).await.unwrap(), size);

    // Someone (a lifecycle rule, an operator) deletes the object behind the registry's back.
    use object_store::ObjectStoreExt;
    let s3 = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(&bucket.bucket)
        .with_endpoint(bucket.endpoint.clone().unwrap())
        .with_allow_http(true)
        .with_region("garage")
        .with_access_key_id(bucket.access_key_id.clone().unwrap())
        .with_secret_access_key(bucket.secret_access_key.clone().unwrap())
        .build()
        .unwrap();
    let key = object_store::path::Path::from(format!("blobs/sha256/{}", d.hex()));
    s3.delete(&key).await.unwrap();

    let missing = |e: StoreError| matches!(e, StoreError::BlobMissing { found: None, .. });
    assert!(missing(
        r.blob_size_checked("gone/app", &d).await.unwrap_err()
    ));
    assert!(missing(r.blob_read(&d, 0..size, size).await.err().unwrap()));
    match r
        .blob_mount("gone/other", &d, Some("gone/app"))
        .await
        .unwrap()
    {
        MountOutcome::Upload(_) => {}
        MountOutcome::Mounted { .. } => panic!("a missing blob was mounted"),
    }
    r.blob_put("gone/app", &d, body(&[&data])).await.unwrap();
    assert_eq!(read_all(&r, &d, size).await, data);
}
