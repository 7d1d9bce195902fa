//! What a run must find unchanged when it resumes: the prepared corpus it started on
//! (`analysis/RUN/corpus.json`), and the machine settings its numbers depend on in
//! the last digits (`analysis/RUN/runtime.json`); and the record of a file's contents
//! ([`FileFingerprint`]: size and SHA-256) that every artifact keeps of the files it
//! describes, checked where the file is read ([`check_file`]).
//!
//! A run refuses to resume against a corpus whose tokenizer or token files changed
//! (re-running `prepare` under a live run would silently mix tokenizers). A run resumed
//! on another device or thread count goes on, with a warning: libtorch's kernels sum in
//! a different order there, so numbers computed from then on may differ from an
//! uninterrupted run in the last digits, while every completed generation is kept.
use crate::durable::{read_json, write_json_atomic};
use crate::layout::RealCorpus;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// The files of a prepared corpus a run's numbers depend on.
pub const FINGERPRINTED: [&str; 4] = [RealCorpus::TOKENIZER, RealCorpus::TRAIN, RealCorpus::VAL, RealCorpus::TEST];

/// What a file held when it was written: its size and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFingerprint {
    pub bytes: u64,
    pub sha256: String,
}

impl FileFingerprint {
    /// The record of the file at `path` as it is now.
    pub fn of(path: &Path) -> Result<Self> {
        hash_file(path)
    }

    /// "184,150 bytes, sha256 3f2a9c01b7e4…".
    pub fn describe(&self) -> String {
        format!("{} bytes, sha256 {}…", self.bytes, &self.sha256[..self.sha256.len().min(12)])
    }
}

/// Checks a token file against the record lmloop keeps beside it, if any: the manifest
/// `STEM.json` of a synthetic corpus `STEM.bin`, or the `meta.json` of the prepared
/// corpus folder holding a split. A file with neither is not checked.
pub fn check_token_file(path: &Path) -> Result<()> {
    let record_in = |json: &Path, pointer: &str| -> Option<FileFingerprint> {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(json).ok()?).ok()?;
        serde_json::from_value(v.pointer(pointer)?.clone()).ok()
    };
    let manifest = path.with_extension("json");
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let meta = path.with_file_name(RealCorpus::META);
    let (record, way_out) = if let Some(r) = record_in(&manifest, "/bin_file") {
        (r, "restore it from a copy, or sample it again")
    } else if let Some(r) = record_in(&meta, &format!("/files/{}", name.replace('~', "~0").replace('/', "~1"))) {
        (r, "restore the corpus folder from a copy, or prepare it again with `lmloop prepare`")
    } else {
        return Ok(());
    };
    check_file(path, &record, way_out)
}

/// Checks that the file at `path` still holds what `record` says it held (its size
/// first, then its SHA-256). A mismatch is one sentence naming the file, what was
/// recorded and what is there, then `way_out`, the sentence that says how to repair it.
pub fn check_file(path: &Path, record: &FileFingerprint, way_out: &str) -> Result<()> {
    let found = match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("{} is missing, though its record says {}; {way_out}", path.display(), record.describe())
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        // Another size says enough: the hash is not computed.
        Ok(m) if m.len() != record.bytes => format!("{} bytes", m.len()),
        Ok(_) => match hash_file(path)? {
            f if &f == record => return Ok(()),
            f => f.describe(),
        },
    };
    bail!("{} is damaged: it was recorded as {} and now holds {found}; {way_out}", path.display(), record.describe())
}

/// The field a sealed JSON record ([`write_sealed`]) keeps the SHA-256 of the rest of
/// its contents in.
pub const SEAL: &str = "content_sha256";

/// Writes `value` (a struct) as JSON to `path` atomically, sealed: with the SHA-256 of
/// its compact JSON in the field [`SEAL`], so an edit or a flipped byte is found where
/// the record is read ([`read_sealed`]). For the small records numbers are copied from
/// (held-out loss, score markers, the noise floor, the reference's record).
pub fn write_sealed<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut v = serde_json::to_value(value)?;
    let digest = content_digest(&v)?;
    let Some(fields) = v.as_object_mut() else { bail!("a sealed record must be a JSON object") };
    fields.insert(SEAL.to_string(), serde_json::Value::String(digest));
    write_json_atomic(path, &v)
}

/// A sealed record as read: its value, and whether it carried a seal (records written
/// before lmloop sealed them carry none, and are read unverified).
pub struct Sealed<T> {
    pub value: T,
    pub sealed: bool,
}

/// Reads a record written by [`write_sealed`]; a record whose contents no longer match
/// its seal is an error that names the file, then `way_out`.
pub fn read_sealed<T: serde::de::DeserializeOwned>(path: &Path, way_out: &str) -> Result<Sealed<T>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut v: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => bail!("{} is damaged: it is not valid JSON ({e}); {way_out}", path.display()),
    };
    let seal = v.as_object_mut().and_then(|fields| fields.remove(SEAL));
    if let Some(seal) = &seal {
        if seal.as_str() != Some(content_digest(&v)?.as_str()) {
            bail!(
                "{} is damaged: its contents no longer match the digest they were written with; {way_out}",
                path.display()
            );
        }
    }
    let value = serde_json::from_value(v).with_context(|| format!("{} is not valid", path.display()))?;
    Ok(Sealed { value, sealed: seal.is_some() })
}

fn content_digest(v: &serde_json::Value) -> Result<String> {
    Ok(format!("{:x}", Sha256::digest(serde_json::to_string(v)?.as_bytes())))
}

/// `analysis/RUN/corpus.json`: the prepared corpus a run started on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorpusFingerprint {
    /// `data.corpus`, the folder name under `corpora/real/`.
    pub corpus: String,
    pub tokenizer_sha256: String,
    pub vocab_size: usize,
    /// Size and SHA-256 of every file in [`FINGERPRINTED`] (empty in runs started before
    /// it was recorded; their tokenizer is still checked).
    #[serde(default)]
    pub files: BTreeMap<String, FileFingerprint>,
}

fn hash_file(path: &Path) -> Result<FileFingerprint> {
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf).with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok(FileFingerprint { bytes, sha256: format!("{:x}", hasher.finalize()) })
}

impl CorpusFingerprint {
    /// Fingerprints the prepared corpus in `dir` (named `name`).
    pub fn of(name: &str, dir: &Path, vocab_size: usize) -> Result<Self> {
        let files = FINGERPRINTED
            .iter()
            .map(|f| Ok((f.to_string(), hash_file(&dir.join(f))?)))
            .collect::<Result<BTreeMap<_, _>>>()?;
        let tokenizer_sha256 = files[RealCorpus::TOKENIZER].sha256.clone();
        Ok(Self { corpus: name.to_string(), tokenizer_sha256, vocab_size, files })
    }

    /// The fingerprint from records already checked against the files (a prepared
    /// corpus's `meta.json`, verified when it was opened), when they cover every file
    /// in [`FINGERPRINTED`]; else the files are hashed ([`CorpusFingerprint::of`]).
    pub fn of_checked(
        name: &str,
        dir: &Path,
        vocab_size: usize,
        checked: &BTreeMap<String, FileFingerprint>,
    ) -> Result<Self> {
        if !FINGERPRINTED.iter().all(|f| checked.contains_key(*f)) {
            return Self::of(name, dir, vocab_size);
        }
        let files: BTreeMap<String, FileFingerprint> =
            FINGERPRINTED.iter().map(|f| (f.to_string(), checked[*f].clone())).collect();
        let tokenizer_sha256 = files[RealCorpus::TOKENIZER].sha256.clone();
        Ok(Self { corpus: name.to_string(), tokenizer_sha256, vocab_size, files })
    }

    /// What differs from `now`, one phrase per difference (files missing from an older
    /// record are not compared).
    pub fn differences(&self, now: &Self) -> Vec<String> {
        let short = |s: &str| s.chars().take(12).collect::<String>();
        let mut out = Vec::new();
        if self.corpus != now.corpus {
            out.push(format!("data.corpus ({} → {})", self.corpus, now.corpus));
        }
        if self.vocab_size != now.vocab_size {
            out.push(format!("vocabulary size ({} → {})", self.vocab_size, now.vocab_size));
        }
        if self.tokenizer_sha256 != now.tokenizer_sha256 && !self.files.contains_key(RealCorpus::TOKENIZER) {
            out.push(format!(
                "{} (sha256 {} → {})",
                RealCorpus::TOKENIZER,
                short(&self.tokenizer_sha256),
                short(&now.tokenizer_sha256)
            ));
        }
        for (name, was) in &self.files {
            match now.files.get(name) {
                Some(is) if is == was => {}
                Some(is) if is.bytes != was.bytes => out.push(format!("{name} ({} → {} bytes)", was.bytes, is.bytes)),
                Some(is) => {
                    out.push(format!("{name} (same size, sha256 {} → {})", short(&was.sha256), short(&is.sha256)))
                }
                None => out.push(format!("{name} (missing now)")),
            }
        }
        out
    }
}

/// Records the corpus fingerprint at a run's first start, and refuses a later start
/// whose corpus differs, naming what changed. `path` is `analysis/RUN/corpus.json`.
pub fn check_corpus(path: &Path, run: &str, now: &CorpusFingerprint) -> Result<()> {
    if path.exists() {
        let was: CorpusFingerprint = read_json(path)?;
        let diff = was.differences(now);
        if !diff.is_empty() {
            bail!(
                "run '{run}' was started on another version of the prepared corpus '{}': {} changed since; \
                 restore the corpus it started on, or start a new run (another --run name, or --force-new)",
                was.corpus,
                diff.join(", ")
            );
        }
        if was.files.len() == now.files.len() {
            return Ok(());
        }
    }
    write_json_atomic(path, now)
}

/// `analysis/RUN/runtime.json`: where a run's numbers were first computed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runtime {
    /// Device and CPU threads, as `lmloop` prints them (e.g. `cpu (2 threads)`).
    pub device: String,
}

/// Records the runtime at a run's first start; on a later start elsewhere returns the
/// warning to print (the run goes on).
pub fn check_runtime(path: &Path, run: &str, now: &Runtime) -> Result<Option<String>> {
    if !path.exists() {
        write_json_atomic(path, now)?;
        return Ok(None);
    }
    let was: Runtime = read_json(path)?;
    Ok((was != *now).then(|| {
        format!(
            "run '{run}' began on {} and continues on {}: what is computed from now on may differ from an \
             uninterrupted run in the last digits (finished generations are kept as they are)",
            was.device, now.device
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus(dir: &Path, train: &[u8]) {
        for f in FINGERPRINTED {
            std::fs::write(dir.join(f), f.as_bytes()).unwrap();
        }
        std::fs::write(dir.join(RealCorpus::TRAIN), train).unwrap();
    }

    #[test]
    fn a_changed_token_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        corpus(dir.path(), b"abcd");
        let record = dir.path().join("corpus.json");
        let first = CorpusFingerprint::of("toy", dir.path(), 10).unwrap();
        check_corpus(&record, "r", &first).unwrap();
        check_corpus(&record, "r", &first).unwrap();
        corpus(dir.path(), b"abce");
        let changed = CorpusFingerprint::of("toy", dir.path(), 10).unwrap();
        let err = check_corpus(&record, "r", &changed).unwrap_err().to_string();
        assert!(err.contains("train.bin (same size"), "{err}");
        assert!(!err.contains("tokenizer.json"), "{err}");
        corpus(dir.path(), b"abcdef");
        let longer = CorpusFingerprint::of("toy", dir.path(), 10).unwrap();
        assert!(check_corpus(&record, "r", &longer).unwrap_err().to_string().contains("4 → 6 bytes"));
    }

    #[test]
    fn an_older_record_is_checked_on_its_tokenizer_and_then_completed() {
        let dir = tempfile::tempdir().unwrap();
        corpus(dir.path(), b"abcd");
        let now = CorpusFingerprint::of("toy", dir.path(), 10).unwrap();
        let record = dir.path().join("corpus.json");
        let old = CorpusFingerprint { files: BTreeMap::new(), ..now.clone() };
        write_json_atomic(&record, &old).unwrap();
        check_corpus(&record, "r", &now).unwrap();
        assert_eq!(read_json::<CorpusFingerprint>(&record).unwrap(), now);
        let other_tokenizer =
            CorpusFingerprint { tokenizer_sha256: "f".repeat(64), files: BTreeMap::new(), ..now.clone() };
        write_json_atomic(&record, &other_tokenizer).unwrap();
        assert!(check_corpus(&record, "r", &now).unwrap_err().to_string().contains("tokenizer.json"));
    }

    #[test]
    fn a_sealed_record_reads_back_and_an_edit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        let value = Runtime { device: "cpu (0.918 threads)".into() };
        write_sealed(&path, &value).unwrap();
        let read = read_sealed::<Runtime>(&path, "fix it").unwrap();
        assert!(read.sealed);
        assert_eq!(read.value.device, value.device);
        let text = std::fs::read_to_string(&path).unwrap().replace("0.918", "0.118");
        std::fs::write(&path, text).unwrap();
        let err = read_sealed::<Runtime>(&path, "fix it").err().unwrap().to_string();
        assert!(err.contains("r.json is damaged") && err.ends_with("fix it"), "{err}");
        write_json_atomic(&path, &value).unwrap();
        assert!(!read_sealed::<Runtime>(&path, "fix it").unwrap().sealed);
    }

    #[test]
    fn another_runtime_warns_once_per_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runtime.json");
        let two = Runtime { device: "cpu (2 threads)".into() };
        assert_eq!(check_runtime(&path, "r", &two).unwrap(), None);
        assert_eq!(check_runtime(&path, "r", &two).unwrap(), None);
        let one = Runtime { device: "cpu (1 threads)".into() };
        let warning = check_runtime(&path, "r", &one).unwrap().unwrap();
        assert!(warning.contains("cpu (2 threads)") && warning.contains("cpu (1 threads)"), "{warning}");
    }
}
