//! Parquet and JSON inputs of `prepare`, as Hugging Face datasets ship them: one document
//! per row, the column chosen with `--text-column`, one clear sentence for a wrong
//! column, `hf:` parquet files resolved from the cache offline, and an existing
//! tokenizer used instead of a trained one. Every fixture is written here; no network.
mod common;

use common::*;
use lmloop::prepare::CorpusMeta;
use lmloop::tokenizer::Vocab;
use lmloop::tokens::{document_ranges, TokenFile};
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// Rows of a dataset: toy paragraphs, every fifth holding two paragraphs separated by a
/// blank line (a row stays one document all the same), plus rows without text.
fn rows() -> Vec<Option<String>> {
    let paragraphs: Vec<String> =
        toy_corpus(160, 6).split("\n\n").map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect();
    let mut rows: Vec<Option<String>> = paragraphs
        .chunks(2)
        .enumerate()
        .map(|(i, pair)| Some(if i % 5 == 0 { pair.join("\n\n") } else { pair[0].clone() }))
        .collect();
    rows.insert(3, None);
    rows.insert(7, Some("   ".into()));
    rows
}

fn documents_of(rows: &[Option<String>]) -> Vec<String> {
    let mut docs: Vec<String> = rows.iter().flatten().filter(|r| !r.trim().is_empty()).cloned().collect();
    docs.sort();
    docs
}

/// Writes a snappy-compressed parquet file (as the hub's are) with an optional string
/// column `text_column` and an int64 column `id`, in two row groups.
fn write_parquet(path: &Path, text_column: &str, rows: &[Option<String>]) {
    write_parquet_with(path, text_column, rows, Compression::SNAPPY);
}

fn write_parquet_with(path: &Path, text_column: &str, rows: &[Option<String>], compression: Compression) {
    let schema = format!("message dataset {{ OPTIONAL BYTE_ARRAY {text_column} (UTF8); REQUIRED INT64 id; }}");
    let schema = Arc::new(parse_message_type(&schema).unwrap());
    let props = Arc::new(WriterProperties::builder().set_compression(compression).build());
    let mut writer = SerializedFileWriter::new(std::fs::File::create(path).unwrap(), schema, props).unwrap();
    let half = rows.len() / 2;
    for (start, group) in [(0, &rows[..half]), (half, &rows[half..])] {
        let mut row_group = writer.next_row_group().unwrap();
        let mut column = row_group.next_column().unwrap().unwrap();
        let values: Vec<ByteArray> = group.iter().flatten().map(|s| ByteArray::from(s.as_str())).collect();
        let defined: Vec<i16> = group.iter().map(|r| i16::from(r.is_some())).collect();
        column.typed::<ByteArrayType>().write_batch(&values, Some(&defined), None).unwrap();
        column.close().unwrap();
        let mut column = row_group.next_column().unwrap().unwrap();
        let ids: Vec<i64> = (start..start + group.len()).map(|i| i as i64).collect();
        column.typed::<Int64Type>().write_batch(&ids, None, None).unwrap();
        column.close().unwrap();
        row_group.close().unwrap();
    }
    writer.close().unwrap();
}

/// Writes JSON lines with the documents under `field`, and an `id`.
fn write_json_lines(path: &Path, field: &str, rows: &[Option<String>]) {
    let lines: Vec<String> =
        rows.iter().enumerate().map(|(i, r)| serde_json::json!({ "id": i, field: r }).to_string()).collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// Every document of the prepared corpus `dir` (all splits), decoded and sorted.
fn prepared_documents(dir: &Path) -> Vec<String> {
    let vocab = Vocab::load(&dir.join("tokenizer.json")).unwrap();
    let mut docs = Vec::new();
    for split in ["train.bin", "val.bin", "test.bin"] {
        let tokens = TokenFile::open(&dir.join(split)).unwrap().to_vec();
        for range in document_ranges(tokens.iter().copied(), vocab.eot()) {
            docs.push(vocab.decode(&tokens[range.start..range.end - 1]).unwrap());
        }
    }
    docs.sort();
    docs
}

fn prepare(root: &Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["prepare", "--vocab-size", "280"];
    all.extend_from_slice(args);
    lmloop(root, &all)
}

#[test]
fn parquet_rows_are_documents() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let rows = rows();
    write_parquet(&root.join("train.parquet"), "text", &rows);
    let r = prepare(root, &["--input", "train.parquet", "--out", "corpus"]);
    assert_eq!(r.0, 0, "{}", r.2);
    assert_eq!(prepared_documents(&root.join("corpus")), documents_of(&rows));
    let meta = CorpusMeta::load(&root.join("corpus")).unwrap();
    let bytes = std::fs::read(root.join("train.parquet")).unwrap();
    assert_eq!(meta.sources[0].bytes, bytes.len());
    assert_eq!(meta.sources[0].sha256, lmloop::corpus::sha256_hex(&bytes));
    assert_eq!(meta.train.documents + meta.val.documents + meta.test.documents, documents_of(&rows).len());

    // The other codecs datasets use.
    for (name, codec) in [
        ("zstd", Compression::ZSTD(Default::default())),
        ("gzip", Compression::GZIP(Default::default())),
        ("lz4", Compression::LZ4_RAW),
        ("plain", Compression::UNCOMPRESSED),
    ] {
        let path = root.join(format!("{name}.parquet"));
        write_parquet_with(&path, "text", &rows, codec);
        let source = lmloop::corpus::read_source(path.to_str().unwrap(), None, "text").unwrap();
        let mut docs = source.documents;
        docs.sort();
        assert_eq!(docs, documents_of(&rows), "{name}");
    }
}

#[test]
fn json_lines_and_json_arrays_are_read_with_a_chosen_field() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let rows = rows();
    write_json_lines(&root.join("stories.jsonl"), "story", &rows);
    let array: Vec<serde_json::Value> = rows.iter().map(|r| serde_json::json!({ "story": r })).collect();
    std::fs::write(root.join("stories.json"), serde_json::to_string_pretty(&array).unwrap()).unwrap();
    for input in ["stories.jsonl", "stories.json"] {
        let out = format!("corpus-{input}");
        let r = prepare(root, &["--input", input, "--text-column", "story", "--out", &out]);
        assert_eq!(r.0, 0, "{input}: {}", r.2);
        assert_eq!(prepared_documents(&root.join(&out)), documents_of(&rows), "{input}");
    }
    // The same documents split the same way, whichever file held them.
    let a = std::fs::read(root.join("corpus-stories.jsonl/test.bin")).unwrap();
    let b = std::fs::read(root.join("corpus-stories.json/test.bin")).unwrap();
    assert_eq!(a, b);
}

#[test]
fn a_missing_or_non_string_column_is_one_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let rows = rows();
    write_parquet(&root.join("content.parquet"), "content", &rows);
    let r = prepare(root, &["--input", "content.parquet", "--out", "c"]);
    assert_clear_error(
        &r,
        "input file content.parquet has no column 'text' (its columns: content, id); choose one with --text-column",
    );
    let r = prepare(root, &["--input", "content.parquet", "--text-column", "id", "--out", "c"]);
    assert_clear_error(
        &r,
        "column 'id' of input file content.parquet holds INT64 values, not text (its string columns: content)",
    );
    write(&root.join("fake.parquet"), "not parquet at all");
    let r = prepare(root, &["--input", "fake.parquet", "--out", "c"]);
    assert_clear_error(&r, "input file fake.parquet is not a readable parquet file");

    write(&root.join("gap.jsonl"), "{\"text\": \"a story\"}\n{\"title\": \"no story\"}\n");
    let r = prepare(root, &["--input", "gap.jsonl", "--out", "c"]);
    assert_clear_error(
        &r,
        "line 2 of input file gap.jsonl has no field 'text' (its fields: title); choose one with --text-column",
    );
    write(&root.join("number.jsonl"), "{\"text\": 7}\n");
    let r = prepare(root, &["--input", "number.jsonl", "--out", "c"]);
    assert_clear_error(&r, "field 'text' on line 1 of input file number.jsonl is a number, not a string");
    write(&root.join("broken.jsonl"), "{\"text\": \"fine\"}\n{\"text\": \n");
    let r = prepare(root, &["--input", "broken.jsonl", "--out", "c"]);
    assert_clear_error(&r, "line 2 of input file broken.jsonl is not valid JSON");

    write(&root.join("plain.txt"), &toy_corpus(40, 4));
    let r = prepare(root, &["--input", "plain.txt", "--text-column", "body", "--out", "c"]);
    assert_clear_error(&r, "--text-column body applies to parquet and JSON inputs only");
    assert!(!root.join("c/meta.json").exists(), "a refused input must not leave a corpus that looks complete");
}

#[test]
fn a_cached_hf_parquet_file_resolves_offline() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // The Hugging Face cache layout: refs/main names a commit, whose snapshot holds the file.
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let repo = root.join("hub/datasets--acme--wikitext");
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    let data = repo.join("snapshots").join(commit).join("wikitext-2-raw-v1");
    std::fs::create_dir_all(&data).unwrap();
    let rows = rows();
    write_parquet(&data.join("train-00000-of-00001.parquet"), "text", &rows);

    let id = "hf:acme/wikitext/wikitext-2-raw-v1/train-00000-of-00001.parquet";
    let out = Command::new(env!("CARGO_BIN_EXE_lmloop"))
        .args(["prepare", "--vocab-size", "280", "--input", id, "--out", "corpus"])
        .current_dir(root)
        .env("HF_HUB_CACHE", root.join("hub"))
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(prepared_documents(&root.join("corpus")), documents_of(&rows));
    assert_eq!(CorpusMeta::load(&root.join("corpus")).unwrap().sources[0].name, id);
}

#[test]
fn an_existing_tokenizer_is_used_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(&root.join("plain.txt"), &toy_corpus(120, 6));
    let r = prepare(root, &["--input", "plain.txt", "--out", "first"]);
    assert_eq!(r.0, 0, "{}", r.2);
    let rows = rows();
    write_json_lines(&root.join("more.jsonl"), "text", &rows);
    let tokenizer: PathBuf = root.join("first/tokenizer.json");
    let r = lmloop(
        root,
        &["prepare", "--input", "more.jsonl", "--tokenizer", tokenizer.to_str().unwrap(), "--out", "second"],
    );
    assert_eq!(r.0, 0, "{}", r.2);
    assert_eq!(std::fs::read(root.join("second/tokenizer.json")).unwrap(), std::fs::read(&tokenizer).unwrap());
    let meta = CorpusMeta::load(&root.join("second")).unwrap();
    assert_eq!(meta.tokenizer_from.as_deref(), tokenizer.to_str());
    assert_eq!(meta.vocab_size, 280);
    assert_eq!(prepared_documents(&root.join("second")), documents_of(&rows));
    // A folder holding tokenizer.json (a prepared corpus here, a model folder usually) works too.
    let r = lmloop(root, &["prepare", "--input", "more.jsonl", "--tokenizer", "first", "--out", "third"]);
    assert_eq!(r.0, 0, "{}", r.2);
    assert_eq!(
        std::fs::read(root.join("third/train.bin")).unwrap(),
        std::fs::read(root.join("second/train.bin")).unwrap()
    );

    let r = lmloop(
        root,
        &["prepare", "--input", "more.jsonl", "--tokenizer", "first", "--vocab-size", "300", "--out", "x"],
    );
    assert_ne!(r.0, 0);
    assert!(r.2.contains("--tokenizer") && r.2.contains("--vocab-size"), "{}", r.2);
    let r = lmloop(root, &["prepare", "--input", "more.jsonl", "--tokenizer", "nowhere.json", "--out", "x"]);
    assert_clear_error(&r, "tokenizer nowhere.json does not exist");
}
