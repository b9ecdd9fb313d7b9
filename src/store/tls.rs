//! TLS to PostgreSQL: libpq's `sslmode` and `sslrootcert` read from a connection string,
//! and a rustls connector for tokio-postgres.
//!
//! tokio-postgres knows `sslmode` `disable`, `prefer` and `require` only, and no
//! `sslrootcert`, so both are taken out of the URL (or `key=value` string) before it parses
//! the rest. Then, as libpq does:
//!
//! | `sslmode` | TLS | certificate check |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default) | when the server offers it, else plain | none |
//! | `require` | always | none; with `sslrootcert`, as `verify-ca` |
//! | `verify-ca` | always | issued by a trusted CA |
//! | `verify-full` | always | issued by a trusted CA for the host name in the URL |
//!
//! Trusted CAs are those of `sslrootcert` (a PEM file), or the system's store when it is
//! absent or `system` (which, as in libpq 16, asks for `verify-full`). Unlike libpq,
//! `~/.postgresql/root.crt` is not read. Channel binding (`SCRAM-SHA-256-PLUS`) is not
//! offered, so `channel_binding=require` fails; the default (`prefer`) works.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_rustls::client::TlsStream as RustlsStream;

use crate::tls::{Roots, Verify};

/// The TLS part of a PostgreSQL connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTls {
    /// Whether TLS is used (tokio-postgres's three modes).
    pub mode: SslMode,
    /// What is checked of the server's certificate.
    pub verify: Verify,
    /// Trusted CAs for `verify`.
    pub roots: Roots,
}

impl PgTls {
    /// The connector tokio-postgres uses (reads the CA file or the system store).
    pub fn connector(&self) -> Result<MakeRustls, String> {
        Ok(MakeRustls {
            config: crate::tls::client_config(self.verify, &self.roots)?,
        })
    }
}

/// Splits `url` into tokio-postgres's configuration and the TLS settings; the error says
/// what is wrong (never the password).
pub fn parse(url: &str) -> Result<(tokio_postgres::Config, PgTls), String> {
    let (rest, sslmode, rootcert) = take_tls_params(url)?;
    let mut config: tokio_postgres::Config = rest.parse().map_err(|e| format!("{e}"))?;
    let roots = match rootcert.as_deref() {
        None | Some("system") => Roots::System,
        Some(path) => Roots::File(path.to_string()),
    };
    let sslmode = match (sslmode.as_deref(), rootcert.as_deref()) {
        (None, Some("system")) => "verify-full",
        (None, _) => "prefer",
        (Some(mode), _) => mode,
    };
    let (mode, verify) = match sslmode {
        "disable" => (SslMode::Disable, Verify::Nothing),
        "prefer" => (SslMode::Prefer, Verify::Nothing),
        "require" if rootcert.is_some() => (SslMode::Require, Verify::Chain),
        "require" => (SslMode::Require, Verify::Nothing),
        "verify-ca" => (SslMode::Require, Verify::Chain),
        "verify-full" => (SslMode::Require, Verify::Full),
        other => {
            return Err(format!(
                "sslmode must be disable, prefer, require, verify-ca or verify-full, not {other:?}"
            ));
        }
    };
    if roots == Roots::System && rootcert.is_some() && verify != Verify::Full {
        return Err("sslrootcert=system needs sslmode=verify-full (as in libpq)".into());
    }
    config.ssl_mode(mode);
    Ok((
        config,
        PgTls {
            mode,
            verify,
            roots,
        },
    ))
}

/// `url` without its `sslmode` and `sslrootcert`, and their values (URL or `key=value`
/// form).
fn take_tls_params(url: &str) -> Result<(String, Option<String>, Option<String>), String> {
    let mut sslmode = None;
    let mut rootcert = None;
    let mut take = |key: &str, value: String| match key {
        "sslmode" => {
            sslmode = Some(value);
            true
        }
        "sslrootcert" => {
            rootcert = Some(value);
            true
        }
        _ => false,
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (base, fragment) = url.split_once('#').unwrap_or((url, ""));
        match base.split_once('?') {
            None => url.to_string(),
            Some((head, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    if !take(key, percent_decode(value)?) {
                        kept.push(pair);
                    }
                }
                let mut rest = head.to_string();
                if !kept.is_empty() {
                    rest = format!("{rest}?{}", kept.join("&"));
                }
                if !fragment.is_empty() {
                    rest = format!("{rest}#{fragment}");
                }
                rest
            }
        }
    } else {
        let mut rest = String::new();
        for (key, value, raw) in key_values(url)? {
            if !take(&key, value) {
                rest.push_str(raw);
                rest.push(' ');
            }
        }
        rest.trim_end().to_string()
    };
    Ok((rest, sslmode, rootcert))
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("bad percent-encoding in the URL's parameters")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "a URL parameter is not UTF-8".to_string())
}

/// The `key = value` pairs of a libpq connection string, each with its source text. Values
/// may be single-quoted, with `\'` and `\\` escapes.
fn key_values(s: &str) -> Result<Vec<(String, String, &str)>, String> {
    let bad = || "malformed key=value connection string".to_string();
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    loop {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = chars.peek() else {
            break;
        };
        let mut key = String::new();
        while let Some((_, c)) = chars.next_if(|(_, c)| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        chars.next_if(|(_, c)| *c == '=').ok_or_else(bad)?;
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if(|(_, c)| *c == '\'').is_some() {
            loop {
                match chars.next().ok_or_else(bad)?.1 {
                    '\'' => break,
                    '\\' => value.push(chars.next().ok_or_else(bad)?.1),
                    c => value.push(c),
                }
            }
        } else {
            while let Some((_, c)) = chars.next_if(|(_, c)| !c.is_whitespace()) {
                value.push(c);
            }
        }
        let end = chars.peek().map_or(s.len(), |&(i, _)| i);
        out.push((key, value, &s[start..end]));
    }
    Ok(out)
}

/// Makes rustls connections for tokio-postgres.
#[derive(Clone)]
pub struct MakeRustls {
    config: Arc<rustls::ClientConfig>,
}

impl MakeTlsConnect<tokio_postgres::Socket> for MakeRustls {
    type Stream = PgTlsStream;
    type TlsConnect = ConnectRustls;
    type Error = io::Error;

    fn make_tls_connect(&mut self, host: &str) -> io::Result<ConnectRustls> {
        // Empty for a Unix socket, which tokio-postgres never wraps in TLS.
        Ok(ConnectRustls {
            config: self.config.clone(),
            host: host.to_string(),
        })
    }
}

/// One TLS handshake with the host a connection was opened to.
pub struct ConnectRustls {
    config: Arc<rustls::ClientConfig>,
    host: String,
}

impl TlsConnect<tokio_postgres::Socket> for ConnectRustls {
    type Stream = PgTlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<PgTlsStream>> + Send>>;

    fn connect(self, socket: tokio_postgres::Socket) -> Self::Future {
        Box::pin(async move {
            let name = ServerName::try_from(self.host.trim_matches(['[', ']']).to_string())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let stream = tokio_rustls::TlsConnector::from(self.config)
                .connect(name, socket)
                .await?;
            Ok(PgTlsStream(stream))
        })
    }
}

/// A TLS connection to PostgreSQL.
pub struct PgTlsStream(RustlsStream<tokio_postgres::Socket>);

impl TlsStream for PgTlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl AsyncRead for PgTlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for PgTlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_leave_the_url_and_set_the_mode() {
        let (c, t) =
            parse("postgres://u:p@db:5432/x?sslmode=verify-full&application_name=a").unwrap();
        assert_eq!(c.get_ssl_mode(), SslMode::Require);
        assert_eq!(c.get_application_name(), Some("a"));
        assert_eq!((t.verify, &t.roots), (Verify::Full, &Roots::System));
        let (_, t) =
            parse("postgresql://db/x?sslrootcert=%2Fetc%2Fca.pem&sslmode=verify-ca").unwrap();
        assert_eq!(t.verify, Verify::Chain);
        assert_eq!(t.roots, Roots::File("/etc/ca.pem".into()));
        let (c, t) = parse("postgres://db/x").unwrap();
        assert_eq!(
            (c.get_ssl_mode(), t.verify),
            (SslMode::Prefer, Verify::Nothing)
        );
        let (c, t) = parse("postgres://db/x?sslmode=disable").unwrap();
        assert_eq!(
            (c.get_ssl_mode(), t.verify),
            (SslMode::Disable, Verify::Nothing)
        );
        // libpq: `require` with a root certificate checks the chain.
        let (_, t) = parse("postgres://db/x?sslmode=require").unwrap();
        assert_eq!(t.verify, Verify::Nothing);
        let (_, t) = parse("postgres://db/x?sslmode=require&sslrootcert=/ca.pem").unwrap();
        assert_eq!(t.verify, Verify::Chain);
        let (_, t) = parse("postgres://db/x?sslrootcert=system").unwrap();
        assert_eq!((t.verify, t.roots), (Verify::Full, Roots::System));
    }

    #[test]
    fn key_value_strings_too() {
        let (c, t) =
            parse("host=db user=u sslmode = verify-full sslrootcert='/a b/ca.pem' dbname=x")
                .unwrap();
        assert_eq!(c.get_dbname(), Some("x"));
        assert_eq!(c.get_user(), Some("u"));
        assert_eq!(c.get_ssl_mode(), SslMode::Require);
        assert_eq!(t.roots, Roots::File("/a b/ca.pem".into()));
        let (c, _) = parse(r"host=db password='a\'b c' dbname=x").unwrap();
        assert_eq!(c.get_password(), Some(&b"a'b c"[..]));
    }

    #[test]
    fn bad_values_are_refused() {
        for url in [
            "postgres://db/x?sslmode=verify",
            "postgres://db/x?sslmode=allow",
            "postgres://db/x?sslrootcert=system&sslmode=require",
            "postgres://db/x?sslrootcert=%zz",
            "host=db sslmode='unterminated",
        ] {
            assert!(parse(url).is_err(), "{url}");
        }
    }
}
