//! The keys an Envoy syncs: those its workers used recently, bounded, each dropped once idle
//! past the longest window (its usage stays in control, which keeps budgets until they end).

use std::collections::HashMap;

/// A key not used here for this long stops being synced (the 60 s window plus a margin).
pub const ACTIVE_FOR_MS: u64 = 65_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    last_seen_ms: u64,
    /// The last fleet usage written into this key's state was not empty, so an empty answer
    /// must still be written (to clear it); otherwise an empty answer costs no write.
    holds_fleet: bool,
}

#[derive(Debug)]
pub struct ActiveKeys {
    keys: HashMap<String, Entry>,
    max: usize,
    refused: u64,
}

impl ActiveKeys {
    pub fn new(max: usize) -> ActiveKeys {
        ActiveKeys { keys: HashMap::new(), max, refused: 0 }
    }

    /// Marks `key` as used at `now_ms`. A new key when the table is full is refused (and
    /// counted): that key is then counted by this Envoy alone until others go idle.
    pub fn touch(&mut self, key: &str, now_ms: u64) -> bool {
        if let Some(e) = self.keys.get_mut(key) {
            e.last_seen_ms = e.last_seen_ms.max(now_ms);
            return true;
        }
        if self.keys.len() >= self.max {
            self.refused = self.refused.saturating_add(1);
            return false;
        }
        self.keys.insert(key.to_string(), Entry { last_seen_ms: now_ms, holds_fleet: false });
        true
    }

    /// Drops the keys idle for [`ACTIVE_FOR_MS`]; returns how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let before = self.keys.len();
        self.keys.retain(|_, e| now_ms.saturating_sub(e.last_seen_ms) < ACTIVE_FOR_MS);
        before - self.keys.len()
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// New keys refused so far because the table was full.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Records what an answer for `key` holds; returns whether it must be written to the
    /// key's state (anything not empty, or an empty answer replacing one that was not).
    pub fn answered(&mut self, key: &str, empty: bool) -> bool {
        match self.keys.get_mut(key) {
            Some(e) => {
                let write = !empty || e.holds_fleet;
                e.holds_fleet = !empty;
                write
            }
            None => !empty,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_idle_past_the_longest_window_stop_being_synced() {
        let mut a = ActiveKeys::new(10);
        a.touch("acme", 0);
        a.touch("globex", 30_000);
        assert_eq!(a.expire(ACTIVE_FOR_MS), 1);
        assert_eq!(a.keys().collect::<Vec<_>>(), ["globex"]);
        a.touch("globex", ACTIVE_FOR_MS + 20_000);
        assert_eq!(a.expire(ACTIVE_FOR_MS + 80_000), 0, "a use renews the key");
    }

    #[test]
    fn a_full_table_refuses_new_keys_but_keeps_renewing_known_ones() {
        let mut a = ActiveKeys::new(2);
        assert!(a.touch("a", 0) && a.touch("b", 0));
        assert!(!a.touch("c", 0));
        assert!(a.touch("a", 5));
        assert_eq!((a.len(), a.refused()), (2, 1));
    }

    #[test]
    fn an_empty_answer_is_written_only_to_clear_what_the_last_one_left() {
        let mut a = ActiveKeys::new(10);
        a.touch("acme", 0);
        assert!(!a.answered("acme", true), "nothing there to clear");
        assert!(a.answered("acme", false));
        assert!(a.answered("acme", true), "clears the fleet usage written before");
        assert!(!a.answered("acme", true));
    }
}
