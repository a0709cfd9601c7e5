//! Hostile input: each case gets exit 1 and a message that says where and why — never a panic
//! (exit 101), an abort (134) or a silently wrong answer. Closed output pipes end the process the
//! way they end any Unix tool (SIGPIPE), quietly.

use std::fmt::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::plugin::c_plugin;
use crate::{ardpipe, stderr};

fn scratch(name: &str) -> PathBuf {
    crate::fresh_dir(&format!("hostile-{name}"))
}

/// `ardpipe run` single-threaded and quiet (warnings still show).
fn run(file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ardpipe"))
        .args(["run", "-q", "--threads", "1"])
        .arg(file)
        .env("ARDPIPE_COLOR", "never")
        .env("COLUMNS", "1000")
        .output()
        .expect("ardpipe runs")
}

/// Neither a panic nor an abort, whatever else happened.
fn assert_no_crash(out: &Output) {
    let err = stderr(out);
    assert!(
        !matches!(out.status.code(), Some(101 | 134)) && out.status.signal().is_none(),
        "ardpipe crashed ({}):\n{err}",
        out.status
    );
    assert!(!err.contains("panicked"), "ardpipe panicked:\n{err}");
}

/// A small classification pipeline on the MiniLM asset, with `dataset` as its dataset block body.
fn pipeline(dir: &Path, head: &str, dataset: &str) -> PathBuf {
    let text = format!(
        "{head}\
         dataset d {{\n{dataset}\n    split {{\n        validation = 25%\n    }}\n}}\n\n\
         model {{\n    path = \"${{assets}}/minilm\"\n    format = hf_folder\n    head = sequence_classification\n    classes = auto\n}}\n\n\
         adapter a {{\n    method = lora\n    modules = [query]\n    rank = 2\n}}\n\n\
         train {{\n    lr = 1e-3\n    batch_size = 2\n    steps = 1\n}}\n\n\
         evaluate {{\n    metrics = [loss]\n}}\n\n\
         output {{\n    dir = \"{}/runs/{{name}}\"\n}}\n",
        dir.display()
    );
    let file = dir.join("p.ard");
    std::fs::write(&file, text).unwrap();
    file
}

/// 34 `let`s, each doubling the string before it: 2^34 bytes (the report saw an abort at 1.7 GB).
#[test]
fn a_let_doubling_a_string_34_times_stops_at_the_size_limit() {
    let dir = scratch("doubling");
    let mut text = "let s0 = \"ab\"\n".to_string();
    for i in 1..=34 {
        writeln!(text, "let s{i} = \"${{s{0}}}${{s{0}}}\"", i - 1).unwrap();
    }
    text += "output {\n    dir = s34\n}\n";
    let file = dir.join("doubling.ard");
    std::fs::write(&file, text).unwrap();
    let started = std::time::Instant::now();
    let out = ardpipe(&["check", file.to_str().unwrap()]);
    assert_no_crash(&out);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for expected in [
        "ardpipe::dsl::too_large",
        "this string grows past 1 MiB once its variables are substituted",
        // s{i} holds 2^(i+1) bytes: s20, on line 21, is the first over 1 MiB; the error points at
        // its value.
        "doubling.ard:21:11",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert_eq!(
        err.matches("grows past").count(),
        1,
        "reported once:\n{err}"
    );
    assert!(
        started.elapsed().as_secs() < 10,
        "took {:?}",
        started.elapsed()
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A loader plugin that hands back a one-record array as `len = 1 << 20` (the report saw the host
/// abort trying to allocate 139 TB).
#[test]
fn a_loader_returning_more_records_than_asked_is_refused_naming_it() {
    let dir = scratch("liar");
    let liar = c_plugin("plugins/testdata/c-plugin/lying_loader.c", "c_liar");
    let head = format!(
        "plugin liar {{\n    library = \"{}\"\n    abi = 1\n}}\n\n",
        liar.display()
    );
    let file = pipeline(&dir, &head, "    format = plugin(liar, lie = \"len\")");
    let out = run(&file);
    assert_no_crash(&out);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for expected in [
        "ardpipe::plugin::bad_output",
        "dataset `d`: plugin `c-liar` returned invalid data from next_batch: it returned 1048576 \
         records when asked for at most 256 (`max_records`)",
        "this is a bug in the plugin `c-liar`",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A CSV row with one field more than the header (an unquoted comma in the text) used to be read
/// with its fields shifted; now the bad-row policy applies to it, with file:line.
#[test]
fn a_csv_row_with_an_extra_column_goes_to_the_bad_row_policy_with_its_line() {
    let dir = scratch("csv");
    let mut csv = "text,label\n".to_string();
    for i in 0..8 {
        writeln!(csv, "\"example number {i}\",{}", ["pos", "neg"][i % 2]).unwrap();
    }
    csv += "an unquoted, comma,pos\n";
    std::fs::write(dir.join("data.csv"), csv).unwrap();
    let dataset = |policy: &str| {
        format!(
            "    format = csv\n    path = \"data.csv\"\n    text = \"text\"\n    label = \"label\"\n{policy}"
        )
    };

    // The default policy stops at the row.
    let file = pipeline(&dir, "", &dataset(""));
    let out = run(&file);
    assert_no_crash(&out);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("data.csv:10: the row has 3 fields where the header has 2"),
        "{err}"
    );

    // `skip` skips it, counts it and says why.
    std::fs::remove_dir_all(dir.join("runs")).ok();
    let file = pipeline(&dir, "", &dataset("    on_bad_row = skip\n"));
    let out = run(&file);
    assert_no_crash(&out);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    for expected in [
        "dataset `d`: skipped 1 bad rows, e.g. ",
        "data.csv:10: the row has 3 fields where the header has 2",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Runs ardpipe with stdout or stderr connected to a pipe whose reading end is already closed,
/// the way `ardpipe ... | head` leaves it once head has exited.
fn with_closed_pipe(args: &[&str], on_stderr: bool) -> Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ardpipe"));
    cmd.args(args).env("ARDPIPE_COLOR", "never");
    if on_stderr {
        cmd.stderr(Stdio::from(writer)).stdout(Stdio::piped());
    } else {
        cmd.stdout(Stdio::from(writer)).stderr(Stdio::piped());
    }
    cmd.output().expect("ardpipe runs")
}

/// Quietly ended by SIGPIPE, as `cat` or `grep` are (a shell shows 141) — not exit 101 with
/// "failed printing to stdout: Broken pipe".
fn assert_ended_by_sigpipe(out: &Output) {
    assert_eq!(
        out.status.signal(),
        Some(13),
        "expected death by SIGPIPE, got {}; stderr:\n{}",
        out.status,
        stderr(out)
    );
    assert!(!stderr(out).contains("panicked"), "{}", stderr(out));
}

#[test]
fn a_closed_stdout_ends_the_process_quietly() {
    let out = with_closed_pipe(&["schema"], false);
    assert_ended_by_sigpipe(&out);
    assert_eq!(stderr(&out), "", "nothing said about it");
}

#[test]
fn a_closed_stderr_ends_the_process_quietly() {
    let dir = scratch("stderr");
    let bad = dir.join("bad.ard");
    std::fs::write(&bad, "model {\n    hed = causal_lm\n}\n").unwrap();
    let out = with_closed_pipe(&["check", bad.to_str().unwrap()], true);
    assert_ended_by_sigpipe(&out);
    std::fs::remove_dir_all(&dir).ok();
}

/// A range bound at the edge of i64 (`0..-9223372036854775808`) is an empty range, not an
/// overflow while working out its last index.
#[test]
fn a_range_at_the_edge_of_the_integers_is_an_error() {
    let dir = scratch("range");
    let file = dir.join("range.ard");
    std::fs::write(
        &file,
        "adapter a {\n    method = ard_lora\n    modules = [query]\n    layers = 0..-9223372036854775808\n}\n",
    )
    .unwrap();
    let out = ardpipe(&["check", file.to_str().unwrap()]);
    assert_no_crash(&out);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("`layers`: this range is empty"), "{err}");
    assert!(err.contains("range.ard:4:14"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// `layers` listing the widest range 50,000 times: 5·10^9 indices if each were expanded before
/// de-duplication (20 GB); merged, it is one range.
#[test]
fn a_range_repeated_many_times_costs_what_one_does() {
    let dir = scratch("ranges");
    let file = dir.join("ranges.ard");
    let ranges = vec!["0..=100000"; 50_000].join(", ");
    let text = format!(
        "adapter a {{\n    method = ard_lora\n    modules = [query]\n    layers = [{ranges}]\n    heads = [-1]\n}}\n"
    );
    std::fs::write(&file, text).unwrap();
    let started = std::time::Instant::now();
    let out = ardpipe(&["check", file.to_str().unwrap()]);
    assert_no_crash(&out);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    // The file's other mistakes are still reported: the check ran to the end.
    assert!(
        err.contains("`heads` indices run from 0 to 100000"),
        "{err}"
    );
    assert!(
        started.elapsed().as_secs() < 20,
        "took {:?}",
        started.elapsed()
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A write that fails for another reason (a full disk) is exit 1 with the reason, not a panic.
#[test]
fn a_failed_write_to_stdout_is_exit_1_with_the_reason() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full (Linux) stands in for a full disk");
    let out = Command::new(env!("CARGO_BIN_EXE_ardpipe"))
        .arg("schema")
        .stdout(Stdio::from(full))
        .stderr(Stdio::piped())
        .output()
        .expect("ardpipe runs");
    assert_no_crash(&out);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("error: cannot write the output (stdout: No space left on device"),
        "{err}"
    );
}

/// 150,000 `let`s each defined as the one before: resolving them recursed once per variable and
/// overflowed the stack (abort); and the unused ones made 150,000 warnings that took minutes to
/// render. Now: a depth limit, and at most 100 problems reported.
#[test]
fn a_long_chain_of_variables_is_an_error_reported_briefly() {
    let dir = scratch("chain");
    let n = 150_000;
    let mut text = "let a0 = \"x\"\n".to_string();
    for i in 1..n {
        writeln!(text, "let a{i} = a{}", i - 1).unwrap();
    }
    writeln!(text, "output {{\n    dir = a{}\n}}", n - 1).unwrap();
    let file = dir.join("chain.ard");
    std::fs::write(&file, text).unwrap();
    let started = std::time::Instant::now();
    let out = ardpipe(&["check", file.to_str().unwrap()]);
    assert_no_crash(&out);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for expected in [
        "ardpipe::dsl::too_deep",
        "variables are defined through more than 100 others (a149999 → … → a149899)",
        "more problem(s) not shown",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(
        started.elapsed().as_secs() < 20,
        "took {:?}",
        started.elapsed()
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// One JSONL line that is not UTF-8 is one bad row at its line (it made the whole file
/// unreadable, with no line).
#[test]
fn a_jsonl_line_that_is_not_utf8_is_a_bad_row_at_its_line() {
    let dir = scratch("jsonl");
    let mut data = Vec::new();
    for i in 0..8 {
        data.extend(
            format!(
                "{{\"text\": \"example {i}\", \"label\": \"{}\"}}\n",
                ["a", "b"][i % 2]
            )
            .bytes(),
        );
    }
    data.extend(b"{\"text\": \"caf\xe9\", \"label\": \"a\"}\n");
    std::fs::write(dir.join("data.jsonl"), data).unwrap();
    let file = pipeline(
        &dir,
        "",
        "    format = jsonl\n    path = \"data.jsonl\"\n    label = \"label\"",
    );
    let out = run(&file);
    assert_no_crash(&out);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("data.jsonl:9: not valid UTF-8 (at byte 13 of the line)"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A pipeline file that cannot be read as text — not UTF-8, over the size limit, a device that
/// never ends, a directory — is one problem naming the file and why; the report once saw a panic
/// (the renderer looked for a source that was never loaded) and /dev/zero would be read forever.
#[test]
fn an_unreadable_pipeline_file_is_one_problem_naming_it() {
    let dir = scratch("unreadable-pipeline");
    let not_utf8 = dir.join("latin1.ard");
    std::fs::write(&not_utf8, b"pipeline {\n    name = \"caf\xe9\"\n}\n").unwrap();
    let huge = dir.join("huge.ard");
    std::fs::write(&huge, vec![b'#'; 5 << 20]).unwrap();
    let folder = dir.join("folder.ard");
    std::fs::create_dir(&folder).unwrap();
    for (file, why) in [
        (not_utf8.as_path(), "it is not UTF-8 text (byte 26, line 2)"),
        (huge.as_path(), "pipeline files are limited to 4194304"),
        (Path::new("/dev/zero"), "it holds more than 4194304 bytes"),
        (folder.as_path(), "it is a directory"),
    ] {
        let out = ardpipe(&["check", file.to_str().unwrap()]);
        assert_no_crash(&out);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{}: {err}", file.display());
        assert!(err.contains("1 problem(s)"), "{err}");
        assert!(
            err.contains(&format!("cannot read {}", file.display())),
            "{err}"
        );
        assert!(err.contains(why), "{}: {err}", file.display());
    }
}

/// A bound of "more than 0" reads as such, and a huge value in the message is short.
#[test]
fn an_out_of_range_number_is_shown_the_way_it_was_written() {
    let quickstart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/quickstart.ard");
    let q = quickstart.to_str().unwrap();
    for (set, expected) in [
        (
            "train.clip=-1",
            "`clip` must be greater than 0 and at most 1000000000, not -1",
        ),
        ("train.lr=1e300", "not 1e300"),
    ] {
        let out = ardpipe(&["check", q, "--set", set]);
        let err = stderr(&out).replace(['\n', '|'], " ");
        let err = err.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(expected), "{set}: {err}");
    }
}

/// A quote that is never closed: the csv reader ends the field at the end of the file without an
/// error, so every row after it was read into one text in silence. It is a bad row, at its line.
#[test]
fn a_csv_quote_never_closed_is_a_bad_row_not_the_rest_of_the_file() {
    let dir = scratch("csv-quote");
    let mut csv = "text,label\n".to_string();
    for i in 0..8 {
        writeln!(csv, "example number {i},{}", ["pos", "neg"][i % 2]).unwrap();
    }
    csv += "\"opened and never closed,pos\nswallowed,neg\nswallowed too,pos\n";
    std::fs::write(dir.join("data.csv"), csv).unwrap();
    let file = pipeline(
        &dir,
        "",
        "    format = csv\n    path = \"data.csv\"\n    text = \"text\"\n    label = \"label\"",
    );
    let out = run(&file);
    assert_no_crash(&out);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("data.csv:10: a quoted field opened on this row is never closed"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// JSONL lines of the wrong shape are bad rows that say what the line or field is; a row without
/// its configured `text_pair` was once read as a single-text example in silence.
#[test]
fn a_jsonl_line_of_the_wrong_shape_is_a_bad_row_that_says_what_it_is() {
    let dir = scratch("jsonl-shape");
    let mut jsonl = String::new();
    for i in 0..8 {
        writeln!(
            jsonl,
            "{{\"q\": \"question {i}\", \"a\": \"answer {i}\", \"label\": \"{}\"}}",
            ["pos", "neg"][i % 2]
        )
        .unwrap();
    }
    jsonl += "[\"q\", \"a\", \"pos\"]\n";
    jsonl += "{\"q\": {\"nested\": 1}, \"a\": \"x\", \"label\": \"pos\"}\n";
    jsonl += "{\"q\": \"no pair\", \"label\": \"neg\"}\n";
    std::fs::write(dir.join("data.jsonl"), jsonl).unwrap();
    let file = pipeline(
        &dir,
        "",
        "    format = jsonl\n    path = \"data.jsonl\"\n    text = \"q\"\n    text_pair = \"a\"\n    \
         label = \"label\"\n    on_bad_row = skip",
    );
    let out = run(&file);
    assert_no_crash(&out);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    for expected in [
        "skipped 3 bad rows",
        "data.jsonl:9: expected a JSON object, found an array",
        "each line must be an object",
        "data.jsonl:10: field `q` is an object, expected a string",
        "data.jsonl:11: field `a` is missing (the row has no `a`)",
        "available keys: `label`, `q`",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A dataset path that is a FIFO or a device is refused with what it is: a FIFO blocked the run
/// forever (one SIGTERM did not end it) and /dev/zero would be hashed without end.
#[test]
fn a_dataset_that_is_a_fifo_or_a_device_is_refused_not_waited_on() {
    let dir = scratch("fifo");
    let fifo = dir.join("data.csv");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success(), "mkfifo {}", fifo.display());
    for (path, what) in [
        (fifo.to_str().unwrap(), "a FIFO"),
        ("/dev/zero", "a device"),
    ] {
        std::fs::remove_dir_all(dir.join("runs")).ok();
        let file = pipeline(
            &dir,
            "",
            &format!(
                "    format = csv\n    path = \"{path}\"\n    text = \"text\"\n    label = \"label\""
            ),
        );
        let mut child = Command::new(env!("CARGO_BIN_EXE_ardpipe"))
            .args(["run", "-q", "--threads", "1"])
            .arg(&file)
            .env("ARDPIPE_COLOR", "never")
            .env("COLUMNS", "1000")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > std::time::Duration::from_secs(60) {
                child.kill().ok();
                panic!("ardpipe still waits on {path} after 60 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        assert_no_crash(&out);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!("{path} is {what}, not a regular file")),
            "{err}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A link inside a folder-per-class dataset that leads back up was walked at every turn (two
/// such links: 2^40 folders, a hang); it is an error naming the link.
#[test]
fn a_link_loop_in_a_class_folder_is_an_error_naming_the_link() {
    let dir = scratch("link-loop");
    for class in ["pos", "neg"] {
        let c = dir.join("data").join(class);
        std::fs::create_dir_all(&c).unwrap();
        for i in 0..4 {
            std::fs::write(c.join(format!("{i}.txt")), format!("{class} example {i}")).unwrap();
        }
        std::os::unix::fs::symlink("..", c.join("up")).unwrap();
    }
    let file = pipeline(&dir, "", "    format = folders\n    path = \"data\"");
    let started = std::time::Instant::now();
    let out = run(&file);
    assert_no_crash(&out);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("data/neg/up leads back to") && err.contains("remove the link"),
        "{err}"
    );
    assert!(
        started.elapsed().as_secs() < 30,
        "took {:?}",
        started.elapsed()
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A finished run of the tiny pipeline on 8 rows of two classes, in `dir/runs/`.
fn finished_two_class_run(dir: &Path) -> PathBuf {
    let mut csv = "text,label\n".to_string();
    for i in 0..8 {
        writeln!(csv, "example number {i},{}", ["pos", "neg"][i % 2]).unwrap();
    }
    std::fs::write(dir.join("data.csv"), csv).unwrap();
    let file = pipeline(
        dir,
        "",
        "    format = csv\n    path = \"data.csv\"\n    text = \"text\"\n    label = \"label\"",
    );
    let out = run(&file);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    std::fs::read_dir(dir.join("runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

/// `run --resume DIR` trains on with the saved `pipeline.resolved.json`: an edited copy went on
/// with other settings unseen. Its hash must be the one the manifest recorded.
#[test]
fn a_resume_refuses_a_saved_pipeline_edited_after_the_start() {
    let dir = scratch("resume-edited");
    let run_dir = finished_two_class_run(&dir);
    let saved = run_dir.join("pipeline.resolved.json");
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&saved).unwrap()).unwrap();
    value["train"]["batch_size"] = serde_json::json!(3);
    std::fs::write(&saved, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
    let out = ardpipe(&[
        "run",
        "-q",
        "--threads",
        "1",
        "--resume",
        run_dir.to_str().unwrap(),
    ]);
    assert_no_crash(&out);
    let err = stderr(&out).replace(['\n', '|'], " ");
    let err = err.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("pipeline.resolved.json changed after the run started")
            && err.contains("fix: restore it"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A run's damaged `labels.json` was read past: `classify --adapter RUN` answered `LABEL_0`
/// with exit 0. Damaged, or naming another number of classes, it is an error now.
#[test]
fn classify_refuses_a_run_whose_labels_json_is_damaged() {
    let dir = scratch("labels");
    let run_dir = finished_two_class_run(&dir);
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ardpipe/assets/minilm");
    let classify = || {
        ardpipe(&[
            "classify",
            "--model",
            model.to_str().unwrap(),
            "--adapter",
            run_dir.to_str().unwrap(),
            "some text",
        ])
    };
    for (labels, expected) in [
        (
            "{",
            "labels.json is not the list of class names the run wrote",
        ),
        (
            "[\"neg\"]",
            "labels.json names 1 classes, but the adapter's classifier has 2",
        ),
    ] {
        std::fs::write(run_dir.join("labels.json"), labels).unwrap();
        let out = classify();
        assert_no_crash(&out);
        let err = stderr(&out).replace(['\n', '|'], " ");
        let err = err.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(out.status.code(), Some(1), "{labels}: {err}");
        assert!(err.contains(expected), "{labels}: {err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
