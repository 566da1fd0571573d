//! The one integration-test binary: drives the real executable.

// The clock and environment rules (clippy.toml) are for the helper; tests read both.
#![allow(clippy::disallowed_methods)]

#[path = "../support/mod.rs"]
mod support;

/// Per-test sandboxes and the command runner.
mod util;

/// IBM hosts minted against the fake IBM API (issue 3).
mod mint;
