//! Summaries of repeated runs (medians), the ratios the goals are stated in, and how they are
//! printed (a table) and kept (`target/bench/report.json`).

use crate::load::Run;
use serde::Serialize;

/// A scenario's runs and their medians.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub key: &'static str,
    pub what: &'static str,
    pub rps: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub errors: u64,
    /// The Envoy under test's CPU time per request (median of the runs).
    pub cpu_us: Option<f64>,
    pub runs: Vec<Run>,
}

impl Summary {
    pub fn of(key: &'static str, what: &'static str, runs: Vec<Run>) -> Summary {
        Summary {
            key,
            what,
            rps: median(runs.iter().map(|r| r.rps).collect()),
            p50_us: median(runs.iter().map(|r| r.p50_us as f64).collect()).round() as u64,
            p99_us: median(runs.iter().map(|r| r.p99_us as f64).collect()).round() as u64,
            errors: runs.iter().map(|r| r.errors).sum(),
            cpu_us: Some(median(runs.iter().filter_map(|r| r.cpu_us).collect())).filter(|c| *c > 0.0),
            runs,
        }
    }
}

/// A ratio of two scenarios' throughput: the median of the per-round ratios (the rounds
/// interleave scenarios, so pairing them cancels drift), and a goal if there is one.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub name: &'static str,
    pub numerator: &'static str,
    pub denominator: &'static str,
    pub value: f64,
    /// The same ratio from Envoy's CPU time per request (denominator's / numerator's): what
    /// the throughput ratio would be on a machine where no other guest steals time.
    pub by_cpu: Option<f64>,
    pub goal: Option<f64>,
    pub met: Option<bool>,
}

impl Ratio {
    pub fn of(name: &'static str, num: &Summary, den: &Summary, goal: Option<f64>) -> Ratio {
        let paired: Vec<f64> =
            num.runs.iter().zip(&den.runs).filter(|(_, d)| d.rps > 0.0).map(|(n, d)| n.rps / d.rps).collect();
        let value = median(paired);
        let by_cpu: Vec<f64> = num
            .runs
            .iter()
            .zip(&den.runs)
            .filter_map(|(n, d)| Some(d.cpu_us? / n.cpu_us.filter(|c| *c > 0.0)?))
            .collect();
        let by_cpu = (!by_cpu.is_empty()).then(|| median(by_cpu));
        Ratio { name, numerator: num.key, denominator: den.key, value, by_cpu, goal, met: goal.map(|g| value >= g) }
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    let upper = v.get(mid).copied().unwrap_or(0.0);
    if v.len() % 2 == 1 {
        upper
    } else {
        (v.get(mid - 1).copied().unwrap_or(0.0) + upper) / 2.0
    }
}

/// The throughput table, one scenario a line.
pub fn table(summaries: &[Summary], baseline: Option<&Summary>) -> String {
    let mut out = format!(
        "{:<16} {:>9} {:>9} {:>9} {:>10} {:>7} {:>8}  {}\n",
        "scenario", "req/s", "p50 ms", "p99 ms", "+p50 ms", "errors", "cpu us", "what"
    );
    for s in summaries {
        let added =
            baseline.map_or(String::from("-"), |b| format!("{:+.3}", (s.p50_us as f64 - b.p50_us as f64) / 1000.0));
        out.push_str(&format!(
            "{:<16} {:>9.0} {:>9.3} {:>9.3} {:>10} {:>7} {:>8}  {}\n",
            s.key,
            s.rps,
            s.p50_us as f64 / 1000.0,
            s.p99_us as f64 / 1000.0,
            added,
            s.errors,
            s.cpu_us.map_or(String::from("-"), |c| format!("{c:.1}")),
            s.what
        ));
    }
    out
}

pub fn ratio_lines(ratios: &[Ratio]) -> String {
    ratios
        .iter()
        .map(|r| {
            let verdict = match (r.goal, r.met) {
                (Some(g), Some(true)) => format!("goal >= {g:.2}: met"),
                (Some(g), _) => format!("goal >= {g:.2}: MISSED"),
                _ => String::new(),
            };
            let cpu = r.by_cpu.map_or(String::new(), |c| format!("by CPU {c:.3}  "));
            format!("{:<34} {:>6.3}  {cpu}({} / {})  {}\n", r.name, r.value, r.numerator, r.denominator, verdict)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rps: f64) -> Run {
        Run { requests: rps as u64, rps, p50_us: 1000, p99_us: 2000, errors: 0, cpu_us: Some(1e6 / rps) }
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
    }

    #[test]
    fn ratios_pair_runs_of_the_same_round() {
        // Round 2 was slow for both; pairing keeps the ratio at 0.5 where medians of each would not drift.
        let a = Summary::of("a", "", vec![run(50.0), run(10.0), run(60.0)]);
        let b = Summary::of("b", "", vec![run(100.0), run(20.0), run(120.0)]);
        let r = Ratio::of("a/b", &a, &b, Some(0.9));
        assert!((r.value - 0.5).abs() < 1e-9);
        assert!((r.by_cpu.unwrap() - 0.5).abs() < 1e-9, "twice the CPU per request is half the rate");
        assert_eq!(r.met, Some(false));
    }

    #[test]
    fn the_table_shows_added_latency_against_the_baseline() {
        let bare = Summary::of("bare", "Envoy alone", vec![run(100.0)]);
        let mut slow = Summary::of("slow", "with a filter", vec![run(50.0)]);
        slow.p50_us = 1250;
        let t = table(&[bare.clone(), slow], Some(&bare));
        assert!(t.contains("+0.250"), "{t}");
        assert!(t.contains("with a filter"));
    }
}
