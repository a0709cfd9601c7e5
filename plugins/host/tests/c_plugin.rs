//! A plugin written in C against `plugins/sdk/include/ardpipe_plugin.h`, compiled here with `cc`
//! and loaded through the host: the header and the Rust ABI types must agree.

mod common;

use std::process::Command;

use ardpipe_plugin_host::{ErrorKind, Kind, Predictions, load};
use common::{scratch, workspace_root};

fn build_c_plugin() -> Option<std::path::PathBuf> {
    let out = scratch("c-plugin").join(format!(
        "{}c_accuracy{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    let root = workspace_root();
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args([
            "-std=c11", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-I",
        ])
        .arg(root.join("plugins/sdk/include"))
        .arg(root.join("plugins/testdata/c-plugin/accuracy.c"))
        .arg("-o")
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => Some(out),
        Ok(s) => panic!("compiling the C plugin against the header failed ({s})"),
        Err(e) => {
            println!("skipped: no C compiler (`cc`): {e}");
            None
        }
    }
}

#[test]
fn a_c_metric_loads_and_computes() {
    let Some(path) = build_c_plugin() else { return };
    let p = load(&path).unwrap();
    let info = p.info();
    assert_eq!(info.name, "c-accuracy");
    assert_eq!(info.version, "1.0.0");
    assert_eq!(info.kind, Kind::Metric);
    assert_eq!(info.capabilities, ["logits", "token-ids"]);
    assert_eq!(info.options[0].key, "strict");
    assert_eq!(info.options[0].default.as_deref(), Some("false"));

    let mut m = p.create_metric(br#"{"strict": true}"#).unwrap();
    let logits = [0.9f32, 0.1, 0.2, 0.8, 0.7, 0.3, 0.0, 1.0];
    m.update(
        Predictions::Logits {
            data: &logits,
            shape: &[4, 2],
        },
        &[0, 1, 1, -100],
        &[4],
    )
    .unwrap();
    m.update(
        Predictions::Ids {
            data: &[1, 0],
            shape: &[2],
        },
        &[1, 1],
        &[2],
    )
    .unwrap();
    let out = m.finish().unwrap();
    // Correct: 0, 1, (0≠1), skip, 1, (0≠1) → 3 of 5.
    assert_eq!(
        out,
        vec![("accuracy".to_string(), 0.6), ("count".to_string(), 5.0)]
    );

    let e = p.create_metric(br#"{"other": 1}"#).err().unwrap();
    assert!(
        matches!(
            e.kind,
            ErrorKind::Failed {
                during: "create",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.key.as_deref(), Some("unknown"));
    let m = p.create_metric(b"{}").unwrap();
    assert!(
        m.finish()
            .unwrap_err()
            .to_string()
            .contains("no labelled examples")
    );
}
