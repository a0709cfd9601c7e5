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

/// The released PaliGemma-2 3B configs (engine/models/tests/fixtures/real_configs, no weights).
fn paligemma2(size: u32) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
        "../engine/models/tests/fixtures/real_configs/paligemma2-3b-pt-{size}"
    ))
}

#[test]
fn inspect_reads_the_released_paligemma2_configs_without_weights() {
    for (size, tokens, parameters) in [
        (224, 256, "3,032,242,416"),
        (448, 1024, "3,033,127,152"),
        (896, 4096, "3,036,666,096"),
    ] {
        let dir = paligemma2(size);
        let out = ardpipe(&["inspect", "model", dir.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = stdout(&out);
        for want in [
            "architecture  paligemma".to_string(),
            format!("{size}×{size} px images in 14-px patches = {tokens} image tokens"),
            "projector   linear 1152 → 2304".into(),
            "sliding window 4096 on 13 of 26 layers".into(),
            "26 layers, hidden 2304, FFN 9216, 8 heads (4 KV heads) × 256, vocab 257216".into(),
            "image token id 257152".into(),
            // transformers' count of the model it builds from the same file (real_configs.rs)
            format!("parameters    {parameters}"),
            "model.vision_tower.encoder.layers.{0-26}.self_attn.q_proj".into(),
            "model.multi_modal_projector.linear".into(),
            "model.language_model.layers.{0-25}.self_attn.o_proj".into(),
        ] {
            assert!(text.contains(&want), "{size}: missing {want:?} in\n{text}");
        }
    }
}

/// `ardpipe plan` on the released PaliGemma-2 configs. The plan measures the data with the
/// model's tokenizer, which these config-only folders lack, so each is copied beside a
/// stand-in tokenizer (the composed VQA asset's); no weights are read. The same image questions
/// and max_length for all three: only the image's tokens differ.
#[test]
fn plan_estimates_memory_for_the_released_paligemma2_configs() {
    let tmp = std::env::temp_dir().join(format!("ardpipe-plan-pg2-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let image = crate::asset("easyvqa/test/images/0.png");
    let data = tmp.join("vqa.jsonl");
    let row = |q: &str, a: &str| {
        serde_json::json!({"image": image.display().to_string(), "question": q, "answer": a})
            .to_string()
    };
    std::fs::write(
        &data,
        [
            row("what shape is in the image?", "circle"),
            row("what color is the shape?", "red"),
        ]
        .join("\n")
            + "\n",
    )
    .unwrap();
    let mut activations = Vec::new();
    for size in [224, 448, 896] {
        let model = tmp.join(format!("pg2-{size}"));
        std::fs::create_dir(&model).unwrap();
        std::fs::copy(
            paligemma2(size).join("config.json"),
            model.join("config.json"),
        )
        .unwrap();
        for f in ["tokenizer.json", "tokenizer_config.json"] {
            std::fs::copy(
                crate::asset(&format!("vqa-smollm2-siglip/{f}")),
                model.join(f),
            )
            .unwrap();
        }
        let file = tmp.join(format!("pg2-{size}.ard"));
        std::fs::write(
            &file,
            format!(
                r#"pipeline {{
    name = "pg2-{size}"
}}

dataset vqa {{
    format = jsonl
    path = "{data}"
    image = "image"
    prompt = "question"
    completion = "answer"
    preprocess {{
        max_length = 4352
    }}
}}

model {{
    path = "{model}"
    head = causal_lm
}}

adapter towers {{
    method = ard_lora
    modules = [regex('model\.(vision_tower|language_model)\..*\.(q|k|v|o|out)_proj')]
    layers = all
    r0 = 4
}}

train {{
    lr = 1e-4
    batch_size = 2
    steps = 10
}}
"#,
                data = data.display(),
                model = model.display()
            ),
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let out = ardpipe(&["plan", f, "--format", "json"]);
        assert_eq!(out.status.code(), Some(0), "{size}: {}", stderr(&out));
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        let plan = &v["runs"][0]["plan"];
        assert_eq!(plan["model"]["architecture"], "paligemma", "{plan}");
        let paths: Vec<&str> = plan["adapters"][0]["modules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["path"].as_str().unwrap())
            .collect();
        // 27 tower layers × q, k, v, out_proj and 26 decoder layers × q, k, v, o_proj.
        assert_eq!(paths.len(), 27 * 4 + 26 * 4, "{size}");
        for want in [
            "model.vision_tower.encoder.layers.26.self_attn.q_proj",
            "model.vision_tower.encoder.layers.0.self_attn.out_proj",
            "model.language_model.layers.25.self_attn.o_proj",
            "model.language_model.layers.0.self_attn.k_proj",
        ] {
            assert!(paths.contains(&want), "{size}: no {want} in {paths:?}");
        }
        let memory = &plan["memory"];
        let total = memory["total"].as_u64().unwrap();
        // f32 weights of 3.03B parameters and more.
        assert!(total > 12_000_000_000, "{size}: {memory}");
        activations.push(memory["activations"].as_u64().unwrap());

        let out = ardpipe(&["plan", f]);
        assert_eq!(out.status.code(), Some(0), "{size}: {}", stderr(&out));
        let text = stdout(&out);
        for want in [
            "memory     ~".to_string(),
            format!("padded: {} image tokens", (size / 14) * (size / 14)),
            "model.vision_tower.encoder.layers.26.self_attn.q_proj".into(),
            "model.language_model.layers.25.self_attn.o_proj".into(),
        ] {
            assert!(text.contains(&want), "{size}: missing {want:?} in\n{text}");
        }
    }
    // More image tokens, more of the tower's activations (the decoder's sequence is the same).
    assert!(
        activations[0] < activations[1] && activations[1] < activations[2],
        "{activations:?}"
    );
    // The VQA example runs unchanged on a PaliGemma-2 (only model.path changes): ARD-LoRA on
    // both towers' attention, the projector in full, the examples within max_length.
    let vqa = format!("{}/../pipelines/vqa.ard", env!("CARGO_MANIFEST_DIR"));
    let model = format!("model.path=\"{}\"", tmp.join("pg2-224").display());
    let out = ardpipe(&["plan", &vqa, "--format", "json", "--set", &model]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let plan = &v["runs"][0]["plan"];
    let modules: Vec<usize> = plan["adapters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["modules"].as_array().unwrap().len())
        .collect();
    assert_eq!(modules, [26 * 4, 27 * 4, 1], "{}", plan["adapters"]);
    assert_eq!(plan["data"]["batching"]["image_tokens"], 256);
    assert_eq!(plan["data"]["skipped_rows"], 0, "{}", plan["data"]);
    std::fs::remove_dir_all(&tmp).unwrap();
}
