//! A PostgreSQL and Redis that accept TLS only (`deploy/local/stack.sh start --tls`), with
//! certificates made for the test run: a CA, and a server certificate it issued for
//! `localhost` only (no IP address), so `127.0.0.1` is a wrong host name for it. A second CA
//! that issued nothing plays the untrusted one. Started once per test process, stopped
//! when it exits.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::harness::free_port;

/// The TLS-only servers and the certificate files.
pub struct TlsStack {
    /// Where `ca.crt`, `other-ca.crt`, `server.crt` and `server.key` are.
    pub certs: PathBuf,
    /// PostgreSQL's port (TLS only; user `postgres`, no password).
    pub pg_port: u16,
    /// Redis's TLS port (no plain port).
    pub redis_port: u16,
}

static TLS_STACK: OnceLock<TlsStack> = OnceLock::new();

/// The stack, started on first use.
pub fn tls_stack() -> &'static TlsStack {
    TLS_STACK.get_or_init(|| {
        let repo = env!("CARGO_MANIFEST_DIR");
        let dir = PathBuf::from(format!("{repo}/target/tls-stack-{}", std::process::id()));
        let certs = dir.join("certs");
        make_certificates(&certs);
        let (pg_port, redis_port) = (free_port(), free_port());
        let out = Command::new(format!("{repo}/deploy/local/stack.sh"))
            .args(["start", "--fast", "--dir"])
            .arg(&dir)
            .args(["--pg-port", &pg_port.to_string()])
            .args(["--redis-port", &redis_port.to_string()])
            .args(["--watch-pid", &std::process::id().to_string()])
            .arg("--tls")
            .arg(&certs)
            .output()
            .expect("run deploy/local/stack.sh");
        assert!(
            out.status.success(),
            "stack.sh start --tls failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        TlsStack {
            certs,
            pg_port,
            redis_port,
        }
    })
}

impl TlsStack {
    /// The path of one of the certificate files, as a string for URLs and variables.
    pub fn file(&self, name: &str) -> String {
        self.certs.join(name).display().to_string()
    }

    /// A URL of database `db` on `host` with extra `params` (`sslmode=…&…`).
    pub fn pg_url(&self, host: &str, db: &str, params: &str) -> String {
        format!("postgres://postgres@{host}:{}/{db}?{params}", self.pg_port)
    }

    /// The settings that check everything: verify-full on `localhost`, the test CA.
    pub fn pg_verified(&self, db: &str) -> String {
        self.pg_url(
            "localhost",
            db,
            &format!("sslmode=verify-full&sslrootcert={}", self.file("ca.crt")),
        )
    }

    /// A fresh database, created over a verified TLS connection.
    pub async fn create_database(&self) -> String {
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let store = crate::store::Store::new(&self.pg_verified("postgres"), 2).unwrap();
        let conn = store.conn().await.expect("TLS connection to PostgreSQL");
        conn.batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        drop(conn);
        store.close();
        name
    }
}

/// Writes `ca.crt`, `other-ca.crt`, `server.crt` and `server.key` into `dir` (openssl CLI,
/// P-256 keys, valid for two days). The server certificate is good for client
/// authentication too: the nodes of a TLS Redis Cluster present it to each other.
fn make_certificates(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl (apt-get install openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for ca in ["ca", "other-ca"] {
        let (key, crt, subject) = (
            format!("{ca}.key"),
            format!("{ca}.crt"),
            format!("/CN=dinq test {ca}"),
        );
        let mut args = vec!["req", "-x509", "-days", "2", "-subj", &subject];
        args.extend(ec);
        args.extend(["-keyout", &key, "-out", &crt]);
        args.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
        args.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        openssl(&args);
    }
    let mut args = vec!["req", "-new", "-subj", "/CN=localhost"];
    args.extend(ec);
    args.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(&args);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-days",
        "2",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-extfile",
        "server.ext",
        "-out",
        "server.crt",
    ]);
}
