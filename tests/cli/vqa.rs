//! Vision-question answering end to end: ARD-LoRA trained on both towers of a PaliGemma-2
//! (a tiny random one that transformers makes, with a real tokenizer) over real easy-VQA
//! images, exported, and loaded by PEFT on the same folder with the same logits; bad image rows
//! under both policies; and `pipelines/vqa.ard` (the composed model set-up builds) at a few
//! steps.

use std::path::{Path, PathBuf};

use ardpipe_engine::data::image::ImageProcessor;
use ardpipe_engine::data::{TextTokenizer, VisionEncoder};
use ardpipe_engine::models::tokenizer::load_tokenizer;
use ardpipe_engine::models::{LoadOptions, load_vision_lm};
use ardpipe_engine::peft_merge::AdapterFolder;
use ardpipe_engine::tch::{self, Tensor};

use crate::{ardpipe, asset, stderr, stdout};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn peer(args: &[&str]) -> String {
    let script = repo().join("tests/peer/paligemma_peft.py");
    let mut all: Vec<&Path> = vec![&script];
    all.extend(args.iter().map(Path::new));
    crate::seq_cls::peer(&all)
}

/// The first `n` questions of easy-VQA's test split, with absolute image paths.
fn questions(dir: &Path, n: usize, extra: &[&str]) -> PathBuf {
    let src = asset("easyvqa/test.jsonl");
    let root = src.parent().unwrap().to_path_buf();
    let mut lines: Vec<String> = std::fs::read_to_string(&src)
        .unwrap()
        .lines()
        .take(n)
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let img = root.join(v["image"].as_str().unwrap());
            v["image"] = img.display().to_string().into();
            v.to_string()
        })
        .collect();
    lines.extend(extra.iter().map(|s| s.to_string()));
    let file = dir.join("vqa.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    file
}

/// The image questions of `data` (a JSONL file) under the bad-row `policy` line.
fn jsonl_source(data: &Path, policy: &str) -> String {
    format!(
        "format = jsonl\n    path = \"{}\"\n    image = \"image\"\n    prompt = \"question\"\n    \
         completion = \"answer\"\n    {policy}",
        data.display()
    )
}

/// A pipeline training ARD-LoRA on both towers of `model` for 6 steps on the dataset whose
/// source lines are `source`, exporting the PEFT adapter.
fn pipeline(dir: &Path, model: &Path, source: &str) -> PathBuf {
    let file = dir.join("vqa.ard");
    std::fs::write(
        &file,
        format!(
            r#"pipeline {{
    name = "tiny-vqa"
    seed = 4
}}

dataset vqa {{
    {source}
    split {{
        validation = 25%
        seed = 1
    }}
    preprocess {{
        max_length = 64
    }}
}}

model {{
    path = "{model}"
    head = causal_lm
}}

adapter decoder {{
    method = ard_lora
    modules = [regex('model\.language_model\..*\.(q|k|v|o)_proj')]
    layers = all
    r0 = 4
    scale = 8
}}

adapter tower {{
    method = ard_lora
    modules = [regex('model\.vision_tower\..*\.(q|k|v|out)_proj')]
    layers = all
    r0 = 4
    scale = 8
}}

train {{
    lr = 2e-2
    batch_size = 4
    steps = 6
    precision = f32
    eval_every = 6 steps
}}

evaluate {{
    metrics = [loss, accuracy, exact_match]
}}

output {{
    dir = "{out}"
    export = [peft]
}}
"#,
            model = model.display(),
            out = dir.join("run").display(),
        ),
    )
    .unwrap();
    file
}

fn scratch(tag: &str) -> PathBuf {
    crate::fresh_dir(&format!("vqa-{tag}"))
}

/// ardpipe's logits for one image question with the run's adapter merged in, written for the
/// peer with the ids, token types and pixel values; returns the adapter's effect.
fn logits_with_adapter(model: &Path, adapter: &Path, image: &Path, out: &Path) -> f64 {
    let mut vlm = load_vision_lm(model, &LoadOptions::default()).unwrap();
    let tok: TextTokenizer = load_tokenizer(&vlm.location).unwrap().tokenizer;
    let c = &vlm.model.config;
    let processor = ImageProcessor::from_config(&model.join("preprocessor_config.json")).unwrap();
    let enc = VisionEncoder::new(
        &tok,
        c.image_token_id as u32,
        c.num_image_tokens(),
        64,
        processor.clone(),
    )
    .unwrap();
    let (ids, mask, prefix) = enc.tokens("what color is the shape?", "blue").unwrap();
    let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
    let types: Vec<i64> = mask.iter().map(|&m| m as i64).collect();
    let (pixels, [ch, h, w]) = processor.load(image).unwrap();
    let input = Tensor::from_slice(&ids).unsqueeze(0);
    let pixels = Tensor::from_slice(&pixels).reshape([1, ch as i64, h as i64, w as i64]);
    let prefix = Tensor::from_slice(&[prefix as i64]);
    let logits = |m: &ardpipe_engine::models::arch::PaliGemma| {
        tch::no_grad(|| m.forward(&input, &pixels, None, &prefix, false)).unwrap()
    };
    let without = logits(&vlm.model);
    let merged = AdapterFolder::read(adapter)
        .unwrap()
        .merge_into(vlm.model.linears_mut(), &[])
        .unwrap();
    assert!(!merged.ranks.is_empty());
    let with = logits(&vlm.model);
    Tensor::write_safetensors(
        &[
            ("ids", input),
            ("token_type_ids", Tensor::from_slice(&types).unsqueeze(0)),
            ("pixel_values", pixels),
            ("logits", with.shallow_clone()),
        ],
        out,
    )
    .unwrap();
    (&with - &without).abs().max().double_value(&[])
}

#[test]
fn ard_lora_on_both_towers_trains_and_round_trips_through_peft() {
    let dir = scratch("peft");
    let model = dir.join("paligemma2");
    peer(&["make", model.to_str().unwrap()]);
    let data = questions(&dir, 32, &[]);
    let file = pipeline(&dir, &model, &jsonl_source(&data, ""));
    let out = ardpipe(&["run", file.to_str().unwrap(), "-q"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let run = dir.join("run");
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let evals: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["split"] == "eval")
        .collect();
    let loss = |v: &serde_json::Value| v["loss"].as_f64().unwrap();
    let (first, last) = (loss(&evals[0]), loss(evals.last().unwrap()));
    println!("held-out answer loss {first:.3} -> {last:.3}");
    assert!(
        last < first,
        "six steps must lower the held-out loss: {evals:?}"
    );
    assert!(evals.iter().all(|v| v["exact_match"].is_number()));

    let image = asset("easyvqa/test/images/3.png");
    let ours = dir.join("ours.safetensors");
    let effect = logits_with_adapter(&model, &run.join("adapter"), &image, &ours);
    let line = peer(&[
        "check",
        model.to_str().unwrap(),
        run.join("adapter").to_str().unwrap(),
        ours.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    let diff = v["max_abs_diff"].as_f64().unwrap();
    println!(
        "PEFT vs ardpipe with the trained adapter: max |Δlogit| {diff:.2e} (the adapter moves them \
         by {effect:.2e}); PEFT wrapped {} vision and {} decoder modules",
        v["vision_modules"], v["decoder_modules"]
    );
    assert!(diff < 1e-4, "PEFT's logits differ by {diff}");
    assert!(
        effect > 1e-2,
        "the adapter barely moves the logits ({effect})"
    );
    assert_eq!(v["vision_modules"], 8, "2 tower layers × q, k, v, out");
    assert_eq!(v["decoder_modules"], 8, "2 decoder layers × q, k, v, o");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_image_row_stops_the_run_or_is_skipped_and_counted() {
    let dir = scratch("bad");
    let model = dir.join("paligemma2");
    peer(&["make", model.to_str().unwrap()]);
    let missing = dir.join("nowhere.png");
    let broken = dir.join("broken.png");
    std::fs::write(&broken, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let rows = [
        format!(
            r#"{{"image": "{}", "question": "what shape?", "answer": "circle"}}"#,
            missing.display()
        ),
        format!(
            r#"{{"image": "{}", "question": "what shape?", "answer": "circle"}}"#,
            broken.display()
        ),
    ];
    let data = questions(&dir, 24, &[&rows[0], &rows[1]]);
    let file = pipeline(&dir, &model, &jsonl_source(&data, ""));
    let out = ardpipe(&["run", file.to_str().unwrap(), "-q"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    // The first bad row met in the splits' order stops the run, named with its line.
    let missing = err.contains("vqa.jsonl:25")
        && err.contains("nowhere.png")
        && err.contains("does not exist");
    let broken =
        err.contains("vqa.jsonl:26") && err.contains("broken.png") && err.contains("cannot decode");
    assert!(missing || broken, "{err}");
    assert!(err.contains("on_bad_row = skip"), "{err}");
    // A text dataset cannot train a vision-language model.
    let text = dir.join("text.ard");
    std::fs::write(
        &text,
        std::fs::read_to_string(&file)
            .unwrap()
            .replace("    image = \"image\"\n", ""),
    )
    .unwrap();
    let out = ardpipe(&["plan", text.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("every example needs an image"), "{err}");
    // Nor can a text-only model read images.
    let gguf = asset("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let out = ardpipe(&[
        "plan",
        file.to_str().unwrap(),
        "--set",
        &format!("model.path=\"{}\"", gguf.display()),
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("has images") && err.contains("reads no image"),
        "{err}"
    );
    let file = pipeline(&dir, &model, &jsonl_source(&data, "on_bad_row = skip"));
    let out = ardpipe(&["plan", file.to_str().unwrap(), "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let data = &plan["runs"][0]["plan"]["data"];
    assert_eq!(data["skipped_rows"], 2, "{data}");
    assert_eq!(data["records"], "image_question");
    assert_eq!(data["batching"]["kind"], "images", "{data}");
    assert_eq!(data["batching"]["image_tokens"], 4, "{data}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The README's VQA pipeline on the model set-up composes, at a few steps and rows.
#[test]
fn the_vqa_pipeline_runs_on_the_composed_model() {
    let model = asset("vqa-smollm2-siglip");
    assert!(model.join("config.json").is_file());
    let dir = scratch("pipeline");
    let file = repo().join("pipelines/vqa.ard");
    let out = ardpipe(&[
        "run",
        file.to_str().unwrap(),
        "-q",
        "--set",
        "train.steps=3",
        // Compaction runs inside the shortened training too.
        "--set",
        "adapter.decoder.compaction.every=2 steps",
        "--set",
        "adapter.tower.compaction.every=2 steps",
        "--set",
        "dataset.easyvqa.max_rows=48",
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
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("run/summary.json")).unwrap()).unwrap();
    println!("{summary}");
    assert!(summary["majority_baseline"].is_number(), "{summary}");
    let report = std::fs::read_to_string(dir.join("run/report/report.md")).unwrap();
    assert!(report.contains("final exact_match"), "{report}");
    assert!(dir.join("run/adapter/adapter_config.json").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A pipeline reading image folders per class (`root/<class>/*.png`): every image is asked
/// `question` and answered with its class.
fn folder_pipeline(dir: &Path, model: &Path, root: &Path) -> PathBuf {
    let source = format!(
        "format = image_folders\n    path = \"{}\"\n    question = \"what shape is in the image?\"",
        root.display()
    );
    pipeline(dir, model, &source)
}

#[test]
fn image_folders_per_class_train_with_the_class_as_the_answer() {
    let dir = scratch("folders");
    let model = dir.join("paligemma2");
    peer(&["make", model.to_str().unwrap()]);
    // Four real easy-VQA images per class (any assignment: this tests the format), and a file
    // that is no image, which is not read.
    let root = dir.join("shapes");
    let classes = ["circle", "rectangle", "triangle"];
    for (c, class) in classes.iter().enumerate() {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..4 {
            let n = c * 4 + i;
            std::fs::copy(
                asset(&format!("easyvqa/test/images/{n}.png")),
                root.join(class).join(format!("{n}.png")),
            )
            .unwrap();
        }
    }
    std::fs::write(root.join("circle/notes.txt"), "not an image\n").unwrap();
    let file = folder_pipeline(&dir, &model, &root);
    let out = ardpipe(&["run", file.to_str().unwrap(), "-q"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("run/summary.json")).unwrap()).unwrap();
    assert!(summary["majority_baseline"].is_number(), "{summary}");

    let out = ardpipe(&[
        "data",
        "preview",
        file.to_str().unwrap(),
        "--format",
        "json",
        "-n",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let preview: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(preview["plan"]["records"], "image_question", "{preview}");
    assert_eq!(preview["plan"]["format"], "image_folders", "{preview}");
    assert_eq!(preview["sizes"]["train_records"], 9, "{preview}");
    let examples = preview["examples"].as_array().unwrap();
    assert_eq!(examples.len(), 2, "{preview}");
    for e in examples {
        let image = PathBuf::from(e["image"]["file"].as_str().unwrap());
        let class = image
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        assert!(classes.contains(&class), "{e}");
        let spans = e["spans"].as_array().unwrap();
        let text = |trained: bool| -> String {
            spans
                .iter()
                .filter(|s| s["trained"] == trained)
                .map(|s| s["text"].as_str().unwrap())
                .collect()
        };
        assert!(text(false).contains("what shape is in the image?"), "{e}");
        // The answer is the class, then EOS (the last token).
        let eos = e["pieces"].as_array().unwrap().last().unwrap();
        let answer = text(true);
        assert_eq!(
            answer.strip_suffix(eos.as_str().unwrap()),
            Some(class),
            "{e}"
        );
    }

    // An unreadable image is a bad row naming its file: it stops the run, or is skipped.
    std::fs::write(
        root.join("triangle/broken.png"),
        b"\x89PNG\r\n\x1a\nnot really",
    )
    .unwrap();
    let out = ardpipe(&["plan", file.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("broken.png"), "{err}");
    let out = ardpipe(&[
        "plan",
        file.to_str().unwrap(),
        "--format",
        "json",
        "--set",
        "dataset.vqa.on_bad_row=skip",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(plan["runs"][0]["plan"]["data"]["skipped_rows"], 1, "{plan}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn question_and_answer_belong_to_image_folders_only() {
    let dir = scratch("refused");
    let source = jsonl_source(
        &dir.join("vqa.jsonl"),
        "question = \"what shape is in the image?\"",
    );
    let file = pipeline(&dir, &dir.join("model"), &source);
    let out = ardpipe(&["check", file.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("`question` applies to `image_folders` sources only"),
        "{err}"
    );
    assert!(err.contains("this source is `jsonl`"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
