//! The formatter: canonical, idempotent, keeps comments.

const MESSY: &str = r#"# header comment
let   r = 8
pipeline{name="x"   # trailing
seed=1}
# about the model
model {path = "m"
  head=causal_lm


  dtype = f32}
adapter a { method = lora modules = [q_proj,v_proj, "model.layers.*.mlp.up_proj", "model.layers.*.mlp.down_proj", "model.layers.*.mlp.gate_proj"]
  # inside before close
}
"#;

const CANONICAL: &str = r#"# header comment
let r = 8

pipeline {
    name = "x"  # trailing
    seed = 1
}

# about the model
model {
    path = "m"
    head = causal_lm

    dtype = f32
}

adapter a {
    method = lora
    modules = [
        q_proj,
        v_proj,
        "model.layers.*.mlp.up_proj",
        "model.layers.*.mlp.down_proj",
        "model.layers.*.mlp.gate_proj",
    ]
    # inside before close
}
"#;

#[test]
fn formats_canonically_and_keeps_comments() {
    let out = ardpipe_dsl::format_source("messy.ard", MESSY).unwrap();
    assert_eq!(out, CANONICAL);
    assert_eq!(
        ardpipe_dsl::format_source("c.ard", &out).unwrap(),
        out,
        "formatting is idempotent"
    );
}

#[test]
fn refuses_to_format_broken_text() {
    let d = ardpipe_dsl::format_source("b.ard", "model {\n  path = \n}\n").unwrap_err();
    assert!(d.error_count() > 0);
}

#[test]
fn strings_and_numbers_keep_their_meaning() {
    let src = "x {\n    a = \"tab\\there \\\"q\\\" \\${not}\"\n    b = 3e-4\n    c = 20%\n    d = 0..=5\n    e = '\\d+'\n}\n";
    assert_eq!(ardpipe_dsl::format_source("s.ard", src).unwrap(), src);
}
