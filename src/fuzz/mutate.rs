//! The mutations: byte-level ones any fuzzer has, and JSON-aware ones that
//! keep an input parseable long enough to reach the checks behind the
//! parser (types, versions, keys, secrets), which random bytes rarely do.

use super::CANARY;

/// xorshift64*: fast, good enough to pick mutations, replayable from its seed.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is mapped to a fixed odd constant).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// True once in `n` times.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The longest input a mutation may produce: past `MAX_LINE` and far past
/// any real file, short enough to keep a run fast.
const MAX_LEN: usize = 128 << 10;

/// Values a JSON-aware mutation puts where a value was: wrong types, numbers
/// at and past every integer limit, escapes that are not valid UTF-16,
/// control characters, words the parsers know.
const VALUES: &[&str] = &[
    "null",
    "true",
    "false",
    "0",
    "-0",
    "1",
    "-1",
    "1.5",
    "1e3",
    "1e999",
    "-1e999",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "[]",
    "{}",
    "[null]",
    "{\"v\":1}",
    "\"\"",
    "\" \"",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"\\udc00\\ud800\"",
    "\"\\uDBFF\\uDFFF\"",
    "\"\\n\"",
    "\"a\\r\\nb\"",
    "\"\\u001b[31mred\"",
    "\"\\u2028\"",
    "\"\\u0085\"",
    "\"\\\"\"",
    "\"bearer\"",
    "\"Bearer\"",
    "\"apikey\"",
    "\"registry-token\"",
    "\"readonly\"",
    "\"readwrite\"",
    "\"iamapikey\"",
    "\"<token>\"",
    "\"us.icr.io\"",
    "\"icr.io\"",
    "\"https://us.icr.io:443/v2/\"",
    "\"https://iam.cloud.ibm.com|ba7816bf8f01cfea\"",
    "\"https://us.icr.io|ba7816bf8f01cfea|readwrite\"",
    "\"ba7816bf8f01cfea\"",
    "{\"env\":\"IC_API_KEY\"}",
    "{\"iam\":\"https://iam.cloud.ibm.com|ba7816bf8f01cfea\"}",
    "{\"bss\":\"0123456789abcdef0123456789abcdef\"}",
    "[{\"code\":\"CRG0009E\",\"message\":\"x\"}]",
];

/// Object keys the parsers look for, in the spellings they match.
const KEYS: &[&str] = &[
    "v",
    "ServerURL",
    "serverurl",
    "SERVERURL",
    "Username",
    "username",
    "Secret",
    "secret",
    "credentials",
    "stored_at",
    "entries",
    "hosts",
    "iam",
    "registry",
    "failures",
    "refused",
    "epochs",
    "source",
    "fingerprint",
    "mode",
    "token_access",
    "token",
    "minted_at",
    "expires_at",
    "account",
    "bss",
    "id",
    "host",
    "message",
    "until",
    "access_token",
    "refresh_token",
    "expires_in",
    "expiration",
    "token_type",
    "errorCode",
    "errorMessage",
    "errorDetails",
    "code",
    "errors",
    "exp",
    "jti",
    "",
];

/// Fragments inserted anywhere: JSON syntax, escapes, URL and key
/// separators, line breaks, broken UTF-8.
const FRAGMENTS: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"\\u",
    b"\\ud800",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b" ",
    b"|",
    b".",
    b"=",
    b"==",
    b"%",
    b"@",
    b"/",
    b"#",
    b"?",
    b":443",
    b":5000",
    b"https://",
    b"http://",
    b"/v2/",
    b"icr.io",
    b"private.",
    b".evil.example",
    b"\r\n",
    b"\n",
    b"\r",
    b"\t",
    b"\x00",
    b"\x1b[2J",
    b"\x7f",
    b"\xc2\x85",
    b"\xe2\x80\xa8",
    b"\xc3",
    b"\xff\xfe",
    b"\xed\xa0\x80",
    b"\xef\xbb\xbf",
    b"null",
    b"\"exp\":",
    b"\"v\":2,",
];

/// Applies one to four stacked mutations to `input`, drawing on `others`
/// (the corpus and what the run kept) for splices.
pub fn mutate(rng: &mut Rng, input: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 << rng.below(3) {
        mutate_once(rng, &mut out, others);
    }
    out.truncate(MAX_LEN);
    out
}

fn mutate_once(rng: &mut Rng, b: &mut Vec<u8>, others: &[Vec<u8>]) {
    let len = b.len();
    match rng.below(16) {
        0 if len > 0 => {
            let i = rng.below(len);
            b[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            b[i] = *rng.pick(b"\x00\x01\x7f\x80\xbf\xc0\xff\"\\{}[]:,0-.e");
        }
        2 => {
            let byte = rng.next() as u8;
            b.insert(rng.below(len + 1), byte);
        }
        3 if len > 0 => {
            let start = rng.below(len);
            let end = (start + 1 + rng.below(16.min(len - start))).min(len);
            b.drain(start..end);
        }
        4 if len > 0 => {
            // Repeat a chunk somewhere else: duplicate keys, doubled values.
            let start = rng.below(len);
            let end = (start + 1 + rng.below(64)).min(len);
            let chunk = b[start..end].to_vec();
            let at = rng.below(len + 1);
            b.splice(at..at, chunk);
        }
        5 => {
            // Splice: this input's head, another's tail.
            let other = rng.pick(others);
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            b.truncate(cut);
            b.extend_from_slice(&other[from..]);
        }
        6 => {
            // Insert a piece of another input.
            let other = rng.pick(others);
            let start = rng.below(other.len() + 1);
            let end = (start + rng.below(128)).min(other.len());
            let at = rng.below(len + 1);
            b.splice(at..at, other[start..end].iter().copied());
        }
        7 => {
            let at = rng.below(len + 1);
            b.splice(at..at, rng.pick(FRAGMENTS).iter().copied());
        }
        8 if len > 0 => b.truncate(rng.below(len)),
        9 | 10 => {
            // Replace a JSON value with another one.
            if let Some((start, end)) = find_value(rng, b) {
                let value = new_value(rng);
                b.splice(start..end, value);
            }
        }
        11 => {
            // Replace an object key.
            if let Some((start, end)) = find_key(rng, b) {
                let key = format!("\"{}\"", rng.pick(KEYS));
                b.splice(start..end, key.into_bytes());
            }
        }
        12 => {
            // Replace a run of digits: counters, expiries, versions.
            if let Some((start, end)) = find_digits(rng, b) {
                let n = rng.pick(&VALUES[3..18]).as_bytes().to_vec();
                b.splice(start..end, n);
            }
        }
        13 => {
            // Whole-input shapes: wrapped in an array, doubled, bare value.
            match rng.below(4) {
                0 => {
                    b.insert(0, b'[');
                    b.push(b']');
                }
                1 => {
                    let copy = b.clone();
                    b.extend_from_slice(&copy);
                }
                2 => *b = new_value(rng),
                _ => {
                    // Pretty-printed or CRLF-separated, as some clients send.
                    let mut spread = Vec::with_capacity(b.len() * 2);
                    for &c in b.iter() {
                        spread.push(c);
                        if c == b',' || c == b'{' {
                            spread.extend_from_slice(b"\r\n  ");
                        }
                    }
                    *b = spread;
                }
            }
        }
        14 if len > 0 => {
            // Change case: hosts and keys match case-insensitively.
            let start = rng.below(len);
            let end = (start + 1 + rng.below(32)).min(len);
            for c in &mut b[start..end] {
                *c = if c.is_ascii_lowercase() {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                };
            }
        }
        _ => {
            // Plant the canary inside an existing string.
            if let Some((start, end)) = find_value(rng, b).filter(|&(s, _)| b[s] == b'"') {
                let at = start + 1 + rng.below(end - start - 1);
                b.splice(at..at, CANARY.bytes());
            }
        }
    }
}

/// A value for [`find_value`]'s slot: from [`VALUES`], or built: deep
/// nesting, a string longer than a stdin line may be, raw invalid UTF-8.
fn new_value(rng: &mut Rng) -> Vec<u8> {
    match rng.below(12) {
        0 => {
            let depth = 1 + rng.below(300);
            let (open, close) = if rng.one_in(2) {
                ("[", "]")
            } else {
                ("{\"a\":", "}")
            };
            format!("{}1{}", open.repeat(depth), close.repeat(depth)).into_bytes()
        }
        1 => {
            let n = [200, 4096, 65_535, 65_536, 70_000][rng.below(5)];
            format!("\"{}\"", "A".repeat(n)).into_bytes()
        }
        2 => b"\"\xff\xfe\xc3(\"".to_vec(),
        3 => format!("\"{CANARY}\"").into_bytes(),
        _ => rng.pick(VALUES).as_bytes().to_vec(),
    }
}

/// The span of a JSON value that follows a `:`, `[` or `,` at a random
/// place in `b`, found without parsing (the input may be broken).
fn find_value(rng: &mut Rng, b: &[u8]) -> Option<(usize, usize)> {
    let from = rng.below(b.len() + 1);
    let sep = from + b[from..].iter().position(|c| b":[,".contains(c))?;
    let mut start = sep + 1;
    while start < b.len() && b[start].is_ascii_whitespace() {
        start += 1;
    }
    if start >= b.len() {
        return None;
    }
    Some((start, value_end(b, start)))
}

/// Where the value starting at `start` ends: its closing quote or bracket,
/// or the next delimiter for a bare word.
fn value_end(b: &[u8], start: usize) -> usize {
    match b[start] {
        b'"' => string_end(b, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            while i < b.len() {
                match b[i] {
                    b'"' => {
                        i = string_end(b, i);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            b.len()
        }
        _ => {
            let rest = &b[start..];
            start
                + rest
                    .iter()
                    .position(|c| b",}] \t\r\n".contains(c))
                    .unwrap_or(rest.len())
                    .max(1)
        }
    }
}

/// One past the closing quote of the string opening at `start`.
fn string_end(b: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// The span of a string followed by `:` (an object key), from a random place.
fn find_key(rng: &mut Rng, b: &[u8]) -> Option<(usize, usize)> {
    let from = rng.below(b.len() + 1);
    let mut i = from + b[from..].iter().position(|&c| c == b'"')?;
    while i < b.len() {
        let end = string_end(b, i);
        let next = b[end..].iter().position(|c| !c.is_ascii_whitespace());
        if next.is_some_and(|n| b[end + n] == b':') {
            return Some((i, end));
        }
        i = end + b.get(end..)?.iter().position(|&c| c == b'"')?;
    }
    None
}

/// The span of a run of ASCII digits, from a random place.
fn find_digits(rng: &mut Rng, b: &[u8]) -> Option<(usize, usize)> {
    let from = rng.below(b.len() + 1);
    let start = from + b[from..].iter().position(u8::is_ascii_digit)?;
    let len = b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
    Some((start, start + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_spans_follow_json_structure() {
        let b = br#"{"a":"x\"y","b":[1,{"c":"]"}],"d":42}"#;
        assert_eq!(&b[value_end(b, 5)..][..1], b",");
        assert_eq!(&b[16..value_end(b, 16)], br#"[1,{"c":"]"}]"#);
        assert_eq!(&b[34..value_end(b, 34)], b"42");
    }

    #[test]
    fn mutations_stay_bounded_and_vary() {
        let mut rng = Rng::new(7);
        let seed = br#"{"ServerURL":"us.icr.io","Username":"iamapikey","Secret":"k"}"#.to_vec();
        let others = vec![seed.clone(), b"us.icr.io".to_vec(), Vec::new()];
        let mut distinct = std::collections::HashSet::new();
        for _ in 0..5000 {
            let out = mutate(&mut rng, &seed, &others);
            assert!(out.len() <= MAX_LEN);
            distinct.insert(out);
        }
        assert!(distinct.len() > 3000, "{}", distinct.len());
    }
}
