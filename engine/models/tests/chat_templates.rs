//! Chat templates rendered by ardpipe (minijinja) equal transformers' `apply_chat_template` on
//! real templates: ChatML from the SmolLM2 GGUF asset (read through ardpipe's GGUF loader), and
//! Llama 3, Gemma, Mistral and Qwen3 from public sources named in
//! tests/fixtures/chat_templates.json; a template's own `raise_exception` is an error naming the
//! template's source. Needs the Python peer venv that `scripts/setup.sh` creates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ardpipe_models::ModelLocation;
use ardpipe_models::assets::asset_file;
use ardpipe_models::tokenizer::{ChatMessage, ChatTemplate, load_tokenizer};

mod support;
use support::{peer_command, run_peer};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat_templates.json")
}

/// Every render transformers made must come out of ardpipe's template the same, and every
/// template error must be an ardpipe error carrying the template's message and source.
fn check(
    name: &str,
    tpl: &ChatTemplate,
    renders: &[serde_json::Value],
    splits: &mut usize,
) -> usize {
    let mut compared = 0;
    for r in renders {
        let messages: Vec<ChatMessage> = serde_json::from_value(r["messages"].clone()).unwrap();
        let generation = r["add_generation_prompt"].as_bool().unwrap();
        let ours = tpl.render(&messages, generation);
        match (r.get("text").and_then(|t| t.as_str()), ours) {
            (Some(want), Ok(got)) => {
                assert_eq!(got, want, "{name}: {messages:?} generation={generation}")
            }
            (None, Err(e)) => {
                let want = r["error"].as_str().unwrap();
                let msg = want.split_once(": ").map_or(want, |(_, m)| m);
                let e = e.to_string();
                assert!(e.contains(msg), "{name}: {e} lacks {msg:?}");
                assert!(e.contains(tpl.source()), "{name}: {e} names no source");
            }
            (want, got) => panic!(
                "{name}: {messages:?} generation={generation}: transformers {want:?}, ardpipe {got:?}"
            ),
        }
        compared += 1;
        // The prompt/completion split of a conversation ending with the assistant: it re-joins
        // to the full rendering.
        if let Some(full) = r.get("text").and_then(|t| t.as_str())
            && !generation
            && messages.last().is_some_and(|m| m.role == "assistant")
        {
            let before = &messages[..messages.len() - 1];
            match tpl.split_last_turn(&messages) {
                Ok(parts) => {
                    assert_eq!(
                        format!("{}{}", parts.prompt, parts.completion),
                        full,
                        "{name}"
                    );
                    let last = &messages[messages.len() - 1].content;
                    assert!(parts.completion.contains(last.trim()), "{name}: {parts:?}");
                    assert_eq!(parts.prompt, tpl.render(before, true).unwrap(), "{name}");
                    *splits += 1;
                }
                // Refused only where no split exists: the prompt alone does not render, or is
                // not where the full rendering starts.
                Err(e) => assert!(
                    tpl.render(before, true)
                        .map_or(true, |p| !full.starts_with(&p)),
                    "{name}: {e}"
                ),
            }
        }
    }
    compared
}

#[test]
fn real_chat_templates_render_as_transformers_does() {
    let gguf =
        asset_file("smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf").unwrap_or_else(|e| panic!("{e}"));
    let out = run_peer(peer_command("chat_templates.py").arg(fixtures()).arg(&gguf));
    let peer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let fixtures: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(fixtures()).unwrap()).unwrap();
    let mut total = 0;
    let mut splits = 0;
    for f in &fixtures {
        let name = f["name"].as_str().unwrap();
        let mut special = BTreeMap::new();
        for k in ["bos_token", "eos_token"] {
            if let Some(v) = f[k].as_str() {
                special.insert(k.to_string(), v.to_string());
            }
        }
        let tpl = ChatTemplate::new(
            f["template"].as_str().unwrap(),
            format!("{name} ({})", f["source"].as_str().unwrap()),
            special,
        )
        .unwrap();
        total += check(
            name,
            &tpl,
            peer[name]["renders"].as_array().unwrap(),
            &mut splits,
        );
    }

    // SmolLM2's own template, as ardpipe's GGUF loader reads it.
    let tok = load_tokenizer(&ModelLocation::Gguf(gguf)).unwrap();
    let tpl = tok
        .chat
        .as_ref()
        .expect("the SmolLM2 GGUF has a chat template");
    assert_eq!(
        tpl.text(),
        peer["smollm2_gguf"]["template"].as_str().unwrap()
    );
    total += check(
        "smollm2_gguf",
        tpl,
        peer["smollm2_gguf"]["renders"].as_array().unwrap(),
        &mut splits,
    );
    assert_eq!(
        tpl.end_of_turn_ids(&tok.tokenizer).unwrap(),
        [tok.tokenizer.token_to_id("<|im_end|>").unwrap()]
    );
    assert_eq!(total, 5 * 10);
    assert!(splits >= 5, "only {splits} prompt/reply splits checked");
}

#[test]
fn tokenizer_config_chat_templates_string_list_and_jinja_file() {
    let dir = std::env::temp_dir().join(format!("ardpipe-chat-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // The real SmolLM2 vocabulary as a tokenizer.json, via ardpipe's GGUF rebuild.
    let gguf =
        asset_file("smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf").unwrap_or_else(|e| panic!("{e}"));
    let tok = load_tokenizer(&ModelLocation::Gguf(gguf)).unwrap();
    std::fs::write(dir.join("tokenizer.json"), tok.tokenizer.to_json().unwrap()).unwrap();
    let loc = ModelLocation::HfFolder(dir.clone());
    let write_cfg = |v: serde_json::Value| {
        std::fs::write(dir.join("tokenizer_config.json"), v.to_string()).unwrap()
    };
    let hello = [ChatMessage::new("user", "hi")];

    write_cfg(
        serde_json::json!({"eos_token": "<|im_end|>", "chat_template": "{{ messages[0].content }}{{ eos_token }}"}),
    );
    let t = load_tokenizer(&loc).unwrap().chat.unwrap();
    assert_eq!(t.render(&hello, false).unwrap(), "hi<|im_end|>");

    write_cfg(
        serde_json::json!({"bos_token": {"content": "<|im_start|>"}, "chat_template": [
        {"name": "tool_use", "template": "tools"},
        {"name": "default", "template": "{{ bos_token }}{{ messages[0].content }}"}]}),
    );
    let t = load_tokenizer(&loc).unwrap().chat.unwrap();
    assert_eq!(t.render(&hello, false).unwrap(), "<|im_start|>hi");

    write_cfg(serde_json::json!({"chat_template": [{"name": "tool_use", "template": "tools"}]}));
    let e = load_tokenizer(&loc).err().unwrap().to_string();
    assert!(e.contains("default") && e.contains("tool_use"), "{e}");

    // transformers 5 saves the template next to the config; that file wins.
    write_cfg(serde_json::json!({"chat_template": "ignored"}));
    std::fs::write(
        dir.join("chat_template.jinja"),
        "{% for m in messages %}[{{ m.role }}]{% endfor %}",
    )
    .unwrap();
    let t = load_tokenizer(&loc).unwrap().chat.unwrap();
    assert_eq!(t.render(&hello, false).unwrap(), "[user]");
    assert!(t.source().ends_with("chat_template.jinja"));

    std::fs::write(dir.join("chat_template.jinja"), "{% if %}").unwrap();
    let e = load_tokenizer(&loc).err().unwrap().to_string();
    assert!(
        e.contains("chat_template.jinja") && e.contains("does not compile"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
