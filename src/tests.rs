//! End-to-end tests: real nodes in this process against the real PostgreSQL and Redis
//! that [`harness`] starts once per test run.

mod client;
mod harness;
mod ws_client;

mod foundation;
mod migrations;
mod realtime;
mod realtime_faults;
mod realtime_rules;
mod ws_errors;
mod ws_errors_limits;
