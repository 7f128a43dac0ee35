//! The load generators: wrk (HTTP/1.1, tokens rotated by `bench/wrk.lua`) and h2load (HTTP/2),
//! each run for a fixed time with a fixed number of connections, and what they report.

use crate::procs::pinned;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The request every scenario sends (what `bench/wrk.lua` sends too).
pub const CHAT_PATH: &str = "/v1/chat/completions";

/// One timed run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Run {
    pub requests: u64,
    pub rps: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    /// Responses that were not 2xx/3xx, and socket errors: any makes the run invalid.
    pub errors: u64,
    /// The Envoy under test's CPU time per request in this run (every thread, from the
    /// scheduler's own accounting): unlike req/s, time another guest steals does not count.
    pub cpu_us: Option<f64>,
}

#[derive(Debug, Clone)]
pub enum Generator {
    /// HTTP/1.1, one token per request in turn from the file.
    Wrk { tokens: PathBuf },
    /// HTTP/2 (prior knowledge), one token for every request.
    H2load { token: String },
}

pub struct Load<'a> {
    pub wrk: &'a Path,
    pub h2load: &'a Path,
    pub script: &'a Path,
    pub body_file: &'a Path,
    pub connections: u32,
    pub cpus: Option<&'a str>,
    pub scratch: &'a Path,
}

impl Load<'_> {
    pub fn run(&self, generator: &Generator, port: u16, duration: Duration) -> Result<Run, String> {
        match generator {
            Generator::Wrk { tokens } => self.wrk(tokens, port, duration),
            Generator::H2load { token } => self.h2load(token, port, duration),
        }
    }

    fn wrk(&self, tokens: &Path, port: u16, duration: Duration) -> Result<Run, String> {
        let mut cmd = pinned(self.cpus, self.wrk);
        cmd.arg("-t1")
            .arg(format!("-c{}", self.connections))
            .arg(format!("-d{}s", duration.as_secs().max(1)))
            .arg("--timeout")
            .arg("5s")
            .arg("-s")
            .arg(self.script)
            .arg(format!("http://127.0.0.1:{port}"))
            .arg("--")
            .arg(tokens);
        let out = cmd.output().map_err(|e| format!("wrk: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().find_map(|l| l.strip_prefix("FUSEBOX_BENCH ")).ok_or_else(|| {
            format!("wrk printed no summary (exit {}): {}{}", out.status, stdout, String::from_utf8_lossy(&out.stderr))
        })?;
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("wrk summary {line}: {e}"))?;
        let field = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        let secs = field("duration_us") as f64 / 1e6;
        Ok(Run {
            cpu_us: None,
            requests: field("requests"),
            rps: if secs > 0.0 { field("requests") as f64 / secs } else { 0.0 },
            p50_us: field("p50_us"),
            p99_us: field("p99_us"),
            errors: field("status_errors") + field("socket_errors"),
        })
    }

    fn h2load(&self, token: &str, port: u16, duration: Duration) -> Result<Run, String> {
        let log = self.scratch.join("h2load.log");
        let _ = std::fs::remove_file(&log);
        let mut cmd = pinned(self.cpus, self.h2load);
        cmd.arg("-c")
            .arg(self.connections.to_string())
            .arg("-m1")
            .arg("-t1")
            .arg("-D")
            .arg(duration.as_secs().max(1).to_string())
            .arg("-H")
            .arg(format!("authorization: Bearer {token}"))
            .arg("-H")
            .arg("content-type: application/json")
            .arg("-d")
            .arg(self.body_file)
            .arg("--log-file")
            .arg(&log)
            .arg(format!("http://127.0.0.1:{port}{CHAT_PATH}"));
        let out = cmd.output().map_err(|e| format!("h2load: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        parse_h2load(&stdout, &std::fs::read_to_string(&log).unwrap_or_default())
            .ok_or_else(|| format!("h2load output not understood (exit {}):\n{stdout}", out.status))
    }
}

/// h2load's summary (`finished in 3.00s, 12345.67 req/s`, `requests: ... N succeeded, F failed,
/// E errored, T timeout`, `status codes: ...`) plus latency percentiles from its per-request log
/// (`start_us<TAB>status<TAB>latency_us`), since its summary has only mean and deviation.
pub fn parse_h2load(stdout: &str, log: &str) -> Option<Run> {
    let rps = stdout.lines().find_map(|l| {
        let rest = l.strip_prefix("finished in ")?;
        let (_, after) = rest.split_once(", ")?;
        after.split_whitespace().next()?.parse::<f64>().ok()
    })?;
    let counts = stdout.lines().find_map(|l| l.strip_prefix("requests: "))?;
    let count = |label: &str| {
        counts.split(", ").find_map(|part| part.strip_suffix(label)?.trim().parse::<u64>().ok()).unwrap_or(0)
    };
    let status = stdout.lines().find_map(|l| l.strip_prefix("status codes: ")).unwrap_or("");
    let bad_status: u64 = status
        .split(", ")
        .filter(|p| p.ends_with(" 4xx") || p.ends_with(" 5xx"))
        .filter_map(|p| p.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    let mut latencies: Vec<u64> =
        log.lines().filter_map(|l| l.split('\t').nth(2)?.trim().parse::<u64>().ok()).collect();
    latencies.sort_unstable();
    Some(Run {
        cpu_us: None,
        requests: count(" succeeded"),
        rps,
        p50_us: percentile(&latencies, 50.0),
        p99_us: percentile(&latencies, 99.0),
        // h2load may or may not count 4xx/5xx among `failed`; never count a request twice.
        errors: count(" failed").max(bad_status) + count(" errored") + count(" timeout"),
    })
}

/// Nearest-rank percentile of sorted values (0 when empty).
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h2load_summary_and_log_become_a_run() {
        let stdout = "finished in 3.00s, 12345.67 req/s, 5.12MB/s\n\
            requests: 37037 total, 37053 started, 37037 done, 37030 succeeded, 7 failed, 0 errored, 0 timeout\n\
            status codes: 37030 2xx, 0 3xx, 7 4xx, 0 5xx\n";
        let log = "1\t200\t100\n2\t200\t300\n3\t200\t200\n4\t429\t900\n";
        let run = parse_h2load(stdout, log).unwrap();
        assert_eq!(run.requests, 37030);
        assert!((run.rps - 12345.67).abs() < 1e-6);
        assert_eq!(run.errors, 7, "a 4xx that h2load also counts as failed counts once");
        assert_eq!((run.p50_us, run.p99_us), (200, 900));
    }

    #[test]
    fn output_without_a_summary_is_not_a_run() {
        assert!(parse_h2load("connect failed\n", "").is_none());
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }
}
