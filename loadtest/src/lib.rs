//! dinq-loadtest: the load generator of dinq-message, as a library (used by the binary
//! and by the server's CI smoke test).
//!
//! - [`client`]: a lean WebSocket client that binds local source addresses.
//! - [`api`]: tokens and the few HTTP calls a run needs (settings).
//! - [`frames`]: the server's frames recognised by their parsed `type`, load message texts.
//! - [`outbox`]: a sender's unacknowledged sends; refusals counted and sent again.
//! - [`stats`]: HDR latency histograms and counters.
//! - [`scenarios`]: throughput, fan-out, idle connections, parity with the original.
//! - [`ceilings`]: the machine's own limits measured in the same run.
//! - [`costs`]: Redis commands and PostgreSQL writes per message, from server counters.
//! - [`run`]: the scenarios a run asks for, in order, into one report.
//! - [`report`]: JSON and Markdown output ([`report_steps`]: its one-to-one sections);
//!   [`targets`]: the targets against the results; [`compare`]: two runs side by side.

pub mod api;
pub mod ceilings;
pub mod client;
pub mod compare;
pub mod costs;
pub mod frames;
pub mod outbox;
pub mod report;
pub mod report_steps;
pub mod run;
pub mod scenarios;
pub mod stats;
pub mod targets;

/// Where and how a run talks to the cluster.
#[derive(Debug, Clone)]
pub struct Target {
    /// Base HTTP URLs of the nodes, e.g. `http://127.0.0.1:8083`.
    pub nodes: Vec<String>,
    /// `JWT_SECRET` of the cluster.
    pub secret: String,
    /// Local source addresses to spread connections over (e.g. 127.0.0.1 ... 127.0.0.8).
    pub sources: Vec<std::net::IpAddr>,
}

impl Target {
    /// The socket address of node `i` (round robin).
    pub fn node_addr(&self, i: usize) -> std::net::SocketAddr {
        let url = &self.nodes[i % self.nodes.len()];
        let hostport = url
            .trim_start_matches("http://")
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap_or("");
        use std::net::ToSocketAddrs;
        hostport
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .unwrap_or_else(|| panic!("node URL {url} does not resolve"))
    }

    /// The source address for connection `i` (round robin), if any were given.
    pub fn source(&self, i: usize) -> Option<std::net::IpAddr> {
        (!self.sources.is_empty()).then(|| self.sources[i % self.sources.len()])
    }
}
