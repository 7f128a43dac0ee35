//! Per-Envoy credentials: each node (an Envoy, by the `node.id` its singleton reports) has a
//! token of its own, stored here only as its SHA-256. With node tokens configured, an event
//! batch is accepted only from a node token, and only for the node that token belongs to, so
//! a leaked token cannot speak for another Envoy and every event is attributable; the shared
//! filter token can then read the policy but not post events.

use super::lines::entries;
use fusebox_engine::identity::sha256;
use std::collections::HashMap;

#[derive(Debug, Clone, Default)]
pub struct NodeTokens {
    /// SHA-256 of a token -> the node it belongs to.
    by_digest: HashMap<[u8; 32], String>,
}

impl NodeTokens {
    /// Reads `<node id> <hex sha256 of its token>` lines (`#` comments and blank lines ignored;
    /// `fusebox-control hash-key` prints the digest). Errors name the line.
    pub fn parse(text: &str) -> Result<NodeTokens, String> {
        let mut by_digest = HashMap::new();
        for line in entries::<1>(text, "<node id>")? {
            let [node] = line.fields;
            let node = node.to_string();
            if node.len() > 256 || !node.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!("line {}: node ids are 1-256 printable characters", line.at));
            }
            if by_digest.insert(line.digest, node).is_some() {
                return Err(format!("line {}: the same token is listed twice", line.at));
            }
        }
        Ok(NodeTokens { by_digest })
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    /// The node a token belongs to (looked up by digest: no comparison of secrets).
    pub fn node_of(&self, token: &str) -> Option<&str> {
        self.by_digest.get(&sha256(token.as_bytes())).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fusebox_engine::identity::hex;

    #[test]
    fn a_token_belongs_to_the_node_it_is_listed_for() {
        let text = format!(
            "# gateway fleet\n gateway-a {}\n\ngateway-b {} # second\n",
            hex(&sha256(b"token-a")),
            hex(&sha256(b"token-b"))
        );
        let nodes = NodeTokens::parse(&text).unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes.node_of("token-a"), Some("gateway-a"));
        assert_eq!(nodes.node_of("token-b"), Some("gateway-b"));
        assert_eq!(nodes.node_of("token-c"), None);
    }

    #[test]
    fn bad_lines_are_refused_naming_the_line() {
        let digest = hex(&sha256(b"t"));
        assert!(NodeTokens::parse("gateway-a").unwrap_err().starts_with("line 1"));
        assert!(NodeTokens::parse(&format!("a {digest} extra")).unwrap_err().starts_with("line 1"));
        assert!(NodeTokens::parse("\na nothex").unwrap_err().starts_with("line 2"));
        let twice = format!("a {digest}\nb {digest}");
        assert!(NodeTokens::parse(&twice).unwrap_err().contains("twice"));
        assert!(NodeTokens::parse("").unwrap().is_empty());
    }
}
