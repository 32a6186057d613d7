//! The suite against a real S3-compatible server: `moto_server` (PyPI `moto[server]`),
//! started here on a free port and killed when done. Without it the test is skipped,
//! saying so, unless `PICLOUD_TEST_REQUIRE_S3=1` (CI), where it fails.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use object_store::aws::AmazonS3Builder;
use object_store::ObjectStore;
use picloud_blob::{BlobKey, BlobStore, S3Store};
use picloud_core::config::S3Config;

use crate::suite::{self, Backend};

const REQUIRE_VAR: &str = "PICLOUD_TEST_REQUIRE_S3";
/// Python starting up on a loaded 2-core CI machine can be slow; polled, not slept.
const START_DEADLINE: Duration = Duration::from_secs(90);

fn required() -> bool {
    std::env::var(REQUIRE_VAR).is_ok_and(|v| !v.trim().is_empty() && v.trim() != "0")
}

/// A running moto server, killed on drop.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    async fn start() -> Result<Self, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run moto_server: {e}"))?;
        let mut moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Ok(Some(status)) = moto.child.try_wait() {
                return Err(format!("moto_server exited at start-up ({status})"));
            }
            if let Ok(r) = client.get(&moto.endpoint).send().await {
                if r.status().is_success() {
                    return Ok(moto);
                }
            }
            if Instant::now() > deadline {
                // Killed by drop.
                moto.child.kill().ok();
                return Err(format!("moto_server not ready after {START_DEADLINE:?}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A fresh bucket (moto accepts unsigned requests; object_store cannot create one).
    async fn bucket(&self, name: &str) -> S3Store {
        let r = reqwest::Client::new()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .await
            .expect("create bucket");
        assert!(r.status().is_success(), "create bucket: {}", r.status());
        S3Store::new(&S3Config {
            bucket: name.to_owned(),
            endpoint: Some(self.endpoint.clone()),
            region: "us-east-1".to_owned(),
            access_key_id: "testing".to_owned(),
            secret_access_key: "testing".to_owned(),
        })
        .expect("store")
    }
}

struct S3 {
    store: S3Store,
    endpoint: String,
}

#[async_trait]
impl Backend for S3 {
    fn store(&self) -> &dyn BlobStore {
        &self.store
    }

    async fn flip_byte(&self, key: &BlobKey) {
        // Object requests must be signed: a client of our own, behind the store's back.
        let raw = AmazonS3Builder::new()
            .with_bucket_name(self.store.bucket())
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
            .build()
            .expect("raw client");
        let path = object_store::path::Path::from(key.as_str());
        let mut bytes = raw
            .get(&path)
            .await
            .expect("get object")
            .bytes()
            .await
            .expect("object body")
            .to_vec();
        bytes[1234] ^= 0x01;
        raw.put(&path, bytes.into()).await.expect("put object back");
    }
}

#[tokio::test]
async fn s3_store_behaves_like_every_store() {
    let moto = match Moto::start().await {
        Ok(moto) => moto,
        Err(why) => {
            assert!(!required(), "{REQUIRE_VAR} is set but {why}");
            eprintln!("skipped: {why}; CI installs moto[server] and sets {REQUIRE_VAR}");
            return;
        }
    };
    // One server, a bucket per case, so no case sees another's blobs.
    let backend = |name: &'static str| {
        let moto = &moto;
        async move {
            S3 {
                store: moto.bucket(name).await,
                endpoint: moto.endpoint.clone(),
            }
        }
    };
    assert_eq!(backend("kind").await.store.kind(), "s3");
    // 6 MiB goes through a multipart upload (parts of 5 MiB), the rest in one PUT.
    suite::roundtrip(&backend("roundtrip").await, &[0, 1, 100_000, 6 << 20]).await;
    suite::max_size_is_enforced_while_streaming(&backend("max-size").await, 1 << 20).await;
    // Refused in the middle of a multipart upload.
    suite::max_size_is_enforced_while_streaming(&backend("max-size-multipart").await, 6 << 20)
        .await;
    // Broken before the first part, and in the middle of a multipart upload.
    suite::a_failing_body_leaves_nothing(&backend("broken-small").await, 300_000).await;
    suite::a_failing_body_leaves_nothing(&backend("broken-multipart").await, 7 << 20).await;
    suite::corruption_is_detected_and_kept(&backend("corrupted").await).await;
    suite::listing_and_the_orphan_sweep(&backend("sweep").await).await;
}

#[test]
fn configurations_build_without_a_server() {
    let config = |bucket: &str, endpoint: Option<&str>| S3Config {
        bucket: bucket.to_owned(),
        endpoint: endpoint.map(str::to_owned),
        region: "eu-west-1".to_owned(),
        access_key_id: "id".to_owned(),
        secret_access_key: "secret".to_owned(),
    };
    for (bucket, endpoint) in [
        ("files", None),
        ("files.example.com", None),
        ("files", Some("https://minio.example.com:9000")),
        ("files", Some("http://127.0.0.1:9000")),
    ] {
        let store = S3Store::new(&config(bucket, endpoint)).expect("valid configuration");
        assert_eq!(store.bucket(), bucket);
    }
}
