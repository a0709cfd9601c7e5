use crate::{ardpipe, stderr, stdout};

#[test]
fn fmt_check_passes_on_shipped_pipelines_and_fmt_rewrites_messy_files() {
    let files = crate::check::shipped_pipelines();
    let mut args = vec!["fmt", "--check"];
    args.extend(files.iter().map(String::as_str));
    let out = ardpipe(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );

    let dir = std::env::temp_dir().join(format!("ardpipe-fmt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("messy.ard");
    std::fs::write(&f, "model {path=\"m\"   # keep me\nhead=causal_lm}\n").unwrap();
    let out = ardpipe(&["fmt", "--check", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("not formatted"));
    let out = ardpipe(&["fmt", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&f).unwrap(),
        "model {\n    path = \"m\"  # keep me\n    head = causal_lm\n}\n"
    );
    let out = ardpipe(&["fmt", "--check", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    std::fs::remove_dir_all(&dir).ok();
}
