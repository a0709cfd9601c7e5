//! Models applied to text: tokenise, batch with dynamic padding and an attention mask, run.
//! What `ardpipe generate`, `classify` and `embed` call.

use ardpipe_data::TextTokenizer;
use ardpipe_data::vision::VisionEncoder;
use tch::{Kind, Tensor};

use crate::arch::{Bert, Llama, LlamaConfig, PaliGemma, SequenceClassifier};
use crate::error::{ModelError, Result};
use crate::generate::{Sampling, StopReason, generate, generate_vision};
use crate::tokenizer::ModelTokenizer;

fn tok_err(e: ardpipe_data::DataError) -> ModelError {
    ModelError::Tokenizer(e.to_string())
}

/// Token ids `[b, t]` and attention mask `[b, t]` for texts, right-padded with `pad`,
/// truncated to `max_len` tokens.
pub fn encode_batch(
    tok: &TextTokenizer,
    texts: &[&str],
    max_len: usize,
) -> Result<(Tensor, Tensor)> {
    if texts.is_empty() {
        return Err(ModelError::Usage("no texts given".into()));
    }
    let pad = tok.pad_id().unwrap_or(0) as i64;
    let mut encs = Vec::with_capacity(texts.len());
    for t in texts {
        let mut ids: Vec<i64> = tok
            .encode(t, true)
            .map_err(tok_err)?
            .ids
            .iter()
            .map(|&i| i as i64)
            .collect();
        ids.truncate(max_len);
        encs.push(ids);
    }
    let t = encs.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let mut ids = vec![pad; texts.len() * t];
    let mut mask = vec![0i64; texts.len() * t];
    for (r, e) in encs.iter().enumerate() {
        ids[r * t..r * t + e.len()].copy_from_slice(e);
        mask[r * t..r * t + e.len()].fill(1);
    }
    let shape = [texts.len() as i64, t as i64];
    Ok((
        Tensor::from_slice(&ids).reshape(shape),
        Tensor::from_slice(&mask).reshape(shape),
    ))
}

/// L2-normalised embeddings, one vector per text.
pub fn embed_texts(model: &Bert, tok: &TextTokenizer, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
    let (ids, mask) = encode_batch(tok, texts, model.max_tokens())?;
    let e = tch::no_grad(|| model.embed(&ids, &mask))?;
    rows(&e)
}

/// Class probabilities, one row per text.
/// The classifier's output, one row per text.
#[derive(Debug, Clone)]
pub struct Classified {
    pub logits: Vec<Vec<f32>>,
    pub probabilities: Vec<Vec<f32>>,
}

/// Logits and their softmax probabilities per text (one forward pass).
pub fn classify_texts(
    model: &dyn SequenceClassifier,
    tok: &TextTokenizer,
    texts: &[&str],
) -> Result<Classified> {
    let (ids, mask) = encode_batch(tok, texts, model.max_tokens())?;
    let logits = tch::no_grad(|| model.classify(&ids, &mask, false))?;
    Ok(Classified {
        probabilities: rows(&logits.softmax(-1, Kind::Float))?,
        logits: rows(&logits)?,
    })
}

fn rows(t: &Tensor) -> Result<Vec<Vec<f32>>> {
    let t = t.to_device(tch::Device::Cpu).to_kind(Kind::Float);
    let (n, _) = t.size2()?;
    (0..n)
        .map(|i| Ok(Vec::<f32>::try_from(t.get(i))?))
        .collect()
}

/// The outcome of [`generate_text`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct Generated {
    pub text: String,
    pub prompt_tokens: usize,
    pub tokens: usize,
    pub stop: StopReason,
}

/// Generate a reply to `prompt` (wrapped in the chat template when `chat`), streaming decoded
/// text pieces to `on_text` as they become printable.
pub fn generate_text(
    model: &Llama,
    tok: &ModelTokenizer,
    prompt: &str,
    chat: bool,
    sampling: &Sampling,
    on_text: impl FnMut(&str),
) -> Result<Generated> {
    let t = &tok.tokenizer;
    let text = if chat {
        let tpl = tok.chat.as_ref().ok_or_else(|| {
            ModelError::Usage(
                "this model has no chat template (tokenizer_config.json or GGUF \
                 tokenizer.chat_template); run without --chat and write the prompt in the \
                 model's format"
                    .into(),
            )
        })?;
        tpl.user_prompt(prompt).map_err(tok_err)?
    } else {
        prompt.to_string()
    };
    // A rendered chat holds the special tokens its template writes (BOS included), so it is
    // encoded without adding any, as transformers' apply_chat_template does.
    let ids: Vec<i64> = t
        .encode(&text, !chat)
        .map_err(tok_err)?
        .ids
        .iter()
        .map(|&i| i as i64)
        .collect();
    // Stop at the model's EOS ids, the tokenizer's, and the chat template's end of turn.
    let mut stop = stop_ids(&model.config, t);
    if chat && let Some(tpl) = &tok.chat {
        stop.extend(
            tpl.end_of_turn_ids(t)
                .map_err(tok_err)?
                .into_iter()
                .map(|i| i as i64),
        );
    }
    let (text, gen_ids, stop_reason) = streamed(t, on_text, |on_token| {
        generate(model, &ids, &stop, sampling, on_token)
    })?;
    Ok(Generated {
        text,
        prompt_tokens: ids.len(),
        tokens: gen_ids.len(),
        stop: stop_reason,
    })
}

/// A vision-language model's answer to `question` about the image `pixel_values`
/// (`[1, channels, side, side]`, the model's processor's output), streamed like
/// [`generate_text`]: the prompt is the image's tokens, BOS, the question and `\n`, as
/// `encoder` (PaliGemma's processor) writes it.
pub fn answer_image(
    model: &PaliGemma,
    tok: &TextTokenizer,
    encoder: &VisionEncoder,
    question: &str,
    pixel_values: &Tensor,
    sampling: &Sampling,
    on_text: impl FnMut(&str),
) -> Result<Generated> {
    let ids: Vec<i64> = encoder
        .prompt(question)
        .map_err(tok_err)?
        .into_iter()
        .map(i64::from)
        .collect();
    let stop = stop_ids(&model.decoder.config, tok);
    let (text, gen_ids, stop_reason) = streamed(tok, on_text, |on_token| {
        generate_vision(model, &ids, pixel_values, &stop, sampling, on_token)
    })?;
    Ok(Generated {
        text,
        prompt_tokens: ids.len(),
        tokens: gen_ids.len(),
        stop: stop_reason,
    })
}

/// The model's end-of-sequence ids and the tokenizer's.
fn stop_ids(config: &LlamaConfig, t: &TextTokenizer) -> Vec<i64> {
    let mut stop: Vec<i64> = config.eos_token_ids.clone();
    stop.extend(t.eos_id().map(i64::from));
    stop
}

/// Run `generate` (a generation loop taking a per-token callback) and hand the decoded text to
/// `on_text` as it becomes printable: an incomplete UTF-8 sequence is held back until its last
/// byte arrives. The whole text, the generated ids and why generation stopped.
fn streamed(
    t: &TextTokenizer,
    mut on_text: impl FnMut(&str),
    generate: impl FnOnce(&mut dyn FnMut(i64) -> Result<()>) -> Result<(Vec<i64>, StopReason)>,
) -> Result<(String, Vec<i64>, StopReason)> {
    let mut out: Vec<u32> = Vec::new();
    let mut shown = 0usize;
    let mut decode_err = None;
    let (gen_ids, stop_reason) = generate(&mut |id| {
        out.push(id as u32);
        match t.decode(&out, true) {
            Ok(s) if !s.ends_with('\u{FFFD}') && s.len() > shown && s.is_char_boundary(shown) => {
                on_text(&s[shown..]);
                shown = s.len();
            }
            Ok(_) => {}
            Err(e) => decode_err = Some(e),
        }
        Ok(())
    })?;
    if let Some(e) = decode_err {
        return Err(tok_err(e));
    }
    let full: Vec<u32> = gen_ids.iter().map(|&i| i as u32).collect();
    let text = t.decode(&full, true).map_err(tok_err)?;
    if text.len() > shown && text.is_char_boundary(shown) {
        on_text(&text[shown..]);
    }
    Ok((text, gen_ids, stop_reason))
}
