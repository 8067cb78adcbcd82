//! The `fleche` command: list, inspect, check and clean up what fleche caches hold, and check
//! their configuration.
//!
//! Exit codes: 0 on success, 1 when a failure was found or raised (a corrupt entry `verify`
//! found, a key that matches nothing, a storage error), 2 for a usage error. `fleche run` passes
//! its command's exit status through.
//!
//! `FLECHE_LOG` sets what is logged to stderr (`warn` by default; `debug` says why each run hit
//! or missed; `off`, or per target: `fleche=debug,warn`).

mod format;
mod log;
mod open;
mod outputs;
mod run;
mod signals;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, CommandFactory, Parser, Subcommand};
use fleche::config::{Config, DefaultCache};
use fleche::{Cache, CallRecord, Lineage, Query, Value};

use format::Format;

/// Persistent, queryable memoization: inspect and manage fleche caches.
#[derive(Parser)]
#[command(name = "fleche", version, about)]
struct Cli {
    /// The cache to use (a section of fleche.toml); by default the configured default cache.
    #[arg(long, global = true, value_name = "NAME")]
    cache: Option<String>,
    /// Read this configuration file instead of discovering fleche.toml files.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
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
    /// Lists the stored calls the filters match.
    #[command(alias = "query")]
    Ls {
        #[command(flatten)]
        filters: Filters,
        /// How to print them.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Shows one stored call (a unique prefix of its key is enough), with its lineage.
    Show {
        /// The call key, or a unique prefix of it.
        key: String,
    },
    /// Prints the result of one stored call as JSON.
    Cat {
        /// The call key, or a unique prefix of it.
        key: String,
    },
    /// Calls, distinct values and bytes, per function.
    Stats,
    /// Removes the stored calls the filters match (not their values: see `gc`).
    Evict {
        #[command(flatten)]
        filters: Filters,
        /// Say what would be removed, and remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Allow evicting every call when no filter is given.
        #[arg(long)]
        all: bool,
    },
    /// Removes values no stored call refers to, and temporary files left by killed writers.
    Gc,
    /// Checks every entry's checksum (and signature), reporting corrupt ones; exits 1 if any.
    Verify {
        /// Remove the corrupt entries, so the next call recomputes them.
        #[arg(long)]
        repair: bool,
    },
    /// Copies the calls the filters match, with their values, into another cache.
    Transfer {
        /// The destination cache's name.
        #[arg(long, value_name = "NAME")]
        to: String,
        #[command(flatten)]
        filters: Filters,
    },
    /// Prints a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Runs a command once per distinct input, replaying its output, exit status and output
    /// files afterwards: `fleche run [OPTIONS] -- CMD ARGS..`. Without a configured cache, runs
    /// are kept in `$XDG_CACHE_HOME/fleche/run` (else `~/.cache/fleche/run`).
    Run(run::RunArgs),
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Reads the configuration that applies here and reports every problem of every file, with
    /// its file and key. Exits 1 when there is any.
    Check,
    /// Prints the merged configuration, each table with the file it came from.
    Show,
}

/// The filters of `ls`, `evict` and `transfer`.
#[derive(Args, Debug, Default)]
struct Filters {
    /// Only calls of this function.
    #[arg(long = "fn", value_name = "NAME")]
    function: Option<String>,
    /// Only calls whose argument NAME has this value (parsed as JSON, else taken as a string).
    #[arg(long = "arg", value_name = "NAME=VALUE", value_parser = pair)]
    args: Vec<(String, String)>,
    /// Only calls tagged NAME=VALUE (the value parsed as for --arg).
    #[arg(long = "tag", value_name = "NAME=VALUE", value_parser = pair)]
    tags: Vec<(String, String)>,
    /// Only calls started within this long ago (30s, 15m, 1h30m, 2d, 1w).
    #[arg(long, value_name = "AGE", value_parser = age)]
    since: Option<Duration>,
    /// At most this many calls.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Newest first (the default is oldest first).
    #[arg(long)]
    newest: bool,
}

fn pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected NAME=VALUE, found `{s}`")),
    }
}

/// An age or duration: a number and a unit, or several summed (`90s`, `15m`, `1.5h`, `1h30m`,
/// `1d 12h`, `500ms`, `2weeks`); a bare number is seconds.
fn age(s: &str) -> Result<Duration, String> {
    const UNITS: &str = "ms, s, m (min), h, d or w";
    let text = s.trim();
    let too_large = || format!("`{text}` is too large an age");
    if text.is_empty() {
        return Err("expected an age such as 30s, 15m, 2h, 1h30m, 2d or 1w, found nothing".into());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| too_large());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let number = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let n: f64 = match rest[..number].parse() {
            Ok(n) if rest.as_bytes()[0].is_ascii_digit() => n,
            _ => {
                return Err(format!(
                    "expected an age such as 30s, 15m, 2h, 1h30m, 2d or 1w, found `{text}`"
                ));
            }
        };
        rest = rest[number..].trim_start();
        let letters = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..letters];
        rest = rest[letters..].trim_start();
        let seconds = match unit {
            "ms" | "msec" | "msecs" | "millisecond" | "milliseconds" => 0.001,
            "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
            "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86_400.0,
            "w" | "week" | "weeks" => 604_800.0,
            "" => return Err(format!("a number without a unit in `{text}`: use {UNITS}")),
            _ => return Err(format!("unknown unit `{unit}` in `{text}`: use {UNITS}")),
        };
        let part = Duration::try_from_secs_f64(n * seconds).map_err(|_| too_large())?;
        total = total.checked_add(part).ok_or_else(too_large)?;
    }
    Ok(total)
}

/// A command-line value: JSON when it parses, else the text as a string.
fn parse_value(text: &str) -> Value {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(j) => from_json(&j),
        Err(_) => Value::Str(text.to_owned()),
    }
}

fn from_json(j: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match j {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::Int(i.into()),
            (_, Some(u), _) => Value::Int(u.into()),
            (_, _, Some(f)) => Value::Float(f),
            _ => Value::Null,
        },
        J::String(s) => Value::Str(s.clone()),
        J::Array(items) => Value::Seq(items.iter().map(from_json).collect()),
        J::Object(fields) => Value::Struct(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), from_json(v)))
                .collect(),
        ),
    }
}

impl Filters {
    fn is_empty(&self) -> bool {
        self.function.is_none()
            && self.args.is_empty()
            && self.tags.is_empty()
            && self.since.is_none()
            && self.limit.is_none()
    }

    fn query(&self, cache: &Cache) -> Query {
        let mut q = cache.query();
        if let Some(f) = &self.function {
            q = q.function(f.clone());
        }
        for (k, v) in &self.args {
            q = q.arg_value(k.clone(), parse_value(v));
        }
        for (k, v) in &self.tags {
            q = q.tag_value(k.clone(), parse_value(v));
        }
        if let Some(age) = self.since {
            q = q.since(
                SystemTime::now()
                    .checked_sub(age)
                    .unwrap_or(SystemTime::UNIX_EPOCH),
            );
        }
        if self.newest {
            q = q.newest_first();
        }
        if let Some(n) = self.limit {
            q = q.take(n);
        }
        q
    }
}

/// How a command ended: its exit code, and a message for stderr.
enum Failure {
    /// Exit 1.
    Failed(String),
    /// Exit 2.
    Usage(String),
}

impl Failure {
    /// Prints the message and gives the exit code: 1, or 2 for a usage error.
    fn report(self) -> ExitCode {
        let (message, code) = match self {
            Failure::Failed(m) => (m, 1),
            Failure::Usage(m) => (m, 2),
        };
        eprintln!("error: {message}");
        ExitCode::from(code)
    }
}

impl From<fleche::config::ConfigError> for Failure {
    fn from(e: fleche::config::ConfigError) -> Self {
        Failure::Failed(e.to_string())
    }
}

impl From<fleche::Error> for Failure {
    fn from(e: fleche::Error) -> Self {
        Failure::Failed(e.to_string())
    }
}

type Outcome = Result<ExitCode, Failure>;

fn main() -> ExitCode {
    log::init();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(i) = run::Invocation::parse_fast(&argv) {
        return run::run(i.args, i.config.as_deref(), i.cache.as_deref());
    }
    let cli = Cli::parse_from(argv);
    if let Command::Run(args) = cli.command {
        return run::run(args, cli.config.as_deref(), cli.cache.as_deref());
    }
    run(cli).unwrap_or_else(Failure::report)
}

fn run(cli: Cli) -> Outcome {
    let config = open::config(cli.config.as_deref())?;
    let cache = || open::cache(&config, cli.cache.as_deref());
    match cli.command {
        Command::Config { action } => match action {
            ConfigAction::Check => Ok(check(&config)),
            ConfigAction::Show => Ok(show_config(&config)),
        },
        Command::Run(_) => Err(Failure::Usage(
            "`run` is handled before the configuration is read".into(),
        )),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "fleche", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Ls { filters, format } => {
            let c = cache()?;
            let records = filters.query(&c).records()?;
            print!("{}", format::records(&records, format));
            Ok(ExitCode::SUCCESS)
        }
        Command::Show { key } => {
            let c = cache()?;
            let record = open::record(&c, &key)?;
            print!("{}", show(&c, &record)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Cat { key } => {
            let c = cache()?;
            let record = open::record(&c, &key)?;
            match c.load::<serde_json::Value>(&record.key)? {
                Some(v) => {
                    let text = serde_json::to_string_pretty(&v)
                        .map_err(|e| Failure::Failed(e.to_string()))?;
                    println!("{text}");
                    Ok(ExitCode::SUCCESS)
                }
                None => Err(Failure::Failed(format!(
                    "the value {} of call {} is not stored",
                    record.result, record.key
                ))),
            }
        }
        Command::Stats => {
            let c = cache()?;
            print!("{}", stats(&c)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Evict {
            filters,
            dry_run,
            all,
        } => {
            if filters.is_empty() && !all {
                return Err(Failure::Usage(
                    "`evict` without a filter would remove every call: give filters, or --all"
                        .into(),
                ));
            }
            let c = cache()?;
            let q = filters.query(&c);
            if dry_run {
                let records = q.records()?;
                print!("{}", format::records(&records, Format::Table));
                println!(
                    "would evict {} call{}",
                    records.len(),
                    plural(records.len())
                );
            } else {
                let n = q.evict()?;
                println!(
                    "evicted {n} call{} (run `fleche gc` to remove values no call uses)",
                    plural(n)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Gc => {
            let c = cache()?;
            let n = c.gc()?;
            println!(
                "removed {n} unreferenced value{} or temporary file{}",
                plural(n),
                plural(n)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { repair } => {
            let c = cache()?;
            let bar = progress("verifying");
            let report = c.verify(repair, &mut |done, total| {
                if let Some(b) = &bar {
                    b.set_length(total as u64);
                    b.set_position(done as u64);
                }
            })?;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            for bad in &report.corrupt {
                println!("corrupt {} {}: {}", bad.kind, bad.address, bad.reason);
            }
            println!(
                "checked {} call{} and {} value{}: {} corrupt{}",
                report.calls,
                plural(report.calls),
                report.values,
                plural(report.values),
                report.corrupt.len(),
                if repair {
                    format!(", {} removed", report.repaired)
                } else {
                    String::new()
                }
            );
            Ok(if report.corrupt.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Transfer { to, filters } => {
            let c = cache()?;
            let target = open::cache(&config, Some(&to))?;
            let t = filters.query(&c).transfer(&target)?;
            println!(
                "copied {} call{} to `{to}`, skipped {} (already there, or value missing)",
                t.copied.len(),
                plural(t.copied.len()),
                t.skipped.len()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A progress bar on stderr, only when stderr is a terminal.
fn progress(what: &'static str) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} {eta}") {
        bar.set_style(style);
    }
    bar.set_message(what);
    Some(bar)
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
        eprintln!("{} problem{} found", problems.len(), plural(problems.len()));
        ExitCode::FAILURE
    }
}

/// The merged tables as TOML, each headed by a comment naming its file.
fn show_config(config: &Config) -> ExitCode {
    if config.tables().is_empty() {
        println!("# no configuration file applies here; caches: memory, void, default");
    }
    for (name, file, value) in config.tables() {
        println!("# from {}", file.display());
        let mut table = toml::Table::new();
        table.insert(name.clone(), value.clone());
        match toml::to_string(&table) {
            Ok(text) => println!("{}", text.trim_end()),
            Err(e) => println!("# {name}: cannot be shown: {e}"),
        }
        println!();
    }
    let problems = config.problems();
    for p in &problems {
        eprintln!("error: {p}");
    }
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// One record in full, with its lineage: its ancestors down to it, then what it fed.
fn show(c: &Cache, r: &CallRecord) -> Result<String, Failure> {
    use std::fmt::Write as _;
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "key       {}", r.key);
    let _ = writeln!(w, "function  {}", r.function);
    if let Some(v) = &r.version {
        let _ = writeln!(w, "version   {v}");
    }
    if !r.type_args.is_empty() {
        let _ = writeln!(w, "types     {}", r.type_args.join(", "));
    }
    let _ = writeln!(w, "result    {}", r.result);
    let _ = writeln!(w, "arguments");
    for (name, v) in &r.arguments {
        let _ = writeln!(w, "  {name} = {}", format::cell(v));
    }
    let _ = writeln!(w, "metadata");
    for (name, v) in &r.metadata {
        let _ = writeln!(w, "  {name}: {}", v.to_json());
    }
    let mut ancestors = Vec::new();
    let mut at = Lineage::from_record(r);
    while let Some(l) = at {
        if ancestors.len() > 64 || ancestors.iter().any(|a: &CallRecord| a.key == l.parent) {
            break;
        }
        match c.record(&l.parent)? {
            Some(p) => {
                at = Lineage::from_record(&p);
                ancestors.push(p);
            }
            None => {
                ancestors.push(CallRecord::new(
                    l.parent,
                    format!("{} (not stored)", l.function),
                    l.parent,
                ));
                at = None;
            }
        }
    }
    let all = c.records()?;
    let children = |key| -> Vec<&CallRecord> {
        let mut v: Vec<&CallRecord> = all
            .iter()
            .filter(|x| Lineage::from_record(x).is_some_and(|l| l.parent == key))
            .collect();
        v.sort_by(|a, b| a.function.cmp(&b.function).then(a.key.cmp(&b.key)));
        v
    };
    if ancestors.is_empty() && children(r.key).is_empty() {
        return Ok(out);
    }
    let _ = writeln!(w, "lineage");
    let mut depth = 0;
    for a in ancestors.iter().rev() {
        let _ = writeln!(w, "  {}{}", "   ".repeat(depth), format::brief(a));
        depth += 1;
    }
    let _ = writeln!(
        w,
        "  {}{}  <- this call",
        "   ".repeat(depth),
        format::brief(r)
    );
    fn down<'a>(
        w: &mut String,
        r: &CallRecord,
        depth: usize,
        children: &dyn Fn(fleche::Digest) -> Vec<&'a CallRecord>,
        seen: &mut Vec<fleche::Digest>,
    ) {
        for child in children(r.key) {
            if seen.contains(&child.key) || depth > 64 {
                continue;
            }
            seen.push(child.key);
            let _ = std::fmt::Write::write_fmt(
                w,
                format_args!("  {}{}\n", "   ".repeat(depth), format::brief(child)),
            );
            down(w, child, depth + 1, children, seen);
        }
    }
    let mut seen = vec![r.key];
    down(w, r, depth + 1, &children, &mut seen);
    Ok(out)
}

/// Calls, distinct values and their bytes, per function.
fn stats(c: &Cache) -> Result<String, Failure> {
    use std::collections::{BTreeMap, HashMap, HashSet};
    let records = c.records()?;
    let bar = progress("reading values");
    if let Some(b) = &bar {
        b.set_length(records.len() as u64);
    }
    let mut sizes: HashMap<fleche::Digest, Option<usize>> = HashMap::new();
    let mut per: BTreeMap<&str, (usize, HashSet<fleche::Digest>)> = BTreeMap::new();
    for r in &records {
        sizes
            .entry(r.result)
            .or_insert_with(|| c.value(&r.result).ok().flatten().map(|b| b.len()));
        let e = per.entry(r.function.as_str()).or_default();
        e.0 += 1;
        e.1.insert(r.result);
        if let Some(b) = &bar {
            b.inc(1);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mut rows = vec![vec![
        "FUNCTION".to_owned(),
        "CALLS".to_owned(),
        "VALUES".to_owned(),
        "BYTES".to_owned(),
    ]];
    let (mut calls, mut values, mut bytes) = (0, HashSet::new(), 0usize);
    for (f, (n, digests)) in &per {
        let b: usize = digests
            .iter()
            .filter_map(|d| sizes.get(d).copied().flatten())
            .sum();
        rows.push(vec![
            (*f).to_owned(),
            n.to_string(),
            digests.len().to_string(),
            b.to_string(),
        ]);
        calls += n;
        values.extend(digests.iter().copied());
    }
    for d in &values {
        bytes += sizes.get(d).copied().flatten().unwrap_or(0);
    }
    rows.push(vec![
        "(all)".to_owned(),
        calls.to_string(),
        values.len().to_string(),
        bytes.to_string(),
    ]);
    Ok(format::table(&rows))
}

#[cfg(test)]
mod tests {
    use super::age;
    use std::time::Duration;

    #[test]
    fn ages_are_numbers_with_units_summed() {
        let secs = Duration::from_secs;
        for (text, expected) in [
            ("45", secs(45)),
            ("90s", secs(90)),
            ("15m", secs(900)),
            ("2h", secs(7200)),
            ("1h30m", secs(5400)),
            ("1h 30m", secs(5400)),
            (" 1d 12h ", secs(129_600)),
            ("2weeks", secs(1_209_600)),
            ("3 days", secs(259_200)),
            ("10min", secs(600)),
            ("500ms", Duration::from_millis(500)),
            ("1s500ms", Duration::from_millis(1500)),
            ("1.5h", secs(5400)),
            ("0.25s", Duration::from_millis(250)),
            ("0s", Duration::ZERO),
        ] {
            assert_eq!(age(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn bad_ages_say_what_is_wrong() {
        for (text, says) in [
            ("", "found nothing"),
            ("soon", "expected an age"),
            ("-1h", "expected an age"),
            ("1..5h", "expected an age"),
            (".5h", "expected an age"),
            ("1y", "unknown unit `y`"),
            ("1h30", "a number without a unit"),
            ("99999999999999999999", "too large"),
            ("1e400s", "unknown unit `e`"),
            ("99999999999999999w", "too large"),
        ] {
            let e = age(text).err().unwrap_or_default();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
