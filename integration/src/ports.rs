//! The four ports a stack listens on: free ones for tests, the README's for `make run`.

use std::net::TcpListener;
use std::time::{SystemTime, UNIX_EPOCH};

/// A port that is free now, chosen below Linux's ephemeral range (32768+) so that the outgoing
/// connections of concurrently running tests cannot take it before our child binds it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
        ^ (u64::from(std::process::id()) << 20)
        ^ SEQ.fetch_add(0x9e37_79b9, Ordering::Relaxed);
    let mut x = seed | 1;
    for _ in 0..1000 {
        // xorshift: cheap, and different for every process and call.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = 20_000 + (x % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    0
}

#[derive(Debug, Clone)]
pub struct Ports {
    pub listen: u16,
    pub admin: u16,
    pub control: u16,
    pub mock: u16,
}

impl Ports {
    pub fn free() -> Ports {
        Ports { listen: free_port(), admin: free_port(), control: free_port(), mock: free_port() }
    }

    /// The fixed ports `make run` uses (README, quick start), each overridable by env.
    pub fn from_env() -> Ports {
        let port = |var: &str, default: u16| std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
        Ports {
            listen: port("FUSEBOX_LISTEN_PORT", 10000),
            admin: port("FUSEBOX_ADMIN_PORT", 9901),
            control: port("FUSEBOX_CONTROL_PORT", 8090),
            mock: port("FUSEBOX_MOCK_PORT", 18080),
        }
    }
}
