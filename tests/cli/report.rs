//! `report/index.html` of a run, in a real headless browser (Debian's `chromium`, installed by
//! scripts/setup.py): its script renders (body `data-rendered="ok"`) without a JavaScript
//! error, draws a layer × head heat map per module kind and the curves, and a screenshot of it
//! is not blank; the file references nothing on the network.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::log_json::tiny_run;

/// Debian's chromium on PATH; missing, the test fails with the fix.
fn chromium() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("chromium"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "chromium is not installed, and this test renders the report in it: run \
             `python3 scripts/setup.py` as root (it installs Debian's chromium with apt-get), \
             or `apt-get install --no-install-recommends chromium`"
        )
    })
}

/// chromium headless on `page` with `args`, its own profile in `profile`, at most 90 s.
fn headless(page: &Path, profile: &Path, args: &[&str]) -> Output {
    let o = Command::new("timeout")
        .arg("90")
        .arg(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "chromium {args:?} failed ({}):\n{}",
        o.status,
        crate::stderr(&o)
    );
    o
}

/// The DOM without its script elements (whose text holds the markup the script writes).
fn without_scripts(dom: &str) -> String {
    let mut out = String::new();
    let mut rest = dom;
    while let Some(at) = rest.find("<script") {
        out.push_str(&rest[..at]);
        let end = rest[at..].find("</script>").expect("a closed script") + at;
        rest = &rest[end + "</script>".len()..];
    }
    out + rest
}

#[test]
fn the_html_report_renders_in_a_headless_browser_without_errors() {
    let run = &tiny_run().run;
    let page = run.join("report/index.html");
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: nothing fetched. Outside the embedded run data (whose manifest may name
    // a Git remote) no URL at all.
    let data_at = html.find("<script type=\"application/json\"").unwrap();
    let data_end = data_at + html[data_at..].find("</script>").unwrap();
    let code = format!("{}{}", &html[..data_at], &html[data_end..]);
    for bad in ["http://", "https://", " src=", "<link", "@import", "url("] {
        assert!(!code.contains(bad), "the report has {bad:?}");
    }

    let profile = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ardpipe-chromium");
    let _ = std::fs::remove_dir_all(&profile);
    let dom = without_scripts(&crate::stdout(&headless(&page, &profile, &["--dump-dom"])));
    let body_at = dom.find("<body").expect("a body in the DOM");
    let body = &dom[body_at..body_at + dom[body_at..].find('>').unwrap()];
    assert!(
        body.contains("data-errors=\"0\""),
        "JavaScript errors: {body}"
    );
    assert!(
        body.contains("data-rendered=\"ok\""),
        "not rendered: {body}"
    );
    // Query and value, two layers × two heads each; loss, evaluation, lr and α curves.
    assert_eq!(dom.matches("<svg class=\"heatmap\"").count(), 2, "{dom}");
    assert_eq!(dom.matches("<rect class=\"cell\"").count(), 8, "{dom}");
    assert_eq!(dom.matches("<svg class=\"chart\"").count(), 4, "{dom}");
    assert!(dom.contains("<polyline class=\"series\""), "{dom}");
    for text in [
        "bert.encoder.layer.*.attention.self.query",
        "plan.json",
        "manifest.json",
        "completed",
    ] {
        assert!(dom.contains(text), "{text:?} not in the page");
    }

    let shot = profile.join("report.png");
    headless(
        &page,
        &profile,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1200,1600",
            "--hide-scrollbars",
        ],
    );
    // Not blank: many colours, and a good share of the pixels not the background's.
    const SCRIPT: &str = r#"
import json, sys
from PIL import Image
im = Image.open(sys.argv[1]).convert("RGB")
counts = im.getcolors(1 << 24)
background = max(counts)[0]
print(json.dumps({"colours": len(counts), "ink": 1 - background / (im.width * im.height)}))
"#;
    let o = Command::new(crate::peer_python())
        .args(["-c", SCRIPT, shot.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", crate::stderr(&o));
    let stats: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(stats["colours"].as_u64().unwrap() > 20, "{stats}");
    assert!(stats["ink"].as_f64().unwrap() > 0.02, "{stats}");
    let _ = std::fs::remove_dir_all(&profile);
}
