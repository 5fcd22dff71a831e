//! Time-based one-time passwords (RFC 6238, HMAC-SHA1, 30-second steps, 6 digits): the optional
//! second factor, verified offline against a secret kept encrypted under the data key.

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// Seconds per step.
pub const STEP: i64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;

/// The HOTP value (RFC 4226) for a counter, as `digits` decimal digits.
pub fn hotp(secret: &[u8], counter: u64, digits: u32) -> String {
    let mut mac = match <Hmac<Sha1> as KeyInit>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = usize::from(h[19] & 0x0f);
    let bin = (u32::from(h[offset]) & 0x7f) << 24
        | u32::from(h[offset + 1]) << 16
        | u32::from(h[offset + 2]) << 8
        | u32::from(h[offset + 3]);
    format!(
        "{:0width$}",
        bin % 10u32.pow(digits),
        width = digits as usize
    )
}

/// The TOTP code at a Unix time.
pub fn code_at(secret: &[u8], unix: i64, digits: u32) -> String {
    hotp(secret, (unix.max(0) / STEP) as u64, digits)
}

/// Checks a code, allowing one step of clock drift either way. Compares without early exit.
pub fn verify(secret: &[u8], code: &str, unix: i64) -> bool {
    let code = code.trim();
    let mut ok = false;
    for drift in [-STEP, 0, STEP] {
        let want = code_at(secret, unix + drift, DIGITS);
        let same = want.len() == code.len()
            && want
                .bytes()
                .zip(code.bytes())
                .fold(0u8, |a, (x, y)| a | (x ^ y))
                == 0;
        ok |= same;
    }
    ok
}

/// RFC 4648 base32 (no padding), as authenticator apps take secrets.
pub fn base32(bytes: &[u8]) -> String {
    const A: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let mut buf = 0u32;
    let mut bits = 0;
    for &b in bytes {
        buf = (buf << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(A[((buf >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(A[((buf << (5 - bits)) & 31) as usize]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_sha1_vectors() {
        let secret = b"12345678901234567890";
        for (t, want) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(code_at(secret, t, 8), want, "T={t}");
        }
    }

    #[test]
    fn verify_allows_one_step_of_drift() {
        let s = b"another secret!!";
        let now = 1_900_000_000;
        assert!(verify(s, &code_at(s, now, DIGITS), now));
        assert!(verify(s, &code_at(s, now - STEP, DIGITS), now));
        assert!(!verify(s, &code_at(s, now - 3 * STEP, DIGITS), now));
        assert!(!verify(s, "12345", now));
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
    }
}
