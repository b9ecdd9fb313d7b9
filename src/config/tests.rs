//! Tests of configuration parsing: defaults, every variable's bad values, Redis URL forms.

use std::collections::HashMap;

use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut m: HashMap<String, String> = [
        ("DATABASE_URL", "postgres://u:p@localhost:5432/db"),
        ("JWT_SECRET", "0123456789abcdef0123456789abcdef-test"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in pairs {
        m.insert(k.to_string(), v.to_string());
    }
    m
}

fn err(pairs: &[(&str, &str)]) -> ConfigError {
    Config::from_env(&env(pairs)).expect_err("config should be refused")
}

#[test]
fn defaults() {
    let c = Config::from_env(&env(&[])).unwrap();
    assert_eq!(c.port, 8083);
    assert_eq!(c.redis.url, "redis://localhost:6379/0");
    assert_eq!(c.max_video_size_mb, 50);
    assert_eq!(c.ws_token_ttl, Duration::from_secs(300));
    assert_eq!(c.log_format, LogFormat::Plain);
    assert_eq!(c.ws_public_url, "ws://localhost:8083/ws");
    assert!(c.agent_url.is_none());
    assert!(c.allowed_origins.is_empty());
    assert!(c.database_read_url.is_none());
    assert_eq!(c.group_fanout_min_members, 100);
    let c = Config::from_env(&env(&[("GROUP_FANOUT_MIN_MEMBERS", "0")])).unwrap();
    assert_eq!(
        c.group_fanout_min_members, 0,
        "0 turns fan-out channels off"
    );
    let c = Config::from_env(&env(&[("DATABASE_READ_URL", "postgres://r:p@replica/db")])).unwrap();
    assert_eq!(
        c.database_read_url.as_deref(),
        Some("postgres://r:p@replica/db")
    );
    assert!(
        !format!("{c:?}").contains("r:p@"),
        "the replica password is redacted"
    );
}

#[test]
fn missing_required_values_are_named() {
    let mut m = env(&[]);
    m.remove("DATABASE_URL");
    let e = Config::from_env(&m).unwrap_err();
    assert_eq!(e.var, "DATABASE_URL");
    let mut m = env(&[]);
    m.remove("JWT_SECRET");
    assert_eq!(Config::from_env(&m).unwrap_err().var, "JWT_SECRET");
    assert_eq!(err(&[("JWT_SECRET", "")]).var, "JWT_SECRET");
    assert_eq!(err(&[("JWT_SECRET", "   ")]).var, "JWT_SECRET");
}

#[test]
fn weak_or_placeholder_secrets_are_refused_without_echoing_them() {
    let long_placeholder = "change-me-in-production-0123456789abcdef";
    for (var, value) in [
        ("JWT_SECRET", "s3cret"),
        ("JWT_SECRET", "0123456789abcdef0123456789abcde"), // 31 bytes
        ("JWT_SECRET", "change-me"),
        ("JWT_SECRET", "CHANGE-ME"),
        ("JWT_SECRET", long_placeholder),
        ("JWT_SECRET", "REPLACE_ME_0123456789abcdef0123456789"),
        ("JWT_SECRET_PREVIOUS", "abc123"),
        ("JWT_SECRET_PREVIOUS", long_placeholder),
    ] {
        let e = err(&[(var, value)]);
        assert_eq!(e.var, var, "{value}");
        assert!(e.got.is_none(), "a secret is never echoed");
        assert!(!e.to_string().contains(value), "{e}");
    }
    // 32 random-looking bytes are enough; the previous key is optional and kept apart.
    let c = Config::from_env(&env(&[
        ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ("JWT_SECRET_PREVIOUS", "fedcba9876543210fedcba9876543210"),
    ]))
    .unwrap();
    assert_eq!(
        c.jwt_secret_previous.as_deref(),
        Some("fedcba9876543210fedcba9876543210")
    );
    assert!(!format!("{c:?}").contains("fedcba"), "redacted");
    assert!(
        Config::from_env(&env(&[]))
            .unwrap()
            .jwt_secret_previous
            .is_none()
    );
}

#[test]
fn invalid_values_are_named_with_what_is_expected() {
    for (var, value) in [
        ("PORT", "eighty"),
        ("PORT", "0"),
        ("PORT", "70000"),
        ("REDIS_DB", "-1"),
        ("REDIS_URL", "http://x"),
        ("REDIS_URL", "host:notaport"),
        ("MAX_VIDEO_SIZE_MB", "big"),
        ("WS_TOKEN_TTL", "1"),
        ("LOG_FORMAT", "xml"),
        ("ADMIN_USER_IDS", "not-a-uuid"),
        ("WS_PUBLIC_URL", "http://x/ws"),
        ("SHUTDOWN_GRACE_SECONDS", "0"),
        ("DATABASE_URL", "nonsense"),
        ("DATABASE_READ_URL", "nonsense"),
        ("DATABASE_READ_URL", "postgres:///no-host"),
        ("BIND_ADDRESS", "everywhere"),
        ("NODE_ID", "has space"),
        ("AGENT_URL", "ftp://x"),
        ("GROUP_FANOUT_MIN_MEMBERS", "-1"),
        ("GROUP_FANOUT_MIN_MEMBERS", "many"),
    ] {
        let e = err(&[(var, value)]);
        assert_eq!(e.var, var, "{var}={value}");
        assert!(!e.expected.is_empty());
        assert!(e.to_string().starts_with(var), "{e}");
    }
}

#[test]
fn redis_url_forms() {
    let c = Config::from_env(&env(&[("REDIS_URL", "cache:6380"), ("REDIS_DB", "2")])).unwrap();
    assert_eq!(c.redis.url, "redis://cache:6380/2");
    let c = Config::from_env(&env(&[
        ("REDIS_URL", "cache:6380"),
        ("REDIS_PASSWORD", "p@ss"),
    ]))
    .unwrap();
    assert_eq!(c.redis.url, "redis://:p%40ss@cache:6380/0");
    let c = Config::from_env(&env(&[
        ("REDIS_URL", "redis://r.example:6379"),
        ("REDIS_PASSWORD", "pw"),
        ("REDIS_DB", "3"),
    ]))
    .unwrap();
    assert_eq!(c.redis.url, "redis://:pw@r.example:6379/3");
    assert!(!format!("{c:?}").contains("pw@"));
}

#[test]
fn debug_redacts_secrets() {
    let c = Config::from_env(&env(&[])).unwrap();
    let shown = format!("{c:?}");
    assert!(!shown.contains("s3cret"));
    assert!(!shown.contains("u:p@"));
}

#[test]
fn admin_ids_and_origins() {
    let id = Uuid::new_v4();
    let c = Config::from_env(&env(&[
        ("ADMIN_USER_IDS", &format!(" {id} ,")),
        ("ALLOWED_ORIGINS", "https://a.example/, https://b.example"),
    ]))
    .unwrap();
    assert!(c.admin_user_ids.contains(&id));
    assert_eq!(
        c.allowed_origins,
        ["https://a.example", "https://b.example"]
    );
}

#[test]
fn dev_ui_is_off_unless_asked_and_strictly_boolean() {
    assert!(!Config::from_env(&env(&[])).unwrap().dev_ui);
    assert!(!Config::from_env(&env(&[("DEV_UI", "")])).unwrap().dev_ui);
    for (value, expected) in [("1", true), ("true", true), ("0", false), ("false", false)] {
        let c =
            Config::from_env(&env(&[("DEV_UI", value), ("BIND_ADDRESS", "127.0.0.1")])).unwrap();
        assert_eq!(c.dev_ui, expected, "DEV_UI={value}");
        assert!(format!("{c:?}").contains(&format!("dev_ui: {expected}")));
    }
    for value in ["yes", "2", "on", "TRUE "] {
        let e = err(&[("DEV_UI", value)]);
        assert_eq!(e.var, "DEV_UI", "DEV_UI={value}");
        assert!(e.to_string().starts_with("DEV_UI"), "{e}");
    }
}

#[test]
fn dotenv_parsing() {
    let m = parse_dotenv("# c\n\nexport A=1\nB = \"two words\"\nC='x=y'\n").unwrap();
    assert_eq!(m["A"], "1");
    assert_eq!(m["B"], "two words");
    assert_eq!(m["C"], "x=y");
    assert_eq!(parse_dotenv("A=1\nnot a line\n"), Err(2));
}

#[test]
fn redis_cluster_seeds() {
    let c = Config::from_env(&env(&[
        ("REDIS_CLUSTER_URLS", "a:7000, redis://b:7001 ,c:7002"),
        ("REDIS_PASSWORD", "pw"),
    ]))
    .unwrap();
    assert!(c.redis.is_cluster());
    assert_eq!(
        c.redis.cluster_urls,
        [
            "redis://:pw@a:7000/0",
            "redis://:pw@b:7001",
            "redis://:pw@c:7002/0"
        ]
    );
    assert!(!format!("{c:?}").contains("pw@"));
    let single = Config::from_env(&env(&[])).unwrap();
    assert!(!single.redis.is_cluster());
    for (vars, var) in [
        (vec![("REDIS_CLUSTER_URLS", " , ")], "REDIS_CLUSTER_URLS"),
        (
            vec![("REDIS_CLUSTER_URLS", "a:7000,b:notaport")],
            "REDIS_CLUSTER_URLS",
        ),
        (
            vec![("REDIS_CLUSTER_URLS", "a:7000"), ("REDIS_DB", "2")],
            "REDIS_DB",
        ),
    ] {
        let e = Config::from_env(&env(&vars)).unwrap_err();
        assert_eq!(e.var, var, "{vars:?}: {e}");
    }
}

#[test]
fn tls_settings() {
    // A file that is not PEM, and a missing one, are refused; the TLS tests (src/tests/tls.rs)
    // use real certificates.
    let ca = std::env::temp_dir().join(format!("dinq-config-ca-{}.pem", Uuid::new_v4()));
    std::fs::write(&ca, "not a certificate").unwrap();
    let ca_path = ca.display().to_string();
    let c = Config::from_env(&env(&[
        ("REDIS_URL", "rediss://cache:6380"),
        ("REDIS_PASSWORD", "pw"),
        ("REDIS_TLS_VERIFY", "ca"),
    ]))
    .unwrap();
    assert_eq!(c.redis.url, "rediss://:pw@cache:6380");
    assert!(c.redis.is_tls());
    assert_eq!(c.redis.tls.verify, crate::tls::Verify::Chain);
    assert!(!format!("{c:?}").contains("pw@"));
    let c = Config::from_env(&env(&[(
        "REDIS_CLUSTER_URLS",
        "rediss://a:7000,rediss://b:7001",
    )]))
    .unwrap();
    assert!(c.redis.is_cluster() && c.redis.is_tls());
    assert_eq!(c.redis.tls.verify, crate::tls::Verify::Full);
    assert!(!Config::from_env(&env(&[])).unwrap().redis.is_tls());
    for (vars, var) in [
        (
            vec![("REDIS_TLS_CA_FILE", "/etc/ca.pem")],
            "REDIS_TLS_CA_FILE",
        ),
        (vec![("REDIS_TLS_VERIFY", "none")], "REDIS_TLS_VERIFY"),
        (
            vec![("REDIS_URL", "rediss://c:1"), ("REDIS_TLS_VERIFY", "yes")],
            "REDIS_TLS_VERIFY",
        ),
        (
            vec![
                ("REDIS_URL", "rediss://c:1"),
                ("REDIS_TLS_CA_FILE", "/nonexistent.pem"),
            ],
            "REDIS_TLS_CA_FILE",
        ),
        (
            vec![
                ("REDIS_URL", "rediss://c:1"),
                ("REDIS_TLS_CA_FILE", &ca_path),
            ],
            "REDIS_TLS_CA_FILE",
        ),
        (
            vec![("REDIS_CLUSTER_URLS", "rediss://a:7000,b:7001")],
            "REDIS_CLUSTER_URLS",
        ),
        (
            vec![("DATABASE_URL", "postgres://u@db/x?sslmode=verify")],
            "DATABASE_URL",
        ),
        (
            vec![(
                "DATABASE_URL",
                "postgres://u@db/x?sslmode=verify-full&sslrootcert=/nonexistent.pem",
            )],
            "DATABASE_URL",
        ),
        (
            vec![(
                "DATABASE_READ_URL",
                &format!("postgres://u@db/x?sslmode=verify-ca&sslrootcert={ca_path}"),
            )],
            "DATABASE_READ_URL",
        ),
    ] {
        let e = Config::from_env(&env(&vars)).unwrap_err();
        assert_eq!(e.var, var, "{vars:?}: {e}");
    }
    let c = Config::from_env(&env(&[(
        "DATABASE_URL",
        "postgres://u:p@db/x?sslmode=require&application_name=a",
    )]))
    .unwrap();
    assert!(!format!("{c:?}").contains("u:p@"));
    let _ = std::fs::remove_file(ca);
}
