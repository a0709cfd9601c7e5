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

/// A folder of pinned images (easy-VQA's) is checked like a file: a missing image by the quick
/// check (count and sizes), a changed byte by `--deep` (the listing's sha256).
#[test]
fn doctor_checks_every_image_of_a_pinned_folder() {
    let real = crate::asset("easyvqa");
    let cache = std::env::temp_dir().join(format!("ardpipe-doctor-images-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let copy = cache.join("assets/easyvqa");
    std::fs::create_dir_all(cache.join("assets")).unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(&real)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    let state = |deep: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ardpipe"));
        cmd.args(["doctor", "--format", "json"])
            .env("ARDPIPE_CACHE", &cache);
        if deep {
            cmd.arg("--deep");
        }
        let v: serde_json::Value = serde_json::from_slice(&cmd.output().unwrap().stdout).unwrap();
        let a = v["assets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "easyvqa")
            .unwrap()
            .clone();
        (
            a["state"].as_str().unwrap().to_string(),
            a["detail"].to_string(),
            a["files"].clone(),
        )
    };
    let (s, _, files) = state(true);
    assert_eq!((s.as_str(), files), ("verified", 5004.into()));

    let image = copy.join("test/images/321.png");
    let mut bytes = std::fs::read(&image).unwrap();
    bytes[100] ^= 0xFF;
    std::fs::write(&image, &bytes).unwrap();
    assert_eq!(
        state(false).0,
        "verified",
        "the quick check reads sizes only"
    );
    let (s, detail, _) = state(true);
    assert_eq!(s, "corrupt");
    assert!(
        detail.contains("test/images/") && detail.contains("sha256"),
        "{detail}"
    );

    std::fs::remove_file(copy.join("train/images/17.png")).unwrap();
    let (s, detail, _) = state(false);
    assert_eq!(s, "corrupt");
    assert!(
        detail.contains("train/images/") && detail.contains("3999 files"),
        "{detail}"
    );
    std::fs::remove_dir_all(&cache).ok();
}
