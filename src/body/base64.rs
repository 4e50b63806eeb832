//! Standard base64 (RFC 4648 §4, `+/`, `=` padding optional), decode only.
//!
//! Written here rather than taken from a crate: llmpool needs one strict
//! decoder for embedding answers (a scalar loop, and AVX2 blocks where the
//! CPU has them), and a new runtime dependency is a cost every C, Go, Node
//! and Python user ships.

/// 0..=63 for alphabet bytes, `BAD` for everything else.
const BAD: u8 = 0xFF;
const TABLE: [u8; 256] = {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut t = [BAD; 256];
    let mut i = 0;
    while i < 64 {
        t[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// Why a text is not base64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotBase64 {
    /// Offset of the offending character, or the text's length when it
    /// ends too early.
    pub at: usize,
}

impl std::fmt::Display for NotBase64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid base64 at character {}", self.at)
    }
}

/// The number of bytes `text` decodes to (assuming it is valid).
pub fn decoded_len(text: &[u8]) -> usize {
    let pad = text
        .iter()
        .rev()
        .take(2)
        .take_while(|&&c| c == b'=')
        .count();
    let n = text.len() - pad;
    n / 4 * 3 + (n % 4).saturating_sub(1)
}

/// Appends the bytes `text` stands for to `out`.
pub fn decode_into(text: &[u8], out: &mut Vec<u8>) -> Result<(), NotBase64> {
    let start = out.len();
    out.resize(start + decoded_len(text), 0);
    match decode_to_slice(text, &mut out[start..]) {
        Ok(()) => Ok(()),
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// Writes the bytes `text` stands for to `out`, which must be exactly
/// [`decoded_len`]`(text)` long.
pub fn decode_to_slice(text: &[u8], out: &mut [u8]) -> Result<(), NotBase64> {
    let pad = text
        .iter()
        .rev()
        .take(2)
        .take_while(|&&c| c == b'=')
        .count();
    if pad > 0 && !text.len().is_multiple_of(4) {
        return Err(NotBase64 { at: text.len() });
    }
    let body = &text[..text.len() - pad];
    if body.len() % 4 == 1 {
        return Err(NotBase64 { at: body.len() });
    }
    assert_eq!(out.len(), decoded_len(text), "output sized by decoded_len");
    // Whole 32-character blocks with SIMD where the CPU has it; the scalar
    // loop does the rest, and finds (and places) any invalid character.
    let (chars, bytes) = simd::decode_prefix(body, out);
    scalar(&body[chars..], &mut out[bytes..]).map_err(|e| NotBase64 { at: e.at + chars })
}

/// Decodes `body` (no padding) into `out`, sized for it.
fn scalar(body: &[u8], out: &mut [u8]) -> Result<(), NotBase64> {
    let mut chunks = body.chunks_exact(8);
    let mut outs = out.chunks_exact_mut(6);
    for (k, (c, o)) in chunks.by_ref().zip(outs.by_ref()).enumerate() {
        // Eight characters, 48 bits, six bytes. An invalid character sets
        // the high bits of its lookup, checked once per chunk.
        let mut acc = 0u64;
        let mut bad = 0u8;
        for &ch in c {
            let v = TABLE[ch as usize];
            bad |= v;
            acc = acc << 6 | u64::from(v & 63);
        }
        if bad & 0xC0 != 0 {
            return Err(NotBase64 {
                at: k * 8 + first_bad(c),
            });
        }
        o.copy_from_slice(&acc.to_be_bytes()[2..]);
    }
    let rest = chunks.remainder();
    let tail = outs.into_remainder();
    let base = body.len() - rest.len();
    let mut acc = 0u64;
    for (j, &ch) in rest.iter().enumerate() {
        let v = TABLE[ch as usize];
        if v == BAD {
            return Err(NotBase64 { at: base + j });
        }
        acc = acc << 6 | u64::from(v);
    }
    // 0..=7 leftover characters carry 6 bits each; whole bytes only.
    let bits = rest.len() * 6;
    let spare = bits % 8;
    if acc & ((1 << spare) - 1) != 0 {
        // Non-zero padding bits: the text was not made by an encoder.
        return Err(NotBase64 { at: body.len() - 1 });
    }
    let acc = acc >> spare;
    let n = tail.len();
    for (j, byte) in tail.iter_mut().enumerate() {
        *byte = (acc >> (8 * (n - 1 - j))) as u8;
    }
    Ok(())
}

fn first_bad(chunk: &[u8]) -> usize {
    chunk
        .iter()
        .position(|&c| TABLE[c as usize] == BAD)
        .unwrap_or(0)
}

/// Base64 decoding of whole 32-character blocks with AVX2 (Muła and
/// Lemire, "Faster Base64 Encoding and Decoding Using AVX2 Instructions",
/// 2018): validate and translate 32 characters with three table lookups,
/// pack their 6-bit values with two multiply-adds and two shuffles. About
/// four times the scalar loop's speed on an embeddings answer.
#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    /// Decodes 32-character blocks of `src` into `dst` while 32 characters
    /// remain and `dst` has room for a 32-byte store (24 bytes of output;
    /// the 8 after them are written over by what follows). Stops before a
    /// block with an invalid character. Returns (characters, bytes) done.
    pub fn decode_prefix(src: &[u8], dst: &mut [u8]) -> (usize, usize) {
        if src.len() < 32 || !is_x86_feature_detected!("avx2") {
            return (0, 0);
        }
        // SAFETY: the CPU has AVX2 (checked just above).
        unsafe { decode_avx2(src, dst) }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn decode_avx2(src: &[u8], dst: &mut [u8]) -> (usize, usize) {
        #[rustfmt::skip]
        let lut_lo = _mm256_setr_epi8(
            0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x13, 0x1A, 0x1B, 0x1B, 0x1B, 0x1A,
            0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x13, 0x1A, 0x1B, 0x1B, 0x1B, 0x1A,
        );
        #[rustfmt::skip]
        let lut_hi = _mm256_setr_epi8(
            0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
            0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
        );
        #[rustfmt::skip]
        let lut_roll = _mm256_setr_epi8(
            0, 16, 19, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 16, 19, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0,
        );
        #[rustfmt::skip]
        let pack_lanes = _mm256_setr_epi8(
            2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1,
            2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1,
        );
        let pack = _mm256_setr_epi32(0, 1, 2, 4, 5, 6, -1, -1);
        let mask_2f = _mm256_set1_epi8(0x2F);
        let (mut i, mut o) = (0, 0);
        while i + 32 <= src.len() && o + 32 <= dst.len() {
            // SAFETY: i + 32 <= src.len(), so 32 bytes are readable there.
            let s = unsafe { _mm256_loadu_si256(src.as_ptr().add(i).cast()) };
            // pshufb reads the low nibble (bit 7 zeroes): masking with 0x2F
            // keeps the nibble and clears bit 7.
            let hi_nibbles = _mm256_and_si256(_mm256_srli_epi32(s, 4), mask_2f);
            let lo_nibbles = _mm256_and_si256(s, mask_2f);
            let hi = _mm256_shuffle_epi8(lut_hi, hi_nibbles);
            let lo = _mm256_shuffle_epi8(lut_lo, lo_nibbles);
            if _mm256_testz_si256(lo, hi) == 0 {
                break; // an invalid character: the scalar loop says where
            }
            let eq_2f = _mm256_cmpeq_epi8(s, mask_2f);
            let roll = _mm256_shuffle_epi8(lut_roll, _mm256_add_epi8(eq_2f, hi_nibbles));
            let values = _mm256_add_epi8(s, roll);
            let ab_bc = _mm256_maddubs_epi16(values, _mm256_set1_epi32(0x0140_0140));
            let abc = _mm256_madd_epi16(ab_bc, _mm256_set1_epi32(0x0001_1000));
            let packed = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(abc, pack_lanes), pack);
            // SAFETY: o + 32 <= dst.len(), so 32 bytes are writable there.
            unsafe { _mm256_storeu_si256(dst.as_mut_ptr().add(o).cast(), packed) };
            i += 32;
            o += 24;
        }
        (i, o)
    }
}

/// No SIMD decoder on this architecture: the scalar loop does it all.
#[cfg(not(target_arch = "x86_64"))]
mod simd {
    pub fn decode_prefix(_: &[u8], _: &mut [u8]) -> (usize, usize) {
        (0, 0)
    }
}

/// A padded base64 encoder for tests, written independently of the
/// decoder's chunking.
#[cfg(test)]
pub(crate) fn encode(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut enc = String::new();
    for c in bytes.chunks(3) {
        let v = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            if k <= c.len() {
                enc.push(A[(v >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                enc.push('=');
            }
        }
    }
    enc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(s: &str) -> Result<Vec<u8>, NotBase64> {
        let mut v = Vec::new();
        decode_into(s.as_bytes(), &mut v).map(|_| v)
    }

    #[test]
    fn rfc4648_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(decode(enc).unwrap(), plain.as_bytes(), "{enc}");
            assert_eq!(decoded_len(enc.as_bytes()), plain.len(), "{enc}");
            // Padding is optional.
            let bare = enc.trim_end_matches('=');
            assert_eq!(decode(bare).unwrap(), plain.as_bytes(), "{bare}");
        }
    }

    #[test]
    fn every_byte_value_and_long_inputs_round_trip() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 131 + 7) as u8).collect();
        for n in [0, 1, 2, 3, 5, 6, 7, 8, 9, 17, 256, 1000] {
            let d = &data[..n];
            assert_eq!(decode(&encode(d)).unwrap(), d, "n={n}");
        }
    }

    #[test]
    fn simd_blocks_match_the_scalar_loop_and_place_errors() {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        // Whole quads of random characters are always valid base64.
        for len in [32usize, 40, 64, 96, 100, 128, 256, 1000, 8192] {
            let text: Vec<u8> = (0..len).map(|_| A[(next() % 64) as usize]).collect();
            let text = &text[..];
            let mut want = vec![0u8; decoded_len(text)];
            scalar(text, &mut want).unwrap();
            let mut got = Vec::new();
            decode_into(text, &mut got).unwrap();
            assert_eq!(got, want, "len {len}");
            // Every byte that is not base64, anywhere, is found and placed.
            for bad in (0..=255u8).filter(|&c| TABLE[c as usize] == BAD && c != b'=') {
                let at = (next() as usize) % text.len();
                let mut t = text.to_vec();
                t[at] = bad;
                let mut out = Vec::new();
                assert_eq!(
                    decode_into(&t, &mut out),
                    Err(NotBase64 { at }),
                    "{bad:#x} at {at}"
                );
            }
        }
    }

    #[test]
    fn rejects_what_is_not_base64() {
        assert_eq!(decode("Zm9v!mFy").unwrap_err().at, 4);
        assert_eq!(decode("Zm9vYmF-").unwrap_err().at, 7);
        assert_eq!(decode("Zm9 ").unwrap_err().at, 3);
        assert!(decode("Z").is_err(), "one leftover character");
        assert!(decode("Zm9vY").is_err(), "five characters");
        assert!(decode("Zg=").is_err(), "padding that does not fill a quad");
        assert!(decode("Zh==").is_err(), "non-zero padding bits");
        assert!(decode("Zm=v").is_err(), "padding in the middle");
        assert!(
            decode("Zm9vYmFyZm9vYmF=Zm9v").is_err(),
            "'=' inside a chunk"
        );
    }
}
