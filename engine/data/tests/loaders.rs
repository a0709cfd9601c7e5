//! Every loader on small fixture files, and every failure mode: each must be a clear error with
//! file:line (for rows), the reason and help — or a skip that is counted.

mod common;

use ardpipe_data::{
    DataError, DatasetReader, DatasetSpec, ErrorKind, FieldMap, Format, OnError, TextMode, load,
};
use common::TempDir;

fn jsonl() -> Format {
    Format::Jsonl
}
fn csv() -> Format {
    Format::Csv {
        delimiter: ',',
        header: true,
    }
}
fn text(mode: TextMode) -> Format {
    Format::Text { mode }
}

fn err_of(spec: &DatasetSpec, dir: &TempDir) -> DataError {
    load(spec, dir.path()).unwrap_err()
}

fn labelled(mut spec: DatasetSpec, label: &str) -> DatasetSpec {
    spec.fields.label = Some(label.into());
    spec
}

// ---------- JSONL ----------

#[test]
fn jsonl_fields_nested_numbers_and_blank_lines() {
    let d = TempDir::new("jsonl-ok");
    d.write(
        "a.jsonl",
        "{\"text\": \"hello\", \"meta\": {\"label\": \"pos\", \"id\": 7}}\n\n\
         {\"text\": \"bye\", \"meta\": {\"label\": 3, \"id\": 8}}\r\n",
    );
    let mut spec = DatasetSpec::new(["a.jsonl"], jsonl());
    spec.fields = FieldMap {
        text: "text".into(),
        text_pair: None,
        label: Some("meta.label".into()),
        extra: vec!["meta.id".into()],
        ..FieldMap::default()
    };
    let got = load(&spec, d.path()).unwrap().records;
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].text, "hello");
    assert_eq!(got[0].label.as_deref(), Some("pos"));
    assert_eq!(got[1].label.as_deref(), Some("3"));
    assert_eq!(got[1].extra["meta.id"], "8");
    assert_eq!(got[1].origin.line, 3);
    assert!(got[1].origin.file.ends_with("a.jsonl"));
}

#[test]
fn jsonl_pair_field() {
    let d = TempDir::new("jsonl-pair");
    d.write(
        "p.jsonl",
        "{\"premise\": \"a\", \"hypothesis\": \"b\", \"y\": \"e\"}\n",
    );
    let mut spec = DatasetSpec::new(["p.jsonl"], jsonl());
    spec.fields.text = "premise".into();
    spec.fields.text_pair = Some("hypothesis".into());
    let r = &load(&spec, d.path()).unwrap().records[0];
    assert_eq!((r.text.as_str(), r.text_pair.as_deref()), ("a", Some("b")));
}

#[test]
fn jsonl_bad_json_stops_with_file_line() {
    let d = TempDir::new("jsonl-bad");
    d.write(
        "a.jsonl",
        "{\"text\": \"ok\"}\n{\"text\": \"broken\n{\"text\": \"ok\"}\n",
    );
    let e = err_of(&DatasetSpec::new(["a.jsonl"], jsonl()), &d);
    assert_eq!(e.kind, ErrorKind::BadRow);
    assert_eq!(e.line, Some(2));
    let s = e.to_string();
    assert!(s.contains("a.jsonl:2: invalid JSON"), "{s}");
    assert!(s.contains("on_bad_row = skip"), "{s}");
}

#[test]
fn jsonl_not_an_object_and_wrong_type() {
    let d = TempDir::new("jsonl-type");
    d.write("a.jsonl", "[1, 2]\n");
    d.write("b.jsonl", "{\"text\": [\"x\"]}\n");
    let e = err_of(&DatasetSpec::new(["a.jsonl"], jsonl()), &d);
    assert!(
        e.to_string()
            .contains("expected a JSON object, found an array"),
        "{e}"
    );
    let e = err_of(&DatasetSpec::new(["b.jsonl"], jsonl()), &d);
    assert!(
        e.to_string()
            .contains("`text` is an array, expected a string"),
        "{e}"
    );
}

#[test]
fn jsonl_missing_field_suggests_the_closest() {
    let d = TempDir::new("jsonl-missing");
    d.write("a.jsonl", "{\"txt\": \"hello\", \"label\": \"x\"}\n");
    let e = err_of(&DatasetSpec::new(["a.jsonl"], jsonl()), &d);
    assert_eq!(e.kind, ErrorKind::MissingField);
    assert_eq!(e.line, Some(1));
    let help = e.help.clone().unwrap();
    assert!(help.contains("did you mean `txt`?"), "{help}");
    assert!(help.contains("`label`"), "{help}");
}

#[test]
fn skip_policy_counts_and_keeps_first_reasons() {
    let d = TempDir::new("skip");
    let mut body = String::new();
    for i in 0..10 {
        body.push_str(&format!("{{\"text\": \"row {i}\"}}\n"));
        body.push_str("not json\n");
    }
    d.write("a.jsonl", body);
    let mut spec = DatasetSpec::new(["a.jsonl"], jsonl());
    spec.on_error = OnError::Skip;
    let loaded = load(&spec, d.path()).unwrap();
    assert_eq!(loaded.records.len(), 10);
    assert_eq!(loaded.skipped.skipped, 10);
    assert_eq!(loaded.skipped.first_reasons.len(), 5);
    assert!(
        loaded.skipped.first_reasons[0].contains("a.jsonl:2:"),
        "{:?}",
        loaded.skipped
    );
    assert!(loaded.skipped.first_reasons[1].contains("a.jsonl:4:"));
}

#[test]
fn everything_skipped_is_an_empty_dataset_with_the_reason() {
    let d = TempDir::new("all-skipped");
    d.write("a.jsonl", "{\"body\": \"x\"}\n{\"body\": \"y\"}\n");
    let mut spec = DatasetSpec::new(["a.jsonl"], jsonl());
    spec.on_error = OnError::Skip;
    let e = err_of(&spec, &d);
    assert_eq!(e.kind, ErrorKind::Empty);
    let help = e.help.unwrap();
    assert!(help.contains("all 2 rows were skipped"), "{help}");
    assert!(help.contains("`text` is missing"), "{help}");
}

#[test]
fn empty_file_is_an_empty_dataset() {
    let d = TempDir::new("empty");
    d.write("a.jsonl", "\n\n");
    let e = err_of(&DatasetSpec::new(["a.jsonl"], jsonl()), &d);
    assert_eq!(e.kind, ErrorKind::Empty);
    assert!(e.to_string().contains("is empty"), "{e}");
}

/// A JSONL line that is not UTF-8 is one bad row at its line; a plain text file read in `lines`
/// mode that is not UTF-8 is not text at all: an error for the whole file, even under `skip` (as
/// the trainer's reader had it).
#[test]
fn invalid_utf8_is_a_bad_row_at_its_line() {
    let d = TempDir::new("utf8");
    d.write(
        "a.jsonl",
        b"{\"text\": \"fine\"}\n{\"text\": \"\xff\xfe broken\"}\n{\"text\": \"also fine\"}\n",
    );
    let spec = DatasetSpec::new(["a.jsonl"], jsonl());
    let e = err_of(&spec, &d);
    assert_eq!((e.kind, e.line), (ErrorKind::BadRow, Some(2)));
    assert!(
        e.message
            .contains("not valid UTF-8 (at byte 10 of the line)"),
        "{e}"
    );
    assert!(e.help.unwrap().contains("UTF-8"));
    let mut spec = spec;
    spec.on_error = OnError::Skip;
    let loaded = load(&spec, d.path()).unwrap();
    assert_eq!(loaded.records.len(), 2);
    assert_eq!(loaded.records[1].origin.line, 3);

    d.write("a.txt", b"fine\n\xff\xfe broken\nalso fine\n");
    let mut spec = DatasetSpec::new(["a.txt"], text(TextMode::Lines));
    spec.on_error = OnError::Skip;
    let e = err_of(&spec, &d);
    assert_eq!((e.kind, e.line), (ErrorKind::Io, None));
    let path = d.path().join("a.txt");
    assert!(
        e.message.starts_with(&format!(
            "cannot read {} as UTF-8 text: line 2 is not valid UTF-8",
            path.display()
        )),
        "{e}"
    );
}

// ---------- CSV ----------

#[test]
fn csv_header_quoting_and_delimiter() {
    let d = TempDir::new("csv-ok");
    d.write(
        "a.csv",
        "id,text,label\n1,\"hello, world\",pos\n2,\"multi\nline \"\"quoted\"\"\",neg\n3,plain,pos\n",
    );
    d.write("b.tsv", "text\tlabel\nx\ty\n");
    let spec = labelled(DatasetSpec::new(["a.csv"], csv()), "label");
    let got = load(&spec, d.path()).unwrap().records;
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].text, "hello, world");
    assert_eq!(got[1].text, "multi\nline \"quoted\"");
    assert_eq!(got[1].label.as_deref(), Some("neg"));
    // Line numbers count physical lines: row 3 starts on line 5 after the two-line field.
    assert_eq!(
        got.iter().map(|r| r.origin.line).collect::<Vec<_>>(),
        [2, 3, 5]
    );
    let spec = labelled(
        DatasetSpec::new(
            ["b.tsv"],
            Format::Csv {
                delimiter: '\t',
                header: true,
            },
        ),
        "label",
    );
    assert_eq!(
        load(&spec, d.path()).unwrap().records[0].label.as_deref(),
        Some("y")
    );
}

#[test]
fn csv_missing_column_names_the_columns_and_is_never_skipped() {
    let d = TempDir::new("csv-col");
    d.write("a.csv", "source_id,text\nx-1,hi\n");
    let mut spec = labelled(DatasetSpec::new(["a.csv"], csv()), "sourceid");
    spec.on_error = OnError::Skip;
    let e = err_of(&spec, &d);
    assert_eq!(e.kind, ErrorKind::MissingField);
    let s = e.to_string();
    assert!(s.contains("column `sourceid` is not in the header"), "{s}");
    assert!(s.contains("did you mean `source_id`?"), "{s}");
    assert!(s.contains("`text`"), "{s}");
}

#[test]
fn csv_ragged_row_has_its_line() {
    let d = TempDir::new("csv-ragged");
    d.write("a.csv", "text,label\na,b\nc,d,e\nf,g\n");
    let spec = labelled(DatasetSpec::new(["a.csv"], csv()), "label");
    let e = err_of(&spec, &d);
    assert_eq!((e.kind, e.line), (ErrorKind::BadRow, Some(3)));
    assert!(
        e.to_string()
            .contains("the row has 3 fields where the header has 2"),
        "{e}"
    );
    let mut spec = spec;
    spec.on_error = OnError::Skip;
    let l = load(&spec, d.path()).unwrap();
    assert_eq!((l.records.len(), l.skipped.skipped), (2, 1));
}

#[test]
fn csv_without_header_and_bad_delimiter() {
    let d = TempDir::new("csv-empty");
    d.write("a.csv", "");
    let e = err_of(&DatasetSpec::new(["a.csv"], csv()), &d);
    assert_eq!(e.kind, ErrorKind::Empty);
    assert!(e.to_string().contains("no header row"), "{e}");
    d.write("b.csv", "text\nx\n");
    let e = err_of(
        &DatasetSpec::new(
            ["b.csv"],
            Format::Csv {
                delimiter: '§',
                header: true,
            },
        ),
        &d,
    );
    assert_eq!(e.kind, ErrorKind::Config);
}

#[test]
fn csv_header_only_is_empty() {
    let d = TempDir::new("csv-header-only");
    d.write("a.csv", "text,label\n");
    let e = err_of(&DatasetSpec::new(["a.csv"], csv()), &d);
    assert_eq!(e.kind, ErrorKind::Empty);
}

// ---------- plain text ----------

#[test]
fn text_modes() {
    let d = TempDir::new("text");
    d.write(
        "poem.txt",
        "\n\nfirst line\nsecond line\n\n\nnext para\n  \n",
    );
    d.write("fortunes", "one\n%\ntwo\nlines\n%\n%\nthree\n");
    let lines = load(
        &DatasetSpec::new(["poem.txt"], text(TextMode::Lines)),
        d.path(),
    )
    .unwrap();
    assert_eq!(
        lines
            .records
            .iter()
            .map(|r| (r.text.as_str(), r.origin.line))
            .collect::<Vec<_>>(),
        [("first line", 3), ("second line", 4), ("next para", 7)]
    );
    let docs = load(
        &DatasetSpec::new(["poem.txt"], text(TextMode::Documents)),
        d.path(),
    )
    .unwrap();
    assert_eq!(
        docs.records
            .iter()
            .map(|r| (r.text.as_str(), r.origin.line))
            .collect::<Vec<_>>(),
        [("first line\nsecond line", 3), ("next para", 7)]
    );
    let sep = DatasetSpec::new(["fortunes"], text(TextMode::Separator("%".into())));
    let f = load(&sep, d.path()).unwrap();
    assert_eq!(
        f.records
            .iter()
            .map(|r| (r.text.as_str(), r.origin.line))
            .collect::<Vec<_>>(),
        [("one", 1), ("two\nlines", 3), ("three", 7)]
    );
    let mut whole = DatasetSpec::new(["poem.txt"], text(TextMode::File));
    whole.label_from_stem = true;
    let w = load(&whole, d.path()).unwrap();
    assert_eq!(w.records.len(), 1);
    assert_eq!(w.records[0].label.as_deref(), Some("poem"));
    assert!(
        w.records[0]
            .text
            .starts_with("first line\nsecond line\n\n\nnext para")
    );
}

#[test]
fn globs_expand_sorted_and_must_match() {
    let d = TempDir::new("glob");
    d.write("t/b.txt", "bee\n");
    d.write("t/a.txt", "ay\n");
    d.write("t/skip.md", "no\n");
    let mut spec = DatasetSpec::new(["t/*.txt"], text(TextMode::Lines));
    spec.label_from_stem = true;
    let got = load(&spec, d.path()).unwrap().records;
    assert_eq!(
        got.iter()
            .map(|r| (r.text.as_str(), r.label.as_deref().unwrap()))
            .collect::<Vec<_>>(),
        [("ay", "a"), ("bee", "b")]
    );
    let e = err_of(&DatasetSpec::new(["t/*.csv"], csv()), &d);
    assert_eq!(e.kind, ErrorKind::Empty);
    assert!(e.to_string().contains("`t/*.csv` matches no file"), "{e}");
    let e = err_of(&DatasetSpec::new(["nope.txt"], text(TextMode::Lines)), &d);
    assert_eq!(e.kind, ErrorKind::Io);
    assert!(e.to_string().contains("nope.txt"), "{e}");
    let e = err_of(&DatasetSpec::new(["t"], text(TextMode::Lines)), &d);
    assert!(
        e.to_string().contains("expected a file, found a folder"),
        "{e}"
    );
    let e = err_of(
        &DatasetSpec::new(Vec::<String>::new(), text(TextMode::Lines)),
        &d,
    );
    assert_eq!(e.kind, ErrorKind::Config);
}

// ---------- folder per class ----------

#[test]
fn folder_per_class() {
    let d = TempDir::new("folder");
    d.write("root/spam/1.txt", "buy now\n");
    d.write("root/spam/2.txt", "cheap\n");
    d.write("root/ham/a.txt", "hi mum");
    d.write("root/ham/.DS_Store", "junk");
    let got = load(
        &DatasetSpec::new(["root"], Format::FolderPerClass),
        d.path(),
    )
    .unwrap()
    .records;
    assert_eq!(
        got.iter()
            .map(|r| (r.label.as_deref().unwrap(), r.text.as_str()))
            .collect::<Vec<_>>(),
        [("ham", "hi mum"), ("spam", "buy now"), ("spam", "cheap")]
    );
    d.write("flat/x.txt", "no classes");
    let e = err_of(&DatasetSpec::new(["flat"], Format::FolderPerClass), &d);
    assert_eq!(e.kind, ErrorKind::Empty);
    assert!(e.to_string().contains("no class subfolders"), "{e}");
    d.write("bin/c/x.bin", b"\xff\xfe\x00");
    let e = err_of(&DatasetSpec::new(["bin"], Format::FolderPerClass), &d);
    assert_eq!((e.kind, e.line), (ErrorKind::BadRow, Some(1)));
    let e = err_of(
        &DatasetSpec::new(["root/ham/a.txt"], Format::FolderPerClass),
        &d,
    );
    assert!(e.to_string().contains("expected a folder"), "{e}");
}

// ---------- preprocessing ----------

#[test]
fn strip_label_regex_and_max_rows() {
    let d = TempDir::new("prep");
    d.write(
        "t.csv",
        "source_id,text\nbbchealth-1,Flu rises http://bbc.in/x\ncnnhealth-22,Eat well https://t.co/y now\nnolabel,z\n",
    );
    let mut spec = labelled(DatasetSpec::new(["t.csv"], csv()), "source_id");
    spec.preprocess.strip = vec![r"http\S+".into()];
    spec.preprocess.label_regex = Some("^(.*)-[^-]*$".into());
    spec.preprocess.max_rows = Some(2);
    let got = load(&spec, d.path()).unwrap().records;
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0].text.as_str(), got[0].label.as_deref()),
        ("Flu rises", Some("bbchealth"))
    );
    assert_eq!(got[1].text, "Eat well  now");
    spec.preprocess.max_rows = None;
    let e = err_of(&spec, &d);
    assert_eq!((e.kind, e.line), (ErrorKind::BadRow, Some(4)));
    assert!(
        e.to_string().contains("label `nolabel` does not match"),
        "{e}"
    );
}

#[test]
fn text_empty_after_stripping_is_a_bad_row() {
    let d = TempDir::new("prep-empty");
    d.write("t.txt", "http://only.a/link\nreal\n");
    let mut spec = DatasetSpec::new(["t.txt"], text(TextMode::Lines));
    spec.preprocess.strip = vec![r"http\S+".into()];
    let e = err_of(&spec, &d);
    assert_eq!((e.kind, e.line), (ErrorKind::BadRow, Some(1)));
    assert!(e.to_string().contains("the text is empty"), "{e}");
}

#[test]
fn bad_regexes_are_config_errors() {
    let d = TempDir::new("prep-bad");
    d.write("t.txt", "x\n");
    let mut spec = DatasetSpec::new(["t.txt"], text(TextMode::Lines));
    spec.preprocess.strip = vec!["(unclosed".into()];
    let e = DatasetReader::open(&spec, d.path()).err().unwrap();
    assert_eq!(e.kind, ErrorKind::Config);
    assert!(e.to_string().contains("not a valid regex"), "{e}");
    spec.preprocess.strip.clear();
    spec.preprocess.label_regex = Some("^.*$".into());
    let e = DatasetReader::open(&spec, d.path()).err().unwrap();
    assert!(e.to_string().contains("no capture group"), "{e}");
}

#[test]
fn any_source_gets_preprocessing_and_policy() {
    use ardpipe_data::{Origin, Preprocess, Record};
    use std::sync::Arc;
    let origin = |line| Origin {
        file: Arc::from(std::path::Path::new("plugin://x")),
        line,
    };
    let rows: Vec<Result<Record, DataError>> = vec![
        Ok(Record::new("keep http://x", origin(1))),
        Err(DataError::new(ErrorKind::BadRow, "plugin says no").at("plugin://x", 2)),
        Ok(Record::new("also", origin(3))),
    ];
    let prep = Preprocess {
        strip: vec![r"http\S+".into()],
        ..Default::default()
    };
    let mut r =
        DatasetReader::from_source(Box::new(rows.into_iter()), &prep, OnError::Skip).unwrap();
    let got: Vec<_> = r.by_ref().map(|x| x.unwrap().text).collect();
    assert_eq!(got, ["keep", "also"]);
    assert_eq!(r.report().skipped, 1);
}

#[test]
fn unreadable_file_in_a_glob_stops_even_under_skip() {
    let d = TempDir::new("io");
    d.write("x/a.jsonl", "{\"text\": \"a\"}\n");
    let p = d.write("x/b.jsonl", "{\"text\": \"b\"}\n");
    let mut spec = DatasetSpec::new(["x/*.jsonl"], jsonl());
    spec.on_error = OnError::Skip;
    let mut reader = DatasetReader::open(&spec, d.path()).unwrap();
    assert_eq!(reader.next().unwrap().unwrap().text, "a");
    std::fs::remove_file(&p).unwrap();
    let e = reader.next().unwrap().unwrap_err();
    assert_eq!(e.kind, ErrorKind::Io);
    assert!(reader.next().is_none());
}
