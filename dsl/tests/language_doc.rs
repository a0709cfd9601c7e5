//! Every ```ard example in docs/LANGUAGE.md parses and is formatted; complete pipelines check.

mod common;

#[test]
fn language_reference_examples_are_valid() {
    let doc = std::fs::read_to_string(common::repo().join("docs/LANGUAGE.md")).unwrap();
    let mut examples = 0;
    let mut rest = doc.as_str();
    while let Some(start) = rest.find("```ard\n") {
        let body = &rest[start + 7..];
        let end = body.find("```").expect("example closed");
        let example = &body[..end];
        rest = &body[end + 3..];
        examples += 1;
        let formatted = ardpipe_dsl::format_source("example.ard", example).unwrap_or_else(|d| {
            panic!(
                "example {examples} does not parse:\n{example}\n{}",
                common::render(&d)
            )
        });
        assert_eq!(formatted, example, "example {examples} is not formatted");
        if example.contains("\ntrain {") && example.contains("\nmodel {") {
            let path = common::repo().join("docs/example.ard");
            if let Err(d) = ardpipe_dsl::check_source(&path, example, &common::ctx()) {
                panic!("example {examples} does not check:\n{}", common::render(&d));
            }
        }
    }
    assert!(examples >= 8, "found only {examples} examples");
}
