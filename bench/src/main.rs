//! cloakroom's side-by-side benchmark: bare axum and actix-web, tower-sessions, actix-session
//! and cloakroom, each as its own process on loopback, driven by wrk.
//!
//! `cargo run --release -p cloakroom-bench -- --rounds 5` runs everything; see `--help` and
//! `bench/README.md`.

mod clients;
mod http;
mod latency;
mod runner;
mod servers;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    run: runner::RunArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs one server (the benchmark starts these itself).
    Serve(servers::ServeArgs),
    /// What one Redis `GET` costs through each client, without HTTP (run it under callgrind:
    /// `bench/clients.py`).
    Clients(clients::ClientArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Cmd::Serve(args)) => servers::serve(args).map_err(|e| e.to_string()),
        Some(Cmd::Clients(args)) => clients::run(&args).map_err(|e| e.to_string()),
        None => runner::run(cli.run).map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
