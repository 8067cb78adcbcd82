//! The `fleche` command: inspect configuration.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fleche::config::{Config, Env};

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
    /// Reads the configuration that applies here and reports every problem with its file and key.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config {
            action: ConfigAction::Check,
        } => check(),
    }
}

fn check() -> ExitCode {
    let env = Env::from_process();
    match Config::discover(&env) {
        Ok(config) => {
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
                Ok(fleche::config::DefaultCache::Named(n)) => println!("default cache: {n}"),
                Ok(fleche::config::DefaultCache::Inline(_)) => {
                    println!("default cache: inline [default.cache]")
                }
                Ok(fleche::config::DefaultCache::Memory) => println!("default cache: memory"),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            }
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
