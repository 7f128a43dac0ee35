//! The floor of any in-Envoy token counter (`{"mode": "floor"}`): the least such a filter must
//! do per request. It reads the request headers in one call (to know whose request it is), reads
//! each response body chunk and finds the JSON usage in it (`"total_tokens":`), and at the end
//! adds the tokens to the tenant's counter in shared data with one read and one
//! compare-and-swap. No policy, no identity check, no windows: whatever fusebox does beyond this
//! is what its features cost.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType, Status};

const NEEDLE: &[u8] = b"\"total_tokens\":";
/// Bytes kept from the end of one chunk, so a needle split across two chunks is still found.
const CARRY: usize = 32;

#[derive(Default)]
pub struct Floor {
    key: String,
    carry: Vec<u8>,
    tokens: u64,
}

impl Floor {
    /// The digits after the needle in `bytes`, if the needle is there.
    fn scan(&mut self, bytes: &[u8]) {
        let Some(at) = bytes.windows(NEEDLE.len()).position(|w| w == NEEDLE) else { return };
        let rest = bytes.get(at + NEEDLE.len()..).unwrap_or_default();
        let digits = rest.iter().skip_while(|b| b.is_ascii_whitespace()).take_while(|b| b.is_ascii_digit());
        self.tokens = digits.fold(0u64, |n, d| n.saturating_mul(10).saturating_add(u64::from(d - b'0')));
    }

    /// One read and one compare-and-swap of the tenant's counter (retried on a lost race).
    fn settle(&self) {
        for _ in 0..8 {
            let Ok((value, cas)) = hostcalls::get_shared_data(&self.key) else { return };
            let old = value.and_then(|v| v.try_into().ok()).map_or(0, u64::from_le_bytes);
            let new = old.saturating_add(self.tokens).to_le_bytes();
            match hostcalls::set_shared_data(&self.key, Some(&new), cas) {
                Err(Status::CasMismatch) => continue,
                _ => return,
            }
        }
    }
}

impl Context for Floor {}
impl HttpContext for Floor {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let headers = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default();
        let tenant = headers.iter().find(|(k, _)| k == "authorization").map(|(_, v)| v.as_slice()).unwrap_or_default();
        // The token's last bytes tell the bench's tenants apart.
        let tail = tenant.get(tenant.len().saturating_sub(16)..).unwrap_or_default();
        self.key = format!("floor/{}", String::from_utf8_lossy(tail));
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if body_size > 0 {
            if let Ok(Some(chunk)) = hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size) {
                let mut joined = std::mem::take(&mut self.carry);
                joined.extend_from_slice(&chunk);
                self.scan(&joined);
                self.carry = joined.get(joined.len().saturating_sub(CARRY)..).unwrap_or_default().to_vec();
            }
        }
        if end_of_stream {
            self.settle();
        }
        Action::Continue
    }
}
