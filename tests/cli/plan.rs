use crate::{ardpipe, stderr, stdout};

fn quickstart() -> String {
    format!("{}/../pipelines/quickstart.ard", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn plan_resolves_the_targets_against_the_model_in_each_format() {
    let q = quickstart();
    let out = ardpipe(&["plan", &q, "--format", "json", "--set", "train.steps=300"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    // The resolved pipeline, with the override applied…
    assert_eq!(v["pipeline"]["train"]["duration"]["value"], 300);
    assert_eq!(v["pipeline"]["adapters"][0]["method"]["method"], "ard_lora");
    // …and its plan against MiniLM's config: query and value of 6 layers, 12 heads each.
    let plan = &v["runs"][0]["plan"];
    assert_eq!(v["runs"][0]["run"], "quickstart");
    assert_eq!(plan["model"]["architecture"], "bert");
    assert_eq!(plan["model"]["layers"], 6);
    let modules = plan["adapters"][0]["modules"].as_array().unwrap();
    assert_eq!(modules.len(), 12);
    assert!(modules.iter().all(|m| m["units"] == 12 && m["d_in"] == 384));
    assert!(
        modules[0]["path"]
            .as_str()
            .unwrap()
            .ends_with("layer.0.attention.self.query")
    );
    // r0 = 8 per head at α = 1 ⇒ rank 96 per module; α_max = 2 ⇒ at most 192.
    assert_eq!(modules[0]["rank_initial"], 96);
    assert_eq!(modules[0]["rank_max"], 192);
    assert_eq!(plan["adapters"][0]["rank_budget_max"], 12 * 192);
    // The classes come from the data (16 outlets): the head's parameters count them.
    let head = plan["head_parameters"].as_u64().unwrap();
    assert_eq!(head, 384 * 384 + 384 + 16 * 384 + 16);
    assert_eq!(plan["training"]["total_steps"], 300);
    let pct = plan["trainable_percent"].as_f64().unwrap();
    assert!(pct > 0.5 && pct < 5.0, "{pct}");
    assert!(plan["memory"]["total"].as_u64().unwrap() > 80 << 20);

    let out = ardpipe(&["plan", &q, "--format", "yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("method: ard_lora") && text.contains("rank_budget_max:"));

    let out = ardpipe(&["plan", &q]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for want in [
        "pipeline   quickstart",
        "adapter    qv (ard_lora): 12 modules",
        "bert.encoder.layer.5.attention.self.value",
        "trainable  ",
        "memory     ~",
        "training   200 steps",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
}

#[test]
fn plan_resolved_prints_the_checked_pipeline() {
    let out = ardpipe(&["plan", &quickstart(), "--resolved"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("name: quickstart") && text.contains("r0: 8"),
        "{text}"
    );
}

#[test]
fn plan_expands_variants_and_fails_clearly_on_a_bad_selector() {
    let c = format!(
        "{}/../pipelines/compare_baselines.ard",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = ardpipe(&["plan", &c, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let runs = v["runs"].as_array().unwrap();
    assert!(runs.len() >= 2, "{runs:?}");
    let methods: Vec<&str> = runs
        .iter()
        .map(|r| {
            r["plan"]["adapters"][0]["method"]
                .as_str()
                .unwrap_or("none")
        })
        .collect();
    assert!(
        methods.contains(&"ard_lora") && methods.contains(&"lora"),
        "{methods:?}"
    );

    let out = ardpipe(&["plan", &c, "--variant", "lora_r8", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["runs"].as_array().unwrap().len(), 1);
    assert_eq!(v["runs"][0]["run"], "lora_r8");
    assert_eq!(
        v["runs"][0]["plan"]["adapters"][0]["modules"][0]["rank_max"],
        8
    );
    let out = ardpipe(&["plan", &c, "--variant", "lora_r9"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("lora_r8"), "{}", stderr(&out));

    let out = ardpipe(&[
        "plan",
        &quickstart(),
        "--set",
        "adapter.qv.modules=[q_proj]",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("q_proj") && err.contains("matches no module"),
        "{err}"
    );
}
