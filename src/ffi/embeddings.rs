//! `llmpool_response_embeddings`: an embeddings answer's vectors as floats.

use std::ffi::c_char;

use super::code::llmpool_code;
use super::response::{llmpool_response, Embeddings};
use super::util::{c_string, guard};
use crate::body::embeddings;
use crate::error::Code;

impl llmpool_response {
    /// Decodes the vectors once; later calls (from any thread) get the same
    /// result.
    fn embeddings_once(&self) -> &Embeddings {
        self.embeddings.get_or_init(|| {
            let (code, error) = self.outcome();
            if code != Code::Ok {
                let msg = format!(
                    "not an embeddings answer: the call failed ({})",
                    error.to_string_lossy()
                );
                return Err((Code::InvalidArgument, c_string(&msg)));
            }
            guard(
                |m| Err((Code::Panic, c_string(&m))),
                || {
                    embeddings::decode(self.body_bytes())
                        .map_err(|e| (e.code, c_string(&e.message)))
                },
            )
        })
    }
}

/// The vectors of an embeddings answer (`llmpool_embeddings`) as one
/// contiguous row-major `count x dim` float32 matrix: row `i` is the vector
/// whose `index` is `i`, whatever order the answer listed them in.
///
/// Understands both encodings: JSON number arrays (`encoding_format`
/// "float", the default) and base64 strings of little-endian float32
/// (`encoding_format: "base64"`, half the bytes on the wire and no number
/// parsing). Decoded on the first call and kept in `r`: `*data` is owned by
/// `r`, valid until `llmpool_response_free(r)`, and later calls (from any
/// thread) return the same pointer at no cost.
///
/// `data`, `count` and `dim` may each be NULL (not written). On success
/// `*count` is the number of vectors and `*dim` their length; `*data` is
/// NULL when the matrix is empty. On error `*data` is NULL, `*count` and
/// `*dim` are 0, and `llmpool_response_embeddings_error(r)` says why:
/// - `LLMPOOL_INVALID_ARGUMENT`: `r` is NULL, the call failed, or the answer
///   is not an embeddings answer (no `data` array of objects with an
///   `embedding`, e.g. a chat answer);
/// - `LLMPOOL_PROTOCOL`: an embeddings answer with malformed vectors: rows
///   of different lengths (ragged), a number that is not a JSON number or
///   does not fit a float32, invalid base64 or a byte count that is not a
///   multiple of 4, an `index` missing from some rows, repeated or out of
///   range.
///
/// # Safety
/// `r` is NULL or a response from llmpool that has not been freed; `data`,
/// `count` and `dim` are NULL or valid for one write each.
#[no_mangle]
pub unsafe extern "C" fn llmpool_response_embeddings(
    r: *const llmpool_response,
    data: *mut *const f32,
    count: *mut usize,
    dim: *mut usize,
) -> llmpool_code {
    // SAFETY: NULL or a live response from llmpool.
    let got = unsafe { r.as_ref() }.map(llmpool_response::embeddings_once);
    let (ptr, n, d, code) = match got {
        Some(Ok(m)) if !m.data.is_empty() => (m.data.as_ptr(), m.count, m.dim, Code::Ok),
        Some(Ok(m)) => (std::ptr::null(), m.count, m.dim, Code::Ok),
        Some(Err((code, _))) => (std::ptr::null(), 0, 0, *code),
        None => (std::ptr::null(), 0, 0, Code::InvalidArgument),
    };
    // SAFETY: each is NULL or writable per the contract.
    unsafe {
        if !data.is_null() {
            *data = ptr;
        }
        if !count.is_null() {
            *count = n;
        }
        if !dim.is_null() {
            *dim = d;
        }
    }
    code.into()
}

/// Why `llmpool_response_embeddings(r, ...)` fails, or "" when it succeeds
/// (decoding first if it has not run yet). Never NULL. Owned by `r`.
///
/// # Safety
/// `r` is NULL or a response from llmpool that has not been freed.
#[no_mangle]
pub unsafe extern "C" fn llmpool_response_embeddings_error(
    r: *const llmpool_response,
) -> *const c_char {
    // SAFETY: NULL or a live response from llmpool.
    match unsafe { r.as_ref() }.map(llmpool_response::embeddings_once) {
        None => c"response is NULL".as_ptr(),
        Some(Ok(_)) => c"".as_ptr(),
        Some(Err((_, msg))) => msg.as_ptr(),
    }
}
