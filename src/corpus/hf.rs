//! Files of Hugging Face dataset repositories, named `hf:OWNER/NAME/PATH` with
//! an optional `@REVISION` (a branch, tag or commit; `main` when absent).
//!
//! The file is looked up in the standard Hugging Face cache layout that the
//! Python tools share (`datasets--OWNER--NAME/refs/REVISION` holding a commit,
//! `snapshots/COMMIT/PATH` holding the file), so whatever was downloaded once,
//! by lmloop or by anything else, is found again without the network. When it
//! is not cached, it is downloaded into that same cache, unless offline mode
//! (`HF_HUB_OFFLINE`) forbids it.

use std::ffi::OsString;
use std::fmt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

/// The prefix that marks an input as a Hugging Face file id.
pub const SCHEME: &str = "hf:";

/// A file in a Hugging Face dataset repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HfFileId {
    /// `OWNER/NAME`.
    pub repo: String,
    /// The file's path inside the repository, `/`-separated.
    pub path: String,
    /// Branch, tag or commit; `None` means `main`.
    pub revision: Option<String>,
}

impl HfFileId {
    /// Parses `OWNER/NAME/PATH[@REVISION]`, with or without the `hf:` prefix.
    pub fn parse(id: &str) -> Result<Self> {
        let body = id.strip_prefix(SCHEME).unwrap_or(id);
        let malformed = || {
            anyhow!(
                "{SCHEME}{body} is not a Hugging Face file id; expected \
                 {SCHEME}OWNER/NAME/PATH or {SCHEME}OWNER/NAME/PATH@REVISION, \
                 for example {SCHEME}roneneldan/TinyStories/TinyStories-valid.txt"
            )
        };
        // The revision follows the last `@`: a file path rarely holds one, a
        // revision never does.
        let (location, revision) = match body.rsplit_once('@') {
            Some((location, revision)) => {
                if revision.trim().is_empty() {
                    return Err(malformed());
                }
                (location, Some(revision.to_string()))
            }
            None => (body, None),
        };
        let segments: Vec<&str> = location.split('/').collect();
        // Empty, `.` and `..` segments would let the path leave the snapshot
        // folder once joined to it.
        let bad_segment = |s: &&str| s.trim().is_empty() || *s == "." || *s == "..";
        if segments.len() < 3 || segments.iter().any(bad_segment) {
            return Err(malformed());
        }
        Ok(Self { repo: segments[..2].join("/"), path: segments[2..].join("/"), revision })
    }

    fn revision_or_main(&self) -> &str {
        self.revision.as_deref().unwrap_or("main")
    }

    fn hub_repo(&self) -> Repo {
        Repo::with_revision(self.repo.clone(), RepoType::Dataset, self.revision_or_main().to_string())
    }
}

impl fmt::Display for HfFileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.repo, self.path)?;
        match &self.revision {
            Some(revision) => write!(f, "@{revision}"),
            None => Ok(()),
        }
    }
}

/// Whether `HF_HUB_OFFLINE` asks for offline mode; it takes the same values as
/// the Python tools (`1`, `true`, `yes`, `on`, any case).
pub fn offline_from_env() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|value| matches!(value.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

/// The Hugging Face hub cache folder named by the environment, as the Python
/// tools find it: `HF_HUB_CACHE`, else `HF_HOME/hub`, else
/// `~/.cache/huggingface/hub`.
pub fn default_cache_dir() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").or_else(|| std::env::var_os("USERPROFILE"));
    cache_dir_from(std::env::var_os("HF_HUB_CACHE"), std::env::var_os("HF_HOME"), home).ok_or_else(|| {
        anyhow!(
            "cannot locate the Hugging Face cache: none of HF_HUB_CACHE, HF_HOME \
             or HOME is set"
        )
    })
}

/// [`default_cache_dir`] from the values of `HF_HUB_CACHE`, `HF_HOME` and the
/// home folder; empty values count as unset.
pub fn cache_dir_from(
    hf_hub_cache: Option<OsString>,
    hf_home: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    let set = |value: Option<OsString>| value.filter(|v| !v.is_empty()).map(PathBuf::from);
    set(hf_hub_cache)
        .or_else(|| set(hf_home).map(|home| home.join("hub")))
        .or_else(|| set(home).map(|home| home.join(".cache").join("huggingface").join("hub")))
}

/// The local path of `id`: from the cache under `cache_dir` when there, else
/// downloaded into it (not when `offline`).
pub fn resolve(id: &HfFileId, cache_dir: &Path, offline: bool) -> Result<PathBuf> {
    if let Some(path) = cached(id, cache_dir) {
        return Ok(path);
    }
    let folder = cache_dir.join(id.hub_repo().folder_name());
    if offline {
        bail!(
            "{id} is not in the Hugging Face cache (searched {}) and HF_HUB_OFFLINE \
             forbids downloading it; download it once while online, or unset \
             HF_HUB_OFFLINE",
            folder.display()
        );
    }
    download(id, cache_dir).map_err(|error| {
        anyhow!(
            "cannot download {id} ({error}) and it is not in the Hugging Face cache \
             (searched {}); check the network connection and that the dataset and \
             file exist",
            folder.display()
        )
    })
}

fn cached(id: &HfFileId, cache_dir: &Path) -> Option<PathBuf> {
    let repo = id.hub_repo();
    let by_ref = Cache::new(cache_dir.to_path_buf()).repo(repo.clone()).get(&id.path);
    by_ref.or_else(|| {
        // A commit given as the revision has no ref file: its snapshot folder
        // is named by it directly.
        let revision = id.revision.as_deref()?;
        let is_commit = revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit());
        let path = cache_dir.join(repo.folder_name()).join("snapshots").join(revision).join(&id.path);
        (is_commit && path.is_file()).then_some(path)
    })
}

fn download(id: &HfFileId, cache_dir: &Path) -> Result<PathBuf> {
    let mut builder =
        ApiBuilder::from_cache(Cache::new(cache_dir.to_path_buf())).with_progress(std::io::stderr().is_terminal());
    // The same variables the Python tools honour, for mirrors and gated data.
    if let Some(endpoint) = std::env::var("HF_ENDPOINT").ok().filter(|e| !e.is_empty()) {
        builder = builder.with_endpoint(endpoint);
    }
    if let Some(token) = std::env::var("HF_TOKEN").ok().filter(|t| !t.trim().is_empty()) {
        builder = builder.with_token(Some(token.trim().to_string()));
    }
    let api = builder.build()?;
    Ok(api.repo(id.hub_repo()).download(&id.path)?)
}
