//! `ardpipe inspect model PATH`: architecture, parameter count and the adaptable modules with
//! shapes and heads — what a user needs to write selectors. Reads no tensor data.

use std::collections::BTreeMap;
use std::path::Path;

use ardpipe_engine::adapters::HeadAxis;
use ardpipe_engine::models::arch::config::{Activation, LayerType, LlamaConfig, RopeScaling};
use ardpipe_engine::models::arch::{ArchConfig, ModuleSpec};
use ardpipe_engine::models::{ModelDescription, ModelLocation, describe};

use crate::args::Format;
use crate::exit::Code;

pub fn model(path: &Path, format: Format) -> miette::Result<Code> {
    let d = describe(path).map_err(|e| miette::miette!("{e}"))?;
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&d).expect("description serialises")
        ),
        Format::Yaml => print!("{}", crate::output::yaml(&d)?),
        Format::Text => print!("{}", render(&d)),
    }
    Ok(Code::Success)
}

fn human(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn heads(m: &ModuleSpec) -> String {
    let h = m.heads;
    match h.axis {
        HeadAxis::Output => format!("{} heads × {} rows (output axis)", h.n_heads, h.head_dim),
        HeadAxis::Input => format!("{} heads × {} columns (input axis)", h.n_heads, h.head_dim),
        HeadAxis::None => "no heads (MLP)".into(),
    }
}

/// What sets a decoder family apart, in the words of its config (every feature ardpipe computes).
fn decoder_features(c: &LlamaConfig) -> Vec<String> {
    let mut f = vec![if c.norm_unit_offset {
        "RMSNorm (1 + w)".to_string()
    } else {
        "RMSNorm".to_string()
    }];
    f.push(match &c.rope_scaling {
        Some(RopeScaling::Llama3 { factor, .. }) => format!("RoPE (llama3 scaling ×{factor})"),
        Some(RopeScaling::Linear { factor }) => format!("RoPE (linear scaling ×{factor})"),
        Some(RopeScaling::Yarn { factor, .. }) => format!("RoPE (YaRN ×{factor})"),
        None => "RoPE".into(),
    });
    f.push(match c.hidden_act {
        Activation::Silu => "SwiGLU".into(),
        Activation::GeluPytorchTanh => "GeGLU (tanh)".into(),
    });
    if c.num_key_value_heads < c.num_attention_heads {
        f.push("GQA".into());
    }
    if c.qkv_bias_only {
        f.push("q/k/v bias".into());
    } else if c.attention_bias {
        f.push("attention bias".into());
    }
    if c.qk_norm {
        f.push("q/k norm".into());
    }
    if c.scale_embeddings {
        f.push("embeddings × √hidden".into());
    }
    if c.sandwich_norms {
        f.push("pre- and post-norms".into());
    }
    if let Some(w) = c.sliding_window {
        let sliding = c
            .layer_types
            .iter()
            .filter(|t| **t == LayerType::SlidingAttention)
            .count();
        f.push(if c.layer_types.is_empty() {
            format!("sliding window {w}")
        } else {
            format!(
                "sliding window {w} on {sliding} of {} layers",
                c.layer_types.len()
            )
        });
    }
    if let Some(cap) = c.attn_logit_softcapping {
        f.push(format!("attention soft-cap {cap}"));
    }
    if let Some(cap) = c.final_logit_softcapping {
        f.push(format!("final soft-cap {cap}"));
    }
    f
}

/// Collapse the per-layer modules into one line per module kind: `model.layers.{0-29}.…`.
pub fn render(d: &ModelDescription) -> String {
    let mut s = String::new();
    let (kind, path) = match &d.location {
        ModelLocation::Gguf(p) => ("GGUF file", p),
        ModelLocation::HfFolder(p) => ("Hugging Face folder", p),
    };
    s += &format!("model         {} ({kind})\n", path.display());
    match &d.config {
        ArchConfig::Llama(c) => {
            s += &format!(
                "architecture  {} (causal LM: {})\n",
                c.family.model_type(),
                decoder_features(c).join(", ")
            );
            s += &format!(
                "              {} layers, hidden {}, FFN {}, {} heads ({} KV heads) × {}, vocab {}, context {}\n",
                c.num_hidden_layers,
                c.hidden_size,
                c.intermediate_size,
                c.num_attention_heads,
                c.num_key_value_heads,
                c.head_dim,
                c.vocab_size,
                c.max_position_embeddings
            );
            let rope = match c.rope_local_theta {
                Some(local) => format!(
                    "RoPE theta {} (full attention), {local} (sliding)",
                    c.rope_theta
                ),
                None => format!("RoPE theta {}", c.rope_theta),
            };
            s += &format!(
                "              {rope}, RMSNorm eps {}, LM head {}\n",
                c.rms_norm_eps,
                if c.tie_word_embeddings {
                    "tied to the embeddings"
                } else {
                    "untied"
                }
            );
        }
        ArchConfig::Bert(c) => {
            s += &format!(
                "architecture  {} (encoder: post-LN, GELU, {})\n",
                c.family.model_type(),
                if c.family.roberta_positions() {
                    "positions after the padding id"
                } else {
                    "absolute positions"
                }
            );
            s += &format!(
                "              {} layers, hidden {}, FFN {}, {} heads × {}, vocab {}, {} positions\n",
                c.num_hidden_layers,
                c.hidden_size,
                c.intermediate_size,
                c.num_attention_heads,
                c.head_dim(),
                c.vocab_size,
                c.max_position_embeddings
            );
            s += "              heads: embedding (masked mean, L2) or classification \
                  (adds `bert.` to module paths, as transformers does)\n";
        }
        ArchConfig::PaliGemma(c) => {
            let v = &c.vision;
            let t = &c.text;
            s += "architecture  paligemma (vision-language: SigLIP tower → linear projector → decoder; \
                  image and prompt attend both ways, the answer causally)\n";
            s += &format!(
                "  vision      SigLIP, {} layers, hidden {}, FFN {}, {} heads × {}; {}×{} px images in \
                 {}-px patches = {} image tokens\n",
                v.num_hidden_layers,
                v.hidden_size,
                v.intermediate_size,
                v.num_attention_heads,
                v.head_dim(),
                v.image_size,
                v.image_size,
                v.patch_size,
                v.num_patches()
            );
            s += &format!(
                "  projector   linear {} → {}\n",
                v.hidden_size, t.hidden_size
            );
            s += &format!(
                "  decoder     {} ({}), {} layers, hidden {}, FFN {}, {} heads ({} KV heads) × {}, vocab {}\n",
                t.family.model_type(),
                decoder_features(t).join(", "),
                t.num_hidden_layers,
                t.hidden_size,
                t.intermediate_size,
                t.num_attention_heads,
                t.num_key_value_heads,
                t.head_dim,
                t.vocab_size
            );
            s += &format!("  image token id {}\n", c.image_token_id);
        }
    }
    s += &format!(
        "parameters    {} ({:.1}M)\n",
        human(d.parameters),
        d.parameters as f64 / 1e6
    );
    if !d.storage.is_empty() {
        let st: Vec<String> = d.storage.iter().map(|(t, n)| format!("{t} ×{n}")).collect();
        s += &format!(
            "storage       {} (dequantised to f32 on load)\n",
            st.join(", ")
        );
    }
    let layers = d
        .modules
        .iter()
        .map(|m| m.layer)
        .max()
        .map(|l| l + 1)
        .unwrap_or(0);
    let per_layer = match &d.config {
        ArchConfig::PaliGemma(c) => format!(
            "{} per vision layer, the projector, {} per decoder layer",
            c.vision.modules("").len() / c.vision.num_hidden_layers.max(1),
            c.text.modules().len() / c.text.num_hidden_layers.max(1)
        ),
        _ => format!("{} per layer", d.modules.len() / layers.max(1)),
    };
    s += &format!(
        "\nadaptable modules: {} linears, {per_layer}; select them by name (e.g. `{}`), layers and heads\n",
        d.modules.len(),
        d.modules
            .first()
            .map(|m| m.name.as_str())
            .unwrap_or("q_proj")
    );
    // Group by the path with the layer index replaced, keeping first-seen order.
    let mut order: Vec<String> = Vec::new();
    let mut groups: BTreeMap<String, Vec<&ModuleSpec>> = BTreeMap::new();
    for m in &d.modules {
        let key = m.path.replacen(&format!(".{}.", m.layer), ".{L}.", 1);
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(m);
    }
    let width = order.iter().map(|k| k.len()).max().unwrap_or(0) + 6;
    for key in order {
        let ms = &groups[&key];
        let m = ms[0];
        let first = ms.iter().map(|m| m.layer).min().unwrap_or(0);
        let last = ms.iter().map(|m| m.layer).max().unwrap_or(0);
        let shown = key.replace("{L}", &format!("{{{first}-{last}}}"));
        s += &format!(
            "  {shown:<width$} [{:>4} × {:<4}]{}  {}\n",
            m.d_out,
            m.d_in,
            if m.bias { " +bias" } else { "      " },
            heads(m)
        );
    }
    s
}
