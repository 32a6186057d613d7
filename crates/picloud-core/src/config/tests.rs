//! Tests of configuration parsing: defaults, bad values, one clear line each.
use super::*;
use std::collections::HashMap;

fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::load(&|k| map.get(k).cloned())
}

#[test]
fn defaults_match_the_contract() {
    let c = load(&[]).expect("defaults");
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.base_domain, "localhost");
    assert_eq!(c.max_request_body_bytes, 10 << 20);
    assert_eq!(c.executor.queue_timeout, Duration::from_millis(2000));
    assert_eq!(c.limits.max_operations, 10_000_000);
    assert!(!c.dev_mode);
    assert!(c.effective_secret_key().is_err());
}

#[test]
fn bad_values_name_the_variable() {
    let e = load(&[("PICLOUD_EXECUTOR_THREADS", "lots")]).expect_err("error");
    assert_eq!(e.var, "PICLOUD_EXECUTOR_THREADS");
    assert!(!e.to_string().contains('\n'));
    let e = load(&[("PICLOUD_SECRET_KEY", "short")]).expect_err("error");
    assert_eq!(e.var, "PICLOUD_SECRET_KEY");
    let e = load(&[("PICLOUD_DEV_MODE", "maybe")]).expect_err("error");
    assert_eq!(e.var, "PICLOUD_DEV_MODE");
    assert!(load(&[("PICLOUD_ADMIN_EMAIL", "a@b.c")]).is_err());
    // A look-alike admin address stops start-up like any bad value.
    let e = load(&[
        ("PICLOUD_ADMIN_EMAIL", "\u{430}dmin@example.com"),
        ("PICLOUD_ADMIN_PASSWORD", "password123"),
    ])
    .expect_err("error");
    assert_eq!(e.var, "PICLOUD_ADMIN_EMAIL");
    for bad in ["80,", "http", "0", "70000", "80;443"] {
        let e = load(&[("PICLOUD_HTTP_ALLOWED_PORTS", bad)]).expect_err(bad);
        assert_eq!(e.var, "PICLOUD_HTTP_ALLOWED_PORTS");
        assert!(!e.to_string().contains('\n'));
    }
    let e = load(&[("PICLOUD_HTTP_ALLOW_PRIVATE", "sure")]).expect_err("error");
    assert_eq!(e.var, "PICLOUD_HTTP_ALLOW_PRIVATE");
}

#[test]
fn http_settings() {
    let c = load(&[]).expect("defaults");
    assert_eq!(c.http.timeout, Duration::from_millis(10_000));
    assert_eq!(c.http.allowed_ports, vec![80, 443, 8080, 8443]);
    assert_eq!(c.http.max_request_body_bytes, 10 << 20);
    assert_eq!(c.http.max_response_body_bytes, 10 << 20);
    assert!(!c.http.allow_private);
    let c = load(&[
        ("PICLOUD_HTTP_ALLOWED_PORTS", " 443 , 9000"),
        ("PICLOUD_HTTP_ALLOW_PRIVATE", "true"),
    ])
    .expect("valid");
    assert_eq!(c.http.allowed_ports, vec![443, 9000]);
    assert!(c.http.allow_private);
}

#[test]
fn cron_tick_defaults_and_is_floored_at_a_second() {
    let c = load(&[]).expect("defaults");
    assert_eq!(c.events.cron_tick_interval, Duration::from_secs(30));
    let c = load(&[("PICLOUD_CRON_TICK_INTERVAL_MS", "200")]).expect("floored");
    assert_eq!(c.events.cron_tick_interval, Duration::from_secs(1));
    let c = load(&[("PICLOUD_CRON_TICK_INTERVAL_MS", "2500")]).expect("valid");
    assert_eq!(c.events.cron_tick_interval, Duration::from_millis(2500));
    for bad in ["soon", "-5", "1.5"] {
        let e = load(&[("PICLOUD_CRON_TICK_INTERVAL_MS", bad)]).expect_err(bad);
        assert_eq!(e.var, "PICLOUD_CRON_TICK_INTERVAL_MS");
        assert!(!e.to_string().contains('\n'));
    }
}

#[test]
fn flags_are_derived_from_variables() {
    let listen = SETTINGS
        .iter()
        .find(|s| s.env == "PICLOUD_LISTEN")
        .expect("listed");
    assert_eq!(listen.flag(), "listen");
    let s = SETTINGS
        .iter()
        .find(|s| s.env == "PICLOUD_MAX_REQUEST_BODY_BYTES")
        .expect("listed");
    assert_eq!(s.flag(), "max-request-body-bytes");
}

#[test]
fn secrets_are_redacted() {
    let c = load(&[
        ("PICLOUD_DATABASE_URL", "postgres://u:hunter2@h/db"),
        ("PICLOUD_ADMIN_EMAIL", "a@b.c"),
        ("PICLOUD_ADMIN_PASSWORD", "hunter2"),
    ])
    .expect("valid");
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn every_read_variable_is_listed() {
    let read = std::cell::RefCell::new(Vec::new());
    let _ = Config::load(&|k| {
        read.borrow_mut().push(k.to_owned());
        None
    });
    for var in read.into_inner() {
        assert!(
            SETTINGS.iter().any(|s| s.env == var),
            "{var} missing from SETTINGS"
        );
    }
}

#[test]
fn trusted_proxies_and_metrics_access() {
    let c = load(&[]).expect("defaults");
    assert!(c.trusted_proxies.is_empty());
    assert!(c.metrics.token.is_none() && c.metrics.listen.is_none());
    let c = load(&[
        ("PICLOUD_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1,::1"),
        ("PICLOUD_METRICS_TOKEN", "0123456789abcdef"),
        ("PICLOUD_METRICS_LISTEN", "127.0.0.1:9090"),
    ])
    .expect("valid");
    let proxies: Vec<String> = c.trusted_proxies.iter().map(|n| n.to_string()).collect();
    assert_eq!(proxies, ["10.0.0.0/8", "127.0.0.1/32", "::1/128"]);
    assert_eq!(c.metrics.token.as_deref(), Some("0123456789abcdef"));
    assert_eq!(
        c.metrics.listen.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:9090")
    );
    assert!(
        !format!("{c:?}").contains("0123456789abcdef"),
        "the metrics token is redacted"
    );
    for (var, bad) in [
        ("PICLOUD_TRUSTED_PROXIES", "10.0.0.0/8,,"),
        ("PICLOUD_TRUSTED_PROXIES", "proxy.internal"),
        ("PICLOUD_TRUSTED_PROXIES", "10.0.0.0/40"),
        ("PICLOUD_METRICS_TOKEN", "short"),
        ("PICLOUD_METRICS_TOKEN", "sixteen chars but spaces"),
        ("PICLOUD_METRICS_LISTEN", "9090"),
    ] {
        let e = load(&[(var, bad)]).expect_err(bad);
        assert_eq!(e.var, var);
        assert!(!e.to_string().contains('\n'));
        assert!(
            !e.to_string().contains("sixteen"),
            "a bad token is not echoed"
        );
    }
}

#[test]
fn files_settings() {
    let c = load(&[]).expect("defaults");
    assert_eq!(c.files.max_file_size_bytes, 104_857_600);
    assert_eq!(c.files.orphan_sweep_interval, Duration::from_secs(21_600));
    assert_eq!(c.files.tmp_ttl, Duration::from_secs(3_600));
    assert!(c.files.s3.is_none());
    let c = load(&[("PICLOUD_FILES_ORPHAN_TMP_TTL_SEC", "60")]).expect("alias");
    assert_eq!(c.files.tmp_ttl, Duration::from_secs(60));
    let c = load(&[
        ("PICLOUD_FILES_ORPHAN_TMP_TTL_SEC", "60"),
        ("PICLOUD_FILES_TMP_TTL_SEC", "90"),
    ])
    .expect("current name wins");
    assert_eq!(c.files.tmp_ttl, Duration::from_secs(90));
    for (var, bad) in [
        ("PICLOUD_FILES_MAX_FILE_SIZE_BYTES", "big"),
        ("PICLOUD_FILES_MAX_FILE_SIZE_BYTES", "0"),
        ("PICLOUD_FILES_ORPHAN_SWEEP_INTERVAL_SEC", "-1"),
        ("PICLOUD_FILES_TMP_TTL_SEC", "0"),
        ("PICLOUD_FILES_ORPHAN_TMP_TTL_SEC", "soon"),
    ] {
        let e = load(&[(var, bad)]).expect_err(bad);
        assert_eq!(e.var, var);
        assert!(!e.to_string().contains('\n'));
    }
}

#[test]
fn s3_settings_are_all_or_nothing_and_the_secret_is_redacted() {
    let full = [
        ("PICLOUD_FILES_S3_BUCKET", "picloud-files"),
        ("PICLOUD_FILES_S3_ENDPOINT", "http://127.0.0.1:9000/"),
        ("PICLOUD_FILES_S3_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("PICLOUD_FILES_S3_SECRET_ACCESS_KEY", "hunter2-s3-secret"),
    ];
    let c = load(&full).expect("valid");
    let s3 = c.files.s3.as_ref().expect("S3 mode");
    assert_eq!(s3.bucket, "picloud-files");
    assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert_eq!(s3.region, "us-east-1");
    assert_eq!(s3.secret_access_key, "hunter2-s3-secret");
    assert!(!format!("{c:?}").contains("hunter2"));
    // Each required value missing is named.
    for missing in [
        "PICLOUD_FILES_S3_ACCESS_KEY_ID",
        "PICLOUD_FILES_S3_SECRET_ACCESS_KEY",
    ] {
        let vars: Vec<_> = full
            .iter()
            .copied()
            .filter(|(k, _)| *k != missing)
            .collect();
        let e = load(&vars).expect_err(missing);
        assert_eq!(e.var, missing);
        assert!(!e.to_string().contains('\n'));
    }
    let e = load(&full[1..]).expect_err("no bucket");
    assert_eq!(e.var, "PICLOUD_FILES_S3_BUCKET");
    let e = load(&[("PICLOUD_FILES_S3_BUCKET", "Bad_Bucket")]).expect_err("bad name");
    assert_eq!(e.var, "PICLOUD_FILES_S3_BUCKET");
    let mut bad_endpoint = full.to_vec();
    bad_endpoint[1] = ("PICLOUD_FILES_S3_ENDPOINT", "minio:9000");
    let e = load(&bad_endpoint).expect_err("bad endpoint");
    assert_eq!(e.var, "PICLOUD_FILES_S3_ENDPOINT");
}
