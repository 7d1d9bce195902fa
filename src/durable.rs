//! Durable writes and the run lock: every file lmloop writes goes through here, so a
//! reader sees an old file or a whole new one, never a half-written one, and a
//! finished write survives a power cut. Where files live is `crate::layout`'s business.
//!
//! Temporaries (`.NAME.tmp-PID`, `.NAME.partial`) are written beside their final name
//! and renamed into place; [`remove_stale_temporaries`] deletes the ones a killed
//! process left.
use crate::layout::DONE;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The temporary sibling a file is written to before being renamed into place.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// True for the names of files and folders that only an unfinished write leaves:
/// [`temp_path`]'s `.NAME.tmp-PID` and the trainer's `.NAME.partial` log.
pub fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && (name.contains(".tmp-") || name.ends_with(".partial"))
}

/// Deletes every temporary ([`is_temporary`]) anywhere under `dir`, which an
/// interrupted process left behind; returns how many it removed. Call it only while
/// holding the lock of whatever owns `dir` (a run's folders are owned by its lock).
pub fn remove_stale_temporaries(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_temporary(&entry.file_name().to_string_lossy()) {
            let gone = if is_dir { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            removed += usize::from(gone.is_ok());
        } else if is_dir {
            removed += remove_stale_temporaries(&path);
        }
    }
    removed
}

/// An exclusive advisory lock on a file (`flock`), held until dropped; the OS releases
/// it when the process ends, even by a kill.
pub struct Lock {
    _file: std::fs::File,
}

impl Lock {
    /// Takes the lock at `path` (creating the file and its folder), or `None` when
    /// another process holds it.
    pub fn try_acquire(path: &Path) -> Result<Option<Lock>> {
        use std::os::unix::io::AsRawFd;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        // SAFETY: flock on a file descriptor we own.
        let held = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0;
        Ok((!held).then_some(Lock { _file: file }))
    }

    /// Writes who holds the lock into its file, for the processes that wait on it to
    /// say whom they wait for.
    pub fn describe_holder(&self, text: &str) -> Result<()> {
        use std::io::{Seek, Write};
        let mut f = &self._file;
        f.set_len(0)
            .and_then(|_| f.seek(std::io::SeekFrom::Start(0)))
            .and_then(|_| f.write_all(text.as_bytes()))
            .context("cannot write into a lock file")
    }
}

/// A temporary file being written ([`temp_path`]): removed when dropped before
/// [`Pending::commit`] moves it into place, so a writer that fails (a full disk) leaves
/// nothing behind.
pub struct Pending {
    tmp: PathBuf,
    committed: bool,
}

impl Pending {
    /// The temporary of `path`.
    pub fn of(path: &Path) -> Self {
        Self { tmp: temp_path(path), committed: false }
    }

    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Moves the temporary to `to` ([`rename_durably`]).
    pub fn commit(mut self, to: &Path) -> Result<()> {
        rename_durably(&self.tmp, to)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Flushes a folder's entries (a rename or a new file in it) to disk. A filesystem
/// that cannot flush folders at all (EINVAL, as some network filesystems answer) is
/// accepted; any other failure is an error.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    match std::fs::File::open(dir).and_then(|f| f.sync_all()) {
        Err(e) if e.raw_os_error() != Some(libc::EINVAL) => {
            Err(e).with_context(|| format!("cannot flush the folder {} to disk", dir.display()))
        }
        _ => Ok(()),
    }
}

/// Flushes a file's contents to disk.
pub fn sync_file(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot flush {} to disk", path.display()))
}

/// Renames `from` to `to` and flushes the folder holding `to`, so the rename survives
/// a power cut.
pub fn rename_durably(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).with_context(|| format!("cannot move {} into place", to.display()))?;
    sync_dir(to.parent().unwrap_or(Path::new(".")))
}

/// Writes `bytes` to `path` atomically and durably: a reader sees the old file or the
/// whole new one (a rename within one folder is atomic on POSIX filesystems), and once
/// it returns, the data and the rename are on disk (the file and then its folder are
/// flushed). The temporary file is removed again if anything fails.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    if path.file_name().is_none() {
        anyhow::bail!("cannot write to {}: it names no file", path.display());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = temp_path(path);
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
        .with_context(|| format!("cannot write {}", tmp.display()));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("cannot move {} into place: {e}", path.display())
    })?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid", path.display()))
}

/// True when a folder was completed (its `DONE` marker exists).
pub fn is_done(dir: &Path) -> bool {
    dir.join(DONE).exists()
}

pub fn mark_done(dir: &Path) -> Result<()> {
    write_atomic(&dir.join(DONE), b"")
}

/// A CSV document: `fill` writes its records (or serialises its rows) to the writer.
pub fn csv_bytes(fill: impl FnOnce(&mut csv::Writer<Vec<u8>>) -> Result<()>) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    fill(&mut w)?;
    w.into_inner().map_err(|e| anyhow::anyhow!("cannot finish a CSV document: {e}"))
}

/// Writes the CSV document `fill` makes ([`csv_bytes`]) to `path` with [`write_atomic`].
pub fn write_csv_atomic(path: &Path, fill: impl FnOnce(&mut csv::Writer<Vec<u8>>) -> Result<()>) -> Result<()> {
    let bytes = csv_bytes(fill).with_context(|| format!("cannot format {}", path.display()))?;
    write_atomic(path, &bytes)
}
