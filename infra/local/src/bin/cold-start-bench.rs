//! `cold-start-bench`: how long each function takes from `exec` to its first request for work,
//! how much memory it holds then, and how big its deployment zip is, next to a naive function
//! measured in the same run (`infra/bench/naive-function`). Not a test: a measurement
//! (docs/performance.md, "Cold start").
//!
//!     cargo run --release -p leadflow-local --bin cold-start-bench -- [--starts 20] [--no-build]
//!
//! `--no-build` measures the binaries already in `$CARGO_TARGET_DIR/release` (default
//! `target/release`), skipping functions that have none.
//!
//! Builds every function and the naive one with the workspace's release profile
//! (`cargo build --release`), then starts each binary `--starts` times against a stub Lambda
//! Runtime API served here. A start is done with its init when the binary asks for its first
//! invocation (`GET /2018-06-01/runtime/invocation/next`); the stub never answers, so the
//! process waits there while its memory is read from `/proc/<pid>/status`, and is then killed.
//! Starts go round the functions (one start of each, then the next round), so drift in the
//! machine's load spreads over all of them; one unmeasured start of each comes first, so every
//! binary is in the page cache as on a warm Lambda host.
//!
//! Prints the median init time (and min–max), the process's CPU time until then, VmRSS and
//! VmHWM at that moment, the zip size (the binary as `bootstrap`, deflated), and each target of
//! issue 12: init ≤ 0.5× the naive function, RSS (VmHWM) ≤ 12 MB, zip ≤ 4 MB. MB are 10^6 bytes.
//! Exits non-zero when a binary cannot be built or started, not when a target is missed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

const USAGE: &str = "usage: cold-start-bench [--starts 20] [--no-build]";

/// The request a Lambda runtime makes when its init is done.
const NEXT_PATH: &str = "/2018-06-01/runtime/invocation/next";
/// How long a start may take before the bench gives up on the binary.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// The crate the functions are measured against.
const NAIVE: &str = "naive-function";

/// Issue 12's targets.
const INIT_RATIO_TARGET: f64 = 0.5;
const RSS_TARGET_BYTES: u64 = 12_000_000;
const ZIP_TARGET_BYTES: u64 = 4_000_000;

struct Args {
    starts: usize,
    build: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        starts: 20,
        build: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--starts" => {
                let v = it
                    .next()
                    .ok_or_else(|| format!("--starts needs a value\n{USAGE}"))?;
                args.starts =
                    v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                        format!("--starts: {v:?} is not a positive number\n{USAGE}")
                    })?;
            }
            "--no-build" => args.build = false,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(args)
}

// ------------------------------------------------------------------ the stub Runtime API

/// A request the stub received: what was asked, and when its head had arrived.
#[derive(Debug)]
struct Arrival {
    method: String,
    path: String,
    at: Instant,
}

/// The stub Lambda Runtime API: reports every request's line and arrival time, and answers
/// none of them, so a runtime that asked for its next invocation waits.
struct StubRuntimeApi {
    address: String,
    arrivals: Receiver<Arrival>,
}

impl StubRuntimeApi {
    fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let address = listener.local_addr()?.to_string();
        let (tx, arrivals) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let tx = tx.clone();
                std::thread::spawn(move || serve(stream, tx));
            }
        });
        Ok(Self { address, arrivals })
    }

    /// Drops what earlier starts left behind.
    fn clear(&self) {
        while self.arrivals.try_recv().is_ok() {}
    }
}

/// Reads requests from one connection until it closes (the process was killed).
fn serve(mut stream: TcpStream, tx: Sender<Arrival>) {
    let _ = stream.set_nodelay(true);
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
        while let Some(end) = head_end(&buffer) {
            let at = Instant::now();
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            // Bodies (init/error reports) are not read: the start has failed by then anyway.
            buffer.drain(..end);
            let Some((method, path)) = request_line(&head) else {
                return;
            };
            if method != "GET" {
                // A report (init error): acknowledged, so the runtime does not hang on it.
                let _ = stream.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n");
            }
            if tx.send(Arrival { method, path, at }).is_err() {
                return;
            }
        }
    }
}

/// The length of the request head (through the blank line), once it is all there.
fn head_end(buffer: &[u8]) -> Option<usize> {
    buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
}

/// `GET /path HTTP/1.1` → (`GET`, `/path`).
fn request_line(head: &str) -> Option<(String, String)> {
    let mut parts = head.lines().next()?.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    Some((method, path))
}

// ------------------------------------------------------------------ one start

/// What one start measured.
#[derive(Debug, Clone, Copy)]
struct Start {
    init: Duration,
    /// CPU time of all the process's threads until then.
    cpu: Duration,
    rss_bytes: u64,
    hwm_bytes: u64,
}

/// The environment a function gets on Lambda, as far as its init reads it: the runtime's
/// variables, dummy credentials, and every variable template.yaml gives any function (one set
/// for all). The endpoint is a closed local port: nothing at init may call AWS, and a call
/// would fail fast instead of hanging.
fn lambda_env(function: &str, runtime_api: &str) -> Vec<(&'static str, String)> {
    let arn =
        |what: &str| format!("arn:aws:secretsmanager:eu-central-1:000000000000:secret:{what}");
    let queue = |name: &str| format!("https://sqs.eu-central-1.amazonaws.com/000000000000/{name}");
    vec![
        ("PATH", "/usr/local/bin:/usr/bin:/bin".into()),
        ("LANG", "en_US.UTF-8".into()),
        ("TZ", ":UTC".into()),
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.into()),
        ("AWS_LAMBDA_FUNCTION_NAME", function.into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{function}"),
        ),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench".into()),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
        ("AWS_REGION", "eu-central-1".into()),
        ("AWS_DEFAULT_REGION", "eu-central-1".into()),
        ("AWS_ACCESS_KEY_ID", "ASIABENCHBENCHBENCH0".into()),
        ("AWS_SECRET_ACCESS_KEY", "bench".into()),
        ("AWS_SESSION_TOKEN", "bench".into()),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9".into()),
        ("RUST_LOG", "info".into()),
        ("TABLE_NAME", "leadflow-leads".into()),
        ("EVENT_BUS_NAME", "leadflow-leads".into()),
        ("CONFIG_CACHE_SECONDS", "15".into()),
        ("SCORE_EVENT_QUEUE_URL", queue("score-event")),
        ("QUEUE_URL", queue("crm-webhook")),
        ("DLQ_URL", queue("crm-webhook-dlq")),
        (
            "ALLOWED_ORIGINS",
            "http://localhost:8080,http://127.0.0.1:8080".into(),
        ),
        (
            "REDIRECT_ALLOWLIST",
            "http://localhost:8080,http://127.0.0.1:8080".into(),
        ),
        ("HONEYPOT_FIELD", "_gotcha".into()),
        ("REQUIRED_FIELDS", "email".into()),
        ("VISITOR_TOKEN_SECRET", arn("visitor-token")),
        ("RATE_LIMIT_LEADS", "10/min burst 20".into()),
        ("RATE_LIMIT_EVENTS", "120/min burst 120".into()),
        ("RATE_LIMIT_CRM_EVENTS", "600/min burst 300".into()),
        ("RATE_LIMIT_KEY", "bench-stack-id".into()),
        ("SLA_TICK_BUDGET_SECONDS", "40".into()),
        ("CRM_RETRY_BASE_SECONDS", "30".into()),
        ("CRM_RETRY_WINDOW_SECONDS", "86400".into()),
        ("CRM_WEBHOOK_SECRET_ARN", arn("crm-webhook")),
        (
            "PUBLIC_API_URL",
            "https://bench.execute-api.eu-central-1.amazonaws.com".into(),
        ),
    ]
}

/// Kills a started process however its start went.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_once(binary: &Path, function: &str, stub: &StubRuntimeApi) -> Result<Start, String> {
    stub.clear();
    let mut command = Command::new(binary);
    command
        .env_clear()
        .envs(lambda_env(function, &stub.address))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let started = Instant::now();
    let mut child = Running(
        command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?,
    );
    let pid = child.0.id();
    loop {
        match stub.arrivals.recv_timeout(Duration::from_millis(20)) {
            Ok(a) if a.method == "GET" && a.path == NEXT_PATH => {
                let init = a.at.duration_since(started);
                let (rss_bytes, hwm_bytes) = memory(pid)?;
                return Ok(Start {
                    init,
                    cpu: cpu_time(pid),
                    rss_bytes,
                    hwm_bytes,
                });
            }
            Ok(a) => {
                return Err(format!(
                    "{function}: {} {} before its first next",
                    a.method, a.path
                ))
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Err("the stub stopped".into()),
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            return Err(format!(
                "{function} exited ({status}) before asking for work; run it by hand with the \
                 environment of lambda_env() to see why"
            ));
        }
        if started.elapsed() > START_TIMEOUT {
            return Err(format!(
                "{function}: no next request within {START_TIMEOUT:?}"
            ));
        }
    }
}

/// VmRSS and VmHWM of `pid`, in bytes.
fn memory(pid: u32) -> Result<(u64, u64), String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    let rss = status_kib(&status, "VmRSS:").ok_or("no VmRSS in /proc status")?;
    let hwm = status_kib(&status, "VmHWM:").ok_or("no VmHWM in /proc status")?;
    Ok((rss * 1024, hwm * 1024))
}

/// A `Name:   1234 kB` line of `/proc/<pid>/status`, in KiB.
fn status_kib(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// CPU time of every thread of `pid` (`/proc/<pid>/task/*/schedstat`, nanoseconds on the CPU):
/// finer than the clock ticks of `/proc/<pid>/stat`. Zero where the kernel has no schedstat.
fn cpu_time(pid: u32) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    let nanos: u64 = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

// ------------------------------------------------------------------ statistics

/// The median (the mean of the middle two for an even count); `None` for no values.
fn median<T: Copy + Ord + Into<f64>>(values: &[T]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2].into()),
        _ => Some((sorted[n / 2 - 1].into() + sorted[n / 2].into()) / 2.0),
    }
}

/// Microseconds, so durations take the `median` above.
fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// One function's figures over all its starts.
struct Summary {
    function: String,
    init_ms: f64,
    init_min_ms: f64,
    init_max_ms: f64,
    cpu_ms: f64,
    rss_mb: f64,
    hwm_mb: f64,
    hwm_bytes: f64,
    zip_bytes: u64,
}

fn summarize(function: &str, starts: &[Start], zip_bytes: u64) -> Option<Summary> {
    let init: Vec<u32> = starts.iter().map(|s| micros(s.init)).collect();
    let cpu: Vec<u32> = starts.iter().map(|s| micros(s.cpu)).collect();
    // KiB fit u32 for any process this bench starts.
    let kib = |b: u64| u32::try_from(b / 1024).unwrap_or(u32::MAX);
    let rss: Vec<u32> = starts.iter().map(|s| kib(s.rss_bytes)).collect();
    let hwm: Vec<u32> = starts.iter().map(|s| kib(s.hwm_bytes)).collect();
    let mb = |kib: f64| kib * 1024.0 / 1e6;
    Some(Summary {
        function: function.to_owned(),
        init_ms: median(&init)? / 1000.0,
        init_min_ms: f64::from(*init.iter().min()?) / 1000.0,
        init_max_ms: f64::from(*init.iter().max()?) / 1000.0,
        cpu_ms: median(&cpu)? / 1000.0,
        rss_mb: mb(median(&rss)?),
        hwm_mb: mb(median(&hwm)?),
        hwm_bytes: median(&hwm)? * 1024.0,
        zip_bytes,
    })
}

// ------------------------------------------------------------------ the zip

/// The deployment package Lambda gets: one entry, `bootstrap`, executable, deflated (as
/// `cargo lambda build` and `sam build` make it). Written here, not through a zip crate: one
/// entry needs a local header, the data, one central directory record and the end record.
fn lambda_zip(binary: &[u8]) -> std::io::Result<Vec<u8>> {
    use flate2::write::DeflateEncoder;
    const NAME: &[u8] = b"bootstrap";
    let mut encoder = DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(binary)?;
    let deflated = encoder.finish()?;
    let crc = {
        let mut h = flate2::Crc::new();
        h.update(binary);
        h.sum()
    };
    let too_big = || std::io::Error::other("over 4 GiB: needs zip64");
    let size = u32::try_from(binary.len()).map_err(|_| too_big())?;
    let compressed = u32::try_from(deflated.len()).map_err(|_| too_big())?;
    // 1980-01-01 00:00, the zip epoch: the bench's zips are the same for the same binary.
    let (time, date) = (0u16, (1 << 5) | 1);
    let mut zip = Vec::with_capacity(deflated.len() + 128);
    // Local file header.
    zip.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    for v in [20u16, 0, 8, time, date] {
        zip.extend_from_slice(&v.to_le_bytes()); // version, flags, deflate, time, date
    }
    for v in [crc, compressed, size] {
        zip.extend_from_slice(&v.to_le_bytes());
    }
    zip.extend_from_slice(&(NAME.len() as u16).to_le_bytes());
    zip.extend_from_slice(&0u16.to_le_bytes());
    zip.extend_from_slice(NAME);
    zip.extend_from_slice(&deflated);
    // Central directory: made by Unix (3 << 8), mode 0755 regular file in the high 16 bits.
    let directory_at = u32::try_from(zip.len()).map_err(|_| too_big())?;
    zip.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    for v in [(3u16 << 8) | 20, 20, 0, 8, time, date] {
        zip.extend_from_slice(&v.to_le_bytes());
    }
    for v in [crc, compressed, size] {
        zip.extend_from_slice(&v.to_le_bytes());
    }
    for v in [NAME.len() as u16, 0, 0, 0, 0] {
        zip.extend_from_slice(&v.to_le_bytes()); // name, extra, comment, disk, internal attrs
    }
    zip.extend_from_slice(&((0o100_755u32) << 16).to_le_bytes());
    zip.extend_from_slice(&0u32.to_le_bytes()); // the local header's offset
    zip.extend_from_slice(NAME);
    let directory_len = u32::try_from(zip.len()).map_err(|_| too_big())? - directory_at;
    // End of central directory.
    zip.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    for v in [0u16, 0, 1, 1] {
        zip.extend_from_slice(&v.to_le_bytes());
    }
    zip.extend_from_slice(&directory_len.to_le_bytes());
    zip.extend_from_slice(&directory_at.to_le_bytes());
    zip.extend_from_slice(&0u16.to_le_bytes());
    Ok(zip)
}

// ------------------------------------------------------------------ the run

/// The workspace's root: two levels above this crate.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every crate under `functions/` (each is one Lambda function, its binary named as the crate),
/// then the naive function.
fn functions(root: &Path) -> std::io::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("functions"))?
        .flatten()
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names.push(NAIVE.to_owned());
    Ok(names)
}

fn build(root: &Path, functions: &[String]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(root)
        .args(["build", "--release", "--bins"]);
    for f in functions {
        command.args(["-p", f]);
    }
    eprintln!("building: {command:?}");
    let status = command
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo build --release failed ({status})"))
    }
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

fn run(args: &Args) -> Result<Vec<Summary>, String> {
    let root = workspace_root();
    let functions = functions(&root).map_err(|e| format!("functions/: {e}"))?;
    if args.build {
        build(&root, &functions)?;
    }
    let release = target_dir(&root).join("release");
    let mut functions = functions;
    if !args.build {
        // Measures what is there (a missing one is said, not fatal).
        functions.retain(|f| {
            let there = release.join(f).is_file();
            if !there {
                eprintln!("skipped {f}: no {}", release.join(f).display());
            }
            there
        });
    }
    let binaries: Vec<PathBuf> = functions.iter().map(|f| release.join(f)).collect();
    let mut zips = Vec::new();
    for b in &binaries {
        let bytes = std::fs::read(b).map_err(|e| format!("{}: {e}", b.display()))?;
        zips.push(
            lambda_zip(&bytes)
                .map_err(|e| format!("zip of {}: {e}", b.display()))?
                .len() as u64,
        );
    }
    let stub = StubRuntimeApi::start().map_err(|e| format!("stub Runtime API: {e}"))?;
    eprintln!(
        "{} starts of each of {} binaries against the stub Runtime API at {}",
        args.starts,
        functions.len(),
        stub.address
    );
    // One unmeasured start each: the binaries are in the page cache before any is timed.
    for (f, b) in functions.iter().zip(&binaries) {
        start_once(b, f, &stub)?;
    }
    let mut starts: Vec<Vec<Start>> = vec![Vec::new(); functions.len()];
    for round in 0..args.starts {
        for (i, (f, b)) in functions.iter().zip(&binaries).enumerate() {
            starts[i].push(start_once(b, f, &stub)?);
        }
        eprint!("\rround {}/{}", round + 1, args.starts);
    }
    eprintln!();
    functions
        .iter()
        .zip(&starts)
        .zip(&zips)
        .map(|((f, s), z)| summarize(f, s, *z).ok_or_else(|| format!("{f}: no starts")))
        .collect()
}

/// The machine's load average, printed with the figures: init times are wall-clock times, and
/// other processes on the same cores stretch them (the CPU column much less).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn print_table(summaries: &[Summary], starts: usize, load_before: &str) {
    let naive = summaries.iter().find(|s| s.function == NAIVE);
    let mark = |ok: bool| if ok { "pass" } else { "FAIL" };
    println!(
        "cold start, release profile, median of {starts} starts (init: exec to the first `next` request)"
    );
    println!(
        "load average before {load_before}, after {}; {} cores",
        load_average(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "| function | init ms | min–max ms | CPU ms | × naive | VmRSS MB | VmHWM MB | zip MB | init ≤ {INIT_RATIO_TARGET}× naive | RSS ≤ {} MB | zip ≤ {} MB |",
        RSS_TARGET_BYTES / 1_000_000,
        ZIP_TARGET_BYTES / 1_000_000
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|");
    for s in summaries {
        let ratio = naive.map(|n| s.init_ms / n.init_ms);
        let is_naive = s.function == NAIVE;
        println!(
            "| {} | {:.2} | {:.2}–{:.2} | {:.2} | {} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
            s.function,
            s.init_ms,
            s.init_min_ms,
            s.init_max_ms,
            s.cpu_ms,
            ratio.map_or("-".into(), |r| format!("{r:.2}")),
            s.rss_mb,
            s.hwm_mb,
            s.zip_bytes as f64 / 1e6,
            if is_naive {
                "(yardstick)"
            } else {
                ratio.map_or("-", |r| mark(r <= INIT_RATIO_TARGET))
            },
            mark(s.hwm_bytes <= RSS_TARGET_BYTES as f64),
            mark(s.zip_bytes <= ZIP_TARGET_BYTES),
        );
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let load_before = load_average();
    match run(&args) {
        Ok(summaries) => {
            print_table(&summaries, args.starts, &load_before);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cold-start-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median::<u32>(&[]), None);
        assert_eq!(median(&[7u32]), Some(7.0));
        assert_eq!(median(&[9u32, 1, 5]), Some(5.0));
        assert_eq!(median(&[4u32, 1, 3, 2]), Some(2.5));
    }

    #[test]
    fn status_lines_are_read_in_kib() {
        let status = "Name:\tcapture-form\nVmHWM:\t    9876 kB\nVmRSS:\t    8765 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(8765));
        assert_eq!(status_kib(status, "VmHWM:"), Some(9876));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn the_stub_reports_a_next_request_and_leaves_it_unanswered() {
        let stub = StubRuntimeApi::start().unwrap();
        let mut client = TcpStream::connect(&stub.address).unwrap();
        let sent = Instant::now();
        // Split across two writes, as a head may arrive.
        client
            .write_all(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n")
            .unwrap();
        client.write_all(b"host: localhost\r\n\r\n").unwrap();
        let arrival = stub.arrivals.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(arrival.method, "GET");
        assert_eq!(arrival.path, NEXT_PATH);
        assert!(arrival.at >= sent);
        client
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut answer = [0u8; 16];
        assert!(
            client.read(&mut answer).is_err(),
            "the stub must not answer next: the runtime waits there while it is measured"
        );
    }

    #[test]
    fn the_zip_holds_bootstrap_deflated_and_whole() {
        use flate2::read::DeflateDecoder;
        let binary: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let zip = lambda_zip(&binary).unwrap();
        let u16_at = |o: usize| u16::from_le_bytes([zip[o], zip[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes([zip[o], zip[o + 1], zip[o + 2], zip[o + 3]]);
        assert_eq!(u32_at(0), 0x0403_4b50);
        assert_eq!(u16_at(8), 8, "deflate");
        let (crc, compressed, size) = (u32_at(14), u32_at(18) as usize, u32_at(22) as usize);
        let name_len = u16_at(26) as usize;
        assert_eq!(&zip[30..30 + name_len], b"bootstrap");
        assert_eq!(size, binary.len());
        assert!(compressed < size);
        let data = &zip[30 + name_len..30 + name_len + compressed];
        let mut inflated = Vec::new();
        DeflateDecoder::new(data)
            .read_to_end(&mut inflated)
            .unwrap();
        assert_eq!(inflated, binary);
        let mut h = flate2::Crc::new();
        h.update(&inflated);
        assert_eq!(h.sum(), crc);
        // The end record points at the one central directory entry, executable.
        let end = zip.len() - 22;
        assert_eq!(u32_at(end), 0x0605_4b50);
        assert_eq!(u16_at(end + 10), 1);
        let directory = u32_at(end + 16) as usize;
        assert_eq!(u32_at(directory), 0x0201_4b50);
        assert_eq!(u32_at(directory + 38) >> 16, 0o100_755);
    }
}
