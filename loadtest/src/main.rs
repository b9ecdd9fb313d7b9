//! `dinq-loadtest`: runs load scenarios against a dinq-message cluster and writes a report.
//!
//! ```text
//! dinq-loadtest <scenario>... --nodes http://127.0.0.1:8083,http://127.0.0.1:8084 --secret S
//!     [--sources 127.0.0.1-127.0.0.16] [--duration 10] [--rates 1000,5000,10000,20000]
//!     [--pairs 1000] [--groups 10,100,1000,10000@1] [--group-rate 200] [--connections 10000]
//!     [--hold 30] [--redis-url redis://…] [--database-url postgres://…] [--verify] [--out DIR]
//!     [--set key=value]   (an admin setting before the run, repeatable; failure is a warning)
//!     [--p99-target 100]   (the throughput search stops once p99 exceeds this, in ms)
//!     [--redis-count-urls redis://a,redis://b]   (servers whose counters `costs` sums)
//! scenarios: ceilings throughput latency crossnode fanout costs connections parity smoke all
//! dinq-loadtest render report.json   (the Markdown report of an earlier run, again)
//! dinq-loadtest compare a.json b.json   (two runs side by side, e.g. single Redis and cluster)
//! ```

use std::net::IpAddr;
use std::time::Duration;

use dinq_loadtest::Target;
use dinq_loadtest::report::Report;
use dinq_loadtest::run::{GroupSpec, Opts};

fn list<T: std::str::FromStr>(v: &str) -> Vec<T> {
    v.split(',').filter_map(|x| x.trim().parse().ok()).collect()
}

fn sources(v: &str) -> Vec<IpAddr> {
    // "127.0.0.1-127.0.0.16" or a comma list.
    if let Some((a, b)) = v.split_once('-') {
        let (Ok(IpAddr::V4(a)), Ok(IpAddr::V4(b))) = (a.parse(), b.parse()) else {
            return Vec::new();
        };
        let (a, b) = (u32::from(a), u32::from(b));
        return (a..=b).map(|x| IpAddr::V4(x.into())).collect();
    }
    list(v)
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        scenarios: Vec::new(),
        target: Target {
            nodes: vec!["http://127.0.0.1:8083".into()],
            secret: std::env::var("JWT_SECRET").unwrap_or_default(),
            sources: Vec::new(),
        },
        duration: Duration::from_secs(10),
        rates: vec![1000, 5000, 10_000, 20_000],
        pairs: 1000,
        groups: [10, 100, 1000]
            .map(|size| GroupSpec { size, rate: None })
            .to_vec(),
        group_rate: 200,
        connections: vec![10_000],
        hold: Duration::from_secs(20),
        redis_url: std::env::var("REDIS_URL").ok().map(|u| {
            if u.contains("://") {
                u
            } else {
                format!("redis://{u}")
            }
        }),
        redis_count_urls: Vec::new(),
        database_url: std::env::var("DATABASE_URL").ok(),
        verify: false,
        out: None,
        p99_target: 100.0,
        settings: Vec::new(),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--nodes" => {
                o.target.nodes = val()?
                    .split(',')
                    .map(|s| s.trim().trim_end_matches('/').to_string())
                    .collect()
            }
            "--secret" => o.target.secret = val()?,
            "--sources" => o.target.sources = sources(&val()?),
            "--duration" => {
                o.duration = Duration::from_secs(val()?.parse().map_err(|_| "--duration: seconds")?)
            }
            "--rates" => o.rates = list(&val()?),
            "--pairs" => o.pairs = val()?.parse().map_err(|_| "--pairs: a number")?,
            "--groups" => {
                o.groups = val()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--set" => {
                let v = val()?;
                let (key, value) = v.split_once('=').ok_or("--set: key=value")?;
                o.settings.push((key.trim().into(), value.trim().into()));
            }
            "--group-rate" => {
                o.group_rate = val()?.parse().map_err(|_| "--group-rate: a number")?
            }
            "--connections" => o.connections = list(&val()?),
            "--hold" => {
                o.hold = Duration::from_secs(val()?.parse().map_err(|_| "--hold: seconds")?)
            }
            "--redis-url" => o.redis_url = Some(val()?),
            "--redis-count-urls" => o.redis_count_urls = list(&val()?),
            "--database-url" => o.database_url = Some(val()?),
            "--verify" => o.verify = true,
            "--p99-target" => {
                o.p99_target = val()?.parse().map_err(|_| "--p99-target: milliseconds")?
            }
            "--out" => o.out = Some(val()?),
            "-h" | "--help" => {
                return Err(include_str!("main.rs")
                    .lines()
                    .skip(3)
                    .take(10)
                    .map(|l| l.trim_start_matches("//! "))
                    .collect::<Vec<_>>()
                    .join("\n"));
            }
            s if !s.starts_with('-') => o.scenarios.push(s.to_string()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if o.target.secret.is_empty() {
        return Err("--secret (or JWT_SECRET) is required".into());
    }
    if o.scenarios.is_empty() {
        o.scenarios.push("smoke".into());
    }
    Ok(o)
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().next().map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<u64>()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    format!(
        "{cpus} cores ({model}), {:.1} GiB RAM",
        mem as f64 / 1048576.0
    )
}

fn load(path: &str) -> Result<Report, String> {
    let json = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    serde_json::from_str(&json).map_err(|e| format!("{path}: {e}"))
}

/// `dinq-loadtest render report.json`: prints the Markdown report of an earlier run.
fn render(path: &str) -> Result<String, String> {
    Ok(load(path)?.markdown())
}

/// `dinq-loadtest compare a.json b.json [a-name b-name]`: two runs side by side.
fn compare(args: &[String]) -> Result<String, String> {
    let [a, b, rest @ ..] = args else {
        return Err("usage: dinq-loadtest compare a.json b.json [a-name b-name]".into());
    };
    let (an, bn) = match rest {
        [an, bn] => (an.as_str(), bn.as_str()),
        _ => ("a", "b"),
    };
    Ok(dinq_loadtest::compare::markdown(
        an,
        &load(a)?,
        bn,
        &load(b)?,
    ))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("compare") {
        match compare(&args[1..]) {
            Ok(md) => print!("{md}"),
            Err(e) => {
                eprintln!("dinq-loadtest: {e}");
                std::process::exit(64);
            }
        }
        return;
    }
    if args.first().map(String::as_str) == Some("render") {
        match args.get(1).map(|p| render(p)) {
            Some(Ok(md)) => print!("{md}"),
            Some(Err(e)) => {
                eprintln!("dinq-loadtest: {e}");
                std::process::exit(1);
            }
            None => {
                eprintln!("usage: dinq-loadtest render report.json");
                std::process::exit(64);
            }
        }
        return;
    }
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(64);
        }
    };
    let report = Report {
        machine: machine(),
        date: std::process::Command::new("date")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default(),
        setup: format!(
            "{} node(s): {}",
            o.target.nodes.len(),
            o.target.nodes.join(", ")
        ),
        p99_target: o.p99_target,
        ..Default::default()
    };
    match dinq_loadtest::run::run(&o, report).await {
        Ok(report) => {
            let md = report.markdown();
            println!("{md}");
            if let Some(dir) = &o.out {
                let _ = std::fs::create_dir_all(dir);
                let _ = std::fs::write(format!("{dir}/report.md"), &md);
                let _ = std::fs::write(
                    format!("{dir}/report.json"),
                    serde_json::to_string_pretty(&report).unwrap_or_default(),
                );
                eprintln!("report written to {dir}/report.md and report.json");
            }
        }
        Err(e) => {
            eprintln!("dinq-loadtest: {e}");
            std::process::exit(1);
        }
    }
}
