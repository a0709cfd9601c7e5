//! The README's "Supported models" section is the table `families::markdown()` derives from the
//! families the loaders dispatch on; and each row's claims hold: its `model_type` parses as that
//! family, its GGUF architecture is one the GGUF reader dispatches on, every GGUF architecture
//! and every family appears. The per-family numerical checks against transformers are
//! peer_decoders.rs, peer_gguf.rs, peer_encoders (RoBERTa) and the PEFT round trips.

use std::path::Path;

use ardpipe_models::arch::config::{DecoderFamily, EncoderFamily};
use ardpipe_models::families::{families, markdown};
use ardpipe_models::gguf::arch::GgufArch;

fn readme_section() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text
        .find("## Supported models\n")
        .expect("README.md has a `## Supported models` section");
    let body = &text[start..];
    let table = body.find("| family |").expect("the section has the table");
    let end = body[table..]
        .find("\n\n")
        .map(|i| table + i + 2)
        .expect("a blank line after the table");
    // The table, a blank line, then the two lines on GGUF types and tokenizers.
    let rest = &body[end..];
    let lines: Vec<&str> = rest.lines().take(2).collect();
    format!("{}{}\n", &body[table..end], lines.join("\n"))
}

#[test]
fn readme_table_is_the_supported_families() {
    let want = markdown();
    let got = readme_section();
    assert_eq!(
        got, want,
        "README.md's Supported models section differs from ardpipe_models::families::markdown():\n\
         replace it with:\n{want}"
    );
}

#[test]
fn every_family_and_gguf_architecture_has_one_row() {
    let rows = families();
    for f in DecoderFamily::ALL {
        let n = rows
            .iter()
            .filter(|r| r.model_types.contains(&f.model_type()))
            .count();
        assert_eq!(n, 1, "{f:?}");
        assert_eq!(DecoderFamily::from_model_type(f.model_type()), Some(f));
    }
    for f in EncoderFamily::ALL {
        let n = rows
            .iter()
            .filter(|r| r.model_types.contains(&f.model_type()))
            .count();
        assert_eq!(n, 1, "{f:?}");
    }
    for a in GgufArch::ALL {
        assert!(
            rows.iter().any(|r| r.gguf.contains(&a.name())),
            "GGUF architecture {} has no row",
            a.name()
        );
    }
    for r in &rows {
        for g in &r.gguf {
            assert!(GgufArch::from_name(g).is_some(), "{g}");
        }
    }
}
