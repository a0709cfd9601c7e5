//! Released models' config.json files (engine/models/tests/fixtures/real_configs, see SOURCES.md
//! there) read as transformers reads them: the same parameter count as the model transformers
//! builds from the config (on the meta device), the same attention kind per layer, the same
//! RoPE bases, KV heads, head size and tying. No weights are needed, so this covers the real
//! 0.5B–7B configurations the tiny peer models of peer_decoders.rs cannot, and the released
//! PaliGemma-2 3B configs at 224, 448 and 896 px: both towers, the image tokens and the projector.

use std::path::{Path, PathBuf};

use ardpipe_models::arch::config::{ArchConfig, LayerType, LlamaConfig};
use ardpipe_models::arch::paligemma::PaliGemmaConfig;
use ardpipe_models::describe;

mod support;
use support::{peer_command, run_peer};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real_configs")
}

/// transformers' RoPE base for an attention kind, from its `rope_parameters` (flat, or one
/// entry per attention kind as Gemma 3 has).
fn peer_theta(rope: &serde_json::Value, kind: &str) -> f64 {
    let entry = rope.get(kind).unwrap_or(rope);
    entry["rope_theta"].as_f64().unwrap()
}

/// The decoder's reading of `want` (transformers' fields of a decoder config, or of a PaliGemma's
/// text_config): family, head size, heads, tying, the attention kind of every layer, RoPE bases.
/// Returns how many layers slide.
fn check_decoder(name: &str, c: &LlamaConfig, want: &serde_json::Value) -> usize {
    assert_eq!(c.family.model_type(), want["model_type"], "{name}");
    for (key, ours) in [
        ("head_dim", c.head_dim),
        ("num_attention_heads", c.num_attention_heads),
        ("num_key_value_heads", c.num_key_value_heads),
        ("hidden_size", c.hidden_size),
        ("vocab_size", c.vocab_size),
    ] {
        assert_eq!(ours as u64, want[key].as_u64().unwrap(), "{name}: {key}");
    }
    assert_eq!(
        c.tie_word_embeddings,
        want["tie_word_embeddings"].as_bool().unwrap(),
        "{name}"
    );
    // The attention kind of every layer: ardpipe's empty list means all full.
    let ours: Vec<&str> = (0..c.num_hidden_layers)
        .map(|l| match c.layer_types.get(l) {
            Some(LayerType::SlidingAttention) if c.sliding_window.is_some() => "sliding_attention",
            _ => "full_attention",
        })
        .collect();
    let theirs: Vec<&str> = match want["layer_types"].as_array() {
        None => vec!["full_attention"; c.num_hidden_layers],
        Some(a) if want["sliding_window"].is_null() => {
            assert_eq!(a.len(), c.num_hidden_layers, "{name}");
            vec!["full_attention"; c.num_hidden_layers]
        }
        Some(a) => a.iter().map(|t| t.as_str().unwrap()).collect(),
    };
    assert_eq!(ours, theirs, "{name}: attention kind per layer");
    if ours.contains(&"sliding_attention") {
        assert_eq!(
            c.sliding_window.map(|w| w as u64),
            want["sliding_window"].as_u64(),
            "{name}"
        );
    }
    let rope = &want["rope_parameters"];
    assert_eq!(
        c.rope_theta,
        peer_theta(rope, "full_attention"),
        "{name}: RoPE base"
    );
    if let Some(local) = c.rope_local_theta {
        assert_eq!(
            local,
            peer_theta(rope, "sliding_attention"),
            "{name}: RoPE base of the sliding layers"
        );
    }
    ours.iter().filter(|t| **t == "sliding_attention").count()
}

/// A PaliGemma's SigLIP tower and projector as transformers builds them.
fn check_vision(name: &str, p: &PaliGemmaConfig, want: &serde_json::Value) {
    let v = &p.vision;
    let w = &want["vision"];
    let field = |key: &str| w[key].as_u64().unwrap() as usize;
    for (key, ours) in [
        ("hidden_size", v.hidden_size),
        ("intermediate_size", v.intermediate_size),
        ("num_hidden_layers", v.num_hidden_layers),
        ("num_attention_heads", v.num_attention_heads),
        ("image_size", v.image_size),
        ("patch_size", v.patch_size),
        ("num_image_tokens", p.num_image_tokens()),
    ] {
        assert_eq!(ours, field(key), "{name}: vision {key}");
    }
    // The projector maps the tower's width onto the decoder's.
    assert_eq!(v.hidden_size, field("projection_in"), "{name}");
    assert_eq!(p.text.hidden_size, field("projection_out"), "{name}");
    assert_eq!(
        p.image_token_id,
        want["image_token_id"].as_u64().unwrap(),
        "{name}: image token"
    );
}

#[test]
fn released_configs_read_as_transformers_reads_them() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 11, "{dirs:?}");
    let out = run_peer(peer_command("real_configs.py").args(&dirs));
    let peer: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(peer.len(), dirs.len());
    let mut paligemmas = 0;
    for (dir, want) in dirs.iter().zip(&peer) {
        let name = dir.file_name().unwrap().to_string_lossy();
        let d = describe(dir).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            d.parameters as u64,
            want["parameters"].as_u64().unwrap(),
            "{name}: parameter count"
        );
        let (text, sliding) = match &d.config {
            ArchConfig::Llama(c) => (c, check_decoder(&name, c, want)),
            ArchConfig::PaliGemma(p) => {
                paligemmas += 1;
                check_vision(&name, p, want);
                (&p.text, check_decoder(&name, &p.text, want))
            }
            _ => panic!("{name}: neither a decoder nor a PaliGemma"),
        };
        eprintln!(
            "{name}: {} parameters, {sliding} sliding of {} layers, as transformers",
            d.parameters, text.num_hidden_layers
        );
    }
    // paligemma2-3b-pt-{224,448,896}
    assert_eq!(paligemmas, 3);
}
