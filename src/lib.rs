//! credstream: a Kafka Streams-style stream processor for regulated credit data.
//!
//! # Layout
//!
//! - [`config`]: the TOML configuration, every key overridable by a `CREDSTREAM_` variable.
//! - [`error`]: the crate [`Error`], classified as bad data, an outside system failing, or a bug.
//! - [`poller`]: finds stable files in landing areas and hands them on. Knows nothing of Avro.
//! - [`rawstore`]: content-addressed storage of raw file bytes, written before anything else.
//! - [`streams`]: the stream-processing runtime (tasks, changelogged state stores, commits).
//!   Knows nothing of credit data.
//! - [`formats`]: declarative file layouts and the parsers that read them.
//! - [`schema`]: Avro contracts, the schema-registry client and the embedded registry server.
//! - [`credit`]: the credit topology: dedup, parse, validate, route, ledger.
//! - [`query`]: the HTTP query API over the stores. Only reads.
//! - [`metrics`]: one struct per emitted metric event.
//! - [`samples`]: synthetic issuer files for the demo and tests.
//! - [`app`]: wires the roles together for `credstream run`; [`demo`] for `credstream demo`.

pub mod api_client;
pub mod app;
pub mod backfill;
pub mod cli;
pub mod config;
pub mod credit;
pub mod demo;
pub mod error;
pub mod formats;
pub mod inspect;
pub mod metrics;
pub mod poller;
pub mod progress;
pub mod query;
pub mod rawstore;
pub mod replay;
pub mod samples;
pub mod schema;
pub mod streams;
pub mod tokenise;

pub use error::{Error, ErrorKind, Result};
