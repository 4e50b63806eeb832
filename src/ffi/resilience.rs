//! Key rotation through a provider callback, and pool warm-up.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::Arc;

use super::client::client_op;
use super::client::llmpool_client;
use super::code::llmpool_code;

/// Writes a fresh API key into `buf` (at most `buf_len` bytes including the
/// terminating NUL) and returns 0; any other return value means "no new key".
/// Called on the thread whose call received the 401, possibly on several
/// threads at once: it must be thread-safe. `buf` is valid only during the
/// call.
pub type llmpool_key_provider_cb =
    Option<unsafe extern "C" fn(userdata: *mut c_void, buf: *mut c_char, buf_len: usize) -> c_int>;

/// Longest key a provider may write, including the NUL.
const KEY_BUF_LEN: usize = 4096;

/// The callback and its userdata, movable between threads.
struct Provider {
    cb: unsafe extern "C" fn(*mut c_void, *mut c_char, usize) -> c_int,
    userdata: *mut c_void,
}

// SAFETY: the C contract of llmpool_client_set_key_provider requires the
// callback and its userdata to be usable from any thread.
unsafe impl Send for Provider {}
// SAFETY: as above; the provider is only ever called, never mutated.
unsafe impl Sync for Provider {}

impl Provider {
    fn fetch(&self) -> Option<String> {
        let mut buf = vec![0 as c_char; KEY_BUF_LEN];
        // SAFETY: the callback gets a writable buffer of KEY_BUF_LEN bytes
        // that outlives the call; its other argument is the caller's own.
        let rc = unsafe { (self.cb)(self.userdata, buf.as_mut_ptr(), buf.len()) };
        if rc != 0 {
            return None;
        }
        // The callback may forget the NUL: never read past the buffer.
        buf[KEY_BUF_LEN - 1] = 0;
        // SAFETY: NUL-terminated within the buffer (forced above).
        let key = unsafe { CStr::from_ptr(buf.as_ptr()) };
        let key = key.to_str().ok()?;
        if key.is_empty() || !crate::options::valid_api_key(key) {
            return None;
        }
        Some(key.to_string())
    }
}

/// Sets the key provider: when a call gets HTTP 401, the client calls
/// `cb(userdata, buf, buf_len)` once, uses the key written to `buf` for that
/// call's single immediate retry and for every later call (as
/// `llmpool_client_set_api_key` would), keeping the pool. A second 401 is
/// returned as `LLMPOOL_HTTP_STATUS`. A NULL `cb` removes the provider.
/// `userdata` is passed through untouched and must stay valid until the
/// provider is replaced or the client is freed. Returns
/// `LLMPOOL_INVALID_ARGUMENT` for a NULL client.
///
/// # Safety
/// `client` is NULL or a live client; `cb` and `userdata` are usable from
/// any thread for as long as they are installed.
#[no_mangle]
pub unsafe extern "C" fn llmpool_client_set_key_provider(
    client: *mut llmpool_client,
    cb: llmpool_key_provider_cb,
    userdata: *mut c_void,
) -> llmpool_code {
    // SAFETY: `client` per the documented contract.
    unsafe {
        client_op(client, |c| {
            let provider = cb.map(|cb| {
                let p = Provider { cb, userdata };
                Arc::new(move || p.fetch()) as crate::client::KeyProvider
            });
            c.set_key_provider(provider);
            Ok(())
        })
    }
}

/// Opens up to `n` connections ahead of the first call (TCP and TLS
/// handshakes done) so the first real calls pay no handshake; it sends `n`
/// concurrent `GET /models` requests and keeps their connections pooled (up
/// to `pool_max_idle_per_host`). `*opened` (if non-NULL) receives how many
/// connections were opened. Returns `LLMPOOL_OK` when at least one opened or
/// none was needed, else the error of the first failure;
/// `LLMPOOL_INVALID_ARGUMENT` for a NULL client.
///
/// # Safety
/// `client` is NULL or a live client; `opened` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llmpool_client_warm(
    client: *mut llmpool_client,
    n: usize,
    opened: *mut usize,
) -> llmpool_code {
    let mut count = 0;
    // SAFETY: `client` per the documented contract.
    let code = unsafe { client_op(client, |c| c.warm(n).map(|k| count = k)) };
    if !opened.is_null() {
        // SAFETY: non-NULL and writable per the contract.
        unsafe { *opened = count };
    }
    code
}
