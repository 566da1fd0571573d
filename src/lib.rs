//! Docker credential helper for IBM Cloud Container Registry.
//!
//! # Design
//!
//! One process per request, as Docker runs credential helpers. A `get`
//! reads top to bottom through these modules:
//!
//! ```text
//! main.rs    argv ─▶ Action, Env read once, the clock, the exit code
//! verbs.rs   route: stdin (protocol.rs) ─▶ ServerURL ─▶ Registry (registry.rs)
//!   other    ─▶ plain store: exact ServerURL key (store/)
//!   IBM      ─▶ ibm/: settings.rs ─▶ token cache (cache/) ── fresh? ─▶ answer
//!                                        (no keyring, no network, no HTTP client)
//!                 └▶ store/ (host, icr.io) ─▶ ibm/chain.rs: environment key,
//!                    CR token, projected token, [VPC identity], ibmcloud session
//!                      └▶ ibm/decide.rs: as stored | api key | mint from a source
//!                      └▶ ibm/minting.rs: cache lock, re-check, mint (mint/), remember
//! protocol.rs stdout ◀─ {"ServerURL","Username","Secret"} or one error line
//!
//! kubelet-plugin (or the binary as ibmcr-credential-provider): kubelet.rs reads a
//! CredentialProviderRequest ─▶ IBM image? the same ibm::get, or the service
//! account's trusted profile ─▶ protocol.rs stdout ◀─ CredentialProviderResponse
//! ```
//!
//! Decisions are pure functions of what was read (`ibm/decide.rs`); I/O sits
//! at the edges: `protocol.rs` owns stdin and stdout, `fsutil/` every
//! private file, `store/` the keyring, `mint/` the network (the only module
//! that imports reqwest, built only on a cache miss), `env.rs` the
//! environment, `main.rs` the clock.
//!
//! Where secrets live: what users `store` goes to the OS keyring or a 0600
//! file (`store/`); what the helper mints (IAM access tokens, registry
//! tokens) goes to the 0600 token cache, under keys that name the identity
//! that minted them by a fingerprint, never the secret (`ibm/source.rs`
//! says what each kind of identity is named by). Identity sources that are
//! not the helper's (a CR token file, the `ibmcloud` CLI's session) are only
//! read, bounded, and never cached or written. Every secret is a
//! [`Secret`](secret::Secret) from the moment it is parsed: its `Debug` is
//! redacted and it has no `Display`.
#![deny(missing_docs)]

mod cache;
mod configure;
mod doctor;
mod env;
mod fsutil;
#[cfg(test)]
mod fuzz;
mod ibm;
mod jwt;
mod kubelet;
mod log;
mod login;
mod mint;
mod protocol;
mod registry;
mod secret;
mod settings;
mod store;
mod terminal;
mod verbs;

pub use env::Env;
pub use fsutil::no_core_dumps;
pub use log::{init as init_log, say};
pub use protocol::{write_bad_args, write_help, write_line, write_version, Action, Error, NAME};
pub use verbs::run;
