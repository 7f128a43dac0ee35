//! One very large SSE response through the proxy: throughput, and the memory the filter and
//! Envoy hold while it passes (it must not grow with the stream's size).

use crate::load::CHAT_PATH;
use crate::procs::{proc_status_kb, Proc};
use fusebox_integration::envoy_stat;
use serde::Serialize;
use std::io::Read;
use std::time::{Duration, Instant};

/// The filter's gauge of its workers' Wasm linear memory.
pub const WASM_MEMORY_STAT: &str = "wasmcustom.fusebox.worker.wasm_memory_bytes";
const OUTPUT_TOKENS_STAT: &str = "wasmcustom.fusebox.tokens.output";
/// Bytes of filler per SSE event, so one event is about 355 bytes on the wire, like a
/// chat completion chunk carrying a few tokens.
const EVENT_FILLER_BYTES: u64 = 200;
const EVENT_BYTES: u64 = 355;

#[derive(Debug, Clone, Serialize)]
pub struct StreamRun {
    pub bytes: u64,
    pub seconds: f64,
    pub mb_per_s: f64,
    /// Envoy's resident memory before and after, and its high-water mark after (kB).
    pub rss_before_kb: u64,
    pub rss_after_kb: u64,
    pub rss_peak_kb: u64,
    /// fusebox only: the worker's Wasm linear memory before and after (it never shrinks, so
    /// "after" is the peak); and the output tokens the filter counted from the stream's end.
    pub wasm_before_bytes: Option<u64>,
    pub wasm_after_bytes: Option<u64>,
    pub tokens_counted: Option<u64>,
    /// MB for each second Envoy ran on a CPU: what Envoy alone could pass, whatever bounds the
    /// stream elsewhere (the upstream and the client share one CPU and often set the MB/s).
    pub mb_per_cpu_s: Option<f64>,
}

/// The runs through one proxy, and their median throughput.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub key: &'static str,
    pub mb_per_s: f64,
    pub mb_per_cpu_s: Option<f64>,
    pub runs: Vec<StreamRun>,
}

impl Summary {
    /// One line for the table.
    pub fn line(&self) -> String {
        let (Some(first), Some(last)) = (self.runs.first(), self.runs.last()) else { return String::new() };
        let mut out = format!(
            "{:<16} {:>7.0} MB/s ({} MB a CPU second) over {} MB x{}; Envoy RSS {} -> {} kB (peak {} kB)",
            self.key,
            self.mb_per_s,
            self.mb_per_cpu_s.map_or("-".to_string(), |m| format!("{m:.0}")),
            last.bytes / 1_000_000,
            self.runs.len(),
            first.rss_before_kb,
            last.rss_after_kb,
            last.rss_peak_kb,
        );
        if let (Some(before), Some(after)) = (first.wasm_before_bytes, last.wasm_after_bytes) {
            let each: Vec<String> =
                self.runs.iter().filter_map(|r| r.wasm_after_bytes).map(|b| (b / 1024).to_string()).collect();
            out.push_str(&format!(
                "; filter Wasm memory {} -> {} KiB (after each stream: {})",
                before / 1024,
                after / 1024,
                each.join(", ")
            ));
        }
        out
    }
}

pub struct Target<'a> {
    pub agent: &'a ureq::Agent,
    pub port: u16,
    pub admin_port: u16,
    pub envoy: &'a Proc,
    pub token: &'a str,
    pub fusebox: bool,
}

/// Streams about `megabytes` MB of chat completion chunks (usage in the last one) and reads it all.
pub fn run(t: &Target, megabytes: u64) -> Result<StreamRun, String> {
    let events = (megabytes * 1_000_000).div_ceil(EVENT_BYTES);
    let stat = |name: &str| if t.fusebox { envoy_stat(t.agent, t.admin_port, name) } else { None };
    let rss = |field: &str| proc_status_kb(t.envoy.pid(), field).unwrap_or(0);
    let cpu_before = t.envoy.cpu_ns();
    let (rss_before_kb, wasm_before_bytes, tokens_before) =
        (rss("VmRSS"), stat(WASM_MEMORY_STAT), stat(OUTPUT_TOKENS_STAT));
    let body = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Write a very long story."}]}"#;
    let started = Instant::now();
    let mut resp = t
        .agent
        .post(format!("http://127.0.0.1:{}{CHAT_PATH}", t.port))
        .header("authorization", format!("Bearer {}", t.token))
        .header("content-type", "application/json")
        .header("x-mock-chunks", events.to_string())
        .header("x-mock-chunk-bytes", EVENT_FILLER_BYTES.to_string())
        .send(body)
        .map_err(|e| format!("stream request: {e}"))?;
    if resp.status() != 200 {
        return Err(format!("stream answered {}", resp.status()));
    }
    let mut reader = resp.body_mut().as_reader();
    let mut buf = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    let mut tail = Vec::new();
    loop {
        let n = reader.read(&mut buf).map_err(|e| format!("reading the stream after {bytes} bytes: {e}"))?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        tail.extend_from_slice(buf.get(..n).unwrap_or_default());
        let keep = tail.len().saturating_sub(64);
        tail.drain(..keep);
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_s = cpu_before.zip(t.envoy.cpu_ns()).map(|(b, a)| a.saturating_sub(b) as f64 / 1e9);
    if !String::from_utf8_lossy(&tail).contains("[DONE]") {
        return Err(format!("the stream ended after {bytes} bytes without [DONE]"));
    }
    // The filter reports its memory on its 1 s tick.
    std::thread::sleep(Duration::from_millis(1500));
    let tokens_after = stat(OUTPUT_TOKENS_STAT);
    Ok(StreamRun {
        bytes,
        seconds,
        mb_per_s: bytes as f64 / 1e6 / seconds.max(1e-9),
        mb_per_cpu_s: cpu_s.filter(|c| *c > 0.0).map(|c| bytes as f64 / 1e6 / c),
        rss_before_kb,
        rss_after_kb: rss("VmRSS"),
        rss_peak_kb: rss("VmHWM"),
        wasm_before_bytes,
        wasm_after_bytes: stat(WASM_MEMORY_STAT),
        tokens_counted: tokens_after.zip(tokens_before).map(|(a, b)| a.saturating_sub(b)),
    })
}
