//! The throughput scenarios `make bench` runs, in table order: which filters, workers,
//! tokens and protocol each one uses.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Filters {
    None,
    Noop,
    /// The no-op filter making 20 hostcalls a request.
    NoopX20,
    /// The floor of a token counter (bench/noop in its floor mode).
    Floor,
    Native,
    Fusebox,
    /// fusebox with the singleton's fleet sync on (every 250 ms, against control).
    FuseboxFleet,
    /// fusebox whose singleton sweeps the tenant state table every 5 s (the memory figure).
    FuseboxQuickSweep,
    /// fusebox built from another commit (`BENCH_BASELINE_WASM`), under the same load.
    FuseboxBaseline,
    /// Not an Envoy: the LiteLLM proxy (see `litellm.rs`), run only with `BENCH_PEERS=litellm`.
    LiteLlm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tokens {
    /// One token for each of this many tenants.
    Hs256(u32),
    Rs256(u32),
    /// This many distinct tokens (each its own `jti`) shared by 10 tenants: every request
    /// misses the verified-token cache while the tenants' states stay hot.
    Hs256Fresh(u32),
    /// One token for each of this many tenants, each in three limited scopes of the bench
    /// policy besides its tenant: an org (of 2), a team (of 5) and a user (its own).
    Hs256Scoped(u32),
    /// The LiteLLM peer's master key.
    LiteLlmKey,
}

pub(crate) struct Scenario {
    pub(crate) key: &'static str,
    pub(crate) what: &'static str,
    pub(crate) filters: Filters,
    pub(crate) workers: u32,
    pub(crate) tokens: Tokens,
    pub(crate) http2: bool,
}

pub(crate) const fn scenario(key: &'static str, what: &'static str, filters: Filters, tokens: Tokens) -> Scenario {
    Scenario { key, what, filters, workers: 1, tokens, http2: false }
}

/// The throughput scenarios, in table order.
pub(crate) const SCENARIOS: [Scenario; 20] = [
    scenario("bare", "Envoy, router only", Filters::None, Tokens::Hs256(10)),
    scenario("noop", "no-op Wasm filter reading one header", Filters::Noop, Tokens::Hs256(10)),
    scenario("floor", "token-counter floor: headers, usage from the body, one CAS", Filters::Floor, Tokens::Hs256(10)),
    scenario("noop_x20", "no-op Wasm filter making 20 header reads", Filters::NoopX20, Tokens::Hs256(10)),
    scenario("native", "jwt_authn HS256 + local_ratelimit per tenant", Filters::Native, Tokens::Hs256(10)),
    scenario("fusebox", "fusebox, HS256, 10 tenants, every feature on", Filters::Fusebox, Tokens::Hs256(10)),
    scenario(
        "baseline",
        "fusebox built from BENCH_BASELINE_WASM, 10 tenants",
        Filters::FuseboxBaseline,
        Tokens::Hs256(10),
    ),
    scenario(
        "baseline_100k",
        "fusebox built from BENCH_BASELINE_WASM, 100 000 tenants",
        Filters::FuseboxBaseline,
        Tokens::Hs256(100_000),
    ),
    scenario("fusebox_rs256", "fusebox, RS256 (verified-token cache)", Filters::Fusebox, Tokens::Rs256(10)),
    scenario(
        "fusebox_scopes",
        "fusebox, 10 tenants each in 4 limited scopes",
        Filters::Fusebox,
        Tokens::Hs256Scoped(10),
    ),
    scenario("fusebox_1k", "fusebox, 1 000 distinct tenants", Filters::Fusebox, Tokens::Hs256(1_000)),
    scenario("fusebox_100k", "fusebox, 100 000 distinct tenants", Filters::Fusebox, Tokens::Hs256(100_000)),
    scenario(
        "fusebox_miss",
        "fusebox, 10 tenants, 100 000 distinct tokens",
        Filters::Fusebox,
        Tokens::Hs256Fresh(100_000),
    ),
    scenario("fusebox_fleet", "fusebox, fleet sync on, 10 tenants", Filters::FuseboxFleet, Tokens::Hs256(10)),
    scenario(
        "fusebox_fleet_100k",
        "fusebox, fleet sync on, 100 000 tenants",
        Filters::FuseboxFleet,
        Tokens::Hs256(100_000),
    ),
    Scenario { workers: 2, ..scenario("noop_2w", "no-op Wasm filter, 2 workers", Filters::Noop, Tokens::Hs256(10)) },
    Scenario {
        workers: 2,
        ..scenario("fusebox_2w", "fusebox, 2 workers, 10 tenants", Filters::Fusebox, Tokens::Hs256(10))
    },
    Scenario {
        http2: true,
        ..scenario("noop_h2", "no-op Wasm filter, HTTP/2 (h2load)", Filters::Noop, Tokens::Hs256(1))
    },
    Scenario {
        http2: true,
        ..scenario("fusebox_h2", "fusebox, HTTP/2 (h2load), 1 tenant", Filters::Fusebox, Tokens::Hs256(1))
    },
    scenario("litellm", "LiteLLM proxy, 1 worker, deployment rpm/tpm", Filters::LiteLlm, Tokens::LiteLlmKey),
];
