//! Docker credential helper for IBM Cloud Container Registry.
//!
//! # Design
//!
//! One process per request, as Docker runs credential helpers:
//!
//! ```text
//! argv ─▶ Action ─▶ stdin (protocol.rs) ─▶ ServerURL ─▶ IbmHost? (registry.rs)
//!   not IBM ─▶ plain store: exact ServerURL key (store/)
//!   IBM     ─▶ token cache (cache.rs) ── fresh? ─▶ answer     (no keyring, no network)
//!              └▶ stored credential (store/) ─▶ as stored, or an API key
//!                 └▶ mint under the cache lock (ibm.rs → mint.rs) ─▶ cache ─▶ answer
//! stdout ◀─ {"ServerURL","Username","Secret"} or one error line (also on stderr)
//! ```
//!
//! Where secrets live: what users `store` goes to the OS keyring or a 0600
//! file (`store/`); what the helper mints (IAM access tokens, registry
//! tokens) goes to the 0600 token cache. Every secret is a [`Secret`] from
//! the moment it is parsed: its `Debug` is redacted and it has no `Display`.
//! Only `mint.rs` speaks HTTP, and only on a cache miss.
#![deny(missing_docs)]

pub mod cache;
pub mod config;
pub mod configure;
pub mod env;
pub mod fsutil;
pub mod helper;
pub mod ibm;
pub mod jwt;
pub mod log;
pub mod mint;
pub mod protocol;
pub mod registry;
pub mod secret;
pub mod store;

pub use env::Env;
pub use secret::Secret;
