//! Named choices (`--policy replace`, `arch = "llama"`): enums whose variants have one
//! spelling each, which the command line (clap's `ValueEnum`), the config files (serde,
//! with the same `rename_all`) and the tables all use. A test checks that the two
//! derives agree for every choice.
use anyhow::{anyhow, Result};

/// A clap value enum as a named choice.
pub trait Choice: clap::ValueEnum {
    /// The spelling of this variant.
    fn name(&self) -> String {
        self.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default()
    }

    /// Every spelling, in declaration order, for messages: `"replace, accumulate, …"`.
    fn names() -> String {
        Self::value_variants().iter().map(Choice::name).collect::<Vec<_>>().join(", ")
    }

    /// The variant spelled `text`, or an error naming `key` (a flag or a config key)
    /// and the spellings it accepts.
    fn parse_named(key: &str, text: &str) -> Result<Self> {
        Self::from_str(text, false).map_err(|_| anyhow!("unknown {key} '{text}': expected one of {}", Self::names()))
    }
}

impl<T: clap::ValueEnum> Choice for T {}
