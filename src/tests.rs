//! End-to-end tests: real nodes in this process against the real PostgreSQL and Redis
//! that [`harness`] starts once per test run.

mod client;
mod harness;
mod ws_client;

mod authz;
mod authz_checks;
mod authz_setup;
mod authz_ws;
mod authz_ws_room;
mod browser;
mod cut;
mod deploy;
mod drain;
mod faults;
mod foundation;
mod foundation_requests;
mod http_admin;
mod http_api;
mod http_batch_send;
mod http_conversations;
mod http_members;
mod http_notification_events;
mod http_notifications;
mod http_relationships;
mod http_search;
mod loadtest_smoke;
mod migrations;
mod partitions;
mod process;
mod properties;
mod read_replica;
mod realtime;
mod realtime_faults;
mod realtime_rules;
mod realtime_session;
mod redis_cluster;
pub(crate) mod redis_cluster_harness;
mod redis_cluster_pipeline;
mod tls;
mod tls_stack;
mod ws_errors;
mod ws_errors_limits;
