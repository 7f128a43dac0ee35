//! What the filter reports to the control service: usage, denials, breaker transitions and
//! warnings. Workers push events into a [`Backlog`] that merges like records (same tenant,
//! model, route, run, status and minute), so the volume shipped grows with the variety of
//! traffic, not with its rate. The backlog is bounded: when full, the oldest event is dropped
//! and counted, and traffic never waits for it.
//!
//! Longer than most files here because of its tests (about a third): merging must neither
//! lose nor invent usage.

use crate::admission::Warning;
use crate::breaker::{Phase, Transition};
use crate::identity::Membership;
use crate::run::RunDenied;
use crate::usage::{CacheTokens, Usage};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Usage is reported per minute (unix seconds, a multiple of 60).
pub fn minute_of(now_ms: u64) -> u64 {
    now_ms / 60_000 * 60
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// Responses that ended, with the tokens they used.
    Usage {
        tenant: String,
        model: String,
        /// The filter's route rule that matched (`/v1/` or `*`), never the raw path.
        route: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_id: Option<String>,
        status: u16,
        minute: u64,
        requests: u64,
        input_tokens: u64,
        output_tokens: u64,
        /// Of the input, tokens read from the provider's prompt cache (priced apart).
        #[serde(default, skip_serializing_if = "is_zero")]
        cache_read_tokens: u64,
        /// Of the input, tokens written to the prompt cache (priced apart).
        #[serde(default, skip_serializing_if = "is_zero")]
        cache_write_tokens: u64,
        /// The scopes the requests belonged to (`{"org": "initech"}`), for metering by scope.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        scopes: BTreeMap<String, String>,
    },
    /// Requests refused by fusebox (the reply's `x-fusebox-reason`).
    Denial { tenant: String, reason: String, minute: u64, count: u64 },
    /// Requests a shadowed limit would have refused (they passed), by the reason it would have given.
    ShadowDenial { tenant: String, reason: String, minute: u64, count: u64 },
    /// A breaker state change (tenant, or agent run with `run_id`).
    Transition {
        tenant: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_id: Option<String>,
        from: Phase,
        to: Phase,
        at_ms: u64,
        /// What tripped it: a tenant metric (`tokens_60s`) or a run limit (`run_steps`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metric: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        threshold: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        observed: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        open_until_ms: Option<u64>,
        /// The route tier whose breaker this is (a route rule with a `tier` of its own); `None`
        /// for the tenant's own breaker.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
    },
    /// A tenant passed its tier's warn ratio on a metric (highest percent seen in the minute).
    Warning { tenant: String, metric: String, percent: u64, minute: u64 },
}

impl Event {
    /// A request that ended: one request with the tokens it is charged (see
    /// `crate::admission::Charge`), on the model its response named.
    pub fn usage(a: &UsageOf<'_>, model: Option<&str>, usage: Usage, cache: CacheTokens, now_ms: u64) -> Event {
        let cache = cache.within(usage.input_tokens);
        Event::Usage {
            tenant: a.tenant.to_string(),
            model: model.unwrap_or_default().to_string(),
            route: a.route.to_string(),
            run_id: a.run_id.map(str::to_string),
            // 0: no response headers came (reset, timeout).
            status: a.status.unwrap_or(0),
            minute: minute_of(now_ms),
            requests: 1,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cache_read_tokens: cache.read,
            cache_write_tokens: cache.write,
            scopes: a.scopes.iter().map(|m| (m.scope.clone(), m.value.clone())).collect(),
        }
    }

    /// A refusal, by its `x-fusebox-reason`.
    pub fn denial(tenant: &str, reason: &str, now_ms: u64) -> Event {
        Event::Denial { tenant: tenant.to_string(), reason: reason.to_string(), minute: minute_of(now_ms), count: 1 }
    }

    /// A request a shadowed limit would have refused, by that refusal's reason.
    pub fn shadow_denial(tenant: &str, reason: &str, now_ms: u64) -> Event {
        Event::ShadowDenial {
            tenant: tenant.to_string(),
            reason: reason.to_string(),
            minute: minute_of(now_ms),
            count: 1,
        }
    }

    /// A breaker transition of `tenant`'s own breaker, or of its route tier `scope`'s.
    pub fn transition(tenant: &str, scope: Option<&str>, t: &Transition) -> Event {
        Event::Transition {
            tenant: tenant.to_string(),
            run_id: None,
            from: t.from,
            to: t.to,
            at_ms: t.at_ms,
            metric: t.trip.map(|trip| trip.metric.as_str().to_string()),
            threshold: t.trip.map(|trip| trip.threshold),
            observed: t.trip.map(|trip| trip.observed),
            open_until_ms: t.open_until_ms,
            scope: scope.map(str::to_string),
        }
    }

    /// An agent run that went over one of its limits (it stays refused until it expires).
    pub fn run_trip(tenant: &str, run_id: &str, trip: &RunDenied, now_ms: u64) -> Event {
        Event::Transition {
            tenant: tenant.to_string(),
            run_id: Some(run_id.to_string()),
            from: Phase::Closed,
            to: Phase::Open,
            at_ms: now_ms,
            metric: Some(trip.limit.as_str().to_string()),
            threshold: Some(trip.threshold),
            observed: Some(trip.observed),
            open_until_ms: None,
            scope: None,
        }
    }

    /// A warn-ratio crossing.
    pub fn warning(tenant: &str, w: Warning, now_ms: u64) -> Event {
        Event::Warning {
            tenant: tenant.to_string(),
            metric: w.name.to_string(),
            percent: w.percent,
            minute: minute_of(now_ms),
        }
    }
}

/// Whose usage an [`Event::usage`] reports.
#[derive(Debug, Clone, Copy)]
pub struct UsageOf<'a> {
    pub tenant: &'a str,
    /// The route rule's label.
    pub route: &'a str,
    pub run_id: Option<&'a str>,
    /// The response status; `None` when no response headers came.
    pub status: Option<u16>,
    /// The scopes the request belonged to.
    pub scopes: &'a [Membership],
}

/// What two events must share to be merged into one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum MergeKey {
    Usage {
        tenant: String,
        model: String,
        route: String,
        run_id: Option<String>,
        status: u16,
        minute: u64,
        scopes: BTreeMap<String, String>,
    },
    Denial {
        tenant: String,
        reason: String,
        minute: u64,
        shadow: bool,
    },
    Warning {
        tenant: String,
        metric: String,
        minute: u64,
    },
}

impl Event {
    fn merge_key(&self) -> Option<MergeKey> {
        match self {
            Event::Usage { tenant, model, route, run_id, status, minute, scopes, .. } => Some(MergeKey::Usage {
                tenant: tenant.clone(),
                model: model.clone(),
                route: route.clone(),
                run_id: run_id.clone(),
                status: *status,
                minute: *minute,
                scopes: scopes.clone(),
            }),
            Event::Denial { tenant, reason, minute, .. } => Some(MergeKey::Denial {
                tenant: tenant.clone(),
                reason: reason.clone(),
                minute: *minute,
                shadow: false,
            }),
            Event::ShadowDenial { tenant, reason, minute, .. } => {
                Some(MergeKey::Denial { tenant: tenant.clone(), reason: reason.clone(), minute: *minute, shadow: true })
            }
            Event::Warning { tenant, metric, minute, .. } => {
                Some(MergeKey::Warning { tenant: tenant.clone(), metric: metric.clone(), minute: *minute })
            }
            Event::Transition { .. } => None,
        }
    }

    /// Adds `other` (with the same merge key) into `self`.
    fn absorb(&mut self, other: &Event) {
        match (self, other) {
            (
                Event::Usage { requests, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, .. },
                Event::Usage {
                    requests: r,
                    input_tokens: i,
                    output_tokens: o,
                    cache_read_tokens: cr,
                    cache_write_tokens: cw,
                    ..
                },
            ) => {
                *requests = requests.saturating_add(*r);
                *input_tokens = input_tokens.saturating_add(*i);
                *output_tokens = output_tokens.saturating_add(*o);
                *cache_read_tokens = cache_read_tokens.saturating_add(*cr);
                *cache_write_tokens = cache_write_tokens.saturating_add(*cw);
            }
            (Event::Denial { count, .. }, Event::Denial { count: c, .. })
            | (Event::ShadowDenial { count, .. }, Event::ShadowDenial { count: c, .. }) => {
                *count = count.saturating_add(*c)
            }
            (Event::Warning { percent, .. }, Event::Warning { percent: p, .. }) => *percent = (*percent).max(*p),
            _ => {}
        }
    }
}

/// A bounded, merging FIFO of events.
#[derive(Debug)]
pub struct Backlog {
    events: VecDeque<Event>,
    /// Absolute sequence number of `events[0]`.
    front_seq: u64,
    /// Where the still-mergeable event of each key sits (absolute sequence number).
    index: HashMap<MergeKey, u64>,
    max_events: usize,
    dropped: u64,
    /// `dropped` as of the last [`Backlog::newly_dropped`].
    dropped_seen: u64,
}

impl Backlog {
    pub fn new(max_events: usize) -> Backlog {
        Backlog {
            events: VecDeque::new(),
            front_seq: 0,
            index: HashMap::new(),
            max_events: max_events.max(1),
            dropped: 0,
            dropped_seen: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Events dropped because the backlog was full, since it was created.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Events dropped since the last call (for a counter).
    pub fn newly_dropped(&mut self) -> u64 {
        let new = self.dropped - self.dropped_seen;
        self.dropped_seen = self.dropped;
        new
    }

    pub fn push(&mut self, event: Event) {
        let key = event.merge_key();
        if let Some(key) = &key {
            let slot = self.index.get(key).and_then(|seq| seq.checked_sub(self.front_seq));
            if let Some(existing) = slot.and_then(|i| usize::try_from(i).ok()).and_then(|i| self.events.get_mut(i)) {
                existing.absorb(&event);
                return;
            }
        }
        if self.events.len() >= self.max_events {
            self.events.pop_front();
            self.front_seq += 1;
            self.dropped += 1;
        }
        let seq = self.front_seq + self.events.len() as u64;
        self.events.push_back(event);
        if let Some(key) = key {
            self.index.insert(key, seq);
        }
    }

    /// Takes up to `max` of the oldest events (they can no longer absorb new ones).
    pub fn take(&mut self, max: usize) -> Vec<Event> {
        let n = max.min(self.events.len());
        let taken: Vec<Event> = self.events.drain(..n).collect();
        self.front_seq += n as u64;
        let front = self.front_seq;
        if self.events.is_empty() {
            self.index.clear();
        } else {
            self.index.retain(|_, seq| *seq >= front);
        }
        taken
    }
}

/// A batch as POSTed to control's `/v1/events`; control ignores a batch id it has seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub batch_id: String,
    /// Which Envoy sent it (its node id).
    pub source: String,
    /// Events the sender had to drop (backlog full) since it started.
    #[serde(default)]
    pub dropped: u64,
    pub events: Vec<Event>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(tenant: &str, minute: u64, input: u64, output: u64) -> Event {
        Event::Usage {
            tenant: tenant.into(),
            model: "gpt-4o".into(),
            route: "/v1/".into(),
            run_id: None,
            status: 200,
            minute,
            requests: 1,
            input_tokens: input,
            output_tokens: output,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            scopes: BTreeMap::new(),
        }
    }

    fn totals(events: &[Event]) -> (u64, u64, u64) {
        events.iter().fold((0, 0, 0), |acc, e| match e {
            Event::Usage { requests, input_tokens, output_tokens, .. } => {
                (acc.0 + requests, acc.1 + input_tokens, acc.2 + output_tokens)
            }
            _ => acc,
        })
    }

    #[test]
    fn like_usage_records_merge_into_one() {
        let mut b = Backlog::new(100);
        for _ in 0..1000 {
            b.push(usage("acme", 60, 10, 5));
        }
        b.push(usage("globex", 60, 1, 1));
        b.push(usage("acme", 120, 1, 1));
        assert_eq!(b.len(), 3);
        let events = b.take(10);
        assert_eq!(totals(&events), (1002, 10_002, 5002));
    }

    #[test]
    fn shadow_denials_merge_apart_from_real_denials_of_the_same_reason() {
        let mut b = Backlog::new(100);
        for _ in 0..3 {
            b.push(Event::denial("acme", "tokens_60s", 60_000));
            b.push(Event::shadow_denial("acme", "tokens_60s", 60_000));
        }
        b.push(Event::shadow_denial("acme", "tokens_60s", 60_000));
        let events = b.take(10);
        let count = |e: &Event| match e {
            Event::Denial { count, .. } => (*count, 0),
            Event::ShadowDenial { count, .. } => (0, *count),
            _ => (0, 0),
        };
        assert_eq!(events.iter().map(count).collect::<Vec<_>>(), [(3, 0), (0, 4)]);
        let wire = serde_json::to_value(&events[1]).unwrap();
        assert_eq!(wire["kind"], "shadow_denial");
    }

    #[test]
    fn transitions_are_never_merged() {
        let mut b = Backlog::new(100);
        let t = Event::Transition {
            tenant: "acme".into(),
            run_id: None,
            from: Phase::Closed,
            to: Phase::Open,
            at_ms: 1,
            metric: Some("tokens_60s".into()),
            threshold: Some(10),
            observed: Some(11),
            open_until_ms: Some(30_001),
            scope: None,
        };
        b.push(t.clone());
        b.push(t);
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn a_full_backlog_drops_the_oldest_and_counts_it() {
        let mut b = Backlog::new(3);
        for minute in 0..5 {
            b.push(usage("acme", minute * 60, 1, 1));
        }
        assert_eq!(b.len(), 3);
        assert_eq!(b.dropped(), 2);
        let kept: Vec<u64> = b
            .take(3)
            .iter()
            .filter_map(|e| match e {
                Event::Usage { minute, .. } => Some(*minute),
                _ => None,
            })
            .collect();
        assert_eq!(kept, vec![120, 180, 240]);
        assert_eq!(b.newly_dropped(), 2);
        for minute in 5..9 {
            b.push(usage("acme", minute * 60, 1, 1));
        }
        assert_eq!((b.dropped(), b.newly_dropped(), b.newly_dropped()), (3, 1, 0));
    }

    #[test]
    fn taken_events_no_longer_absorb_new_ones() {
        let mut b = Backlog::new(10);
        b.push(usage("acme", 60, 1, 1));
        let first = b.take(10);
        b.push(usage("acme", 60, 2, 2));
        assert_eq!(totals(&first), (1, 1, 1));
        assert_eq!(totals(&b.take(10)), (1, 2, 2));
    }

    #[test]
    fn merging_still_works_after_the_front_was_dropped_or_taken() {
        let mut b = Backlog::new(2);
        b.push(usage("a", 0, 1, 0));
        b.push(usage("b", 0, 1, 0));
        b.push(usage("c", 0, 1, 0)); // drops a
        b.push(usage("c", 0, 1, 0)); // merges into c
        b.push(usage("a", 0, 1, 0)); // a is new again; drops b
        assert_eq!(b.len(), 2);
        assert_eq!(totals(&b.take(1)), (2, 2, 0));
        b.push(usage("a", 0, 1, 0));
        assert_eq!(totals(&b.take(5)), (2, 2, 0));
    }

    #[test]
    fn warnings_keep_the_highest_percent_of_the_minute() {
        let mut b = Backlog::new(10);
        for percent in [55, 80, 60] {
            b.push(Event::Warning { tenant: "acme".into(), metric: "tokens_60s".into(), percent, minute: 60 });
        }
        assert_eq!(
            b.take(10),
            vec![Event::Warning { tenant: "acme".into(), metric: "tokens_60s".into(), percent: 80, minute: 60 }]
        );
    }

    #[test]
    fn events_round_trip_through_json() {
        let batch =
            Batch { batch_id: "n-1-1".into(), source: "n".into(), dropped: 0, events: vec![usage("acme", 60, 3, 4)] };
        let json = serde_json::to_string(&batch).unwrap();
        assert!(json.contains(r#""kind":"usage""#), "{json}");
        assert_eq!(serde_json::from_str::<Batch>(&json).unwrap(), batch);
    }

    #[test]
    fn a_transition_goes_on_the_wire_with_the_state_names_control_reads() {
        let t = Transition {
            from: Phase::HalfOpen,
            to: Phase::Open,
            at_ms: 5,
            trip: Some(crate::breaker::Trip { metric: crate::metric::Metric::Tokens60s, threshold: 10, observed: 11 }),
            open_until_ms: Some(9),
        };
        let json = serde_json::to_value(Event::transition("acme", Some("embeddings"), &t)).unwrap();
        assert_eq!(json["from"], "half_open");
        assert_eq!(json["to"], "open");
        assert_eq!(json["metric"], "tokens_60s");
        assert_eq!(json["scope"], "embeddings");
        let back: Event = serde_json::from_value(json).unwrap();
        assert!(matches!(back, Event::Transition { from: Phase::HalfOpen, to: Phase::Open, .. }));
        let unknown =
            serde_json::json!({"kind": "transition", "tenant": "a", "from": "ajar", "to": "open", "at_ms": 1});
        assert!(serde_json::from_value::<Event>(unknown).is_err(), "an unknown state name is refused");
    }

    #[test]
    fn a_run_trip_is_a_closed_to_open_transition_naming_the_run_and_its_limit() {
        let trip = RunDenied { limit: crate::run::RunLimit::Steps, threshold: 3, observed: 4 };
        let e = Event::run_trip("acme", "run-1", &trip, 7_000);
        let Event::Transition { run_id, from, to, metric, observed, at_ms, .. } = e else { panic!("{e:?}") };
        assert_eq!(run_id.as_deref(), Some("run-1"));
        assert_eq!((from, to, at_ms, observed), (Phase::Closed, Phase::Open, 7_000, Some(4)));
        assert_eq!(metric.as_deref(), Some("run_steps"));
    }
}
