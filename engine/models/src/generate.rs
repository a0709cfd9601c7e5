//! Text generation with a causal LM or a vision-language model (PaliGemma): greedy,
//! temperature, top-k and top-p sampling with a seed, a KV cache, stop at end-of-sequence, and
//! streaming of decoded text.

use ardpipe_data::shuffle::SplitMix64;
use tch::{Kind, Tensor};

use crate::arch::{KvCache, Llama, PaliGemma};
use crate::error::{ModelError, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// 0 = greedy.
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub seed: u64,
    pub max_tokens: usize,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            seed: 0,
            max_tokens: 64,
        }
    }
}

impl Sampling {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::Usage(m));
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad(format!(
                "temperature must be >= 0, got {}",
                self.temperature
            ));
        }
        if self.top_k == Some(0) {
            return bad("top-k must be at least 1".into());
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return bad(format!("top-p must be in (0, 1], got {p}"));
        }
        if self.temperature == 0.0 && (self.top_k.is_some() || self.top_p.is_some()) {
            return bad(
                "top-k/top-p need a temperature above 0 (temperature 0 is greedy decoding)".into(),
            );
        }
        Ok(())
    }
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndOfSequence,
    MaxTokens,
    ContextFull,
}

/// A seeded uniform generator (the data crate's SplitMix64): sampling is reproducible and
/// independent of libtorch's global RNG.
struct Rng(SplitMix64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0.next_f64()
    }
}

/// Pick the next token from logits `[vocab]`.
fn pick(logits: &Tensor, s: &Sampling, rng: &mut Rng) -> i64 {
    if s.temperature == 0.0 {
        return logits.argmax(-1, false).int64_value(&[]);
    }
    let scaled = logits.to_kind(Kind::Float) / s.temperature;
    let (sorted, idx) = scaled.sort(-1, true);
    let mut probs = sorted.softmax(-1, Kind::Float);
    let n = probs.size()[0];
    let mut keep = n;
    if let Some(k) = s.top_k {
        keep = keep.min(k as i64);
    }
    if let Some(p) = s.top_p {
        // The smallest prefix whose mass reaches p (at least one token).
        let cum = probs.cumsum(0, Kind::Float);
        let below = cum.lt(p).sum(Kind::Int64).int64_value(&[]);
        keep = keep.min(below + 1);
    }
    probs = probs.narrow(0, 0, keep);
    let probs: Vec<f32> =
        Vec::<f32>::try_from(&(&probs / probs.sum(Kind::Float))).unwrap_or_default();
    let u = rng.uniform();
    let mut acc = 0.0f64;
    for (i, p) in probs.iter().enumerate() {
        acc += *p as f64;
        if u < acc {
            return idx.int64_value(&[i as i64]);
        }
    }
    idx.int64_value(&[keep - 1])
}

/// Generate after `prompt` ids; `on_token` receives each new id as it is chosen (for
/// streaming). Returns the generated ids (the stop token excluded) and why it stopped.
pub fn generate(
    model: &Llama,
    prompt: &[i64],
    stop: &[i64],
    s: &Sampling,
    on_token: impl FnMut(i64) -> Result<()>,
) -> Result<(Vec<i64>, StopReason)> {
    let input = Tensor::from_slice(prompt).unsqueeze(0);
    let prefill = |cache: &mut KvCache| model.forward_cached(&input, cache);
    decode(model, prompt.len(), prefill, stop, s, on_token)
}

/// Generate the answer to a PaliGemma prompt: `prompt` is the image tokens, BOS, the question
/// and `\n` (what [`ardpipe_data::vision::VisionEncoder::prompt`] makes), all of it the
/// bidirectional prefix; `pixel_values` `[1, channels, side, side]` is its image. The prompt
/// runs once, filling the decoder's cache ([`PaliGemma::prefill`]); each new token then
/// attends causally to everything before it, as transformers' `generate` computes it.
pub fn generate_vision(
    model: &PaliGemma,
    prompt: &[i64],
    pixel_values: &Tensor,
    stop: &[i64],
    s: &Sampling,
    on_token: impl FnMut(i64) -> Result<()>,
) -> Result<(Vec<i64>, StopReason)> {
    let input = Tensor::from_slice(prompt).unsqueeze(0);
    let prefill = |cache: &mut KvCache| model.prefill(&input, pixel_values, cache);
    decode(&model.decoder, prompt.len(), prefill, stop, s, on_token)
}

/// The decoding loop: `prefill` runs the `prompt_len` prompt tokens into an empty cache and
/// returns logits `[1, t, vocab]` whose last position predicts the first new token; each chosen token is then fed to
/// `decoder` with the cache. Stops at a `stop` id, after `max_tokens`, or at the context.
fn decode(
    decoder: &Llama,
    prompt_len: usize,
    prefill: impl FnOnce(&mut KvCache) -> Result<Tensor>,
    stop: &[i64],
    s: &Sampling,
    mut on_token: impl FnMut(i64) -> Result<()>,
) -> Result<(Vec<i64>, StopReason)> {
    s.validate()?;
    if prompt_len == 0 {
        return Err(ModelError::Usage("the prompt encodes to no tokens".into()));
    }
    let ctx = decoder.config.max_position_embeddings;
    if prompt_len >= ctx {
        return Err(ModelError::Usage(format!(
            "the prompt has {prompt_len} tokens, the model's context is {ctx}"
        )));
    }
    let mut rng = Rng(SplitMix64::new(s.seed));
    let mut cache = KvCache::default();
    let mut out = Vec::new();
    let mut prefill = Some(prefill);
    // The token chosen last (set before it is read: the first step is the prefill).
    let mut input = Tensor::new();
    loop {
        if out.len() >= s.max_tokens {
            return Ok((out, StopReason::MaxTokens));
        }
        if prompt_len + out.len() >= ctx {
            return Ok((out, StopReason::ContextFull));
        }
        let logits = match prefill.take() {
            Some(p) => p(&mut cache)?,
            None => decoder.forward_cached(&input, &mut cache)?,
        };
        let last = logits.get(0).get(-1);
        let next = pick(&last, s, &mut rng);
        if stop.contains(&next) {
            return Ok((out, StopReason::EndOfSequence));
        }
        out.push(next);
        on_token(next)?;
        input = Tensor::from_slice(&[next]).unsqueeze(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_one_is_greedy_and_sampling_is_seeded() {
        let logits = Tensor::from_slice(&[0.1f32, 2.0, 1.9, -1.0]);
        let s = Sampling {
            temperature: 1.0,
            top_k: Some(1),
            ..Default::default()
        };
        assert_eq!(pick(&logits, &s, &mut Rng(SplitMix64::new(3))), 1);
        let s = Sampling {
            temperature: 1.0,
            top_p: Some(0.9),
            seed: 5,
            ..Default::default()
        };
        let a: Vec<i64> = (0..20)
            .map(|i| pick(&logits, &s, &mut Rng(SplitMix64::new(i))))
            .collect();
        let b: Vec<i64> = (0..20)
            .map(|i| pick(&logits, &s, &mut Rng(SplitMix64::new(i))))
            .collect();
        assert_eq!(a, b);
        // top-p 0.9 excludes the two unlikely tokens; both likely ones appear.
        assert!(a.iter().all(|&t| t == 1 || t == 2), "{a:?}");
        assert!(a.contains(&1) && a.contains(&2), "{a:?}");
    }

    #[test]
    fn bad_settings_are_refused() {
        let s = Sampling {
            top_k: Some(5),
            ..Default::default()
        };
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("temperature")
        );
        let s = Sampling {
            temperature: 1.0,
            top_p: Some(1.5),
            ..Default::default()
        };
        assert!(s.validate().is_err());
    }
}
