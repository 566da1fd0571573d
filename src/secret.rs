//! `Secret<T>`: a value that never shows itself by accident.

use std::fmt;

/// A secret value: API key, registry token, IAM access or refresh token.
///
/// `Debug` prints `Secret("****")`, there is no `Display` and no `Deref`;
/// [`Secret::expose`] is the one way out. Serde sees the inner value
/// (transparent), so secrets can live inside wire and file types.
#[derive(Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The secret itself. Every call site is a place where a secret leaves
    /// its wrapper: keep them few.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(\"****\")")
    }
}

impl Secret<String> {
    /// True when the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("canary-5f2b".to_string());
        let shown = format!("{s:?} {:?} {s:#?}", Some(&s));
        assert!(!shown.contains("canary"), "{shown}");
        assert!(shown.contains("****"));
    }

    #[test]
    fn serde_is_transparent() {
        let s: Secret<String> = serde_json::from_str("\"k\"").unwrap();
        assert_eq!(s.expose(), "k");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"k\"");
    }
}
