//! The file store: one JSON document, 0600 in a 0700 directory, replaced
//! atomically; read-modify-write holds `store.lock`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{Record, SecretStore, MAX_STORE_BYTES};
use crate::{debug, fsutil};

/// Version of the store file format.
const VERSION: u32 = 1;
/// The store file's contents.
#[derive(serde::Serialize, serde::Deserialize, Default)]
pub(crate) struct Document {
    v: u32,
    pub(crate) credentials: BTreeMap<String, Record>,
}

impl Document {
    /// Parses a store file's bytes; `path` only names the file in errors.
    pub(crate) fn parse(bytes: &[u8], path: &Path) -> Result<Document> {
        // serde_json's messages for a typed parse can quote content: name the position only.
        let doc: Document = serde_json::from_slice(bytes).map_err(|e| {
            anyhow::anyhow!(
                "credential store `{}` is corrupt (line {}, column {}): restore it from a backup or remove it",
                path.display(),
                e.line(),
                e.column()
            )
        })?;
        if doc.v != VERSION {
            bail!(
                "credential store `{}` has version {}, this helper reads {VERSION}",
                path.display(),
                doc.v
            );
        }
        Ok(doc)
    }
}

/// Credentials in `<data dir>/store.json`.
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// A file store in `dir` (created on the first write).
    pub fn new(dir: PathBuf) -> FileStore {
        FileStore { dir }
    }

    /// The store file.
    pub fn path(&self) -> PathBuf {
        self.dir.join("store.json")
    }

    fn load(&self) -> Result<Document> {
        let path = self.path();
        let Some(bytes) = fsutil::read_private(&path, MAX_STORE_BYTES)? else {
            return Ok(Document {
                v: VERSION,
                credentials: BTreeMap::new(),
            });
        };
        Document::parse(&bytes, &path)
    }

    fn modify<T>(&self, change: impl FnOnce(&mut Document) -> T) -> Result<T> {
        fsutil::ensure_private_dir(&self.dir)?;
        let lock = super::lock(&self.dir)?;
        let mut doc = self.load()?;
        let out = change(&mut doc);
        // Copies of the document that killed writers left: they may hold
        // what this change removes.
        fsutil::remove_stale_temps(&self.path(), &lock);
        let bytes = serde_json::to_vec_pretty(&doc).context("encoding the credential store")?;
        if bytes.len() as u64 > MAX_STORE_BYTES {
            bail!(
                "credential store `{}` would grow past {}, the most this helper reads: erase credentials you no longer use",
                self.path().display(),
                fsutil::format_size(MAX_STORE_BYTES)
            );
        }
        fsutil::write_atomic(&self.path(), &bytes)?;
        Ok(out)
    }

    /// [`fsutil::remove_stale_temps`] when there is nothing to write, best
    /// effort: a `store` killed before its rename leaves the secret it was
    /// storing in a temp file, and erasing it must not leave that copy.
    /// Takes the lock only when there is such a file.
    fn remove_stale_temps(&self) {
        if fsutil::stale_temps(&self.path()).is_empty() {
            return;
        }
        let locked = fsutil::ensure_private_dir(&self.dir).and_then(|()| super::lock(&self.dir));
        match locked {
            Ok(lock) => fsutil::remove_stale_temps(&self.path(), &lock),
            Err(e) => debug!("store", "left temp files of dead writers: {e:#}"),
        }
    }
}

impl SecretStore for FileStore {
    fn get(&self, key: &str) -> Result<Option<Record>> {
        Ok(self.load()?.credentials.remove(key))
    }

    fn put(&self, key: &str, record: &Record) -> Result<()> {
        self.modify(|doc| {
            doc.credentials.insert(key.to_string(), record.clone());
        })
    }

    fn remove(&self, key: &str) -> Result<bool> {
        if !self.load()?.credentials.contains_key(key) {
            self.remove_stale_temps();
            return Ok(false); // nothing else to do: no write
        }
        self.modify(|doc| doc.credentials.remove(key).is_some())
    }

    fn list(&self) -> Result<BTreeMap<String, String>> {
        Ok(self
            .load()?
            .credentials
            .into_iter()
            .map(|(k, r)| (k, r.username))
            .collect())
    }

    fn name(&self) -> &'static str {
        "file"
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use std::os::unix::fs::MetadataExt;

    fn store(tag: &str) -> FileStore {
        let dir =
            std::env::temp_dir().join(format!("ibmcr-filestore-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        FileStore::new(dir)
    }

    fn rec(u: &str, s: &str) -> Record {
        Record {
            username: u.into(),
            secret: Secret::new(s.into()),
            stored_at: 1,
        }
    }

    #[test]
    fn round_trip_with_private_modes() {
        let s = store("rt");
        assert_eq!(s.get("a").unwrap(), None);
        s.put("a", &rec("u", "p")).unwrap();
        s.put("b", &rec("v", "q")).unwrap();
        assert_eq!(s.get("a").unwrap(), Some(rec("u", "p")));
        assert_eq!(
            s.list().unwrap().into_iter().collect::<Vec<_>>(),
            [("a".into(), "u".into()), ("b".into(), "v".into())]
        );
        assert!(s.remove("a").unwrap());
        assert!(!s.remove("a").unwrap());
        assert_eq!(std::fs::metadata(s.path()).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&s.dir).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn garbage_is_an_error_and_is_never_overwritten() {
        let s = store("garbage");
        s.put("a", &rec("u", "canary-secret")).unwrap();
        std::fs::write(
            s.path(),
            b"{\"v\":1,\"credentials\":{\"a\":{\"username\":\"u\",\"secret\":\"canary-sec",
        )
        .unwrap();
        let before = std::fs::read(s.path()).unwrap();
        let err = s.put("b", &rec("v", "q")).unwrap_err().to_string();
        assert!(
            err.contains("is corrupt") && !err.contains("canary"),
            "{err}"
        );
        assert!(s.get("a").is_err());
        assert_eq!(std::fs::read(s.path()).unwrap(), before);
    }

    #[test]
    fn a_store_never_grows_past_what_it_reads() {
        // issue 10.5: what the helper writes, it can read back.
        let s = store("bound");
        s.put("a", &rec("u", "p")).unwrap();
        let before = std::fs::read(s.path()).unwrap();
        let huge = "x".repeat(MAX_STORE_BYTES as usize);
        let err = s.put("b", &rec("v", &huge)).unwrap_err().to_string();
        assert!(err.contains("would grow past 4 MiB"), "{err}");
        assert!(!err.contains("xxx"), "{err}");
        assert_eq!(std::fs::read(s.path()).unwrap(), before);
    }
}
