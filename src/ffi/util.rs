//! Pointer and string checks shared by the `extern "C"` functions.

use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{panic_message, Code, Error};

/// Runs `f`, turning a panic into `on_panic(message)`.
///
/// `AssertUnwindSafe` is sound here: after a panic, the only state touched is
/// the value built by `on_panic`; shared client state is behind poisoning-
/// tolerant locks and atomics that stay consistent.
pub fn guard<T>(on_panic: impl FnOnce(String) -> T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(payload) => on_panic(panic_message(&*payload)),
    }
}

/// Reads a required NUL-terminated UTF-8 argument.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for this call.
pub unsafe fn str_arg<'a>(p: *const c_char, name: &str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(Error::invalid(format!("{name}: is NULL")));
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    std::str::from_utf8(bytes).map_err(|e| {
        Error::new(
            Code::InvalidArgument,
            format!("{name}: not valid UTF-8 (at byte {})", e.valid_up_to()),
        )
    })
}

/// Like [`str_arg`] but NULL is allowed and gives `None`.
///
/// # Safety
/// As for [`str_arg`].
pub unsafe fn opt_str_arg<'a>(p: *const c_char, name: &str) -> Result<Option<&'a str>, Error> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded contract.
        unsafe { str_arg(p, name) }.map(Some)
    }
}

/// A C string for text that may contain NUL: cut at the first NUL, since C
/// cannot see past it anyway (the full bytes stay in the body).
pub fn c_string(s: &str) -> CString {
    let cut = s.split('\0').next().unwrap_or("");
    CString::new(cut).unwrap_or_default()
}

/// Copies `msg` into a caller buffer, truncated on a UTF-8 boundary and
/// always NUL-terminated. Does nothing for a NULL buffer or zero length.
///
/// # Safety
/// `buf` is NULL or valid for writes of `len` bytes.
pub unsafe fn write_errbuf(buf: *mut c_char, len: usize, msg: &str) {
    if buf.is_null() || len == 0 {
        return;
    }
    let mut n = msg.len().min(len - 1);
    while !msg.is_char_boundary(n) {
        n -= 1;
    }
    // SAFETY: n + 1 <= len bytes are written, within the caller's buffer; the
    // source is a live &str of at least n bytes, and the regions cannot overlap
    // because the buffer is owned by the caller, not by `msg`.
    unsafe {
        std::ptr::copy_nonoverlapping(msg.as_ptr(), buf as *mut u8, n);
        *buf.add(n) = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errbuf_truncates_on_char_boundary_and_terminates() {
        let mut buf = [0x55 as c_char; 6];
        // SAFETY: buffer of 6 bytes.
        unsafe { write_errbuf(buf.as_mut_ptr(), buf.len(), "ab€cd") };
        // "ab€" is 5 bytes and fits in 5 + NUL.
        let s = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap();
        assert_eq!(s, "ab€");
        let mut small = [0x55 as c_char; 4];
        unsafe { write_errbuf(small.as_mut_ptr(), small.len(), "ab€cd") };
        let s = unsafe { CStr::from_ptr(small.as_ptr()) }.to_str().unwrap();
        assert_eq!(s, "ab");
    }

    #[test]
    fn guard_turns_panics_into_values() {
        let v = guard(|m| m, || -> String { panic!("boom") });
        assert!(v.contains("boom"));
    }

    #[test]
    fn interior_nul_is_cut() {
        assert_eq!(c_string("a\0b").to_bytes(), b"a");
    }
}

/// A caller's `userdata`, carried into a callback closure.
#[derive(Clone, Copy)]
pub(crate) struct UserData(pub *mut c_void);

// SAFETY: every function that wraps a `userdata` documents on which
// threads its callbacks run (the calling thread for blocking calls, library
// threads for async ones); the caller vouches that this is safe for its data.
unsafe impl Send for UserData {}

/// `len` bytes at `p` as a slice; `None` for NULL with length 0 (no bytes).
///
/// # Safety
/// `p` is NULL or valid for `len` bytes of reading for the returned lifetime.
pub(crate) unsafe fn bytes_arg<'a>(
    p: *const u8,
    len: usize,
    what: &str,
) -> Result<Option<&'a [u8]>, Error> {
    match (p.is_null(), len) {
        (true, 0) => Ok(None),
        (true, _) => Err(Error::invalid(format!(
            "{what}: is NULL but {what}_len is {len}"
        ))),
        // SAFETY: non-NULL and readable for `len` bytes per the contract.
        (false, n) => Ok(Some(unsafe { std::slice::from_raw_parts(p, n) })),
    }
}

/// The arguments of a raw request, checked: method, path, optional
/// content type and optional body bytes.
pub(crate) type RawArgs<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a [u8]>);

/// Checks and converts the arguments shared by `llmpool_request_raw` and
/// `llmpool_request_raw_async`.
///
/// # Safety
/// `method`, `path` and `content_type` are NULL or NUL-terminated; `body`
/// is NULL or valid for `body_len` bytes of reading, all for `'a`.
pub(crate) unsafe fn raw_args<'a>(
    method: *const c_char,
    path: *const c_char,
    content_type: *const c_char,
    body: *const u8,
    body_len: usize,
) -> Result<RawArgs<'a>, Error> {
    // SAFETY: forwarded contract.
    unsafe {
        Ok((
            str_arg(method, "method")?,
            str_arg(path, "path")?,
            opt_str_arg(content_type, "content_type")?,
            bytes_arg(body, body_len, "body")?,
        ))
    }
}
