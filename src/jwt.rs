//! Reading the claims of a JWT we were handed. No signature check: the
//! issuer checks its own tokens; we only need to know when they expire.

use serde_json::Value;

/// The payload (second part) of a JWT, decoded, if it is one.
pub fn claims(token: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let (_header, payload) = (parts.next()?, parts.next()?);
    parts.next()?; // a signature part must exist
    let bytes = base64url_decode(payload)?;
    match serde_json::from_slice(&bytes) {
        Ok(v @ Value::Object(_)) => Some(v),
        _ => None,
    }
}

/// The `exp` claim (Unix seconds), if the token is a JWT that has one.
pub fn expiry(token: &str) -> Option<u64> {
    claims(token)?.get("exp")?.as_u64()
}

/// Decodes unpadded (or padded) base64url.
fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in s.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be zero padding, and a single leftover char is invalid.
    if bits >= 6 || acc != 0 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The registry token fixture of ../shared/ibm-api.md §1.3.
    const FIXTURE: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjE1NDA0MjMwNTQsImp0aSI6ImFlNTdiMzk0LWUzOWQtNTk1Zi1hZTVkLWU0NjkwNTI4NWRmNiIsImlzcyI6InJlZ2lzdHJ5Lm5nLmJsdWVtaXgubmV0In0.mZBpsw-6RxuvV_Bv7WBk6I6YGJK9f70fEuH5a2cVr3g";

    #[test]
    fn decodes_ibm_fixture() {
        let c = claims(FIXTURE).unwrap();
        assert_eq!(c["jti"], "ae57b394-e39d-595f-ae5d-e46905285df6");
        assert_eq!(c["iss"], "registry.ng.bluemix.net");
        assert_eq!(expiry(FIXTURE), Some(1540423054));
    }

    #[test]
    fn non_jwts_have_no_claims() {
        for t in ["", "abc", "a.b", "a.!!!.c", "a.YWJj.c", "x.eyJleHAiOjF9"] {
            assert_eq!(claims(t), None, "{t}");
        }
    }

    #[test]
    fn base64url_round_numbers() {
        assert_eq!(base64url_decode("YQ").unwrap(), b"a");
        assert_eq!(base64url_decode("YWI").unwrap(), b"ab");
        assert_eq!(base64url_decode("YWJj").unwrap(), b"abc");
        assert_eq!(base64url_decode("YWJj==").unwrap(), b"abc");
        assert_eq!(base64url_decode("Y"), None);
    }
}
