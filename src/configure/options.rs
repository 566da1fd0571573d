//! `configure`'s argv: `--dry-run`, `--undo`, `--creds-store`, `--help`.

use anyhow::{bail, Result};

use super::USAGE;

/// The flags of the verb.
#[derive(Debug, Default)]
pub(super) struct Options {
    pub(super) dry_run: bool,
    pub(super) undo: bool,
    pub(super) creds_store: bool,
}

impl Options {
    /// `None` for `--help`.
    pub(super) fn parse(args: &[String]) -> Result<Option<Options>> {
        let mut options = Options::default();
        for arg in args {
            match arg.as_str() {
                "--dry-run" | "-n" => options.dry_run = true,
                "--undo" => options.undo = true,
                "--creds-store" => options.creds_store = true,
                "--help" | "-h" => return Ok(None),
                other if other.starts_with('-') => match crate::log::option_argument(other) {
                    Some(other) => bail!("unknown option for configure: {other} ({USAGE})"),
                    None => bail!("an unknown option for configure ({USAGE})"),
                },
                // Not echoed: a stray argument may be a pasted secret.
                _ => bail!("configure takes no arguments ({USAGE})"),
            }
        }
        if options.undo && options.creds_store {
            bail!("--creds-store has no meaning with --undo ({USAGE})");
        }
        Ok(Some(options))
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::super::testing::*;

    #[test]
    fn options_are_checked() {
        let s = Scratch::new("options");
        let env = s.env(&[]);
        let err = configure(&env, &["--x"]).unwrap_err().to_string();
        assert_eq!(err, format!("unknown option for configure: --x ({USAGE})"));
        let err = configure(&env, &["sekrit"]).unwrap_err().to_string();
        assert!(!err.contains("sekrit") && err.contains(USAGE), "{err}");
        assert!(configure(&env, &["--undo", "--creds-store"]).is_err());
        assert!(configure(&env, &["--help"]).unwrap().starts_with(USAGE));
        assert!(snapshot(&s.0).is_empty(), "nothing written");
    }
}
