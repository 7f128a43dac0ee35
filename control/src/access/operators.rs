//! Named operators and their roles. Each operator has a token of their own, listed in the
//! operators file as `<name> <role> <sha256 hex of the token>`; control keeps only digests.
//! A name may be listed with several tokens (the old and the new one while rotating), always
//! with one role. The file is read again when it changes (`Source::watch`), so operators are
//! added, rotated and removed without a restart.

use super::lines::entries;
use fusebox_engine::identity::sha256;
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// What an operator may do; each role may do everything the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Every read: policy, tenants, usage, audit, the dashboard.
    Viewer,
    /// Also the breaker: the kill switch, holding closed, reset.
    Operator,
    /// Also the policy: tiers, tenants, identity, prices.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Option<Role> {
        [Role::Viewer, Role::Operator, Role::Admin].into_iter().find(|r| r.as_str() == s)
    }
}

/// A verified caller with a name: the audit log's actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Operator {
    pub name: String,
    pub role: Role,
}

/// Names are what the audit log shows: short, printable, no spaces.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Operators {
    by_digest: HashMap<[u8; 32], Operator>,
}

impl Operators {
    /// Reads the operators file. Errors name the line.
    pub fn parse(text: &str) -> Result<Operators, String> {
        let mut by_digest = HashMap::new();
        let mut roles: HashMap<&str, Role> = HashMap::new();
        for line in entries::<2>(text, "<name> <viewer|operator|admin>")? {
            let [name, role] = line.fields;
            let at = line.at;
            if !valid_name(name) {
                return Err(format!("line {at}: names are 1-64 of [A-Za-z0-9-_.@]"));
            }
            let role =
                Role::parse(role).ok_or_else(|| format!("line {at}: the role must be viewer, operator or admin"))?;
            if roles.insert(name, role).is_some_and(|r| r != role) {
                return Err(format!("line {at}: '{name}' is listed with two roles"));
            }
            let operator = Operator { name: name.to_string(), role };
            if by_digest.insert(line.digest, operator).is_some() {
                return Err(format!("line {at}: the same token is listed twice"));
            }
        }
        Ok(Operators { by_digest })
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// The operator a token belongs to (looked up by digest: no comparison of secrets).
    pub fn who(&self, token: &str) -> Option<&Operator> {
        self.by_digest.get(&sha256(token.as_bytes()))
    }
}

/// The operators in force, and the file they come from (if any).
#[derive(Debug, Clone, Default)]
pub struct Source {
    path: Option<PathBuf>,
    current: Arc<RwLock<Arc<Operators>>>,
}

impl Source {
    /// Operators given once, never reread (tests, or none at all).
    pub fn fixed(operators: Operators) -> Source {
        Source { path: None, current: Arc::new(RwLock::new(Arc::new(operators))) }
    }

    /// Reads the operators file at `path`; `watch` keeps it current.
    pub fn file(path: PathBuf) -> Result<Source, String> {
        let operators = read(&path)?;
        Ok(Source { path: Some(path), current: Arc::new(RwLock::new(Arc::new(operators))) })
    }

    pub fn current(&self) -> Arc<Operators> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Reads the file again; `Ok(true)` when what it says changed. A file that does not read
    /// or parse leaves the operators in force as they were.
    pub fn reload(&self) -> Result<bool, String> {
        let Some(path) = &self.path else { return Ok(false) };
        // A file being rewritten in place (truncated, then written) reads empty for a moment:
        // that is not "no operators" (write a comment line to remove them all).
        if std::fs::metadata(path).is_ok_and(|m| m.len() == 0) {
            return Ok(false);
        }
        let operators = read(path)?;
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if **current == operators {
            return Ok(false);
        }
        *current = Arc::new(operators);
        Ok(true)
    }

    /// Rereads the file every `every` for the life of the service, logging each change and
    /// each new problem once.
    pub async fn watch(self, every: std::time::Duration) {
        if self.path.is_none() {
            return;
        }
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last_error = None;
        loop {
            tick.tick().await;
            let source = self.clone();
            let result = tokio::task::spawn_blocking(move || source.reload()).await.unwrap_or(Ok(false));
            match result {
                Ok(changed) => {
                    if changed {
                        tracing::info!("operators file reread: {} operator tokens", self.current().len());
                    }
                    last_error = None;
                }
                Err(e) if last_error.as_ref() != Some(&e) => {
                    tracing::warn!("operators file not reread, the operators in force stay: {e}");
                    last_error = Some(e);
                }
                Err(_) => {}
            }
        }
    }
}

fn read(path: &std::path::Path) -> Result<Operators, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Operators::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fusebox_engine::identity::hex;

    fn line(name: &str, role: &str, token: &str) -> String {
        format!("{name} {role} {}\n", hex(&sha256(token.as_bytes())))
    }

    #[test]
    fn a_token_names_its_operator_and_role() {
        let text = format!("# on call\n{}{}", line("alice", "admin", "ta"), line("bob", "viewer", "tb"));
        let ops = Operators::parse(&text).unwrap();
        assert_eq!(ops.who("ta"), Some(&Operator { name: "alice".into(), role: Role::Admin }));
        assert_eq!(ops.who("tb").map(|o| o.role), Some(Role::Viewer));
        assert_eq!(ops.who("tc"), None);
    }

    #[test]
    fn one_operator_may_hold_two_tokens_while_rotating_but_not_two_roles() {
        let two = format!("{}{}", line("alice", "operator", "old"), line("alice", "operator", "new"));
        let ops = Operators::parse(&two).unwrap();
        assert_eq!(ops.who("old"), ops.who("new"));
        let roles = format!("{}{}", line("alice", "operator", "old"), line("alice", "admin", "new"));
        assert!(Operators::parse(&roles).unwrap_err().contains("two roles"));
    }

    #[test]
    fn bad_lines_are_refused_naming_the_line() {
        assert!(Operators::parse(&line("alice", "root", "t")).unwrap_err().contains("role"));
        assert!(Operators::parse(&format!("\n{}", line("al ice", "admin", "t"))).unwrap_err().starts_with("line 2"));
        assert!(Operators::parse(&line("al\u{1b}[2J", "admin", "t")).unwrap_err().contains("names"));
        let twice = format!("{}{}", line("a", "admin", "t"), line("b", "viewer", "t"));
        assert!(Operators::parse(&twice).unwrap_err().contains("twice"));
    }

    #[test]
    fn roles_include_what_the_roles_before_them_may_do() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
    }

    #[test]
    fn a_reload_keeps_the_operators_in_force_when_the_file_goes_bad() {
        let dir = std::env::temp_dir().join(format!("fusebox-operators-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("operators");
        std::fs::write(&path, line("alice", "admin", "t1")).unwrap();
        let source = Source::file(path.clone()).unwrap();
        assert_eq!(source.reload(), Ok(false), "nothing changed");
        std::fs::write(&path, line("alice", "admin", "t2")).unwrap();
        assert_eq!(source.reload(), Ok(true));
        assert!(source.current().who("t1").is_none() && source.current().who("t2").is_some());
        std::fs::write(&path, "alice admin nothex\n").unwrap();
        assert!(source.reload().is_err());
        assert!(source.current().who("t2").is_some(), "a bad file changes nothing");
        // Caught between truncation and write, a file reads empty: that removes nobody.
        std::fs::write(&path, "").unwrap();
        assert_eq!(source.reload(), Ok(false));
        assert!(source.current().who("t2").is_some(), "an empty read is a file being written");
        std::fs::write(&path, "# nobody\n").unwrap();
        assert_eq!(source.reload(), Ok(true));
        assert!(source.current().who("t2").is_none(), "a comment line removes everyone");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
