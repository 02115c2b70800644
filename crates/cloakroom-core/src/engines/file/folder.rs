//! Walking the session folder: every session (for scans), and the sweep of expired sessions
//! and of temp files a crash left behind.

use std::fs;
use std::io;

use time::OffsetDateTime;

use super::disk::{not_found, TEMP_MARKER};
use super::Inner;
use crate::key;
use crate::store::Record;

/// A temp file untouched this long (in seconds) was left by a crash; `clear_expired` removes it.
#[cfg(unix)]
const STALE_TEMP_SECS: i64 = 3600;

impl Inner {
    /// Removes every session file expired at `now` (and stale temp files), returning how
    /// many went; their keys go in `names` when given (for the `Expired` events).
    pub(super) fn clear_expired(
        &self,
        now: OffsetDateTime,
        mut names: Option<&mut Vec<String>>,
    ) -> io::Result<u64> {
        let mut cleared = 0;
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&self.prefix)) else {
                continue;
            };
            match rest.split_once(TEMP_MARKER) {
                None if key::is_well_formed(rest) => {
                    let path = entry.path();
                    let Some(locked) = self.lock_current(&path)? else {
                        continue;
                    };
                    if self.expires_at(&locked.metadata()?)? <= now {
                        match fs::remove_file(&path) {
                            Ok(()) => {
                                cleared += 1;
                                if let Some(names) = names.as_deref_mut() {
                                    names.push(rest.to_owned());
                                }
                            }
                            Err(e) if not_found(&e) => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
                Some((key, _)) if key::is_well_formed(key) => self.remove_if_stale(&entry)?,
                _ => {}
            }
        }
        Ok(cleared)
    }

    /// Removes a temp file a crash left behind. Its mtime is set on purpose, so its age is told
    /// by its change time.
    #[cfg(unix)]
    pub(super) fn remove_if_stale(&self, entry: &fs::DirEntry) -> io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let meta = entry.metadata()?;
        let changed = OffsetDateTime::from_unix_timestamp(meta.ctime()).ok();
        let stale = OffsetDateTime::now_utc() - time::Duration::seconds(STALE_TEMP_SECS);
        if self.trusted(&meta) && changed.is_some_and(|c| c < stale) {
            match fs::remove_file(entry.path()) {
                Err(e) if !not_found(&e) => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    #[cfg(not(unix))]
    pub(super) fn remove_if_stale(&self, _entry: &fs::DirEntry) -> io::Result<()> {
        Ok(())
    }

    /// Every session file's key and record (live or not), skipping temp files and files this
    /// store may not read.
    pub(super) fn all(&self) -> io::Result<Vec<(String, Record)>> {
        let mut all = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(key) = name.to_str().and_then(|n| n.strip_prefix(&self.prefix)) else {
                continue;
            };
            if !key::is_well_formed(key) {
                continue;
            }
            let Some(file) = self.open(&entry.path())? else {
                continue;
            };
            if let Some(record) = self.read(&file)? {
                all.push((key.to_owned(), record));
            }
        }
        Ok(all)
    }
}
