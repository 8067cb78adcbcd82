//! The `fleche` command: inspect and check fleche caches and their configuration.
//!
//! Exit codes: 0 on success, 1 when a problem was found, 2 for a usage error.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fleche::config::{Config, DefaultCache, Env};

/// Persistent, queryable memoization: command-line tools.
#[derive(Parser)]
#[command(name = "fleche", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Configuration files.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Reads the configuration that applies here and reports every problem of every file, with
    /// its file and key. Exits 1 when there is any.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config {
            action: ConfigAction::Check,
        } => check(&Config::discover(&Env::from_process())),
    }
}

fn check(config: &Config) -> ExitCode {
    if config.files().is_empty() {
        println!("no configuration file applies here; caches: memory, void, default");
    }
    for f in config.files() {
        println!("read {}", f.display());
    }
    let names = config.cache_names();
    if !names.is_empty() {
        println!("caches: {}", names.join(", "));
    }
    match config.default_cache() {
        Ok(DefaultCache::Named(n)) => println!("default cache: {n}"),
        Ok(DefaultCache::Inline(_)) => println!("default cache: inline [default.cache]"),
        Ok(DefaultCache::Memory) => println!("default cache: memory"),
        // Reported with the other problems below.
        Err(_) => {}
    }
    for w in config.warnings() {
        eprintln!("warning: {w}");
    }
    let problems = config.problems();
    for p in &problems {
        eprintln!("error: {p}");
    }
    if problems.is_empty() {
        println!("ok");
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "{} problem{} found",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
        ExitCode::FAILURE
    }
}
