//! The one integration-test binary: drives the real executable.

// The clock and environment rules (clippy.toml) are for the helper; tests read both.
#![allow(clippy::disallowed_methods)]

#[path = "../support/mod.rs"]
mod support;

/// Per-test sandboxes and the command runner.
mod util;

/// IBM hosts minted against the fake IBM API (issue 3).
mod mint;

/// The credential-helper protocol, byte for byte (issue 2.1).
mod protocol;

/// Hosts, IBM credentials as stored, and the file store (issue 2.2–2.4).
mod store;

/// Canary secrets never leak (issue 2.5).
mod redaction;

/// A real client: Python's dockerpycreds and docker-py (issue 2.8).
mod python;

/// The keyring store against a real Secret Service (issue 2.3, 2.8).
mod keyring;

/// What an adversarial review broke, each pinned (issue 10).
mod hardening;

/// Every verb × every fault, from one table (issue 10.10).
mod faults;

/// Byte for byte against the real Go helper's captured answers (issue 9).
mod go;

/// The files the helper reads and writes: owners, links, types, sizes, temp files (issue 10.1, 10.4–10.6).
mod files;

/// The credential chain without a stored key: CR token, VPC identity, `ibmcloud` session (issue 11).
mod fleet;

/// The kubelet image credential provider, run as the kubelet runs it (issue 11.2).
mod kubelet;

/// `login`, `doctor` and the help that lists every verb (issue 12).
mod everyday;
