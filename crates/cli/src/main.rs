//! `tributary`: the one binary. Glue only: parse the command line, compose
//! the config, start the parts from the library crates.

// The doc comments of this crate are mostly `--help` text, written for a
// terminal: `kafka://HOST:PORT[,HOST:PORT]` there is a usage pattern, not a
// rustdoc link.
#![allow(rustdoc::broken_intra_doc_links)]

mod admin;
mod bench;
mod bridge;
mod config;
mod erasure;
mod metrics;
mod model;
mod pipeline;
mod reprocess;
mod rights;
mod serve;

use clap::{Parser, Subcommand};

/// jemalloc rather than glibc's allocator: measured with `tributary bench`
/// (docs/benchmarks.md), it leaves fewer holes around the 128-byte aligned
/// blocks the runtime allocates per connection (idle connections take less
/// resident memory) and is faster on the per-message allocations.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Tributary: personal data streams over MQTT onto a durable log.
#[derive(Debug, Parser)]
#[command(name = "tributary", version, about = "Tributary: personal data streams over MQTT onto a durable log", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node: the MQTT broker, the pipeline, the archive and the HTTP API.
    ///
    /// One process runs the MQTT listeners, the pipeline that turns SenML
    /// messages into rows of the measurements store, the sink that writes
    /// them to the Parquet archive (unless `[archive] enabled = false`) and
    /// the HTTP API (`--http`), all on the embedded log in the data dir or,
    /// with `--log kafka://...`, on Kafka.
    // Boxed: its flags (listeners, certificates, the cluster) make it the largest by far.
    Serve(Box<serve::ServeArgs>),
    /// Read the whole log again into the measurements store, from its
    /// first record to where it ended at the start, then stop: rebuilds a
    /// lost or new store, or checks that reprocessing changes nothing
    /// (prints the store's row count and checksum before and after).
    Reprocess(reprocess::ReprocessArgs),
    /// Load an MQTT broker: publishers, subscribers or idle connections.
    Bench(bench::BenchArgs),
    /// Move messages from an existing MQTT broker into Kafka, at least once.
    Bridge(bridge::BridgeArgs),
    /// Manage owners (people): add, list.
    Owner(admin::OwnerArgs),
    /// Manage devices of owners: add (prints the token once), revoke, list.
    Device(admin::DeviceArgs),
    /// Manage services (machine clients with grants read/command): add
    /// (prints the token once), revoke, list.
    Service(admin::ServiceArgs),
    /// Manage admins (operators): add (prints a password once), list.
    Admin(admin::AdminArgs),
    /// The behaviour model: train, evaluate and time activity recognition (docs/model.md).
    Model(model::ModelArgs),
}

/// The multi-threaded runtime every long-running command runs on.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the runtime")
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The behaviour model's tensor library sizes its thread pool from this variable when it
    // first runs. One thread unless the operator says otherwise: measured faster for this small
    // network (two training epochs: 10 s on one thread, 17 s on two), and the broker keeps the
    // other cores. Set before any thread starts, so nothing reads the environment meanwhile.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // rustls warns about what clients do (an IP address sent as
                // SNI, as mosquitto does): not the operator's concern.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rustls=error")),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Reprocess(args) => reprocess::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Bridge(args) => bridge::run(args),
        Command::Owner(args) => admin::owner(args),
        Command::Device(args) => admin::device(args),
        Command::Service(args) => admin::service(args),
        Command::Admin(args) => admin::admin(args),
        Command::Model(args) => model::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tributary: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
