//! Every decoder family beyond Llama trains with ARD-LoRA through `ardpipe run`: tiny causal LMs
//! of Qwen2, Mistral, Qwen3, Gemma, Gemma 2 and Gemma 3 (every feature on: sliding windows
//! shorter than the blocks, soft-capping, q/k norms, local/global RoPE), saved by the peer's
//! transformers with a real tokenizer.json; each run lowers the held-out loss, and its PEFT
//! export, loaded by Hugging Face PEFT onto the same folder, gives the logits ardpipe computes
//! with the adapter. One peer process makes the models, one checks every export.

use std::path::{Path, PathBuf};

use crate::merge::logits_with_adapter;
use crate::{ardpipe, stderr, stdout};

const FAMILIES: &[&str] = &["qwen2", "mistral", "qwen3", "gemma", "gemma2", "gemma3"];

fn peer(args: &[&str]) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/peer/causal_families.py");
    let mut all: Vec<&Path> = vec![&script];
    all.extend(args.iter().map(Path::new));
    crate::seq_cls::peer(&all)
}

const LINES: &[&str] = &[
    "New study links sleep to heart health",
    "Ebola outbreak spreads in West Africa",
    "Five tips to keep your kids active this summer",
    "FDA approves a new drug for migraines",
    "Doctors warn about the flu season this winter",
    "A daily walk lowers blood pressure, researchers say",
    "Hospital waiting times rise again",
    "Vaccines save millions of lives every year",
];

fn pipeline(dir: &Path, family: &str, model: &Path, data: &Path) -> PathBuf {
    let file = dir.join(format!("{family}.ard"));
    std::fs::write(
        &file,
        format!(
            r#"pipeline {{
    name = "{family}"
    seed = 2
}}

dataset lines {{
    format = text
    path = "{data}"
    mode = lines
    split {{
        validation = 20%
        seed = 1
    }}
    preprocess {{
        block_size = 12
    }}
}}

model {{
    path = "{model}"
    format = hf_folder
    head = causal_lm
}}

adapter attention {{
    method = ard_lora
    modules = [q_proj, k_proj, v_proj, o_proj]
    layers = all
    r0 = 4
    scale = 8
}}

adapter mlp {{
    method = lora
    modules = [gate_proj, up_proj, down_proj]
    layers = all
    rank = 2
}}

train {{
    lr = 2e-2
    batch_size = 4
    steps = 6
    precision = f32
    eval_every = 6 steps
}}

evaluate {{
    metrics = [loss]
}}

output {{
    dir = "{out}"
    export = [peft]
}}
"#,
            data = data.display(),
            model = model.display(),
            out = dir.join(format!("{family}-run")).display(),
        ),
    )
    .unwrap();
    file
}

#[test]
fn every_decoder_family_trains_with_ard_lora_and_its_export_loads_in_peft() {
    let dir = std::env::temp_dir().join(format!("ardpipe-families-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let models = dir.join("models");
    peer(&["make", models.to_str().unwrap()]);
    let data = dir.join("lines.txt");
    let text: Vec<&str> = (0..12).flat_map(|_| LINES.iter().copied()).collect();
    std::fs::write(&data, text.join("\n")).unwrap();

    let mut triples: Vec<String> = vec![];
    let mut effects = vec![];
    for family in FAMILIES {
        let model = models.join(family);
        let file = pipeline(&dir, family, &model, &data);
        let out = ardpipe(&["run", file.to_str().unwrap(), "-q"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{family}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        let run = dir.join(format!("{family}-run"));
        let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
        let evals: Vec<f64> = metrics
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["split"] == "eval")
            .map(|v| v["loss"].as_f64().unwrap())
            .collect();
        let (first, last) = (evals[0], *evals.last().unwrap());
        println!("{family}: held-out loss {first:.3} -> {last:.3}");
        assert!(
            last < first,
            "{family}: six ARD-LoRA steps must lower the held-out loss: {evals:?}"
        );

        // ardpipe's logits with the run's adapter, for PEFT to reproduce.
        let ours = dir.join(format!("{family}-ours.safetensors"));
        logits_with_adapter(
            &model,
            &run,
            "Doctors say a daily walk helps the heart",
            &ours,
        );
        for p in [&model, &run.join("adapter"), &ours] {
            triples.push(p.display().to_string());
        }
    }
    let mut args = vec!["check"];
    args.extend(triples.iter().map(String::as_str));
    for (line, family) in peer(&args).lines().zip(FAMILIES) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let diff = v["max_abs_diff"].as_f64().unwrap();
        let effect = v["effect"].as_f64().unwrap();
        println!(
            "{family}: PEFT vs ardpipe with the trained adapter, max |Δlogit| {diff:.2e} (the adapter moves them by {effect:.2e})"
        );
        assert!(diff < 1e-4, "{family}: PEFT's logits differ by {diff}");
        effects.push(effect);
        assert!(
            effect > 1e-2,
            "{family}: the trained adapter barely changes the logits ({effect}): the check would not catch a lost adapter"
        );
    }
    assert_eq!(effects.len(), FAMILIES.len());
    let _ = std::fs::remove_dir_all(&dir);
}
