//! The fast upstream of the throughput scenarios: answers every HTTP/1.1 request with the same
//! chat completion, on kept-alive connections, doing as little work as possible per request so
//! that the load generator's core has room to saturate the Envoy under test. (An Envoy answering
//! with `direct_response` costs as much as the proxy in front of it, and closes the connection
//! when it answers before reading a request body.)

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

/// Serves until the process is killed.
pub fn serve(port: u16, body: &str) -> Result<(), String> {
    let listener = TcpListener::bind(("127.0.0.1", port)).map_err(|e| format!("bind {port}: {e}"))?;
    let response: &'static [u8] = Box::leak(
        format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len())
            .into_bytes()
            .into_boxed_slice(),
    );
    for conn in listener.incoming().flatten() {
        std::thread::spawn(move || answer(conn, response));
    }
    Ok(())
}

fn answer(mut conn: TcpStream, response: &[u8]) {
    let _ = conn.set_nodelay(true);
    let mut pending = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        while let Some(len) = request_len(&pending) {
            pending.drain(..len);
            if conn.write_all(response).is_err() {
                return;
            }
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => pending.extend_from_slice(chunk.get(..n).unwrap_or_default()),
        }
    }
}

/// The length of the first complete request in `buf` (headers and body, by `content-length`
/// or chunked), or `None` until it has all arrived.
pub fn request_len(buf: &[u8]) -> Option<usize> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(buf.get(..head_end)?).to_ascii_lowercase();
    let header =
        |name: &str| head.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(|v| v.trim().to_string()));
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        return chunked_len(buf.get(head_end..)?).map(|n| head_end + n);
    }
    let body = header("content-length").and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
    (buf.len() >= head_end + body).then_some(head_end + body)
}

/// The length of a complete chunked body (without trailers), or `None` if incomplete.
fn chunked_len(body: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let line_end = at + body.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(body.get(at..line_end)?).to_string();
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        at = line_end + 2 + size + 2;
        if body.len() < at {
            return None;
        }
        if size == 0 {
            return Some(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_complete_once_its_body_has_arrived() {
        let req = b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody";
        assert_eq!(request_len(req), Some(req.len()));
        assert_eq!(request_len(&req[..req.len() - 1]), None);
        assert_eq!(request_len(b"GET / HTTP/1.1\r\nhost: x\r\n\r\nGET"), Some(27));
        assert_eq!(request_len(b"GET / HTTP/1.1\r\nhost: x\r\n"), None);
    }

    #[test]
    fn chunked_bodies_end_at_the_zero_chunk() {
        let req = b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n4\r\nbody\r\na\r\n0123456789\r\n0\r\n\r\nNEXT";
        assert_eq!(request_len(req), Some(req.len() - 4));
        assert_eq!(request_len(&req[..req.len() - 7]), None);
    }
}
