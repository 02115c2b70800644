//! The file store's index entries ([`IndexEntries`]): a hidden folder beside the sessions
//! with one folder per user (named by a hash of the user id) and one small JSON file per
//! linked session. The rules of the index are the core's (`crate::users`).

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use time::OffsetDateTime;

use super::disk::{create_new_private, not_found, random_suffix, TEMP_MARKER};
use super::{FileStore, Inner};
use crate::error::StoreError;
use crate::key;
use crate::store::UserSession;
use crate::users::{IndexEntries, IndexEntry};

/// What an index entry file holds (instants in ms since the Unix epoch).
#[derive(serde::Serialize, serde::Deserialize)]
struct EntryFile {
    created: i64,
    last_seen: i64,
    user_agent: Option<String>,
    ip: Option<String>,
}

fn unix_ms(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn from_unix_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl Inner {
    fn users_dir(&self) -> PathBuf {
        self.dir.join(format!(".{}.users", self.prefix))
    }

    fn user_dir(&self, user_id: &str) -> PathBuf {
        self.users_dir().join(crate::hashed::stored_key(user_id))
    }

    /// Makes a folder of the index (mode 0700) unless it exists; one that is not a folder
    /// owned by this user (planted in a shared temp folder) is refused.
    fn private_dir(&self, path: &Path) -> io::Result<()> {
        let mut builder = fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        match builder.create(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let meta = fs::symlink_metadata(path)?;
                #[cfg(unix)]
                let owned = std::os::unix::fs::MetadataExt::uid(&meta) == self.owner;
                #[cfg(not(unix))]
                let owned = true;
                if meta.is_dir() && owned {
                    Ok(())
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!(
                            "{} is not a folder owned by this user; remove it",
                            path.display()
                        ),
                    ))
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The expiry of session `key`'s file when it is live at `now`.
    fn live_until(&self, key: &str, now: OffsetDateTime) -> io::Result<Option<OffsetDateTime>> {
        let Some(path) = self.path(key) else {
            return Ok(None);
        };
        let meta = match fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        if !self.trusted(&meta) {
            return Ok(None);
        }
        Ok(Some(self.expires_at(&meta)?).filter(|at| *at > now))
    }

    fn read_entry(&self, path: &Path) -> io::Result<Option<EntryFile>> {
        let Some(mut file) = self.open(path)? else {
            return Ok(None);
        };
        let mut text = String::new();
        if file.read_to_string(&mut text).is_err() {
            return Ok(None);
        }
        Ok(serde_json::from_str(&text).ok())
    }

    fn link(&self, entry: &UserSession) -> io::Result<()> {
        if self
            .live_until(&entry.id, OffsetDateTime::UNIX_EPOCH)?
            .is_none()
        {
            // The session went meanwhile (or the id is not a key): nothing to link.
            return Ok(());
        }
        let dir = self.user_dir(&entry.user_id);
        let path = dir.join(&entry.id);
        let created = match self.read_entry(&path)? {
            Some(old) => old.created,
            None => unix_ms(entry.created_at),
        };
        let text = serde_json::to_vec(&EntryFile {
            created,
            last_seen: unix_ms(entry.last_seen),
            user_agent: entry.user_agent.clone(),
            ip: entry.ip.clone(),
        })
        .map_err(io::Error::other)?;
        // A concurrent unlink may remove the emptied user folder between its creation and the
        // rename: make it again once.
        let mut result = Ok(());
        for _ in 0..2 {
            self.private_dir(&self.users_dir())?;
            self.private_dir(&dir)?;
            let temp = dir.join(format!("{}{TEMP_MARKER}{}", entry.id, random_suffix()?));
            result = create_new_private(&temp)
                .and_then(|mut file| file.write_all(&text))
                .and_then(|()| fs::rename(&temp, &path));
            if result.is_err() {
                let _ = fs::remove_file(&temp);
            }
            match &result {
                Err(e) if not_found(e) => continue,
                _ => break,
            }
        }
        result
    }

    fn unlink(&self, user_id: &str, id: &str) -> io::Result<()> {
        if !key::is_well_formed(id) {
            return Ok(());
        }
        let dir = self.user_dir(user_id);
        match fs::remove_file(dir.join(id)) {
            Err(e) if !not_found(&e) => return Err(e),
            _ => {}
        }
        // Gone once empty; a folder still holding entries refuses, which is fine.
        let _ = fs::remove_dir(&dir);
        Ok(())
    }

    /// The entry files of `user_id`, each with its session file's expiry (`Stale` when the
    /// session file or the entry is gone or unreadable).
    fn entries(&self, user_id: &str) -> io::Result<Vec<IndexEntry>> {
        let dir = self.user_dir(user_id);
        let files = match fs::read_dir(&dir) {
            Ok(files) => files,
            Err(e) if not_found(&e) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut entries = Vec::new();
        for file in files {
            let name = file?.file_name();
            let Some(id) = name.to_str().filter(|n| key::is_well_formed(n)) else {
                continue;
            };
            let session = self.live_until(id, OffsetDateTime::UNIX_EPOCH)?;
            entries.push(match (session, self.read_entry(&dir.join(id))?) {
                (Some(expires_at), Some(e)) => IndexEntry::Found(UserSession {
                    id: id.to_owned(),
                    user_id: user_id.to_owned(),
                    created_at: from_unix_ms(e.created),
                    last_seen: from_unix_ms(e.last_seen),
                    expires_at,
                    user_agent: e.user_agent,
                    ip: e.ip,
                }),
                _ => IndexEntry::Stale(id.to_owned()),
            });
        }
        Ok(entries)
    }

    fn holds(&self, user_id: &str, id: &str) -> bool {
        key::is_well_formed(id) && fs::symlink_metadata(self.user_dir(user_id).join(id)).is_ok()
    }

    /// Removes the entries of sessions that are gone or expired at `now` (and temp files a
    /// crash left), and the user folders that end up empty.
    pub(super) fn sweep_users(&self, now: OffsetDateTime) -> io::Result<()> {
        let users = match fs::read_dir(self.users_dir()) {
            Ok(users) => users,
            Err(e) if not_found(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        for user in users {
            let dir = user?.path();
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name();
                match name.to_str() {
                    Some(id) if key::is_well_formed(id) => {
                        if self.live_until(id, now)?.is_none() {
                            match fs::remove_file(entry.path()) {
                                Err(e) if !not_found(&e) => return Err(e),
                                _ => {}
                            }
                        }
                    }
                    _ => self.remove_if_stale(&entry)?,
                }
            }
            let _ = fs::remove_dir(&dir);
        }
        Ok(())
    }
}

#[async_trait]
impl IndexEntries for FileStore {
    async fn put(&self, entry: &UserSession) -> Result<(), StoreError> {
        let entry = entry.clone();
        self.run("link", move |s| s.link(&entry)).await
    }

    async fn remove(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        let (user_id, id) = (user_id.to_owned(), id.to_owned());
        self.run("unlink", move |s| s.unlink(&user_id, &id)).await
    }

    async fn entries(
        &self,
        user_id: &str,
        _now: OffsetDateTime,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        let user_id = user_id.to_owned();
        self.run("list", move |s| s.entries(&user_id)).await
    }

    async fn holds(&self, user_id: &str, id: &str) -> Result<bool, StoreError> {
        let (user_id, id) = (user_id.to_owned(), id.to_owned());
        self.run("revoke", move |s| Ok(s.holds(&user_id, &id)))
            .await
    }
}
