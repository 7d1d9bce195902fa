//! The run's fixed vocabulary: a byte-level BPE tokenizer trained once on the real
//! training split, with one special token, `<|endoftext|>`, that ends every document.
//!
//! Byte-level means every string is encodable (no unknown token) and decoding inverts
//! encoding exactly, so frequency comparisons across generations are over one vocabulary.
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

/// The end-of-text token written after every document.
pub const EOT: &str = "<|endoftext|>";

/// A loaded tokenizer and the id of its end-of-text token.
pub struct Vocab {
    tokenizer: Tokenizer,
    eot: u32,
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
        tokenizer
            .train(&mut trainer, documents.iter())
            .map_err(|e| anyhow!("tokenizer training failed: {e}"))?;
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
        Ok(Self { tokenizer, eot })
    }

    pub fn load(path: &Path) -> Result<Self> {
        let tokenizer = Tokenizer::from_file(path)
            .map_err(|e| anyhow!("cannot load tokenizer {}: {e}", path.display()))?;
        Self::from_tokenizer(tokenizer).with_context(|| format!("in {}", path.display()))
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let json = self.tokenizer.to_string(true).map_err(|e| anyhow!("cannot serialise tokenizer: {e}"))?;
        crate::layout::write_atomic(path, json.as_bytes())
    }

    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    pub fn eot(&self) -> u32 {
        self.eot
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
            return EOT.to_string();
        }
        self.tokenizer.decode(&[id], false).unwrap_or_default()
    }
}
