//! Herald: an event-sourced message dispatch service. This crate wires the parts together and
//! holds the operator-facing commands; `main.rs` only parses arguments and calls into it.
//!
//! - [`config`]: `herald.toml` + `HERALD_*` variables, validated with line and key.
//! - [`app`]: [`app::start`], the one function that opens backends and starts the API, the
//!   projector and the workers (serve, demo, bench and the tests all use it).
//! - [`backends`]: production backends chosen by URL (PostgreSQL, Redis).
//! - [`demo`]: `herald demo`, the whole pipeline against the bundled examples.
//! - [`receiver`]: a local webhook receiver that behaves like real endpoints.
//! - [`ops`]: queue info, dead letters, event history and projection rebuilds for operators.
//! - [`bench`]: `herald bench`, the load generator.
//!
//! The domain lives in `herald-domain`, the ports and loops in `herald-core`, the backends in
//! `herald-sqlite`, `herald-redis` and `herald-postgres`, the HTTP API in `herald-api`.

mod api_role;
pub mod app;
pub mod backends;
pub mod bench;
pub mod config;
pub mod demo;
pub mod ops;
pub mod receiver;

pub use app::{Roles, StartOptions, start};
pub use config::Config;
