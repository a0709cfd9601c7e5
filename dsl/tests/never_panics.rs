//! Robustness: whatever the input, parsing, checking and formatting return (a value or
//! diagnostics) without panicking or hanging. Cases: PROPTEST_CASES (default 256 here; the
//! issue's report ran it with far more).

mod common;

use std::path::Path;

use proptest::prelude::*;

/// Words and symbols of the language, so random inputs get past the first token often.
const TOKENS: &[&str] = &[
    "pipeline",
    "dataset",
    "model",
    "adapter",
    "train",
    "evaluate",
    "output",
    "distributed",
    "plugin",
    "variant",
    "let",
    "import",
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    "=",
    ",",
    ".",
    "..",
    "..=",
    "\n",
    " ",
    "#c\n",
    "\"s\"",
    "\"${assets}/x\"",
    "'re'",
    "1",
    "-2",
    "3e-4",
    "20%",
    "100 steps",
    "2 epochs",
    "30 min",
    "backend",
    "nccl",
    "bucket_mb",
    "timeout",
    "true",
    "method",
    "ard_lora",
    "lora",
    "modules",
    "query",
    "r0",
    "alpha",
    "init",
    "lr",
    "steps",
    "warmup(",
    "cosine(",
    "over",
    "from",
    "to",
    "format",
    "csv",
    "path",
    "head",
    "causal_lm",
    "\"",
    "'",
    "${",
    "\\",
    "regex(",
    "x",
    "qv",
    "split",
    "validation",
    "%",
    "\u{e9}",
    "\t",
];

fn check_all(text: &str) {
    let ctx = common::ctx();
    let _ = ardpipe_dsl::check_source(Path::new("fuzz.ard"), text, &ctx);
    if let Ok(f) = ardpipe_dsl::format_source("fuzz.ard", text) {
        // Whatever formats must format to itself and still parse.
        let again = ardpipe_dsl::format_source("fuzz.ard", &f).expect("formatted text parses");
        assert_eq!(again, f, "formatting is not idempotent for {text:?}");
    }
    let mut ctx = common::ctx();
    ctx.overrides = vec![text.chars().take(40).collect()];
    let _ = ardpipe_dsl::check_file(&common::repo().join("pipelines/quickstart.ard"), &ctx);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text(s in "\\PC{0,200}") {
        check_all(&s);
    }

    #[test]
    fn token_soup(toks in proptest::collection::vec(proptest::sample::select(TOKENS), 0..120)) {
        check_all(&toks.concat());
    }

    #[test]
    fn mutated_pipelines(file in 0usize..6, cut in 0usize..4000, insert in proptest::sample::select(TOKENS), del in 0usize..8) {
        let name = ["quickstart", "classification", "causal_lm", "compare_baselines", "study/classification", "study/causal_lm"][file];
        let text = std::fs::read_to_string(common::repo().join("pipelines").join(format!("{name}.ard"))).unwrap();
        let mut at = cut.min(text.len());
        while !text.is_char_boundary(at) { at -= 1; }
        let mut end = (at + del).min(text.len());
        while !text.is_char_boundary(end) { end -= 1; }
        let mutated = format!("{}{}{}", &text[..at], insert, &text[end..]);
        check_all(&mutated);
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

#[test]
fn deep_nesting_and_huge_files_stop_with_a_clear_error() {
    let deep = format!("x {{ a = {}1{} }}", "[".repeat(10_000), "]".repeat(10_000));
    let d = ardpipe_dsl::check_source(Path::new("deep.ard"), &deep, &common::ctx()).unwrap_err();
    assert!(
        d.problems
            .iter()
            .any(|p| p.code == ardpipe_dsl::Code::TooDeep)
    );
    let huge = "# padding\n".repeat(500_000);
    let d = ardpipe_dsl::check_source(Path::new("huge.ard"), &huge, &common::ctx()).unwrap_err();
    assert!(
        d.problems
            .iter()
            .any(|p| p.code == ardpipe_dsl::Code::TooLarge)
    );
}
