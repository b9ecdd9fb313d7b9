//! The command line of the `dinq-message` binary: reads the configuration, starts logging
//! and the runtime, and runs a node; `dinq-message token …` prints a signed token for
//! trying the API. Lives in the library so tests can check exit codes without a process.
//!
//! Exit codes: 0 after a clean shutdown, 64 for a configuration or usage error, 69 when
//! the port cannot be bound or PostgreSQL or Redis cannot be reached at start-up.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use uuid::Uuid;

use crate::auth::Tokens;
use crate::config::{Config, Env, ProcessEnv};
use crate::model::UserId;

const USAGE: &str = "usage:
  dinq-message                      run a node (configuration from the environment and .env)
  dinq-message token --user <uuid> [--admin] [--ttl <seconds>]
                                    print a token signed with JWT_SECRET
  dinq-message --version";

/// Runs the command line with the process environment (and `.env`).
pub fn main(args: &[String]) -> ExitCode {
    match ProcessEnv::load() {
        Ok(env) => main_with_env(args, &env),
        Err(e) => {
            eprintln!("dinq-message: configuration error: {e}");
            ExitCode::from(64)
        }
    }
}

/// Runs the command line with `env` as the environment.
pub fn main_with_env(args: &[String], env: &dyn Env) -> ExitCode {
    match args.first().map(String::as_str) {
        None => serve(env),
        Some("token") => token(&args[1..], env),
        Some("--version" | "-V") => {
            println!("dinq-message {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("--help" | "-h" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => usage_error(&format!("unknown command {other:?}")),
    }
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("dinq-message: {msg}\n{USAGE}");
    ExitCode::from(64)
}

fn serve(env: &dyn Env) -> ExitCode {
    let config = match Config::from_env(env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dinq-message: configuration error: {e}");
            return ExitCode::from(64);
        }
    };
    crate::telemetry::init(config.log_format, &config.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("dinq-worker")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dinq-message: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = SocketAddr::new(config.bind_address, config.port);
    let grace = config.shutdown_grace;
    let code = runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(%addr, error = %e, "cannot bind");
                return ExitCode::from(69);
            }
        };
        match crate::app::run(config, listener, crate::shutdown::signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "start-up failed");
                eprintln!("dinq-message: start-up failed: {e}");
                ExitCode::from(69)
            }
        }
    });
    // Background tasks get a moment to finish, never more than the grace period.
    runtime.shutdown_timeout(grace.min(Duration::from_secs(2)));
    code
}

fn token(args: &[String], env: &dyn Env) -> ExitCode {
    let mut user = None;
    let mut admin = false;
    let mut ttl = Duration::from_secs(24 * 3600);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--user" => match it.next().map(|v| Uuid::parse_str(v)) {
                Some(Ok(id)) if !id.is_nil() => user = Some(id),
                _ => return usage_error("--user needs a non-nil UUID"),
            },
            "--admin" => admin = true,
            "--ttl" => match it.next().and_then(|v| v.parse::<u64>().ok()) {
                Some(secs) if secs > 0 => ttl = Duration::from_secs(secs),
                _ => return usage_error("--ttl needs a positive number of seconds"),
            },
            other => return usage_error(&format!("unknown option {other:?}")),
        }
    }
    let Some(user) = user else {
        return usage_error("token needs --user <uuid>");
    };
    let Some(secret) = env.get("JWT_SECRET").filter(|s| !s.trim().is_empty()) else {
        eprintln!("dinq-message: configuration error: JWT_SECRET: expected a non-empty secret");
        return ExitCode::from(64);
    };
    if let Err(e) = crate::config::check_jwt_secret("JWT_SECRET", &secret) {
        eprintln!("dinq-message: configuration error: {e}");
        return ExitCode::from(64);
    }
    println!(
        "{}",
        Tokens::new(&secret, Default::default()).issue(UserId::from_uuid(user), admin, ttl)
    );
    ExitCode::SUCCESS
}
