//! Whether text a server sent could carry the secret the request sent
//! (issue 10.7), so that it is withheld rather than shown or cached.
//!
//! Masking an exact copy is not enough: an endpoint may echo the secret
//! upper-cased, encoded or cut short. So text counts as carrying the secret
//! when it holds any [`RUN`] characters in a row of it, in any ASCII case, or
//! of a common encoding of it: percent- or form-encoding and hex (either
//! case), base64 (standard or URL-safe, padded or not, at each of the three
//! alignments a secret can have inside a longer encoded text, compared
//! exactly). The text is also read percent-decoded and with JSON `\uXXXX`
//! escapes undone. A secret shorter than [`RUN`] counts whole. The check runs
//! on error paths only, in time linear in the lengths of text and secret.

use std::collections::{BTreeSet, HashSet};

use super::wire::percent_encode;

/// The fewest characters in a row of a secret, or of an encoding of it,
/// that count as an echo of it.
const RUN: usize = 8;

/// What stands for a server's message that could carry the secret sent.
pub(super) const WITHHELD: &str = "the server's message was withheld: it may echo the secret sent";

/// What stands for an error's text that could carry the secret sent.
pub(super) const CAUSE_WITHHELD: &str =
    "the error's text was withheld: it may echo the secret sent";

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// True when `text` could carry `secret`, by the rule of this module.
pub(super) fn could_carry(text: &str, secret: &str) -> bool {
    if secret.is_empty() || text.is_empty() {
        return false;
    }
    // Encodings compared without regard to ASCII case (stored lower-cased),
    // and those compared exactly.
    let mut folded: Vec<Vec<u8>> = Vec::new();
    let mut exact: Vec<Vec<u8>> = Vec::new();
    for variant in case_variants(secret) {
        let bytes = variant.as_bytes();
        let percent = percent_encode(&variant);
        folded.push(bytes.to_ascii_lowercase());
        folded.push(hex(bytes));
        folded.push(
            percent
                .replace("%20", "+")
                .to_ascii_lowercase()
                .into_bytes(),
        );
        folded.push(percent.to_ascii_lowercase().into_bytes());
        // Inside a longer encoded text, a secret's first whole 3-byte group
        // starts at its byte 0, 1 or 2; from there, 6 bytes make 8 characters
        // that do not depend on what surrounds it. Padded: the runs of the
        // unpadded form are among those of the padded one.
        for skip in (0..3).filter(|&s| s == 0 || bytes.len() >= s + 6) {
            exact.push(base64(&bytes[skip..], STANDARD));
            exact.push(base64(&bytes[skip..], URL_SAFE));
        }
    }
    let folded: HashSet<&[u8]> = folded.iter().flat_map(|e| runs(e)).collect();
    let exact: HashSet<&[u8]> = exact.iter().flat_map(|e| runs(e)).collect();
    let lengths: BTreeSet<usize> = folded.iter().chain(&exact).map(|r| r.len()).collect();

    let mut readings = vec![text.as_bytes().to_vec()];
    for decoded in [percent_decode(text), unescape_json(text)] {
        if !readings.contains(&decoded) {
            readings.push(decoded);
        }
    }
    readings.iter().any(|reading| {
        let lower = reading.to_ascii_lowercase();
        lengths.iter().any(|&n| {
            reading
                .windows(n)
                .zip(lower.windows(n))
                .any(|(as_is, lowered)| exact.contains(as_is) || folded.contains(lowered))
        })
    })
}

/// True for an error code shaped like IBM's (`BXNIM0415E`, `CRG0009E`) or a
/// registry v2 one (`DENIED`, `NAME_UNKNOWN`): 3 to 32 ASCII capitals,
/// digits and underscores, the first a capital. Only such a code is kept
/// from a message that is withheld.
pub(super) fn is_plain_code(code: &str) -> bool {
    (3..=32).contains(&code.len())
        && code.starts_with(|c: char| c.is_ascii_uppercase())
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// The secret as sent, upper-cased and lower-cased (Unicode case mapping),
/// without repeats.
fn case_variants(secret: &str) -> Vec<String> {
    let mut variants = vec![secret.to_string()];
    for variant in [secret.to_uppercase(), secret.to_lowercase()] {
        if !variants.contains(&variant) {
            variants.push(variant);
        }
    }
    variants
}

/// Every [`RUN`] bytes in a row of `encoded`, or all of it when shorter.
fn runs(encoded: &[u8]) -> Vec<&[u8]> {
    if encoded.len() <= RUN {
        vec![encoded]
    } else {
        encoded.windows(RUN).collect()
    }
}

/// Lower-case hex.
fn hex(bytes: &[u8]) -> Vec<u8> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]])
        .collect()
}

/// Padded base64 in `alphabet`.
fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let group = byte(0) << 16 | byte(1) << 8 | byte(2);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(alphabet[(group >> (18 - 6 * i)) as usize & 63]);
            } else {
                out.push(b'=');
            }
        }
    }
    out
}

/// `text` with `%XX` decoded and `+` read as a space; anything else as is.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 3)
            .filter(|h| bytes[i] == b'%' && h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    out
}

/// `text` with JSON's `\uXXXX` escapes undone (lone surrogates left as they are).
fn unescape_json(text: &str) -> Vec<u8> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("\\u") {
        out.push_str(&rest[..at]);
        let escaped = rest
            .get(at + 2..at + 6)
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .and_then(char::from_u32);
        match escaped {
            Some(c) => {
                out.push(c);
                rest = &rest[at + 6..];
            }
            None => {
                out.push_str("\\u");
                rest = &rest[at + 2..];
            }
        }
    }
    out.push_str(rest);
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_hex_match_the_rfc_vectors() {
        // RFC 4648 §10
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes(), STANDARD), encoded.as_bytes());
        }
        assert_eq!(base64(&[0xfb, 0xff], STANDARD), b"+/8=");
        assert_eq!(base64(&[0xfb, 0xff], URL_SAFE), b"-_8=");
        assert_eq!(hex(b"foo\xff"), b"666f6fff");
    }

    #[test]
    fn decodings_undo_percent_form_and_json_escapes() {
        assert_eq!(percent_decode("a%2Fb+c%2fd%zz%+f%4"), b"a/b c/d%zz% f%4");
        assert_eq!(
            unescape_json(r"\u0061b\u00e9\uZZZZ\ud800\u"),
            "abé\\uZZZZ\\ud800\\u".as_bytes()
        );
    }

    #[test]
    fn eight_characters_in_a_row_in_any_case_carry_the_secret() {
        // issue 10.7
        let secret = "Secret-Key-0123456789";
        for text in [
            "Secret-Key-0123456789",
            "x SECRET-KEY-0123 x",
            "-0123456",
            "secret-k",
            "ey-01234",
        ] {
            assert!(could_carry(text, secret), "{text}");
        }
        for text in ["Secret-", "Secret-x-Key-01", "", "0123456 789"] {
            assert!(!could_carry(text, secret), "{text}");
        }
        assert!(!could_carry("anything", ""));
    }

    #[test]
    fn a_short_secret_counts_whole() {
        assert!(could_carry("code abC12 here", "Abc12"));
        assert!(!could_carry("code abC1 here", "Abc12"));
        // Its encodings are runs of their own: hex of `Abc12` is `4162633132`.
        assert!(could_carry("41626331", "Abc12"));
    }

    #[test]
    fn encodings_carry_the_secret() {
        // issue 10.7; computed with Python's base64, urllib.parse, bytes.hex
        let secret = "ab/+= &~?>cd";
        for text in [
            // base64 of the secret and of `k`/`k:` before it: three alignments
            "YWIvKz0gJn4/PmNk",
            "a2FiLys9ICZ+Pz5jZA==",
            "azphYi8rPSAmfj8+Y2Q=",
            // URL-safe, unpadded
            "a2FiLys9ICZ-Pz5jZA",
            "azphYi8rPSAmfj8-Y2Q",
            // of the upper-cased secret
            "QUIvKz0gJn4/PkNE",
            // percent (either case), form, every byte, JSON escapes
            "ab%2F%2B%3D%20%26~%3F%3Ecd",
            "ab%2f%2b%3d+%26~%3f%3ecd",
            "%61%62%2F%2B%3D%20%26%7E",
            r"\u0061\u0062\u002f\u002b\u003d\u0020\u0026\u007e",
            // hex, either case, of it and of it upper-cased
            "61622f2b3d20267e",
            "61622F2B3D20267E",
            "41422f2b3d20267e",
        ] {
            assert!(could_carry(&format!("x {text} y"), secret), "{text}");
        }
        // base64 compares exactly: a lower-cased encoding is no echo.
        assert!(!could_carry("ywivkz0gjn4/pmnk", "ab/+= &~?>cd"));
    }

    #[test]
    fn a_long_secret_is_checked_in_linear_time() {
        let secret = "s".repeat(4096) + "end";
        let text = "t".repeat(1 << 20);
        let started = std::time::Instant::now();
        assert!(!could_carry(&text, &secret));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn plain_codes_are_ibms_shapes() {
        for code in ["BXNIM0415E", "CRG0009E", "DENIED", "NAME_UNKNOWN", "ABC"] {
            assert!(is_plain_code(code), "{code}");
        }
        for code in [
            "",
            "AB",
            "bxnim0415e",
            "0BX",
            "BX-1",
            "BX 1",
            &"A".repeat(33),
        ] {
            assert!(!is_plain_code(code), "{code}");
        }
    }
}
