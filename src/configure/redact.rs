//! What `--dry-run` may print of a config file: every secret in it replaced by `"****"`.

use serde_json::Value;

/// What `--dry-run` shows as the value of a redacted secret.
const REDACTED: &str = "****";
/// Fields of an `auths` entry that hold a secret (matched case-insensitively, as Go does).
pub(super) const AUTH_SECRET_FIELDS: &[&str] =
    &["auth", "password", "identitytoken", "registrytoken"];

/// A copy of `doc` fit to print: the secrets of `auths` entries, every `HttpHeaders` value
/// and the user:password part of any URL become `"****"`.
pub(super) fn redacted(doc: &Value) -> Value {
    let mut doc = doc.clone();
    if let Value::Object(map) = &mut doc {
        for (key, value) in map.iter_mut() {
            if key.eq_ignore_ascii_case("auths") {
                if let Value::Object(auths) = value {
                    for entry in auths.values_mut() {
                        match entry {
                            Value::Object(fields) => {
                                for (name, field) in fields.iter_mut() {
                                    let secret = AUTH_SECRET_FIELDS
                                        .iter()
                                        .any(|f| name.eq_ignore_ascii_case(f));
                                    if secret {
                                        *field = Value::String(REDACTED.into());
                                    }
                                }
                            }
                            other => *other = Value::String(REDACTED.into()),
                        }
                    }
                }
            } else if key.eq_ignore_ascii_case("HttpHeaders") {
                if let Value::Object(headers) = value {
                    for header in headers.values_mut() {
                        *header = Value::String(REDACTED.into());
                    }
                }
            }
        }
    }
    redact_url_userinfo(&mut doc);
    doc
}

/// `http://user:pass@proxy:3128` → `http://****@proxy:3128`, in every string of `value`.
fn redact_url_userinfo(value: &mut Value) {
    match value {
        Value::String(s) => *s = crate::log::redact_userinfo(s),
        Value::Array(items) => items.iter_mut().for_each(redact_url_userinfo),
        Value::Object(map) => map.values_mut().for_each(redact_url_userinfo),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_secret_becomes_stars_and_the_rest_stays() {
        let doc = json!({
            "Auths": {
                "a.example": {
                    "Auth": "c2VjcmV0",
                    "password": "pw",
                    "IdentityToken": "it",
                    "registrytoken": "rt",
                    "email": "me@example.com"
                },
                "b.example": "not-an-object"
            },
            "HttpHeaders": {"X-Meta-Token": "hdr"},
            "proxies": {"default": {"httpsProxy": "https://u:p@proxy:3128/x"}},
            "list": ["http://u@host", "plain"],
            "psFormat": "table {{.ID}}"
        });
        // The input with exactly these values changed; every other one stays.
        let mut want = doc.clone();
        for (pointer, shown) in [
            ("/Auths/a.example/Auth", REDACTED),
            ("/Auths/a.example/password", REDACTED),
            ("/Auths/a.example/IdentityToken", REDACTED),
            ("/Auths/a.example/registrytoken", REDACTED),
            ("/Auths/b.example", REDACTED),
            ("/HttpHeaders/X-Meta-Token", REDACTED),
            ("/proxies/default/httpsProxy", "https://****@proxy:3128/x"),
            ("/list/0", "http://****@host"),
        ] {
            *want.pointer_mut(pointer).unwrap() = json!(shown);
        }
        assert_eq!(redacted(&doc), want);
        assert_eq!(
            doc["HttpHeaders"]["X-Meta-Token"], "hdr",
            "a copy: the input stays"
        );
    }
}
