//! dinq-message: a clustered instant-messaging server, wire-compatible with the Go
//! `dinq_message` service.
//!
//! # Layout
//!
//! - [`app`]: composition root; start order and shutdown sequence. [`cli`]: the binary.
//! - [`config`]: configuration from the environment, validated before anything binds.
//! - [`http`]: hyper server, route table, envelopes, probes and API handlers.
//! - [`domain`]: the product's rules, shared by HTTP and WebSocket.
//! - [`delivery`]: the hub of this node's users and their delivery state: dedupe and gap
//!   repair by seq, unread counts, delivery cursors and their confirmation, the offline
//!   drain, the send rate limit. Beside `domain` (it uses the domain; never the reverse).
//! - [`store`]: PostgreSQL pool, migrations and queries.
//! - [`cluster`]: Redis: per-user channels, presence, registry, control channel.
//! - [`ws`]: WebSocket handshake, sessions, frames and the client protocol.
//! - leaves: [`auth`] (tokens), [`error`], [`metrics`], [`model`], [`shutdown`], [`telemetry`],
//!   [`tls`] (TLS client settings for PostgreSQL and Redis).
//!
//! The README's "Architecture" section is the longer version of this map.

pub mod app;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod error;
pub mod http;
pub mod metrics;
pub mod model;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod ws;

#[cfg(test)]
mod tests;

pub use app::run;
