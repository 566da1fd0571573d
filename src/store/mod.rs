//! Stored credentials: what users gave `store`, one record per key, behind
//! one trait with two backends (OS keyring, 0600 file). Minted tokens never
//! come here; they live in the token cache (`cache.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::env::{Env, StoreChoice};
use crate::secret::Secret;
use crate::{debug, fsutil};

pub mod file;
pub mod keyring;

/// The most the file store or the keyring index may hold: thousands of
/// credentials. A larger file is refused, never read; a write that would
/// pass it fails.
pub const MAX_STORE_BYTES: u64 = 4 << 20;
/// The most the backend choice (`keyring` or `file`) may hold.
pub const MAX_BACKEND_BYTES: u64 = 1 << 10;

/// One stored credential.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// The username as stored (`iamapikey`, `token`, `<token>`, …).
    pub username: String,
    /// The secret.
    pub secret: Secret<String>,
    /// Unix seconds of the `store`.
    pub stored_at: u64,
}

/// A backend for stored credentials.
pub trait SecretStore {
    /// The record stored under `key`, if any.
    fn get(&self, key: &str) -> Result<Option<Record>>;
    /// Stores `record` under `key`, replacing any previous one.
    fn put(&self, key: &str, record: &Record) -> Result<()>;
    /// Removes `key`; false when there was nothing to remove.
    fn remove(&self, key: &str) -> Result<bool>;
    /// Every key with its username (never secrets, never the network).
    fn list(&self) -> Result<BTreeMap<String, String>>;
    /// `keyring` or `file`, for logs.
    fn name(&self) -> &'static str;
    /// Whether the backend answers at all, asked without writing anything
    /// (`doctor`): a `get` finds nothing, not an error, where no keyring
    /// ever held anything.
    fn answers(&self) -> Result<()> {
        Ok(())
    }
}

/// A borrowed store is a store (tests keep theirs to inspect it afterwards).
impl<T: SecretStore + ?Sized> SecretStore for &T {
    fn get(&self, key: &str) -> Result<Option<Record>> {
        (**self).get(key)
    }
    fn put(&self, key: &str, record: &Record) -> Result<()> {
        (**self).put(key, record)
    }
    fn remove(&self, key: &str) -> Result<bool> {
        (**self).remove(key)
    }
    fn list(&self) -> Result<BTreeMap<String, String>> {
        (**self).list()
    }
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn answers(&self) -> Result<()> {
        (**self).answers()
    }
}

/// Holds the data dir's store lock: every read-modify-write of stored
/// credentials (file store, keyring index, the first backend choice).
fn lock(data_dir: &Path) -> Result<fsutil::LockGuard> {
    fsutil::lock(&data_dir.join("store.lock"), fsutil::LOCK_WAIT)
}

/// Where the backend chosen by `IBMCR_STORE=auto` is recorded.
fn backend_file(env: &Env) -> Result<PathBuf> {
    Ok(env.dirs()?.data.join("backend"))
}

fn recorded(env: &Env) -> Result<Option<StoreChoice>> {
    let path = backend_file(env)?;
    let Some(bytes) = fsutil::read_private(&path, MAX_BACKEND_BYTES)? else {
        return Ok(None);
    };
    match std::str::from_utf8(&bytes).map(str::trim) {
        Ok("keyring") => Ok(Some(StoreChoice::Keyring)),
        Ok("file") => Ok(Some(StoreChoice::File)),
        _ => anyhow::bail!(
            "`{}` must say `keyring` or `file`: fix or delete it, or set IBMCR_STORE",
            path.display()
        ),
    }
}

fn open(env: &Env, choice: StoreChoice) -> Result<Box<dyn SecretStore>> {
    let data = env.dirs()?.data.clone();
    Ok(match choice {
        StoreChoice::Keyring => Box::new(keyring::KeyringStore::new(data)),
        _ => Box::new(file::FileStore::new(data)),
    })
}

/// The store to read from, without probing anything: the forced backend,
/// else the one recorded by the first `store`. `None` when nothing was ever
/// stored (so nothing can be found).
pub fn open_for_read(env: &Env) -> Result<Option<Box<dyn SecretStore>>> {
    let choice = match env.store {
        StoreChoice::Auto => match recorded(env)? {
            Some(choice) => choice,
            None => return Ok(None),
        },
        forced => forced,
    };
    open(env, choice).map(Some)
}

/// The store to write to. With `auto` and no recorded choice, probes the
/// keyring (set + delete), records the outcome and logs it.
pub fn open_for_write(env: &Env) -> Result<Box<dyn SecretStore>> {
    let choice = match env.store {
        StoreChoice::Auto => match recorded(env)? {
            Some(choice) => choice,
            None => {
                let dir = &env.dirs()?.data;
                fsutil::ensure_private_dir(dir)?;
                // Two first stores at once must record one choice.
                let lock = lock(dir)?;
                if let Some(choice) = recorded(env)? {
                    return open(env, choice);
                }
                let choice = match keyring::probe() {
                    Ok(()) => StoreChoice::Keyring,
                    Err(why) => {
                        debug!("store", "keyring not usable ({why}); using the file store");
                        StoreChoice::File
                    }
                };
                let word = if choice == StoreChoice::Keyring {
                    "keyring\n"
                } else {
                    "file\n"
                };
                let file = backend_file(env)?;
                fsutil::remove_stale_temps(&file, &lock);
                fsutil::write_atomic(&file, word.as_bytes())
                    .context("recording the chosen credential store")?;
                choice
            }
        },
        forced => forced,
    };
    let store = open(env, choice)?;
    debug!("store", "using the {} store", store.name());
    Ok(store)
}

#[cfg(test)]
pub mod memory {
    //! An in-memory store for tests of the logic above the trait.
    use super::*;
    use std::cell::RefCell;

    /// Records in a map; counts reads so tests can prove a path never read it.
    #[derive(Default)]
    pub struct MemoryStore {
        /// The records.
        pub records: RefCell<BTreeMap<String, Record>>,
        /// How many `get`s were made.
        pub reads: std::cell::Cell<usize>,
    }

    impl SecretStore for MemoryStore {
        fn get(&self, key: &str) -> Result<Option<Record>> {
            self.reads.set(self.reads.get() + 1);
            Ok(self.records.borrow().get(key).cloned())
        }
        fn put(&self, key: &str, record: &Record) -> Result<()> {
            self.records
                .borrow_mut()
                .insert(key.to_string(), record.clone());
            Ok(())
        }
        fn remove(&self, key: &str) -> Result<bool> {
            Ok(self.records.borrow_mut().remove(key).is_some())
        }
        fn list(&self) -> Result<BTreeMap<String, String>> {
            Ok(self
                .records
                .borrow()
                .iter()
                .map(|(k, r)| (k.clone(), r.username.clone()))
                .collect())
        }
        fn name(&self) -> &'static str {
            "memory"
        }
    }
}
