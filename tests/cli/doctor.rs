use crate::{ardpipe, stdout};

#[test]
fn doctor_reports_libtorch_and_verified_assets() {
    let out = ardpipe(&["doctor"]);
    let text = stdout(&out);
    assert!(text.contains("libtorch   2.13.0"), "{text}");
    assert!(text.contains("threads"), "{text}");
    for asset in [
        "smollm2",
        "minilm",
        "healthtweets",
        "shakespeare",
        "chatterbot",
        "easyvqa",
    ] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(asset) && l.contains("verified")),
            "{asset} not verified:\n{text}"
        );
    }
    assert_eq!(out.status.code(), Some(0), "{text}");
}

#[test]
fn doctor_names_missing_assets_and_the_fix() {
    let empty = std::env::temp_dir().join(format!("ardpipe-empty-cache-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ardpipe"))
        .args(["doctor", "--format", "json"])
        .env("ARDPIPE_CACHE", &empty)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = v["problems"].as_array().unwrap();
    // The six required assets; the optional fortunes data is listed, missing, but no problem.
    assert_eq!(problems.len(), 6, "{problems:?}");
    let fortunes = v["assets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "fortunes")
        .unwrap();
    assert_eq!(
        (&fortunes["state"], &fortunes["optional"]),
        (&"missing".into(), &true.into())
    );
    assert!(
        problems
            .iter()
            .all(|p| p.as_str().unwrap().contains("scripts/setup.py"))
    );
    std::fs::remove_dir_all(&empty).ok();
}

/// `--format yaml` is YAML (block style), not JSON that a YAML parser happens to accept, and it
/// says what `--format json` says.
#[test]
fn doctor_yaml_is_yaml_with_the_json_content() {
    let yaml = ardpipe(&["doctor", "--format", "yaml"]);
    let json = ardpipe(&["doctor", "--format", "json"]);
    let text = stdout(&yaml);
    assert!(text.starts_with("ardpipe: "), "not block YAML:\n{text}");
    let from_yaml: serde_json::Value = serde_yaml::from_str(&text).expect("YAML");
    let from_json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(from_yaml, from_json);
}
