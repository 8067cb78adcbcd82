//! `fleche run`: a command's output, exit status and output files, cached as a call record of
//! the function `fleche.run` (`docs/format.md`, "Command calls").

use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use clap::{Args, ValueEnum};
use fleche::config::{Config, DefaultCache};
use fleche::{Artifact, Cache, CallRecord, Digest, FileContents, FileStamp, Key, Runtime, Value};
use serde::{Deserialize, Serialize};

use crate::Failure;
use crate::signals::Forwarding;

/// The function name of command calls.
pub(crate) const FUNCTION: &str = "fleche.run";

/// Output beyond this many bytes is still shown, but the run is not stored.
const MAX_RECORDED: usize = 1 << 30;

/// `fleche run` options.
#[derive(Args, Debug)]
pub(crate) struct RunArgs {
    /// Leave the working directory out of the key (it is part of it by default).
    #[arg(long)]
    no_cwd: bool,
    /// An environment variable whose value (or absence) is part of the key; repeatable.
    #[arg(long = "env", value_name = "NAME")]
    env: Vec<String>,
    /// Feed the command this process's stdin, and make its bytes part of the key (without it
    /// the command's stdin is empty).
    #[arg(long)]
    stdin: bool,
    /// A file or directory the command reads: part of the key; repeatable.
    #[arg(long = "dep", value_name = "PATH")]
    deps: Vec<PathBuf>,
    /// How dependencies are keyed: by content (blake3) or by stamp (length and mtime).
    #[arg(long, value_enum, default_value_t = DepMode::Content)]
    dep_mode: DepMode,
    /// A file or directory the command writes: stored (a directory as its tree), and restored
    /// on a hit when missing or different; repeatable.
    #[arg(long = "out", value_name = "PATH")]
    outs: Vec<PathBuf>,
    /// Any text, part of the key: separates otherwise identical commands.
    #[arg(long, value_name = "STR")]
    scope: Option<String>,
    /// The exit codes whose runs are stored (signal deaths never are).
    #[arg(long, value_name = "CODES", value_delimiter = ',', default_value = "0")]
    cache_exit_codes: Vec<i32>,
    /// Run the command even when a result is stored, and store the new one.
    #[arg(long)]
    force: bool,
    /// A stored run older than this is a miss (30s, 15m, 1h30m, 2d, 1w).
    #[arg(long, value_name = "AGE", value_parser = crate::age)]
    max_age: Option<Duration>,
    /// Run nothing: exit 0 when a usable result is stored, else 1.
    #[arg(long)]
    check: bool,
    /// Print each part of the key, its digest, and whether the call is stored, to stderr.
    #[arg(long)]
    explain: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// A `fleche [--cache NAME] [--config PATH] run [OPTIONS] -- CMD ARGS..` invocation.
pub(crate) struct Invocation {
    pub(crate) args: RunArgs,
    pub(crate) cache: Option<String>,
    pub(crate) config: Option<PathBuf>,
}

impl Invocation {
    /// Parses a well-formed `run` command line without building the whole command-line parser
    /// (a cached command's hit is a whole process start). `None` for anything else (help, a
    /// typo, another subcommand): clap then parses, and reports what is wrong.
    pub(crate) fn parse_fast(argv: &[OsString]) -> Option<Self> {
        let mut args = RunArgs {
            no_cwd: false,
            env: Vec::new(),
            stdin: false,
            deps: Vec::new(),
            dep_mode: DepMode::Content,
            outs: Vec::new(),
            scope: None,
            cache_exit_codes: vec![0],
            force: false,
            max_age: None,
            check: false,
            explain: false,
            command: Vec::new(),
        };
        let (mut cache, mut config) = (None, None);
        let mut seen_run = false;
        let mut codes_given = false;
        let mut it = argv.iter().skip(1);
        while let Some(arg) = it.next() {
            let text = arg.to_str()?;
            // `--name=value` or `--name value`.
            let (name, inline) = match text.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n, Some(OsString::from(v))),
                _ => (text, None),
            };
            let mut value = || inline.clone().or_else(|| it.next().cloned());
            match name {
                "run" if !seen_run && inline.is_none() => seen_run = true,
                "--cache" => cache = Some(value()?.into_string().ok()?),
                "--config" => config = Some(PathBuf::from(value()?)),
                _ if !seen_run => return None,
                "--" if inline.is_none() => {
                    args.command = it.cloned().collect();
                    break;
                }
                "--no-cwd" if inline.is_none() => args.no_cwd = true,
                "--stdin" if inline.is_none() => args.stdin = true,
                "--force" if inline.is_none() => args.force = true,
                "--check" if inline.is_none() => args.check = true,
                "--explain" if inline.is_none() => args.explain = true,
                "--env" => args.env.push(value()?.into_string().ok()?),
                "--dep" => args.deps.push(PathBuf::from(value()?)),
                "--out" => args.outs.push(PathBuf::from(value()?)),
                "--scope" => args.scope = Some(value()?.into_string().ok()?),
                "--dep-mode" => {
                    args.dep_mode = match value()?.to_str()? {
                        "content" => DepMode::Content,
                        "stamp" => DepMode::Stamp,
                        _ => return None,
                    }
                }
                "--cache-exit-codes" => {
                    if !codes_given {
                        args.cache_exit_codes.clear();
                        codes_given = true;
                    }
                    for code in value()?.to_str()?.split(',') {
                        args.cache_exit_codes.push(code.trim().parse().ok()?);
                    }
                }
                "--max-age" => args.max_age = Some(crate::age(value()?.to_str()?).ok()?),
                _ => return None,
            }
        }
        if !seen_run || args.command.is_empty() {
            return None;
        }
        Some(Self {
            args,
            cache,
            config,
        })
    }
}

/// How `--dep` paths are keyed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
enum DepMode {
    /// Their content's blake3 digest (a directory's tree).
    Content,
    /// Their length and modification time.
    Stamp,
}

/// A dependency, keyed as [`FileContents`] or [`FileStamp`].
enum Dep {
    Content(FileContents),
    Stamp(FileStamp),
}

impl Key for Dep {
    fn key(&self, h: &mut fleche::KeyHasher) {
        match self {
            Dep::Content(c) => c.key(h),
            Dep::Stamp(s) => s.key(h),
        }
    }
    fn to_value(&self) -> Value {
        match self {
            Dep::Content(c) => c.to_value(),
            Dep::Stamp(s) => s.to_value(),
        }
    }
}

/// What the key of a command call is made of, in key order.
struct Parts {
    argv: Vec<Vec<u8>>,
    argv_shown: Vec<String>,
    exe: FileStamp,
    cwd: Option<PathBuf>,
    env: Vec<(String, Option<Vec<u8>>)>,
    stdin: Option<Digest>,
    deps: Vec<Dep>,
    outs: Vec<PathBuf>,
    scope: Option<String>,
}

/// The key encoding's own version (`docs/format.md`, "Command calls").
const RUN_KEY_VERSION: u32 = 1;

impl Parts {
    /// The call key: `("fleche.run", 1)` then each part by name.
    fn key(&self) -> Digest {
        let mut h = fleche::KeyHasher::new();
        h.write_str(FUNCTION);
        RUN_KEY_VERSION.key(&mut h);
        h.write_str("argv");
        self.argv.key(&mut h);
        h.write_str("exe");
        self.exe.key(&mut h);
        h.write_str("cwd");
        self.cwd.key(&mut h);
        h.write_str("env");
        self.env.key(&mut h);
        h.write_str("stdin");
        self.stdin.key(&mut h);
        h.write_str("deps");
        self.deps.key(&mut h);
        h.write_str("outs");
        self.outs.key(&mut h);
        h.write_str("scope");
        self.scope.key(&mut h);
        h.finalize()
    }

    /// The recorded arguments: each part as a queryable value.
    fn arguments(&self) -> Vec<(String, Value)> {
        let env = self
            .env
            .iter()
            .map(|(k, v)| {
                let v = v.as_ref().map_or(Value::Null, |b| {
                    Value::Str(String::from_utf8_lossy(b).into_owned())
                });
                (k.clone(), v)
            })
            .collect();
        vec![
            (
                "argv".into(),
                Value::Seq(self.argv_shown.iter().cloned().map(Value::Str).collect()),
            ),
            ("exe".into(), self.exe.path().to_value()),
            ("cwd".into(), self.cwd.to_value()),
            ("env".into(), Value::Struct(env)),
            ("stdin".into(), self.stdin.to_value()),
            ("deps".into(), self.deps.to_value()),
            ("outs".into(), self.outs.to_value()),
            ("scope".into(), self.scope.to_value()),
        ]
    }

    /// `--explain`: each part, shown, with its own digest.
    fn explain(&self, out: &mut String) {
        let mut line = |name: &str, shown: String, digest: Digest| {
            out.push_str(&format!("  {name:<6} {digest}  {shown}\n"));
        };
        line(
            "argv",
            Value::Seq(self.argv_shown.iter().cloned().map(Value::Str).collect()).to_string(),
            fleche::digest(&self.argv),
        );
        line(
            "exe",
            self.exe.to_value().to_string(),
            fleche::digest(&self.exe),
        );
        line(
            "cwd",
            self.cwd
                .as_ref()
                .map_or("(not keyed: --no-cwd)".into(), |p| p.display().to_string()),
            fleche::digest(&self.cwd),
        );
        for pair in &self.env {
            let shown = match &pair.1 {
                Some(v) => format!("{}={}", pair.0, String::from_utf8_lossy(v)),
                None => format!("{} (unset)", pair.0),
            };
            line("env", shown, fleche::digest(pair));
        }
        if self.env.is_empty() {
            line("env", "(none keyed)".into(), fleche::digest(&self.env));
        }
        line(
            "stdin",
            self.stdin
                .map_or("(not keyed: the command's stdin is empty)".into(), |d| {
                    format!("blake3 {d}")
                }),
            fleche::digest(&self.stdin),
        );
        for dep in &self.deps {
            line("dep", dep.to_value().to_string(), fleche::digest(dep));
        }
        for out_path in &self.outs {
            line(
                "out",
                out_path.display().to_string(),
                fleche::digest(out_path),
            );
        }
        line(
            "scope",
            self.scope.clone().unwrap_or_else(|| "(none)".into()),
            fleche::digest(&self.scope),
        );
    }
}

/// One stretch of output, in the order it was written.
#[derive(Serialize, Deserialize)]
struct Chunk {
    stream: Stream,
    /// Stored as one MessagePack binary: the value encoding writes a `Vec<u8>` so.
    bytes: Vec<u8>,
}

#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Stream {
    Stdout,
    Stderr,
}

/// The stored result of a command call.
#[derive(Serialize, Deserialize)]
struct Recorded {
    exit_code: i32,
    output: Vec<Chunk>,
    /// The `--out` files, and the files inside `--out` directories.
    files: Vec<Artifact>,
    /// The `--out` directories, their subdirectories and links (absent when there are none, as
    /// in entries written before directories could be outputs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tree: Vec<crate::outputs::TreeEntry>,
}

/// `fleche run`.
pub(crate) fn run(args: RunArgs, config: Option<&Path>, cache: Option<&str>) -> ExitCode {
    run_inner(&args, config, cache).unwrap_or_else(Failure::report)
}

fn run_inner(
    args: &RunArgs,
    config: Option<&Path>,
    cache: Option<&str>,
) -> Result<ExitCode, Failure> {
    let Some(program) = args.command.first() else {
        return Err(Failure::Usage("no command given after `--`".into()));
    };
    if args.check && args.force {
        return Err(Failure::Usage(
            "--check runs nothing; --force always runs: choose one".into(),
        ));
    }
    let (exe, exe_stamp) = resolve(program).ok_or_else(|| {
        Failure::Failed(format!("{}: command not found", program.to_string_lossy()))
    })?;
    if fleche::disabled() {
        tracing::debug!("FLECHE_DISABLE is set: running uncached");
        if args.check {
            return Ok(ExitCode::from(1));
        }
        // The command's stdin is what it is with caching: this process's with `--stdin`, else empty.
        let stdin = if args.stdin {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        return Ok(run_plain(&exe, args, stdin));
    }
    let cwd = std::env::current_dir()
        .map_err(|e| Failure::Failed(format!("cannot read the working directory: {e}")))?;
    let stdin = if args.stdin {
        Some(spool_stdin()?)
    } else {
        None
    };
    let parts = Parts {
        argv: args
            .command
            .iter()
            .map(|a| a.as_encoded_bytes().to_vec())
            .collect(),
        argv_shown: args
            .command
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        exe: exe_stamp,
        cwd: (!args.no_cwd).then(|| cwd.clone()),
        env: args
            .env
            .iter()
            .map(|name| {
                let value = std::env::var_os(name).map(|v| v.as_encoded_bytes().to_vec());
                (name.clone(), value)
            })
            .collect(),
        stdin: stdin.as_ref().map(|s| s.digest),
        deps: args
            .deps
            .iter()
            .map(|p| match args.dep_mode {
                DepMode::Content => Dep::Content(FileContents::new(p)),
                DepMode::Stamp => Dep::Stamp(FileStamp::new(p)),
            })
            .collect(),
        outs: args.outs.clone(),
        scope: args.scope.clone(),
    };
    let key = parts.key();
    let cache = open_cache(config, cache)?;
    let mut explained = String::new();
    if args.explain {
        explained.push_str(&format!("fleche run: key {key}\n"));
        parts.explain(&mut explained);
    }
    let stored = match &cache {
        Some(_) if args.force => Found::Nothing("--force".into()),
        Some(c) => lookup(c, &key, args),
        None => Found::Nothing("no cache could be opened".into()),
    };
    if args.explain {
        let cache_name = cache.as_ref().map_or("(none)", Cache::name);
        explained.push_str(&format!("  cache  {cache_name}: {}\n", stored.describe()));
        eprint!("{explained}");
    }
    if args.check {
        return Ok(ExitCode::from(u8::from(!matches!(
            stored,
            Found::Usable(..)
        ))));
    }
    if let Found::Usable(recorded, _) = stored
        && let Some(code) = replay(&recorded, &key)
    {
        return Ok(code);
    }
    let Some(cache) = cache else {
        return Ok(run_plain(
            &exe,
            args,
            stdin.map_or_else(Stdio::null, |s| Stdio::from(s.file)),
        ));
    };
    // A miss: one process runs it; an identical concurrent run waits, then replays.
    let _lock = lock(&key);
    if !args.force
        && let Found::Usable(recorded, _) = lookup(&cache, &key, args)
    {
        tracing::debug!(key = %key, "a concurrent run stored it meanwhile");
        if let Some(code) = replay(&recorded, &key) {
            return Ok(code);
        }
    }
    Ok(run_and_store(
        &exe,
        args,
        stdin.map(|s| s.file),
        &parts,
        &cache,
        key,
    ))
}

/// This process's stdin with `--stdin`, copied to an unnamed temporary file while it is hashed:
/// input of any size is keyed and fed to the command without being held in memory.
struct SpooledStdin {
    /// The copy, positioned at its start.
    file: std::fs::File,
    /// BLAKE3 of its bytes.
    digest: Digest,
}

fn spool_stdin() -> Result<SpooledStdin, Failure> {
    let spool_error =
        |e: io::Error| Failure::Failed(format!("cannot copy stdin to a temporary file: {e}"));
    let mut file = tempfile::tempfile().map_err(spool_error)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut input = io::stdin().lock();
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Failure::Failed(format!("cannot read stdin: {e}"))),
        };
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(spool_error)?;
    }
    file.seek(io::SeekFrom::Start(0)).map_err(spool_error)?;
    Ok(SpooledStdin {
        file,
        digest: Digest::from_bytes(*hasher.finalize().as_bytes()),
    })
}

/// A stored run, or why there is none.
enum Found {
    Usable(Recorded, SystemTime),
    Nothing(String),
}

impl Found {
    fn describe(&self) -> String {
        match self {
            Found::Usable(r, at) => {
                let age = SystemTime::now().duration_since(*at).unwrap_or_default();
                format!(
                    "hit (exit code {}, stored {} ago)",
                    r.exit_code,
                    short_age(age)
                )
            }
            Found::Nothing(why) => format!("miss ({why})"),
        }
    }
}

fn short_age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// The stored run under `key`, if it is usable under `args` (its age, its exit code).
fn lookup(cache: &Cache, key: &Digest, args: &RunArgs) -> Found {
    let (record, bytes) = match cache.entry(key) {
        Ok(Some(entry)) => entry,
        Ok(None) => {
            tracing::debug!(key = %key, "miss: not stored");
            return Found::Nothing("not stored".into());
        }
        Err(e) => {
            let what = if e.is_corrupt() {
                "stored run corrupt; running, and the new result replaces it"
            } else {
                "cache lookup failed; running"
            };
            tracing::warn!(key = %key, error = %e, "{what}");
            return Found::Nothing(format!("unreadable: {e}"));
        }
    };
    if record.function != FUNCTION {
        tracing::warn!(key = %key, function = %record.function,
            "the stored call under this key is not a command call; running");
        return Found::Nothing(format!("stored call is of `{}`", record.function));
    }
    let at = Runtime::from_record(&record).map_or(SystemTime::UNIX_EPOCH, |r| r.stop);
    if let Some(max) = args.max_age {
        let age = SystemTime::now().duration_since(at).unwrap_or_default();
        if age > max {
            tracing::debug!(key = %key, age = ?age, "miss: stored run older than --max-age");
            return Found::Nothing(format!(
                "stored {} ago, older than --max-age",
                short_age(age)
            ));
        }
    }
    let recorded: Recorded = match fleche::storage::encoding::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(key = %key, error = %e, "stored run unreadable; running");
            return Found::Nothing(format!("stored run unreadable: {e}"));
        }
    };
    // Files are written back only to the paths this invocation declares, or inside the
    // directories it declares (they are part of the key, so an entry stored by this command
    // lists exactly these).
    if !crate::outputs::fit(&recorded.files, &recorded.tree, &args.outs) {
        tracing::warn!(key = %key, "the stored run's files are not the declared --out paths; running");
        return Found::Nothing("stored files are not the --out paths".into());
    }
    if !args.cache_exit_codes.contains(&recorded.exit_code) {
        tracing::debug!(key = %key, exit_code = recorded.exit_code,
            "miss: the stored exit code is not one of --cache-exit-codes");
        return Found::Nothing(format!(
            "stored exit code {} is not in --cache-exit-codes",
            recorded.exit_code
        ));
    }
    tracing::debug!(key = %key, "hit");
    Found::Usable(recorded, at)
}

/// Restores the output files, then writes the recorded output and returns the exit code; `None`
/// when a file cannot be restored (the command runs instead).
fn replay(recorded: &Recorded, key: &Digest) -> Option<ExitCode> {
    if let Err(e) = crate::outputs::restore(&recorded.files, &recorded.tree) {
        tracing::warn!(key = %key, error = %e, "cannot restore an output file; running");
        return None;
    }
    let (mut out, mut err) = (io::stdout().lock(), io::stderr().lock());
    let mut last = None;
    for chunk in &recorded.output {
        if last.is_some_and(|s| s != chunk.stream) {
            // Keep the order across streams when both go to one terminal or file.
            let _ = out.flush();
            let _ = err.flush();
        }
        last = Some(chunk.stream);
        let written = match chunk.stream {
            Stream::Stdout => out.write_all(&chunk.bytes),
            Stream::Stderr => err.write_all(&chunk.bytes),
        };
        if written.is_err() {
            break; // A closed pipe (`| head`): the reader wants no more.
        }
    }
    let _ = out.flush();
    let _ = err.flush();
    Some(exit_code(recorded.exit_code))
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1))
}

/// The cache `fleche run` uses: `--cache`, else the configured default, else the run cache.
/// `None` (with a warning) when its storage cannot be opened: the command still runs.
fn open_cache(config: Option<&Path>, name: Option<&str>) -> Result<Option<Cache>, Failure> {
    let config = crate::open::config(config)?;
    match chosen_cache(&config, name)? {
        Ok(c) => Ok(Some(c)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot open the cache; running uncached");
            Ok(None)
        }
    }
}

/// The cache `name`, else the configured default, else the run cache. A configuration error
/// or an unknown name is the caller's failure; a storage that cannot be opened the inner error.
fn chosen_cache(
    config: &Config,
    name: Option<&str>,
) -> Result<Result<Cache, fleche::Error>, Failure> {
    let name = match name {
        Some("memory") => {
            return Err(Failure::Usage(
                "`memory` holds nothing another process stored; name a persistent cache".into(),
            ));
        }
        Some(n) => n.to_owned(),
        None => match config.default_cache()? {
            // A default kept in the process's memory, which another run cannot see, or none
            // configured: the run cache.
            DefaultCache::Memory => return Ok(crate::open::run_cache()),
            DefaultCache::Named(n) if n == "memory" => return Ok(crate::open::run_cache()),
            DefaultCache::Named(n) => n,
            DefaultCache::Inline(spec) => return Ok(Cache::open(spec)),
        },
    };
    match name.as_str() {
        "void" => Ok(Ok(Cache::void())),
        _ => match config.spec(&name)? {
            Some(spec) => Ok(Cache::open(spec)),
            None => Err(Failure::Usage(format!("no cache named `{name}`"))),
        },
    }
}

/// Where `program` is, and its stamp: itself when it names a path, else the first executable
/// file of that name in `PATH`.
fn resolve(program: &OsStr) -> Option<(PathBuf, FileStamp)> {
    let p = Path::new(program);
    if p.components().count() > 1 || program.as_encoded_bytes().contains(&b'/') {
        let meta = std::fs::metadata(p)
            .ok()
            .filter(std::fs::Metadata::is_file)?;
        return Some((p.to_path_buf(), FileStamp::from_metadata(p, &meta)));
    }
    let path = std::env::var_os("PATH")?;
    let mut tried: Vec<PathBuf> = Vec::new();
    for dir in std::env::split_paths(&path) {
        // An empty entry is the working directory, as for the shell.
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        if tried.contains(&dir) {
            continue;
        }
        let candidate = dir.join(p);
        if let Some(meta) = executable(&candidate) {
            let stamp = FileStamp::from_metadata(&candidate, &meta);
            return Some((candidate, stamp));
        }
        tried.push(dir);
    }
    None
}

/// The metadata of `p` when it is an executable regular file.
#[cfg(unix)]
fn executable(p: &Path) -> Option<std::fs::Metadata> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .ok()
        .filter(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn executable(p: &Path) -> Option<std::fs::Metadata> {
    std::fs::metadata(p).ok().filter(std::fs::Metadata::is_file)
}

fn command(exe: &Path, args: &RunArgs) -> Command {
    let mut c = Command::new(exe);
    #[cfg(unix)]
    if let Some(arg0) = args.command.first() {
        use std::os::unix::process::CommandExt;
        c.arg0(arg0);
    }
    c.args(&args.command[1..]);
    c
}

/// Runs the command with `stdin` and this process's stdout and stderr, caching nothing.
fn run_plain(exe: &Path, args: &RunArgs, stdin: Stdio) -> ExitCode {
    let forwarding = Forwarding::start();
    let mut cmd = command(exe, args);
    cmd.stdin(stdin);
    let status = cmd.spawn().and_then(|mut child| {
        forwarding.child(&child);
        forwarding.wait(&mut child)
    });
    match status {
        Ok(status) => exit_code(status_code(status)),
        Err(e) => {
            eprintln!("error: cannot run {}: {e}", exe.display());
            ExitCode::from(126)
        }
    }
}

/// The shell's view of an exit status: the code, or 128 + the signal.
fn status_code(status: std::process::ExitStatus) -> i32 {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return 128 + sig;
        }
    }
    status.code().unwrap_or(1)
}

/// Output being recorded while it is streamed.
#[derive(Default)]
struct Recording {
    chunks: Vec<Chunk>,
    bytes: usize,
    overflowed: bool,
    /// Output could not be passed on (`| head` stopped reading): the run is incomplete.
    cut: bool,
}

/// Copies `from` to this process's `stream` as it arrives, recording it. When the stream can
/// no longer be written (the reader of a pipe is gone), it stops reading, so the command meets
/// the closed pipe as it would without fleche (`fleche run -- yes | head -1` ends), and marks
/// the recording cut.
fn pump(mut from: impl Read, stream: Stream, shared: &Mutex<Recording>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let data = &buf[..n];
        let mut rec = shared.lock().unwrap_or_else(PoisonError::into_inner);
        // Written while holding the lock: what is shown is in the order recorded.
        let shown = match stream {
            Stream::Stdout => {
                let mut o = io::stdout().lock();
                o.write_all(data).and_then(|()| o.flush())
            }
            Stream::Stderr => io::stderr().lock().write_all(data),
        };
        if shown.is_err() {
            rec.cut = true;
            return;
        }
        if rec.overflowed {
            continue;
        }
        if rec.bytes + n > MAX_RECORDED {
            rec.overflowed = true;
            rec.chunks.clear();
            continue;
        }
        rec.bytes += n;
        match rec.chunks.last_mut() {
            Some(last) if last.stream == stream => last.bytes.extend_from_slice(data),
            _ => rec.chunks.push(Chunk {
                stream,
                bytes: data.to_vec(),
            }),
        }
    }
}

/// Runs the command, streaming its output live while recording it, and stores the run when its
/// exit code is one to cache.
fn run_and_store(
    exe: &Path,
    args: &RunArgs,
    stdin: Option<std::fs::File>,
    parts: &Parts,
    cache: &Cache,
    key: Digest,
) -> ExitCode {
    let start = SystemTime::now();
    let started = Instant::now();
    let mut cmd = command(exe, args);
    cmd.stdin(stdin.map_or_else(Stdio::null, Stdio::from))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let forwarding = Forwarding::start();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot run {}: {e}", exe.display());
            return ExitCode::from(126);
        }
    };
    forwarding.child(&child);
    let shared = Arc::new(Mutex::new(Recording::default()));
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        let s = Arc::clone(&shared);
        pumps.push(std::thread::spawn(move || pump(out, Stream::Stdout, &s)));
    }
    if let Some(err) = child.stderr.take() {
        let s = Arc::clone(&shared);
        pumps.push(std::thread::spawn(move || pump(err, Stream::Stderr, &s)));
    }
    let status = forwarding.wait(&mut child);
    for p in pumps {
        let _ = p.join();
    }
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: waiting for {}: {e}", exe.display());
            return ExitCode::from(1);
        }
    };
    let code = status_code(status);
    let exit = exit_code(code);
    if status.code().is_none() {
        tracing::debug!(key = %key, code, "killed by a signal: not stored");
        return exit;
    }
    if let Some(signal) = forwarding.received() {
        tracing::debug!(key = %key, code, signal, "asked to stop by a signal: not stored");
        return exit;
    }
    drop(forwarding);
    if !args.cache_exit_codes.contains(&code) {
        tracing::debug!(key = %key, code, "exit code not in --cache-exit-codes: not stored");
        return exit;
    }
    let recording = std::mem::take(&mut *shared.lock().unwrap_or_else(PoisonError::into_inner));
    if recording.cut {
        tracing::debug!(key = %key, code, "its output could not be passed on: not stored");
        return exit;
    }
    if recording.overflowed {
        tracing::warn!(key = %key, "output larger than 1 GiB: not stored");
        return exit;
    }
    let budget = (MAX_RECORDED - recording.bytes) as u64;
    let outputs = match crate::outputs::record(&args.outs, budget) {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(key = %key, error = %e, "a declared output cannot be recorded: not stored");
            return exit;
        }
    };
    let recorded = Recorded {
        exit_code: code,
        output: recording.chunks,
        files: outputs.files,
        tree: outputs.tree,
    };
    let value = match fleche::storage::encoding::to_vec(&recorded) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(key = %key, error = %e, "cannot encode the run: not stored");
            return exit;
        }
    };
    let runtime = Runtime::new(start, SystemTime::now(), started.elapsed(), None);
    let mut record = CallRecord::new(key, FUNCTION, Digest::from_bytes([0; 32]));
    record.arguments = parts.arguments();
    record
        .metadata
        .insert(Runtime::NAME.to_owned(), runtime.to_value());
    record
        .metadata
        .insert("exit_code".to_owned(), Value::Int(i128::from(code)));
    if let Err(e) = cache.store_record(record, &value) {
        tracing::warn!(key = %key, error = %e, "cannot store the run");
    } else {
        tracing::debug!(key = %key, "stored");
    }
    exit
}

/// A lock on `key` across processes, released (and its file removed) when dropped; `None`
/// (unlocked) when the lock directory cannot be made.
struct RunLock {
    file: std::fs::File,
    path: PathBuf,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Removed while still held: a waiter that then locks the removed file sees it is not
        // the one at the path any more, and locks afresh.
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

fn lock(key: &Digest) -> Option<RunLock> {
    let dir = crate::open::user_cache_dir()?.join("locks");
    if let Err(e) = crate::open::private_dir(&dir) {
        tracing::warn!(dir = %dir.display(), error = %e,
            "cannot make the lock directory: identical concurrent runs may both run");
        return None;
    }
    let path = dir.join(format!("{key}.lock"));
    for _ in 0..1000 {
        let file = match std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e,
                    "cannot open the lock: identical concurrent runs may both run");
                return None;
            }
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                tracing::debug!(key = %key, "an identical run is in progress: waiting for it");
                if let Err(e) = file.lock() {
                    tracing::warn!(error = %e, "cannot wait for the lock");
                    return None;
                }
            }
            Err(std::fs::TryLockError::Error(e)) => {
                tracing::warn!(error = %e, "cannot take the lock");
                return None;
            }
        }
        if same_file(&file, &path) {
            return Some(RunLock { file, path });
        }
    }
    None
}

#[cfg(unix)]
fn same_file(file: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &std::fs::File, path: &Path) -> bool {
    path.exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> Parts {
        Parts {
            argv: vec![b"make".to_vec(), b"-j\xff".to_vec()],
            argv_shown: vec!["make".into(), "-j\u{fffd}".into()],
            exe: FileStamp::new("no/such/exe"),
            cwd: Some(PathBuf::from("/work")),
            env: vec![
                ("CC".into(), Some(b"gcc".to_vec())),
                ("CFLAGS".into(), None),
            ],
            stdin: None,
            deps: vec![Dep::Content(FileContents::new("no/such/dep"))],
            outs: vec![PathBuf::from("out.bin")],
            scope: Some("nightly".into()),
        }
    }

    /// `docs/format.md`, "Command calls": the key must not change within its version.
    #[test]
    fn run_key_golden_vector() {
        assert_eq!(
            parts().key().to_string(),
            "b1f023ce5837d1e8d51be431f1babe2bdc267f6d009cc3106a28035818c95147"
        );
    }

    #[test]
    fn every_part_changes_the_key() {
        let base = parts().key();
        type Change = Box<dyn Fn(&mut Parts)>;
        let changes: Vec<(&str, Change)> = vec![
            ("argv", Box::new(|p| p.argv[1] = b"-j2".to_vec())),
            ("exe", Box::new(|p| p.exe = FileStamp::new("no/other/exe"))),
            ("cwd", Box::new(|p| p.cwd = None)),
            ("env", Box::new(|p| p.env[1].1 = Some(Vec::new()))),
            (
                "stdin",
                Box::new(|p| p.stdin = Some(Digest::from_bytes([0; 32]))),
            ),
            ("deps", Box::new(|p| p.deps.clear())),
            ("outs", Box::new(|p| p.outs.push(PathBuf::from("more")))),
            ("scope", Box::new(|p| p.scope = None)),
        ];
        for (name, change) in changes {
            let mut p = parts();
            change(&mut p);
            assert_ne!(p.key(), base, "{name} is not part of the key");
        }
    }

    /// The fast parser agrees with clap on what it accepts, and leaves the rest to clap.
    #[test]
    fn the_fast_parser_agrees_with_clap() {
        use clap::Parser;
        let lines: &[&[&str]] = &[
            &["run", "--", "true"],
            &[
                "--cache",
                "c",
                "run",
                "--explain",
                "--",
                "sh",
                "-c",
                "echo --",
            ],
            &[
                "run",
                "--config=f.toml",
                "--env",
                "A",
                "--env=B",
                "--dep",
                "x",
                "--dep",
                "y",
                "--dep-mode",
                "stamp",
                "--out",
                "o",
                "--scope",
                "s",
                "--cache-exit-codes",
                "0,1",
                "--cache-exit-codes=3",
                "--force",
                "--max-age",
                "2h",
                "--no-cwd",
                "--stdin",
                "--",
                "make",
                "-j4",
                "--",
                "x",
            ],
            &["run", "--check", "--max-age=30s", "--", "ls", "--color"],
        ];
        for line in lines {
            let argv: Vec<OsString> = std::iter::once("fleche")
                .chain(line.iter().copied())
                .map(OsString::from)
                .collect();
            let fast = Invocation::parse_fast(&argv).unwrap_or_else(|| panic!("{line:?} refused"));
            let cli = crate::Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{e}"));
            let crate::Command::Run(slow) = cli.command else {
                panic!("not run");
            };
            assert_eq!(format!("{:?}", fast.args), format!("{slow:?}"), "{line:?}");
            assert_eq!(fast.cache, cli.cache);
            assert_eq!(fast.config, cli.config);
        }
        let refused: &[&[&str]] = &[
            &["run", "--help", "--", "x"],
            &["run", "--"],
            &["run", "true"],
            &["run", "--dep-mode", "hash", "--", "x"],
            &["run", "--max-age", "soon", "--", "x"],
            &["run", "--unknown", "--", "x"],
            &["ls", "run"],
            &["run", "--force=yes", "--", "x"],
        ];
        for line in refused {
            let argv: Vec<OsString> = std::iter::once("fleche")
                .chain(line.iter().copied())
                .map(OsString::from)
                .collect();
            assert!(Invocation::parse_fast(&argv).is_none(), "{line:?} accepted");
        }
    }

    #[test]
    fn recorded_runs_round_trip() -> Result<(), Box<dyn std::error::Error>> {
        let r = Recorded {
            exit_code: 3,
            output: vec![
                Chunk {
                    stream: Stream::Stdout,
                    bytes: vec![0, 255, 10],
                },
                Chunk {
                    stream: Stream::Stderr,
                    bytes: b"e".to_vec(),
                },
            ],
            files: Vec::new(),
            tree: Vec::new(),
        };
        let bytes = fleche::storage::encoding::to_vec(&r)?;
        // Without output directories the value is what it was before they existed, so runs
        // stored by older binaries stay hits and these stay hits for them.
        assert!(!bytes.windows(4).any(|w| w == b"tree"));
        let back: Recorded = fleche::storage::encoding::from_slice(&bytes)?;
        assert!(back.tree.is_empty());
        assert_eq!(back.exit_code, 3);
        assert_eq!(back.output.len(), 2);
        assert_eq!(back.output[0].bytes, vec![0, 255, 10]);
        assert!(back.output[1].stream == Stream::Stderr);
        Ok(())
    }
}
