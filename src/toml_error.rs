//! Where a TOML error is, in one sentence: the file, the line and the dotted key,
//! e.g. `configs/x.toml, line 7: train.truncated_ce_gamma: invalid type: string "abc",
//! expected f64`.
//!
//! toml's own message names neither the key nor the line; its span (the bytes of the
//! key or value at fault) gives both. The key is found in the text parsed again with
//! its spans kept (toml_edit), so a dotted key (`train.seed = 1` at the top level), an
//! inline table or a value over several lines is named like any other. The Nth table
//! of an array of several tables is `name[N]`, counted from 1 as the sweep file's
//! messages count grids and claims.
use serde::de::DeserializeOwned;
use std::ops::Range;
use std::path::Path;
use toml_edit::{ImDocument, Item, TableLike};

/// Deserializes TOML text; an error is one sentence saying where it is (see [`describe`]).
pub fn from_str<T: DeserializeOwned>(text: &str, file: Option<&Path>) -> Result<T, String> {
    toml::from_str(text).map_err(|e| describe(&e, text, file))
}

/// `FILE, line N: KEY: what is wrong`; without a file `line N: …`, and without the key
/// where no key holds the error (a syntax error, whose lines are joined with `; `).
pub fn describe(err: &toml::de::Error, text: &str, file: Option<&Path>) -> String {
    let at = err.span().map(|s| s.start);
    let key = at.and_then(|at| key_at(text, at));
    let message: Vec<&str> = err.message().lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    sentence(text, file, at, key.as_deref(), &message.join("; "))
}

/// The same sentence for `message` about the value of `key` (dotted, as this module
/// names keys), for a check made after parsing.
pub fn at_key(text: &str, file: Option<&Path>, key: &str, message: &str) -> String {
    let at = entries(text).into_iter().find(|e| e.key == key).and_then(|e| e.value.or(e.name)).map(|s| s.start);
    sentence(text, file, at, Some(key), message)
}

fn sentence(text: &str, file: Option<&Path>, at: Option<usize>, key: Option<&str>, message: &str) -> String {
    let file = file.map(|f| f.display().to_string());
    let line = at.map(|at| format!("line {}", line_of(text, at)));
    let place: Vec<String> = file.into_iter().chain(line).collect();
    let place = (!place.is_empty()).then(|| place.join(", "));
    place.into_iter().chain(key.map(str::to_string)).chain([message.to_string()]).collect::<Vec<_>>().join(": ")
}

/// The line (from 1) of byte `at`.
fn line_of(text: &str, at: usize) -> usize {
    1 + text.as_bytes()[..at.min(text.len())].iter().filter(|&&b| b == b'\n').count()
}

/// A key of the text (dotted) and where its name and its value are.
struct Entry {
    key: String,
    name: Option<Range<usize>>,
    value: Option<Range<usize>>,
}

impl Entry {
    fn holds(&self, at: usize) -> bool {
        [&self.name, &self.value].into_iter().flatten().any(|s| s.contains(&at))
    }
}

/// The dotted key whose name or value holds byte `at`: the innermost one.
fn key_at(text: &str, at: usize) -> Option<String> {
    entries(text).into_iter().rfind(|e| e.holds(at)).map(|e| e.key)
}

/// Every key of the text, each table's before its own (none for unparsable text).
fn entries(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    if let Ok(doc) = ImDocument::parse(text) {
        walk(doc.as_table(), "", &mut out);
    }
    out
}

fn walk(table: &dyn TableLike, prefix: &str, out: &mut Vec<Entry>) {
    for (name, item) in table.iter() {
        let key = if prefix.is_empty() { name.to_string() } else { format!("{prefix}.{name}") };
        out.push(Entry { key: key.clone(), name: table.key(name).and_then(|k| k.span()), value: item.span() });
        match item {
            Item::ArrayOfTables(tables) if tables.len() > 1 => {
                for (i, t) in tables.iter().enumerate() {
                    walk(t, &format!("{key}[{}]", i + 1), out);
                }
            }
            Item::ArrayOfTables(tables) => tables.iter().for_each(|t| walk(t, &key, out)),
            _ => {
                if let Some(t) = item.as_table_like() {
                    walk(t, &key, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        from_str::<std::collections::BTreeMap<String, Shape>>(text, Some(Path::new("x.toml"))).err().unwrap()
    }

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Shape {
        #[serde(default)]
        gamma: f64,
        #[serde(default)]
        inner: Option<Inner>,
    }

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        n: i64,
    }

    #[test]
    fn names_the_file_the_line_and_the_key() {
        let e = error("[a]\ngamma = 0.5\n\n[b]\n# note\ngamma = \"abc\"\n");
        assert_eq!(e, "x.toml, line 6: b.gamma: invalid type: string \"abc\", expected f64");
        assert_eq!(error("a.gamma = \"abc\"\n"), "x.toml, line 1: a.gamma: invalid type: string \"abc\", expected f64");
        assert!(error("[a]\ninner = { n = 1.5 }\n").starts_with("x.toml, line 2: a.inner.n: invalid type"));
        assert!(error("[a]\n[a.inner]\nn = \"1\"\n").starts_with("x.toml, line 3: a.inner.n: invalid type"));
        assert!(error("[a]\ncolour = 1\n").starts_with("x.toml, line 2: a.colour: unknown field `colour`"));
        let syntax = error("[a]\ngamma = \n");
        assert!(syntax.starts_with("x.toml, line 2: ") && !syntax.contains("gamma"), "{syntax}");
        assert_eq!(error("[a\n"), "x.toml, line 1: invalid table header; expected `.`, `]`");
    }

    #[test]
    fn arrays_of_tables_count_from_one() {
        let text = "[[g]]\nn = 1\n[[g]]\nn = [1,\n 2]\n";
        assert_eq!(at_key(text, None, "g[2].n", "bad"), "line 4: g[2].n: bad");
        assert_eq!(key_at(text, text.find("2]").unwrap()).as_deref(), Some("g[2].n"));
        assert_eq!(at_key("[[g]]\nn = 1\n", None, "g.n", "bad"), "line 2: g.n: bad");
        assert_eq!(at_key("", Some(Path::new("s.toml")), "g.n", "bad"), "s.toml: g.n: bad");
    }
}
