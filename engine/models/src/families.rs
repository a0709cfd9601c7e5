//! The model families ardpipe builds, in one table: what the README's "Supported models"
//! section shows (engine/models/tests/readme_models.rs keeps the two equal), derived from the
//! enums the loaders dispatch on, so a family cannot be added to one and missed in the other.

use crate::arch::config::{DecoderFamily, EncoderFamily};
use crate::gguf::GgmlType;
use crate::gguf::arch::GgufArch;

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    /// What people call it.
    pub name: &'static str,
    /// config.json's `model_type` values (Hugging Face folders).
    pub model_types: Vec<&'static str>,
    /// `general.architecture` of its GGUF files; empty when ardpipe reads only HF folders.
    pub gguf: Vec<&'static str>,
    /// Pipeline heads: `causal_lm`, `sequence_classification`, `embedding`.
    pub heads: Vec<&'static str>,
    /// Whether `generate --chat` renders the model's own Jinja chat template.
    pub chat_template: bool,
}

fn decoder_name(f: DecoderFamily) -> &'static str {
    match f {
        DecoderFamily::Llama => "Llama 1/2/3/3.1/3.2/3.3, SmolLM2, TinyLlama",
        DecoderFamily::Qwen2 => "Qwen2, Qwen2.5",
        DecoderFamily::Mistral => "Mistral",
        DecoderFamily::Qwen3 => "Qwen3",
        DecoderFamily::Gemma => "Gemma",
        DecoderFamily::Gemma2 => "Gemma 2",
        DecoderFamily::Gemma3Text => "Gemma 3 (text)",
    }
}

fn encoder_name(f: EncoderFamily) -> &'static str {
    match f {
        EncoderFamily::Bert => "BERT, MiniLM",
        EncoderFamily::Roberta => "RoBERTa",
        EncoderFamily::XlmRoberta => "XLM-RoBERTa",
    }
}

/// Every family: decoders, the vision-language model, encoders.
pub fn families() -> Vec<Family> {
    let decoders = DecoderFamily::ALL.into_iter().map(|f| Family {
        name: decoder_name(f),
        model_types: vec![f.model_type()],
        gguf: vec![GgufArch::of_family(f).name()],
        heads: vec!["causal_lm", "sequence_classification"],
        chat_template: true,
    });
    // A vision-language model: its decoder is any of the above (PaliGemma's is Gemma,
    // PaliGemma-2's Gemma 2); it trains on image questions.
    let vision = std::iter::once(Family {
        name: "PaliGemma, PaliGemma-2 (SigLIP tower + projector + a decoder above)",
        model_types: vec!["paligemma"],
        gguf: vec![],
        heads: vec!["causal_lm"],
        chat_template: false,
    });
    let encoders = EncoderFamily::ALL.into_iter().map(|f| Family {
        name: encoder_name(f),
        model_types: vec![f.model_type()],
        gguf: vec![],
        heads: vec!["sequence_classification", "embedding"],
        chat_template: false,
    });
    decoders.chain(vision).chain(encoders).collect()
}

fn code(items: &[&str]) -> String {
    if items.is_empty() {
        "—".into()
    } else {
        items
            .iter()
            .map(|s| format!("`{s}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The README's table and the two lines under it, in Markdown.
pub fn markdown() -> String {
    let mut s = String::from(
        "| family | Hugging Face `model_type` | GGUF `general.architecture` | heads | chat template |\n\
         |---|---|---|---|---|\n",
    );
    for f in families() {
        s += &format!(
            "| {} | {} | {} | {} | {} |\n",
            f.name,
            code(&f.model_types),
            code(&f.gguf),
            code(&f.heads),
            if f.chat_template {
                "the model's own (Jinja)"
            } else {
                "—"
            }
        );
    }
    let types: Vec<&str> = GgmlType::ALL.iter().map(|t| t.name()).collect();
    s += &format!(
        "\nGGUF tensor types (dequantised to f32 on load): {}.\n",
        types.join(", ")
    );
    let pre = ardpipe_data::tokenizer::supported_bpe_pre_tokenizers();
    s += &format!(
        "GGUF tokenizers: SentencePiece (`tokenizer.ggml.model = llama`, Llama and Gemma flavours) and \
         byte-level BPE (`gpt2`) with the pre-tokenizers {}.\n",
        code(&pre)
    );
    s
}
