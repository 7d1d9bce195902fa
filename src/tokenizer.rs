//! The run's fixed vocabulary: a byte-level BPE tokenizer trained once on the real
//! training split, with one special token, `<|endoftext|>`, that ends every document.
//!
//! Byte-level means every string is encodable (no unknown token) and decoding inverts
//! encoding exactly, so frequency comparisons across generations are over one vocabulary.
//!
//! A tokenizer can also come from elsewhere (`prepare --tokenizer`, a transformers
//! folder that seeds generation 0). Its `tokenizer.json` is then kept byte for byte,
//! together with the `tokenizer_config.json` beside it, whose `eos_token` is the token
//! that ends documents (Llama's `</s>`, for one); without that file it is `<|endoftext|>`.
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

/// The end-of-text token written after every document.
pub const EOT: &str = "<|endoftext|>";

/// The tokens around every document. A document starts from `start`: the sampler's
/// first input at position 0, and the input at position 0 of the first training or
/// evaluation window of every document, so a model sees documents begin as it will be
/// asked to begin them. A document the model (or a real author) ended is followed by
/// `end`. With lmloop's own tokenizer both are `<|endoftext|>`, as in GPT-2; a
/// tokenizer from a transformers folder that names a separate bos_token (Llama's
/// `<s>`) starts documents from it and ends them with its eos_token (`</s>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    pub start: u32,
    pub end: u32,
}

impl From<u32> for Delimiters {
    /// One token that both starts and ends documents (`<|endoftext|>`).
    fn from(eot: u32) -> Self {
        Self { start: eot, end: eot }
    }
}

/// The transformers tokenizer settings file kept beside a `tokenizer.json`.
pub const TOKENIZER_CONFIG: &str = "tokenizer_config.json";

/// A loaded tokenizer and the id of its end-of-text token.
pub struct Vocab {
    tokenizer: Tokenizer,
    eot: u32,
    eot_text: String,
    /// The `tokenizer.json` text, written back unchanged by [`Vocab::save`].
    json: String,
    /// The `tokenizer_config.json` a tokenizer from a transformers folder came with:
    /// its text (written back unchanged) and its contents.
    hf_config: Option<(String, serde_json::Value)>,
}

impl Vocab {
    /// Trains a byte-level BPE of exactly `vocab_size` entries (the 256 byte symbols,
    /// `<|endoftext|>`, and merges) on `documents`.
    ///
    /// Fails when the documents do not contain enough distinct pairs seen at least
    /// twice to reach `vocab_size`: a smaller vocabulary than asked for would change
    /// every frequency statistic silently.
    pub fn train(documents: &[String], vocab_size: usize) -> Result<Self> {
        let min_vocab = ByteLevel::alphabet().len() + 1;
        if vocab_size < min_vocab {
            bail!("vocab size must be at least {min_vocab} (256 bytes + {EOT}), got {vocab_size}");
        }
        if u32::try_from(vocab_size).is_err() {
            bail!("vocab size {vocab_size} is too large");
        }
        let trainer = BpeTrainerBuilder::new()
            .vocab_size(vocab_size)
            // A merge seen once is noise; requiring two keeps rare-token statistics meaningful.
            .min_frequency(2)
            .show_progress(false)
            .special_tokens(vec![AddedToken::from(EOT, true)])
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build();
        let mut trainer: TrainerWrapper = trainer.into();
        let mut tokenizer = Tokenizer::new(BPE::default());
        // No prefix space: the text is taken byte for byte, as GPT-2 does.
        let byte_level = ByteLevel::new(false, true, true);
        tokenizer.with_pre_tokenizer(Some(byte_level));
        tokenizer.with_decoder(Some(byte_level));
        tokenizer.train(&mut trainer, documents.iter()).map_err(|e| anyhow!("tokenizer training failed: {e}"))?;
        let got = tokenizer.get_vocab_size(true);
        if got < vocab_size {
            bail!(
                "vocab size {vocab_size} is larger than the data supports: the training split only yields {got} tokens \
                 (byte alphabet, {EOT} and merges seen at least twice); use --vocab-size {got} or less, or more text"
            );
        }
        Self::from_tokenizer(tokenizer)
    }

    fn from_tokenizer(tokenizer: Tokenizer) -> Result<Self> {
        let eot = tokenizer.token_to_id(EOT).ok_or_else(|| anyhow!("tokenizer has no {EOT} token"))?;
        let json = tokenizer.to_string(true).map_err(|e| anyhow!("cannot serialise tokenizer: {e}"))?;
        Ok(Self { tokenizer, eot, eot_text: EOT.to_string(), json, hf_config: None })
    }

    /// Loads a `tokenizer.json`, with the `tokenizer_config.json` beside it when there is one.
    pub fn load(path: &Path) -> Result<Self> {
        let json =
            std::fs::read_to_string(path).with_context(|| format!("cannot read tokenizer {}", path.display()))?;
        let tokenizer: Tokenizer =
            json.parse().map_err(|e| anyhow!("cannot load tokenizer {}: {e}", path.display()))?;
        let config_path = path.with_file_name(TOKENIZER_CONFIG);
        let hf_config = match config_path.exists() {
            true => {
                let text = std::fs::read_to_string(&config_path)
                    .with_context(|| format!("cannot read {}", config_path.display()))?;
                let value =
                    serde_json::from_str(&text).with_context(|| format!("{} is not valid", config_path.display()))?;
                Some((text, value))
            }
            false => None,
        };
        let eot_text = match hf_config.as_ref().and_then(|(_, c)| special_token(c, "eos_token")) {
            Some(eos) => eos,
            None if tokenizer.token_to_id(EOT).is_some() => EOT.to_string(),
            None => bail!(
                "tokenizer {} has no end-of-text token: it has no {EOT} and no {TOKENIZER_CONFIG} beside it naming an eos_token",
                path.display()
            ),
        };
        let eot = tokenizer.token_to_id(&eot_text).ok_or_else(|| {
            anyhow!(
                "tokenizer {} has no token {eot_text}, which {} names as eos_token",
                path.display(),
                config_path.display()
            )
        })?;
        Ok(Self { tokenizer, eot, eot_text, json, hf_config })
    }

    /// Loads the tokenizer at `path`: a `tokenizer.json` file, or a folder holding one
    /// (a transformers model folder, a prepared corpus, a checkpoint).
    pub fn load_file_or_folder(path: &Path) -> Result<Self> {
        if !path.exists() {
            bail!("tokenizer {} does not exist", path.display());
        }
        let file: PathBuf = if path.is_dir() { path.join("tokenizer.json") } else { path.to_path_buf() };
        if !file.is_file() {
            bail!(
                "{} has no tokenizer.json; lmloop reads the tokenizers-library file that transformers writes with save_pretrained",
                path.display()
            );
        }
        Self::load(&file)
    }

    /// Writes `tokenizer.json` to `path` as it was loaded or trained, and beside it the
    /// `tokenizer_config.json` it came with (removing a stale one when it came with none).
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::durable::write_atomic(path, self.json.as_bytes())?;
        let config_path = path.with_file_name(TOKENIZER_CONFIG);
        match &self.hf_config {
            Some((text, _)) => crate::durable::write_atomic(&config_path, text.as_bytes()),
            None if config_path.exists() => std::fs::remove_file(&config_path)
                .with_context(|| format!("cannot remove the stale {}", config_path.display())),
            None => Ok(()),
        }
    }

    /// The `tokenizer_config.json` of a tokenizer that came from a transformers folder.
    pub fn hf_config(&self) -> Option<&serde_json::Value> {
        self.hf_config.as_ref().map(|(_, value)| value)
    }

    /// The text of the end-of-text token (`<|endoftext|>`, or an imported tokenizer's eos_token).
    pub fn eot_text(&self) -> &str {
        &self.eot_text
    }

    /// The beginning-of-text token of an imported tokenizer (its bos_token), when it names one.
    pub fn bos(&self) -> Option<(String, u32)> {
        let text = special_token(self.hf_config()?, "bos_token")?;
        let id = self.tokenizer.token_to_id(&text)?;
        Some((text, id))
    }

    /// The id of a token given by its text.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.tokenizer.token_to_id(text)
    }

    /// True when both map the same token texts to the same ids and end documents with
    /// the same token, so token files written with one mean the same under the other.
    pub fn same_vocabulary(&self, other: &Vocab) -> bool {
        self.eot == other.eot && self.tokenizer.get_vocab(true) == other.tokenizer.get_vocab(true)
    }

    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    pub fn eot(&self) -> u32 {
        self.eot
    }

    /// The tokens that start and end documents (see [`Delimiters`]).
    pub fn delimiters(&self) -> Delimiters {
        let start = self.bos().map_or(self.eot, |(_, id)| id);
        Delimiters { start, end: self.eot }
    }

    /// Token ids of `text` (no special tokens added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.tokenizer.encode(text, false).map_err(|e| anyhow!("encoding failed: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Encodes many documents in parallel.
    pub fn encode_all(&self, texts: &[String]) -> Result<Vec<Vec<u32>>> {
        let encs = self
            .tokenizer
            .encode_batch(texts.iter().map(|s| s.as_str()).collect::<Vec<_>>(), false)
            .map_err(|e| anyhow!("encoding failed: {e}"))?;
        Ok(encs.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// Text of `ids`; `<|endoftext|>` is kept visible so document boundaries show.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer.decode(ids, false).map_err(|e| anyhow!("decoding failed: {e}"))
    }

    /// The text one token stands for (unescaped; `�` where a token holds only part of
    /// a multi-byte character). `analysis::escape_token` makes it printable.
    pub fn token_text(&self, id: u32) -> String {
        if id == self.eot {
            return self.eot_text.clone();
        }
        self.tokenizer.decode(&[id], false).unwrap_or_default()
    }
}

/// A special token named in a transformers `tokenizer_config.json`: a string, or an
/// object whose `content` is the string (as older files write `AddedToken`s).
fn special_token(config: &serde_json::Value, key: &str) -> Option<String> {
    match config.get(key)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// The bytes every token stands for, and the canonical encoding of sampled text.
///
/// A model samples ids; a real pipeline publishes their text, and the next model reads
/// that text through the tokenizer. Those ids need not be what the encoder would
/// produce: a byte-level BPE keeps intermediate merges that the encoder never emits
/// (in lmloop's 2,048-token Shakespeare BPE, 207 ids never occur in the training
/// split), and a model can spell a word in pieces the encoder would merge. A synthetic
/// document therefore enters the corpus as `encode(decode(ids))`.
pub struct Canonicalizer<'a> {
    vocab: &'a Vocab,
    /// Bytes of every id: exact for byte-level tokenizers (lmloop's own, GPT-2's); for
    /// others, the UTF-8 of the id decoded alone.
    bytes: Vec<Vec<u8>>,
}

/// The byte each character of a byte-level BPE token stands for (GPT-2's table:
/// printable bytes stand for themselves, the other 68 are shifted to 256 and up).
fn byte_level_bytes() -> std::collections::HashMap<char, u8> {
    let printable = |b: u8| (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    let mut shifted = 0u32;
    (0..=255u8)
        .map(|b| {
            let c = if printable(b) {
                char::from(b)
            } else {
                shifted += 1;
                char::from_u32(255 + shifted).expect("a valid character")
            };
            (c, b)
        })
        .collect()
}

impl<'a> Canonicalizer<'a> {
    pub fn new(vocab: &'a Vocab) -> Self {
        let byte_level =
            matches!(vocab.tokenizer.get_decoder(), Some(tokenizers::decoders::DecoderWrapper::ByteLevel(_)));
        let table = byte_level.then(byte_level_bytes);
        let bytes = (0..vocab.vocab_size() as u32)
            .map(|id| {
                let piece = vocab.tokenizer.id_to_token(id).unwrap_or_default();
                match &table {
                    Some(t) if piece.chars().all(|c| t.contains_key(&c)) => piece.chars().map(|c| t[&c]).collect(),
                    _ => vocab.tokenizer.decode(&[id], false).unwrap_or_default().into_bytes(),
                }
            })
            .collect();
        Self { vocab, bytes }
    }

    /// The canonical ids of a document's sampled `ids` (end token excluded), and how
    /// many of the sampled ids the canonical encoding does not reproduce: a sampled id
    /// counts as canonical when the encoding has the same id over the same bytes.
    pub fn canonicalize(&self, ids: &[u32]) -> Result<(Vec<u32>, usize)> {
        let (_, canonical, differing) = self.publish(ids)?;
        Ok((canonical, differing))
    }

    /// [`Canonicalizer::canonicalize`], with the published text the ids were encoded from.
    pub fn publish(&self, ids: &[u32]) -> Result<(String, Vec<u32>, usize)> {
        let text = self.vocab.decode(ids)?;
        let canonical = self.vocab.encode(&text)?;
        if canonical == ids {
            return Ok((text, canonical, 0));
        }
        let bytes = |id: u32| self.bytes.get(id as usize).map_or(&[][..], |b| &b[..]);
        // Offsets in the published text of every byte the sampled ids spell: text that
        // is not valid UTF-8 is published with U+FFFD (3 bytes) for each invalid run.
        let raw: Vec<u8> = ids.iter().flat_map(|&id| bytes(id).iter().copied()).collect();
        let mut published = Vec::with_capacity(raw.len() + 1);
        let mut at = 0;
        for chunk in raw.utf8_chunks() {
            published.extend((0..chunk.valid().len()).map(|i| at + i));
            at += chunk.valid().len();
            if !chunk.invalid().is_empty() {
                published.extend(std::iter::repeat_n(at, chunk.invalid().len()));
                at += '\u{FFFD}'.len_utf8();
            }
        }
        published.push(at);
        let (mut at_sampled, mut at_canonical, mut j, mut matched) = (0usize, 0usize, 0usize, 0usize);
        for &id in ids {
            let start = published[at_sampled];
            while j < canonical.len() && at_canonical < start {
                at_canonical += bytes(canonical[j]).len();
                j += 1;
            }
            if j < canonical.len() && at_canonical == start && canonical[j] == id {
                matched += 1;
            }
            at_sampled += bytes(id).len();
        }
        Ok((text, canonical, ids.len() - matched))
    }
}

#[cfg(test)]
mod canonical_tests {
    use super::*;

    fn vocab() -> Vocab {
        let text = "the cat sees the moon. a dog loves the sea. my friend calls the king. ".repeat(20);
        Vocab::train(&[text, "caf\u{e9} na\u{ef}ve \u{2014} d\u{e9}j\u{e0} vu".repeat(5)], 300).unwrap()
    }

    /// Canonical ids are their own encoding; ids spelled in other pieces are replaced
    /// and counted, and a byte sequence that is not valid UTF-8 (published as U+FFFD)
    /// changes only the ids that spell it: the ids after it still count as reproduced.
    #[test]
    fn the_canonical_encoding_replaces_and_counts_only_what_differs() {
        let v = vocab();
        let c = Canonicalizer::new(&v);
        let text = "the cat sees the moon. caf\u{e9} my friend calls the king.";
        let ids = v.encode(text).unwrap();
        assert_eq!(c.canonicalize(&ids).unwrap(), (ids.clone(), 0));
        // " cat" spelled byte by byte: its pieces are not reproduced, nothing else is touched.
        let cat = v.encode(" cat").unwrap();
        assert_eq!(cat.len(), 1, "the toy BPE merges \" cat\"");
        let bytes: Vec<u32> = " cat".bytes().map(|b| c.bytes.iter().position(|x| x == &[b]).unwrap() as u32).collect();
        let at = ids.iter().position(|&i| i == cat[0]).unwrap();
        let mut split = ids.clone();
        split.splice(at..at + 1, bytes.iter().copied());
        assert_eq!(c.canonicalize(&split).unwrap(), (ids.clone(), 4));
        // The first byte of "é" alone is not valid UTF-8: the text holds U+FFFD there.
        let e_acute = "\u{e9}".as_bytes()[0];
        let lone = c.bytes.iter().position(|x| x == &[e_acute]).unwrap() as u32;
        let mut broken = v.encode("the cat sees").unwrap();
        let tail = v.encode(" the moon.").unwrap();
        broken.push(lone);
        broken.extend(&tail);
        let (canonical, differing) = c.canonicalize(&broken).unwrap();
        assert_eq!(v.decode(&canonical).unwrap(), "the cat sees\u{FFFD} the moon.");
        assert_eq!(differing, 1, "only the lone byte is replaced");
    }
}
