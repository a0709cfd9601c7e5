//! engine/data reads datasets as the trainer's own reader (engine/core/src/train/records.rs) did:
//! lowercase and whitespace normalisation per format, a maximum of skipped bad rows, CSV without
//! a header, CSV rows with the wrong number of fields and quotes never closed, folder files that
//! are empty or not UTF-8, text files that are not UTF-8, and paths that are FIFOs or devices.
//! Each case is read by both the sequential reader and the random-access store.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use ardpipe_data::{
    DataError, DatasetReader, DatasetSpec, ErrorKind, Format, OnError, Record, RecordStore,
    SkipReport, TextMode, Turns, load,
};
use common::TempDir;

/// The records and skip report of the sequential reader, checked equal to the store's.
fn read(spec: &DatasetSpec, base: &Path) -> (Vec<Record>, SkipReport) {
    let loaded = load(spec, base).unwrap();
    let (store, report) = RecordStore::scan(spec, base).unwrap();
    let got: Vec<Record> = (0..store.len()).map(|i| store.get(i).unwrap()).collect();
    assert_eq!(got, loaded.records, "store and reader differ");
    assert_eq!(report, loaded.skipped);
    (loaded.records, loaded.skipped)
}

/// The error of the sequential reader, checked equal to the store's scan error.
fn error(spec: &DatasetSpec, base: &Path) -> DataError {
    let e = load(spec, base).unwrap_err();
    let s = RecordStore::scan(spec, base).unwrap_err();
    assert_eq!(e.to_string(), s.to_string());
    e
}

fn texts(records: &[Record]) -> Vec<&str> {
    records.iter().map(|r| r.text.as_str()).collect()
}

fn normalised(mut spec: DatasetSpec) -> DatasetSpec {
    spec.preprocess.collapse_whitespace = true;
    spec.preprocess.lowercase = true;
    spec
}

fn csv(header: bool) -> Format {
    Format::Csv {
        delimiter: ',',
        header,
    }
}

fn text(mode: TextMode) -> Format {
    Format::Text { mode }
}

#[test]
fn whitespace_is_collapsed_in_rows_and_kept_in_documents_and_supervised_records() {
    let d = TempDir::new("parity-ws");
    d.write(
        "a.jsonl",
        "{\"text\": \"  Hello   WORLD\\n\\tagain \", \"pair\": \" A  B \", \"l\": \" Pos \"}\n",
    );
    d.write("a.csv", "text,label\n\"  Two\n  LINES  \", neg \n");
    d.write("lines.txt", "  One   LINE \n\n\tTwo\tWords\n");
    d.write(
        "play.txt",
        "\n\n  ACT I.  \n  Scene   one.\n\n  Exit.  \n\n",
    );
    d.write("fortunes.txt", "%\n  A   Fortune  \n  two  \n%\n");
    d.write("f/pos/1.txt", "  Good \n\n  FILM\n");
    d.write(
        "pc.jsonl",
        "{\"q\": \"  What is 2+2?\\n\", \"a\": \" Four.  \"}\n",
    );

    let mut jsonl = DatasetSpec::new(["a.jsonl"], Format::Jsonl);
    jsonl.fields.text_pair = Some("pair".into());
    jsonl.fields.label = Some("l".into());
    // Off by default: the text as written.
    let (raw, _) = read(&jsonl, d.path());
    assert_eq!(raw[0].text, "  Hello   WORLD\n\tagain ");
    assert_eq!(raw[0].label.as_deref(), Some(" Pos "));
    let (got, _) = read(&normalised(jsonl), d.path());
    assert_eq!(got[0].text, "hello world again");
    assert_eq!(got[0].text_pair.as_deref(), Some("a b"));
    // Labels are trimmed, not lowercased (as the trainer's reader had them).
    assert_eq!(got[0].label.as_deref(), Some("Pos"));

    let mut c = DatasetSpec::new(["a.csv"], csv(true));
    c.fields.label = Some("label".into());
    let (got, _) = read(&normalised(c), d.path());
    assert_eq!(texts(&got), ["two lines"]);
    assert_eq!(got[0].label.as_deref(), Some("neg"));

    let (got, _) = read(
        &normalised(DatasetSpec::new(["lines.txt"], text(TextMode::Lines))),
        d.path(),
    );
    assert_eq!(texts(&got), ["one line", "two words"]);

    // Documents (the pipeline language's `documents`: one per file), blank-line blocks and
    // separator blocks keep their lines; only the ends are trimmed.
    let (got, _) = read(
        &normalised(DatasetSpec::new(["play.txt"], text(TextMode::File))),
        d.path(),
    );
    assert_eq!(texts(&got), ["act i.  \n  scene   one.\n\n  exit."]);
    let (got, _) = read(
        &normalised(DatasetSpec::new(["play.txt"], text(TextMode::Documents))),
        d.path(),
    );
    assert_eq!(texts(&got), ["act i.  \n  scene   one.", "exit."]);
    let (got, _) = read(
        &normalised(DatasetSpec::new(
            ["fortunes.txt"],
            text(TextMode::Separator("%".into())),
        )),
        d.path(),
    );
    assert_eq!(texts(&got), ["a   fortune  \n  two"]);

    let (got, _) = read(
        &normalised(DatasetSpec::new(["f"], Format::FolderPerClass)),
        d.path(),
    );
    assert_eq!(texts(&got), ["good film"]);

    // Supervised records keep every space, line break and capital, strip patterns aside.
    let mut pc = normalised(DatasetSpec::new(["pc.jsonl"], Format::Jsonl));
    pc.fields.prompt = Some("q".into());
    pc.fields.completion = Some("a".into());
    let (got, _) = read(&pc, d.path());
    assert_eq!(
        got[0].turns,
        Some(Turns::PromptCompletion {
            prompt: "  What is 2+2?\n".into(),
            completion: " Four.  ".into(),
        })
    );
    pc.preprocess.strip = vec!["2\\+2".into()];
    let (got, _) = read(&pc, d.path());
    assert_eq!(
        got[0].turns,
        Some(Turns::PromptCompletion {
            prompt: "  What is ?\n".into(),
            completion: " Four.  ".into(),
        })
    );
}

#[test]
fn more_bad_rows_than_max_skipped_stop_the_read_naming_the_last() {
    let d = TempDir::new("parity-max");
    d.write(
        "a.jsonl",
        "{\"text\": \"one\"}\n{bad\n{\"text\": \"two\"}\n[1]\n{\"other\": 1}\n{\"text\": \"three\"}\n",
    );
    let mut spec = DatasetSpec::new(["a.jsonl"], Format::Jsonl);
    spec.on_error = OnError::Skip;
    spec.max_skipped = Some(3);
    let (got, report) = read(&spec, d.path());
    assert_eq!((got.len(), report.skipped), (3, 3));

    spec.max_skipped = Some(2);
    let e = error(&spec, d.path());
    let file = d.path().join("a.jsonl");
    let expected = format!(
        "more than 2 bad rows were skipped; the last: {}:5: ",
        file.display()
    );
    assert!(e.message.starts_with(&expected), "{e}");
    assert!(e.message.contains("text"), "the reason is kept: {e}");
    assert_eq!((e.kind, e.line), (ErrorKind::BadRow, None));
    // The reader stops there.
    let mut reader = DatasetReader::open(&spec, d.path()).unwrap();
    let items: Vec<_> = reader.by_ref().collect();
    assert_eq!(items.len(), 3, "two records, then the error");
    assert!(items[2].is_err());

    // Under `stop`, the first bad row is the error, whatever the maximum.
    spec.on_error = OnError::Stop;
    assert_eq!(error(&spec, d.path()).line, Some(2));
}

#[test]
fn csv_without_a_header_names_columns_by_number() {
    let d = TempDir::new("parity-noheader");
    d.write("a.csv", "hello there,pos\n\"quoted, comma\",neg\n");
    let mut spec = DatasetSpec::new(["a.csv"], csv(false));
    spec.fields.text = "0".into();
    spec.fields.label = Some("1".into());
    let (got, _) = read(&spec, d.path());
    assert_eq!(texts(&got), ["hello there", "quoted, comma"]);
    let labels: Vec<_> = got.iter().map(|r| r.label.as_deref().unwrap()).collect();
    assert_eq!(labels, ["pos", "neg"]);
    assert_eq!((got[0].origin.line, got[1].origin.line), (1, 2));

    // A column past the row's end is a bad row; a named column is a configuration error.
    spec.fields.label = Some("2".into());
    let e = error(&spec, d.path());
    assert_eq!(e.line, Some(1));
    assert!(
        e.message.contains("the row has 2 fields, no column 2"),
        "{e}"
    );
    spec.fields.label = Some("label".into());
    let e = error(&spec, d.path());
    assert_eq!((e.kind, e.line), (ErrorKind::Config, None));
    assert!(
        e.message
            .contains("without a header, columns are numbers, not \"label\""),
        "{e}"
    );

    // The serialised default has a header.
    let f: Format = serde_json::from_str(r#"{"type": "csv"}"#).unwrap();
    assert_eq!(f, csv(true));
}

#[test]
fn csv_rows_with_another_field_count_and_quotes_never_closed_are_bad_rows() {
    let d = TempDir::new("parity-csv");
    d.write(
        "a.csv",
        "text,label\none,pos\nan unquoted, comma,neg\ntwo,neg\n",
    );
    d.write(
        "b.csv",
        "text,label\none,pos\n\"opened and never closed,pos\nswallowed,neg\n",
    );
    d.write("c.csv", "0,1\n1\n");
    let mut spec = DatasetSpec::new(["a.csv"], csv(true));
    spec.fields.label = Some("label".into());
    let e = error(&spec, d.path());
    assert_eq!(e.line, Some(3));
    assert_eq!(
        e.message,
        "the row has 3 fields where the header has 2 (quote a field that contains the \
         delimiter ',')"
    );
    spec.on_error = OnError::Skip;
    let (got, report) = read(&spec, d.path());
    assert_eq!(texts(&got), ["one", "two"]);
    assert_eq!(report.skipped, 1);

    spec.files = vec!["b.csv".into()];
    spec.on_error = OnError::Stop;
    let e = error(&spec, d.path());
    assert_eq!(e.line, Some(3));
    assert!(
        e.message
            .starts_with("a quoted field opened on this row is never closed"),
        "{e}"
    );
    spec.on_error = OnError::Skip;
    let (got, report) = read(&spec, d.path());
    assert_eq!((texts(&got), report.skipped), (vec!["one"], 1));

    let mut spec = DatasetSpec::new(["c.csv"], csv(false));
    spec.fields.text = "0".into();
    let e = error(&spec, d.path());
    assert_eq!(e.line, Some(2));
    assert!(
        e.message
            .starts_with("the row has 1 fields where the first row has 2"),
        "{e}"
    );
}

#[test]
fn folder_files_that_are_empty_or_not_utf8_are_bad_rows_at_line_1() {
    let d = TempDir::new("parity-folder");
    d.write("f/pos/1.txt", "fine\n");
    d.write("f/pos/2.txt", " \n\t\n");
    d.write("f/neg/1.txt", b"caf\xe9\n");
    d.write("f/neg/2.txt", "also fine");
    let mut spec = normalised(DatasetSpec::new(["f"], Format::FolderPerClass));
    let e = error(&spec, d.path());
    assert_eq!(
        (e.kind, e.file.as_deref(), e.line),
        (
            ErrorKind::BadRow,
            Some(d.path().join("f/neg/1.txt").as_path()),
            Some(1)
        )
    );
    assert!(e.message.contains("not valid UTF-8"), "{e}");
    spec.on_error = OnError::Skip;
    let (got, report) = read(&spec, d.path());
    assert_eq!(texts(&got), ["also fine", "fine"]);
    assert_eq!(report.skipped, 2);
    let empty = format!(
        "{}:1: the text is empty",
        d.path().join("f/pos/2.txt").display()
    );
    assert!(
        report.first_reasons.iter().any(|r| r.starts_with(&empty)),
        "{report:?}"
    );
}

#[cfg(unix)]
#[test]
fn a_fifo_or_a_device_is_refused_not_waited_on() {
    let d = TempDir::new("parity-fifo");
    let fifo = d.path().join("data.csv");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success(), "mkfifo {}", fifo.display());
    for (path, what) in [
        (fifo.as_path(), "a FIFO"),
        (Path::new("/dev/zero"), "a device"),
    ] {
        let spec = DatasetSpec::new([path.to_str().unwrap()], csv(true));
        let started = Instant::now();
        let e = error(&spec, d.path());
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(
            e.message,
            format!("{} is {what}, not a regular file", path.display())
        );
        assert!(DatasetReader::open(&spec, d.path()).is_err());
    }
}
