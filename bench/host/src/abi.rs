//! The host side of the proxy-wasm ABI, natively: the functions fusebox-filter imports,
//! defined over one in-process [`Host`] (headers, bodies, shared data with CAS, a clock) and
//! counted by name, so a request's hostcalls are known exactly. Buffers handed to the filter
//! are allocated with the global allocator, as the SDK frees them (`Vec::from_raw_parts`).

// Every `unsafe extern "C"` here has one contract, the ABI's: the filter passes pointers to
// memory it owns, sized as it says, and out-pointers it can read back.
#![allow(clippy::missing_safety_doc)]

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

pub const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
const BAD_ARGUMENT: u32 = 2;
const CAS_MISMATCH: u32 = 8;

const REQUEST_HEADERS: u32 = 0;
const RESPONSE_HEADERS: u32 = 2;
const REQUEST_BODY: u32 = 0;
const RESPONSE_BODY: u32 = 1;
const PLUGIN_CONFIGURATION: u32 = 7;

pub type Headers = Vec<(String, Vec<u8>)>;

#[derive(Default)]
pub struct Host {
    pub request_headers: Headers,
    pub response_headers: Headers,
    pub request_body: Vec<u8>,
    pub response_body: Vec<u8>,
    pub plugin_configuration: Vec<u8>,
    shared: HashMap<Vec<u8>, (Vec<u8>, u32)>,
    next_cas: u32,
    next_metric: u32,
    pub now_ns: u64,
    /// Hostcalls made, by name.
    pub calls: BTreeMap<&'static str, u64>,
    pub local_replies: Vec<u32>,
    pub enqueued_bytes: u64,
}

thread_local! {
    pub static HOST: RefCell<Host> = RefCell::new(Host::default());
}

fn with<T>(name: &'static str, f: impl FnOnce(&mut Host) -> T) -> T {
    HOST.with(|h| {
        let mut h = h.borrow_mut();
        *h.calls.entry(name).or_default() += 1;
        f(&mut h)
    })
}

/// # Safety
/// `ptr` must point to `len` readable bytes (or `len` be 0).
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if len == 0 || ptr.is_null() {
        &[]
    } else {
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Hands `data` to the filter as the SDK expects: a buffer it then owns, or null when empty.
///
/// # Safety
/// Both out pointers must be writable.
unsafe fn give(data: &[u8], out: *mut *mut u8, out_size: *mut usize) {
    unsafe {
        if data.is_empty() {
            *out = std::ptr::null_mut();
            *out_size = 0;
        } else {
            let boxed: Box<[u8]> = data.into();
            *out_size = boxed.len();
            *out = Box::into_raw(boxed).cast::<u8>();
        }
    }
}

fn serialize(map: &Headers) -> Vec<u8> {
    let mut out = (map.len() as u32).to_le_bytes().to_vec();
    for (k, v) in map {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in map {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

fn map_of(h: &mut Host, map: u32) -> Option<&mut Headers> {
    match map {
        REQUEST_HEADERS => Some(&mut h.request_headers),
        RESPONSE_HEADERS => Some(&mut h.response_headers),
        _ => None,
    }
}

#[no_mangle]
pub unsafe extern "C" fn proxy_log(level: u32, data: *const u8, size: usize) -> u32 {
    // Warnings and errors (the SDK's panic hook among them) are worth seeing.
    if level >= 3 {
        eprintln!("filter: {}", text(unsafe { bytes(data, size) }));
    }
    with("log", |_| OK)
}

#[no_mangle]
pub unsafe extern "C" fn proxy_get_log_level(level: *mut u32) -> u32 {
    with("get_log_level", |_| unsafe { *level = 2 });
    OK
}

#[no_mangle]
pub unsafe extern "C" fn proxy_get_current_time_nanoseconds(t: *mut u64) -> u32 {
    let now = with("get_current_time", |h| h.now_ns);
    unsafe { *t = now };
    OK
}

#[no_mangle]
pub extern "C" fn proxy_set_tick_period_milliseconds(_period: u32) -> u32 {
    with("set_tick_period", |_| OK)
}

#[no_mangle]
pub unsafe extern "C" fn proxy_get_buffer_bytes(
    buffer: u32,
    start: usize,
    max: usize,
    out: *mut *mut u8,
    out_size: *mut usize,
) -> u32 {
    with("get_buffer", |h| {
        let all: &[u8] = match buffer {
            REQUEST_BODY => &h.request_body,
            RESPONSE_BODY => &h.response_body,
            PLUGIN_CONFIGURATION => &h.plugin_configuration,
            _ => &[],
        };
        let from = start.min(all.len());
        let to = from.saturating_add(max).min(all.len());
        unsafe { give(all.get(from..to).unwrap_or_default(), out, out_size) };
        OK
    })
}

#[no_mangle]
pub unsafe extern "C" fn proxy_set_buffer_bytes(
    buffer: u32,
    start: usize,
    size: usize,
    data: *const u8,
    len: usize,
) -> u32 {
    let new = unsafe { bytes(data, len) }.to_vec();
    with("set_buffer", |h| {
        let body = match buffer {
            REQUEST_BODY => &mut h.request_body,
            RESPONSE_BODY => &mut h.response_body,
            _ => return BAD_ARGUMENT,
        };
        let from = start.min(body.len());
        let to = from.saturating_add(size).min(body.len());
        body.splice(from..to, new);
        OK
    })
}

#[no_mangle]
pub unsafe extern "C" fn proxy_get_header_map_pairs(map: u32, out: *mut *mut u8, out_size: *mut usize) -> u32 {
    with("get_header_map", |h| {
        let data = map_of(h, map).map(|m| serialize(m)).unwrap_or_default();
        unsafe { give(&data, out, out_size) };
        OK
    })
}

#[no_mangle]
pub extern "C" fn proxy_set_header_map_pairs(_map: u32, _data: *const u8, _size: usize) -> u32 {
    with("set_header_map", |_| BAD_ARGUMENT)
}

#[no_mangle]
pub unsafe extern "C" fn proxy_get_header_map_value(
    map: u32,
    key: *const u8,
    key_size: usize,
    out: *mut *mut u8,
    out_size: *mut usize,
) -> u32 {
    let key = text(unsafe { bytes(key, key_size) });
    with("get_header", |h| {
        let found = map_of(h, map).and_then(|m| m.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone()));
        match found {
            Some(v) => {
                unsafe { give(&v, out, out_size) };
                OK
            }
            None => NOT_FOUND,
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn proxy_remove_header_map_value(map: u32, key: *const u8, key_size: usize) -> u32 {
    let key = text(unsafe { bytes(key, key_size) });
    with("remove_header", |h| {
        if let Some(m) = map_of(h, map) {
            m.retain(|(k, _)| *k != key);
        }
        OK
    })
}

/// Adds a header, or sets it (replacing any value it had).
///
/// # Safety
/// As the hostcalls that call it.
unsafe fn put_header(
    call: &'static str,
    map: u32,
    key: (*const u8, usize),
    value: (*const u8, usize),
    replace: bool,
) -> u32 {
    let (key, value) = (text(unsafe { bytes(key.0, key.1) }), unsafe { bytes(value.0, value.1) }.to_vec());
    with(call, |h| {
        if let Some(m) = map_of(h, map) {
            if replace {
                m.retain(|(k, _)| *k != key);
            }
            m.push((key, value));
        }
        OK
    })
}

#[no_mangle]
pub unsafe extern "C" fn proxy_replace_header_map_value(
    map: u32,
    key: *const u8,
    key_size: usize,
    value: *const u8,
    value_size: usize,
) -> u32 {
    unsafe { put_header("replace_header", map, (key, key_size), (value, value_size), true) }
}

#[no_mangle]
pub unsafe extern "C" fn proxy_add_header_map_value(
    map: u32,
    key: *const u8,
    key_size: usize,
    value: *const u8,
    value_size: usize,
) -> u32 {
    unsafe { put_header("add_header", map, (key, key_size), (value, value_size), false) }
}

#[no_mangle]
pub extern "C" fn proxy_get_property(_path: *const u8, _size: usize, _out: *mut *mut u8, _os: *mut usize) -> u32 {
    with("get_property", |_| NOT_FOUND)
}

#[no_mangle]
pub extern "C" fn proxy_set_property(_path: *const u8, _size: usize, _value: *const u8, _vs: usize) -> u32 {
    with("set_property", |_| OK)
}

#[no_mangle]
pub unsafe extern "C" fn proxy_get_shared_data(
    key: *const u8,
    key_size: usize,
    out: *mut *mut u8,
    out_size: *mut usize,
    cas: *mut u32,
) -> u32 {
    let key = unsafe { bytes(key, key_size) }.to_vec();
    with("get_shared_data", |h| match h.shared.get(&key) {
        Some((value, c)) => {
            unsafe {
                give(value, out, out_size);
                *cas = *c;
            }
            OK
        }
        None => NOT_FOUND,
    })
}

#[no_mangle]
pub unsafe extern "C" fn proxy_set_shared_data(
    key: *const u8,
    key_size: usize,
    value: *const u8,
    value_size: usize,
    cas: u32,
) -> u32 {
    let (key, value) = (unsafe { bytes(key, key_size) }.to_vec(), unsafe { bytes(value, value_size) }.to_vec());
    with("set_shared_data", |h| {
        // As Envoy: a CAS of 0 always writes, and a key that does not exist yet is written whatever the CAS.
        if let Some((_, current)) = h.shared.get(&key) {
            if cas != 0 && cas != *current {
                return CAS_MISMATCH;
            }
        }
        h.next_cas = h.next_cas.wrapping_add(1).max(1);
        let next = h.next_cas;
        h.shared.insert(key, (value, next));
        OK
    })
}

#[no_mangle]
pub unsafe extern "C" fn proxy_register_shared_queue(_name: *const u8, _size: usize, id: *mut u32) -> u32 {
    with("register_shared_queue", |_| unsafe { *id = 1 });
    OK
}

#[no_mangle]
pub unsafe extern "C" fn proxy_resolve_shared_queue(
    _vm: *const u8,
    _vm_size: usize,
    _name: *const u8,
    _size: usize,
    id: *mut u32,
) -> u32 {
    // The singleton's queue exists, as in Envoy: the worker reports its events.
    with("resolve_shared_queue", |_| unsafe { *id = 1 });
    OK
}

#[no_mangle]
pub extern "C" fn proxy_dequeue_shared_queue(_queue: u32, _out: *mut *mut u8, _size: *mut usize) -> u32 {
    with("dequeue_shared_queue", |_| 7) // Empty
}

#[no_mangle]
pub extern "C" fn proxy_enqueue_shared_queue(_queue: u32, _data: *const u8, size: usize) -> u32 {
    with("enqueue_shared_queue", |h| {
        h.enqueued_bytes += size as u64;
        OK
    })
}

#[no_mangle]
pub extern "C" fn proxy_continue_stream(_stream: u32) -> u32 {
    with("continue_stream", |_| OK)
}

#[no_mangle]
pub extern "C" fn proxy_close_stream(_stream: u32) -> u32 {
    with("close_stream", |_| OK)
}

#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn proxy_send_local_response(
    status: u32,
    _details: *const u8,
    _details_size: usize,
    _body: *const u8,
    _body_size: usize,
    _headers: *const u8,
    _headers_size: usize,
    _grpc_status: i32,
) -> u32 {
    with("send_local_response", |h| {
        h.local_replies.push(status);
        OK
    })
}

#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn proxy_http_call(
    _upstream: *const u8,
    _upstream_size: usize,
    _headers: *const u8,
    _headers_size: usize,
    _body: *const u8,
    _body_size: usize,
    _trailers: *const u8,
    _trailers_size: usize,
    _timeout: u32,
    token: *mut u32,
) -> u32 {
    with("http_call", |_| unsafe { *token = 1 });
    OK
}

#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn proxy_grpc_call(
    _a: *const u8,
    _b: usize,
    _c: *const u8,
    _d: usize,
    _e: *const u8,
    _f: usize,
    _g: *const u8,
    _h: usize,
    _i: *const u8,
    _j: usize,
    _timeout: u32,
    _id: *mut u32,
) -> u32 {
    BAD_ARGUMENT
}

#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn proxy_grpc_stream(
    _a: *const u8,
    _b: usize,
    _c: *const u8,
    _d: usize,
    _e: *const u8,
    _f: usize,
    _g: *const u8,
    _h: usize,
    _id: *mut u32,
) -> u32 {
    BAD_ARGUMENT
}

#[no_mangle]
pub extern "C" fn proxy_grpc_send(_token: u32, _data: *const u8, _len: usize, _end: bool) -> u32 {
    BAD_ARGUMENT
}

#[no_mangle]
pub extern "C" fn proxy_grpc_cancel(_token: u32) -> u32 {
    BAD_ARGUMENT
}

#[no_mangle]
pub extern "C" fn proxy_grpc_close(_token: u32) -> u32 {
    BAD_ARGUMENT
}

#[no_mangle]
pub unsafe extern "C" fn proxy_get_status(code: *mut u32, out: *mut *mut u8, out_size: *mut usize) -> u32 {
    with("get_status", |_| unsafe {
        *code = 0;
        give(&[], out, out_size);
    });
    OK
}

#[no_mangle]
pub extern "C" fn proxy_set_effective_context(_context: u32) -> u32 {
    with("set_effective_context", |_| OK)
}

#[no_mangle]
pub extern "C" fn proxy_call_foreign_function(
    _name: *const u8,
    _name_size: usize,
    _args: *const u8,
    _args_size: usize,
    _out: *mut *mut u8,
    _out_size: *mut usize,
) -> u32 {
    NOT_FOUND
}

#[no_mangle]
pub extern "C" fn proxy_done() -> u32 {
    with("done", |_| OK)
}

#[no_mangle]
pub unsafe extern "C" fn proxy_define_metric(_kind: u32, _name: *const u8, _size: usize, id: *mut u32) -> u32 {
    let next = with("define_metric", |h| {
        h.next_metric += 1;
        h.next_metric
    });
    unsafe { *id = next };
    OK
}

#[no_mangle]
pub unsafe extern "C" fn proxy_get_metric(_id: u32, value: *mut u64) -> u32 {
    with("get_metric", |_| unsafe { *value = 0 });
    OK
}

#[no_mangle]
pub extern "C" fn proxy_record_metric(_id: u32, _value: u64) -> u32 {
    with("record_metric", |_| OK)
}

#[no_mangle]
pub extern "C" fn proxy_increment_metric(_id: u32, _offset: i64) -> u32 {
    with("increment_metric", |_| OK)
}
