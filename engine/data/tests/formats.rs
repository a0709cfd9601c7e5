//! Every format on real files: JSONL, CSV, TSV, plain text (lines, documents, separator),
//! folder-per-class and Parquet (the committed fixtures written by pyarrow, see
//! tests/fixtures/make_parquet.py), with plain, prompt/completion and chat records, globs and
//! several files. Bad rows in each format are errors at file:line (Parquet: `file: row N`), or
//! skipped and counted. And for every format, the random-access [`RecordStore`] gives exactly the
//! records of the sequential reader, in the same order, with the same skip report.

mod common;

use std::path::{Path, PathBuf};

use ardpipe_data::chat::ChatMessage;
use ardpipe_data::{
    DataError, DatasetReader, DatasetSpec, ErrorKind, FieldMap, Format, OnError, Record,
    RecordStore, SkipReport, TextMode, Turns, load,
};
use common::TempDir;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn supervised(mut spec: DatasetSpec, prompt: &str, completion: &str) -> DatasetSpec {
    spec.fields.prompt = Some(prompt.into());
    spec.fields.completion = Some(completion.into());
    spec
}

fn chat(mut spec: DatasetSpec, messages: &str) -> DatasetSpec {
    spec.fields.messages = Some(messages.into());
    spec
}

fn skipping(mut spec: DatasetSpec) -> DatasetSpec {
    spec.on_error = OnError::Skip;
    spec
}

fn pc(prompt: &str, completion: &str) -> Option<Turns> {
    Some(Turns::PromptCompletion {
        prompt: prompt.into(),
        completion: completion.into(),
    })
}

fn msgs(pairs: &[(&str, &str)]) -> Option<Turns> {
    Some(Turns::Chat(
        pairs
            .iter()
            .map(|(r, c)| ChatMessage::new(*r, *c))
            .collect(),
    ))
}

/// The sequential reader's records and skip report.
fn sequential(spec: &DatasetSpec, base: &Path) -> (Vec<Record>, SkipReport) {
    let mut reader = DatasetReader::open(spec, base).unwrap();
    let records = reader.by_ref().collect::<Result<Vec<_>, _>>().unwrap();
    (records, reader.report().clone())
}

/// The store of a scan must hold exactly the sequential records: `get(i)` is the i-th record
/// (text, turns, label, extras, origin), whatever order they are fetched in, and the skip
/// reports agree. Returns the records.
fn store_matches_reader(spec: &DatasetSpec, base: &Path) -> Vec<Record> {
    let (records, report) = sequential(spec, base);
    let (store, scanned) = RecordStore::scan(spec, base).unwrap();
    assert_eq!(scanned, report, "the scan's skip report differs");
    assert_eq!(store.len(), records.len());
    // Backwards, so that no read can lean on the previous one's position.
    for i in (0..records.len()).rev() {
        assert_eq!(store.get(i).unwrap(), records[i], "record {i}");
    }
    for (i, want) in records.iter().enumerate() {
        assert_eq!(&store.get(i).unwrap(), want, "record {i}");
    }
    let odd: Vec<usize> = (0..records.len()).filter(|i| i % 2 == 1).rev().collect();
    let sub = store.subset(&odd).unwrap();
    assert_eq!(sub.len(), odd.len());
    for (j, &i) in odd.iter().enumerate() {
        assert_eq!(sub.get(j).unwrap(), records[i]);
    }
    let past = store.get(records.len()).unwrap_err();
    assert_eq!(past.kind, ErrorKind::Config, "{past}");
    records
}

fn err_of(spec: &DatasetSpec, base: &Path) -> DataError {
    let e = load(spec, base).unwrap_err();
    let scanned = RecordStore::scan(spec, base).unwrap_err();
    assert_eq!(scanned, e, "the scan stops with the reader's error");
    e
}

// ---------- Parquet ----------

#[test]
fn parquet_plain_columns_nested_structs_ints_and_bools() {
    let mut spec = DatasetSpec::new(["plain.parquet"], Format::Parquet);
    spec.fields = FieldMap {
        label: Some("label".into()),
        extra: vec!["meta.source".into(), "meta.id".into(), "flag".into()],
        ..FieldMap::default()
    };
    let e = err_of(&spec, &fixtures());
    assert_eq!(e.kind, ErrorKind::BadRow);
    let shown = e.to_string();
    assert!(
        shown.contains("plain.parquet: row 4: column `text` is null, expected a string"),
        "{shown}"
    );
    assert!(shown.contains("on_bad_row = skip"), "{shown}");

    let spec = skipping(spec);
    let got = store_matches_reader(&spec, &fixtures());
    let texts: Vec<&str> = got.iter().map(|r| r.text.as_str()).collect();
    assert_eq!(
        texts,
        ["a good film", "a dull film", "great acting", "weak plot"]
    );
    assert_eq!(got[0].label.as_deref(), Some("1"));
    assert_eq!(got[1].label.as_deref(), Some("0"));
    assert_eq!(got[3].extra["meta.source"], "s4");
    assert_eq!(got[3].extra["meta.id"], "4");
    assert_eq!(got[3].extra["flag"], "false");
    assert_eq!(got[3].origin.line, 5, "rows count from 1 over the file");
    let (_, report) = RecordStore::scan(&spec, &fixtures()).unwrap();
    assert_eq!(report.skipped, 1);
    assert!(report.first_reasons[0].contains(": row 4:"), "{report:?}");
}

#[test]
fn parquet_chat_messages_with_bad_conversations_skipped() {
    let spec = chat(
        DatasetSpec::new(["chat.parquet"], Format::Parquet),
        "messages",
    );
    let e = err_of(&spec, &fixtures());
    assert_eq!(e.kind, ErrorKind::BadRow);
    assert!(
        e.to_string()
            .contains("chat.parquet: row 3: message 2 of `messages` has role `bot`"),
        "{e}"
    );
    assert!(
        e.to_string().contains("system, user, assistant, tool"),
        "{e}"
    );

    let mut spec = skipping(spec);
    spec.fields.extra = vec!["source".into()];
    let got = store_matches_reader(&spec, &fixtures());
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|r| r.text.is_empty()));
    assert_eq!(
        got[0].turns,
        msgs(&[
            ("system", "Be brief."),
            ("user", "Hi"),
            ("assistant", "Hello!")
        ])
    );
    assert_eq!(got[3].extra["source"], "conv5");
    assert_eq!(
        got[3].turns,
        msgs(&[
            ("user", "Call the tool"),
            ("assistant", "calling"),
            ("tool", "42"),
            ("assistant", "It is 42")
        ])
    );
    let (_, report) = RecordStore::scan(&spec, &fixtures()).unwrap();
    assert_eq!(report.skipped, 2);
    assert!(
        report.first_reasons[0].contains("row 3: message 2"),
        "{report:?}"
    );
    assert!(
        report.first_reasons[1].contains("row 5: `messages` has no assistant message"),
        "{report:?}"
    );
}

#[test]
fn parquet_prompt_completion_glob_over_row_groups_and_codecs() {
    // pc_1 has four row groups (3 rows each, snappy), pc_2 is zstd, pc_3 gzip.
    let spec = supervised(
        DatasetSpec::new(["pc_*.parquet"], Format::Parquet),
        "prompt",
        "completion",
    );
    let got = store_matches_reader(&spec, &fixtures());
    assert_eq!(got.len(), 18);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(
            r.turns,
            pc(&format!("Question {i}?"), &format!("Answer {i}."))
        );
        assert!(r.text.is_empty());
    }
    assert!(got[17].origin.file.ends_with("pc_3_gzip.parquet"));
    assert_eq!(got[17].origin.line, 4);
    assert_eq!(got[9].origin.line, 10, "row 10 is in the fourth row group");
}

#[test]
fn parquet_missing_column_is_a_file_error_even_when_skipping() {
    let spec = skipping(supervised(
        DatasetSpec::new(["pc_2_zstd.parquet"], Format::Parquet),
        "promt",
        "completion",
    ));
    let e = err_of(&spec, &fixtures());
    assert_eq!(e.kind, ErrorKind::MissingField);
    let shown = e.to_string();
    assert!(shown.contains("column `promt` is missing"), "{shown}");
    assert!(shown.contains("did you mean `prompt`?"), "{shown}");
    assert_eq!(e.line, None);

    let mut nested = DatasetSpec::new(["plain.parquet"], Format::Parquet);
    nested.fields.label = Some("meta.sorce".into());
    let e = err_of(&nested, &fixtures());
    assert!(
        e.to_string()
            .contains("column `meta.sorce` is missing (struct `meta` has no `sorce`)"),
        "{e}"
    );
}

#[test]
fn parquet_wrong_types_and_a_file_that_is_not_parquet() {
    // `messages` as text, and text from a struct: bad rows.
    let mut spec = DatasetSpec::new(["chat.parquet"], Format::Parquet);
    spec.fields.text = "messages".into();
    let e = err_of(&spec, &fixtures());
    assert!(
        e.to_string()
            .contains("chat.parquet: row 1: column `messages` is a list, expected a string"),
        "{e}"
    );
    let spec = chat(DatasetSpec::new(["plain.parquet"], Format::Parquet), "text");
    let e = err_of(&spec, &fixtures());
    assert!(
        e.to_string().contains(
            "plain.parquet: row 1: column `text` is a string, expected a list of messages"
        ),
        "{e}"
    );

    let d = TempDir::new("not-parquet");
    d.write("x.parquet", "text\nhello\n");
    let e = err_of(&DatasetSpec::new(["x.parquet"], Format::Parquet), d.path());
    assert_eq!(e.kind, ErrorKind::Io);
    assert!(e.to_string().contains("cannot read as Parquet"), "{e}");
}

// ---------- JSONL ----------

#[test]
fn jsonl_prompt_completion_records_do_not_read_text() {
    let d = TempDir::new("jsonl-pc");
    d.write(
        "a.jsonl",
        "{\"prompt\": \"2+2?\", \"completion\": \" 4\", \"cat\": \"math\"}\n\
         {\"prompt\": \"\", \"completion\": \"Once upon a time\", \"cat\": \"story\"}\n",
    );
    d.write(
        "b.jsonl",
        "{\"prompt\": \"Hi\", \"completion\": \"Hello\", \"cat\": 3}\n",
    );
    let mut spec = supervised(
        DatasetSpec::new(["*.jsonl"], Format::Jsonl),
        "prompt",
        "completion",
    );
    spec.fields.label = Some("cat".into());
    let got = store_matches_reader(&spec, d.path());
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].turns, pc("2+2?", " 4"), "texts are kept as written");
    assert_eq!(got[1].turns, pc("", "Once upon a time"));
    assert_eq!(got[2].label.as_deref(), Some("3"));
    assert!(got.iter().all(|r| r.text.is_empty()));
}

#[test]
fn jsonl_chat_records_and_every_bad_message() {
    let d = TempDir::new("jsonl-chat");
    let good = r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}"#;
    let rows = [
        good,
        r#"{"messages": [{"role": "user", "content": "Hi"}, "Hello"]}"#,
        r#"{"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]}"#,
        r#"{"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "x"}]}"#,
        r#"{"messages": [{"role": "human", "content": "Hi"}, {"role": "assistant", "content": "x"}]}"#,
        r#"{"messages": [{"role": "user", "content": "Hi"}]}"#,
        r#"{"messages": "Hi"}"#,
        r#"{"messages": []}"#,
        r#"{"chat": []}"#,
        r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "  "}]}"#,
        r#"{"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}, {"role": "tool", "content": "T"}, {"role": "assistant", "content": "B"}]}"#,
    ];
    d.write("c.jsonl", rows.join("\n") + "\n");
    let spec = chat(DatasetSpec::new(["c.jsonl"], Format::Jsonl), "messages");
    let e = err_of(&spec, d.path());
    assert_eq!(e.kind, ErrorKind::BadRow);
    assert!(
        e.to_string()
            .contains("c.jsonl:2: message 2 of `messages` is a string, not an object"),
        "{e}"
    );
    assert!(
        e.to_string().contains("string fields `role` and `content`"),
        "{e}"
    );

    let spec = skipping(spec);
    let got = store_matches_reader(&spec, d.path());
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].turns,
        msgs(&[("user", "Hi"), ("assistant", "Hello")])
    );
    assert_eq!(got[1].origin.line, 11);
    let mut reader = DatasetReader::open(&spec, d.path()).unwrap();
    reader.by_ref().for_each(drop);
    let report = reader.report();
    assert_eq!(report.skipped, 9);
    // Only the first five reasons are kept; check those, then the rest one by one.
    let want = [
        "c.jsonl:2: message 2 of `messages` is a string, not an object",
        "c.jsonl:3: message 1 of `messages` has no `content`",
        "c.jsonl:4: message 1 of `messages` has `content` a number, not a string",
        "c.jsonl:5: message 1 of `messages` has role `human`",
        "c.jsonl:6: `messages` has no assistant message",
    ];
    for (got, want) in report.first_reasons.iter().zip(want) {
        assert!(got.contains(want), "{got} does not say {want}");
    }
    let one = |line: &str| {
        d.write("one.jsonl", format!("{line}\n"));
        err_of(
            &chat(DatasetSpec::new(["one.jsonl"], Format::Jsonl), "messages"),
            d.path(),
        )
        .to_string()
    };
    assert!(
        one(rows[6])
            .contains("one.jsonl:1: field `messages` is a string, expected a list of messages"),
        "{}",
        one(rows[6])
    );
    assert!(one(rows[7]).contains("`messages` is an empty list"));
    let missing = one(rows[8]);
    assert!(missing.contains("field `messages` is missing"), "{missing}");
    assert!(
        one(rows[9]).contains("every assistant message of the conversation is empty"),
        "{}",
        one(rows[9])
    );
}

#[test]
fn half_or_mixed_supervised_mappings_are_config_errors() {
    let d = TempDir::new("mapping");
    d.write("a.jsonl", "{\"prompt\": \"p\", \"completion\": \"c\"}\n");
    let mut spec = DatasetSpec::new(["a.jsonl"], Format::Jsonl);
    spec.fields.prompt = Some("prompt".into());
    let e = err_of(&spec, d.path());
    assert_eq!(e.kind, ErrorKind::Config);
    assert!(
        e.to_string().contains("`prompt` but no `completion`"),
        "{e}"
    );
    spec.fields.completion = Some("completion".into());
    spec.fields.messages = Some("messages".into());
    let e = err_of(&spec, d.path());
    assert!(e.to_string().contains("`messages` together with"), "{e}");
}

// ---------- CSV / TSV ----------

#[test]
fn csv_and_tsv_prompt_completion_columns_with_bad_rows() {
    let d = TempDir::new("csv-pc");
    d.write(
        "a.csv",
        "id,instruction,response\n1,\"Say hi, please\",Hi\n2,Count,\"1\n2\n3\"\n3,Oops\n4,Empty,\n",
    );
    d.write(
        "b.tsv",
        "instruction\tresponse\nTranslate \"chat\"\tcat\nBroken\t\"x\ty\"\tz\n",
    );
    let spec = supervised(
        DatasetSpec::new(
            ["a.csv"],
            Format::Csv {
                delimiter: ',',
                header: true,
            },
        ),
        "instruction",
        "response",
    );
    let e = err_of(&spec, d.path());
    assert!(
        e.to_string()
            .contains("a.csv:6: the row has 2 fields where the header has 3"),
        "{e}"
    );
    let mut spec = skipping(spec);
    spec.fields.extra = vec!["id".into()];
    let got = store_matches_reader(&spec, d.path());
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].turns, pc("Say hi, please", "Hi"));
    assert_eq!(got[1].turns, pc("Count", "1\n2\n3"));
    assert_eq!(got[1].extra["id"], "2");
    let (_, report) = RecordStore::scan(&spec, d.path()).unwrap();
    assert_eq!(report.skipped, 2);
    assert!(
        report.first_reasons[1].contains("a.csv:7: the completion is empty"),
        "{report:?}"
    );

    let tsv = skipping(supervised(
        DatasetSpec::new(
            ["b.tsv"],
            Format::Csv {
                delimiter: '\t',
                header: true,
            },
        ),
        "instruction",
        "response",
    ));
    let got = store_matches_reader(&tsv, d.path());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].turns, pc("Translate \"chat\"", "cat"));

    let messages = chat(
        DatasetSpec::new(
            ["a.csv"],
            Format::Csv {
                delimiter: ',',
                header: true,
            },
        ),
        "response",
    );
    let e = err_of(&messages, d.path());
    assert_eq!(e.kind, ErrorKind::Config);
    assert!(
        e.to_string()
            .contains("a CSV cell cannot hold a list of messages"),
        "{e}"
    );
}

// ---------- random access for every plain format ----------

/// Files whose records and bad rows exercise each loader; the store must agree with the reader
/// under both policies (under `stop`, up to the first bad row, which both report alike).
#[test]
fn store_equals_reader_for_every_format_and_policy() {
    let d = TempDir::new("store-all");
    d.write(
        "j/a.jsonl",
        "\u{feff}{\"text\": \"first\", \"l\": \"x\"}\n\n{\"text\": \"second\", \"l\": 1}\r\n\
         {bad json}\n{\"text\": \"  \", \"l\": \"y\"}\n{\"text\": \"third\", \"l\": \"z\"}",
    );
    d.write("j/b.jsonl", "{\"text\": \"fourth\", \"l\": true}\n");
    d.write(
        "j/c.jsonl",
        b"{\"text\": \"caf\xe9\", \"l\": \"x\"}\n{\"text\": \"fifth\", \"l\": \"x\"}\n",
    );
    d.write(
        "c/a.csv",
        "text,label\n\"multi\nline\",a\nplain,b\nshort\n\"quoted \"\"q\"\"\",c\n\n,d\nlast,e\n",
    );
    d.write("c/b.tsv", "text\tlabel\none\tA\ntwo\tB\n");
    d.write(
        "t/lines.txt",
        b"alpha\n\n  \nbeta\r\ngamma\n\xff\xfe\ndelta",
    );
    d.write("t/lines_ok.txt", "alpha\n\n  \nbeta\r\ngamma\ndelta");
    d.write(
        "t/docs.txt",
        "\n\npara one\nstill one\n\n\n\npara two\n\npara three\nends here\n",
    );
    d.write("t/fortunes.txt", "%\nA fortune\n%\n%\nTwo\nlines\n%\n");
    d.write("t/whole.txt", "\n\nA whole\n\nfile\n\n");
    d.write("t/whole2.txt", "Another file\n");
    d.write("f/pos/1.txt", "good\n");
    d.write("f/pos/2.txt", "nice");
    d.write("f/neg/1.txt", b"bad \xff");
    d.write("f/neg/2.txt", "awful");
    d.write("f/neg/.hidden", "not data");

    let labelled = |mut s: DatasetSpec, l: &str| {
        s.fields.label = Some(l.into());
        s
    };
    let mut from_stem = DatasetSpec::new(
        ["t/lines_ok.txt", "t/docs.txt"],
        Format::Text {
            mode: TextMode::Lines,
        },
    );
    from_stem.label_from_stem = true;
    let specs = [
        labelled(DatasetSpec::new(["j/*.jsonl"], Format::Jsonl), "l"),
        labelled(
            DatasetSpec::new(
                ["c/a.csv"],
                Format::Csv {
                    delimiter: ',',
                    header: true,
                },
            ),
            "label",
        ),
        labelled(
            DatasetSpec::new(
                ["c/b.tsv"],
                Format::Csv {
                    delimiter: '\t',
                    header: true,
                },
            ),
            "label",
        ),
        from_stem,
        DatasetSpec::new(
            ["t/docs.txt", "t/lines.txt"],
            Format::Text {
                mode: TextMode::Documents,
            },
        ),
        DatasetSpec::new(
            ["t/fortunes.txt"],
            Format::Text {
                mode: TextMode::Separator("%".into()),
            },
        ),
        DatasetSpec::new(
            ["t/whole*.txt"],
            Format::Text {
                mode: TextMode::File,
            },
        ),
        DatasetSpec::new(["f"], Format::FolderPerClass),
    ];
    let mut totals = Vec::new();
    for spec in specs {
        let spec = skipping(spec);
        let got = store_matches_reader(&spec, d.path());
        let (_, report) = RecordStore::scan(&spec, d.path()).unwrap();
        totals.push((got.len(), report.skipped));
        // max_rows: the same first records, in both.
        let mut capped = spec.clone();
        capped.preprocess.max_rows = Some(2);
        let first = store_matches_reader(&capped, d.path());
        assert_eq!(first[..], got[..2]);
    }
    assert_eq!(
        totals,
        [
            (5, 3), // jsonl: bad JSON, blank text, invalid UTF-8
            (4, 2), // csv: short row, empty text
            (2, 0),
            (9, 0), // lines (both files; a file that is not UTF-8 is an error in this mode)
            (4, 1), // documents: the one with the bad line is dropped whole
            (2, 0),
            (2, 0),
            (3, 1), // folder: a binary file
        ]
    );
}

#[test]
fn in_memory_store_and_its_subsets() {
    let d = TempDir::new("memory");
    d.write("a.txt", "one\ntwo\nthree\n");
    let spec = DatasetSpec::new(
        ["a.txt"],
        Format::Text {
            mode: TextMode::Lines,
        },
    );
    let records = load(&spec, d.path()).unwrap().records;
    let store = RecordStore::in_memory(records.clone());
    assert_eq!(store.len(), 3);
    assert_eq!(store.get(1).unwrap(), records[1]);
    let sub = store.subset(&[2, 0]).unwrap();
    assert_eq!(sub.get(0).unwrap(), records[2]);
    let subsub = sub.subset(&[1]).unwrap();
    assert_eq!(subsub.get(0).unwrap(), records[0]);
    assert!(sub.get(2).is_err());
    assert!(store.subset(&[3]).is_err());
}

#[test]
fn a_store_can_be_shared_between_threads() {
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<RecordStore>();
}
