//! Sequence classification on a decoder, as transformers' `*ForSequenceClassification` does it
//! for every decoder family (`GenericForSequenceClassification`): a `score` linear without bias
//! on the final hidden state of each row's rightmost token that is not `pad_token_id`.
//! Also the one interface both classifier kinds (encoder heads and decoder `score`) offer.

use ardpipe_adapters::AdaptableLinear;
use tch::{Kind, Tensor};

use super::bert::Bert;
use super::layers::seeded_normal;
use super::llama::Llama;
use crate::error::{ModelError, Result};
use crate::precision::autocast;

/// What `ardpipe classify` and the trainer need from any sequence classifier.
pub trait SequenceClassifier {
    /// Logits `[b, num_labels]` (f32) for ids `[b, t]` and a 1/0 attention mask `[b, t]`.
    fn classify(&self, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Result<Tensor>;
    /// The most tokens one sequence may have.
    fn max_tokens(&self) -> usize;
}

impl SequenceClassifier for Bert {
    fn classify(&self, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Result<Tensor> {
        Bert::classify(self, input_ids, attention_mask, train)
    }
    fn max_tokens(&self) -> usize {
        Bert::max_tokens(self)
    }
}

/// A decoder with transformers' sequence-classification head (`score`).
#[derive(Debug)]
pub struct DecoderClassifier {
    pub model: Llama,
    /// `score.weight` `[num_labels, hidden]`, trainable.
    pub score: Tensor,
    /// Whether `score` came from the checkpoint (a fine-tuned model) or is new.
    pub score_from_checkpoint: bool,
    /// config.json's `pad_token_id`: the token the head skips when it looks for the last one.
    pub pad_token_id: i64,
}

impl DecoderClassifier {
    /// Wrap a loaded decoder. `score`: the checkpoint's `[num_labels, hidden]` tensor, or `None`
    /// for a new one initialised as transformers does (normal(0, initializer_range)).
    pub fn new(
        model: Llama,
        num_labels: usize,
        score: Option<Tensor>,
        pad_token_id: i64,
        initializer_range: f64,
        seed: u64,
    ) -> Result<Self> {
        if num_labels < 2 {
            return Err(ModelError::Usage(format!(
                "a classifier needs at least 2 labels, got {num_labels}"
            )));
        }
        let d = model.config.hidden_size as i64;
        let shape = [num_labels as i64, d];
        let score_from_checkpoint = score.is_some();
        let score = match score {
            Some(t) if t.size() == shape => t,
            Some(t) => {
                return Err(ModelError::Usage(format!(
                    "score.weight is {:?}, expected {shape:?}",
                    t.size()
                )));
            }
            None => seeded_normal(&shape, initializer_range, seed),
        };
        let score = score
            .to_device(model.device)
            .to_kind(Kind::Float)
            .set_requires_grad(true);
        Ok(Self {
            model,
            score,
            score_from_checkpoint,
            pad_token_id,
        })
    }

    pub fn num_labels(&self) -> usize {
        self.score.size()[0] as usize
    }

    pub fn linears(&self) -> Vec<&AdaptableLinear> {
        self.model.linears()
    }

    pub fn linears_mut(&mut self) -> Vec<&mut AdaptableLinear> {
        self.model.linears_mut()
    }

    /// The head under transformers' name (what PEFT saves in `modules_to_save`).
    pub fn head_parameters(&self) -> Vec<(String, Tensor)> {
        vec![("score.weight".into(), self.score.shallow_clone())]
    }

    /// Each row's last token: the rightmost one that is not `pad_token_id` (transformers'
    /// rule, which serves right and left padding alike) and is not masked out (so a batch
    /// padded with another id still finds its last real token). A row of padding gives 0, as
    /// transformers' `argmax` does.
    pub fn last_token_index(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Tensor {
        let (_, t) = input_ids.size2().unwrap_or((0, 0));
        let dev = self.model.device;
        let real = input_ids
            .to_device(dev)
            .ne(self.pad_token_id)
            .logical_and(&attention_mask.to_device(dev).to_kind(Kind::Bool))
            .to_kind(Kind::Int64);
        (Tensor::arange(t, (Kind::Int64, dev)) * real).argmax(-1, false)
    }
}

impl SequenceClassifier for DecoderClassifier {
    fn classify(&self, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Result<Tensor> {
        if attention_mask.size() != input_ids.size() {
            return Err(ModelError::Usage(format!(
                "attention mask {:?} does not match the ids {:?}",
                attention_mask.size(),
                input_ids.size()
            )));
        }
        let _ac = autocast(self.model.device, self.model.precision.autocast);
        let h = self
            .model
            .last_hidden_state(input_ids, Some(attention_mask), train)?;
        let b = h.size()[0];
        let last = self.last_token_index(input_ids, attention_mask);
        let rows = Tensor::arange(b, (Kind::Int64, self.model.device));
        let pooled = h.index(&[Some(rows), Some(last)]);
        Ok(pooled
            .linear::<Tensor>(&self.score, None)
            .to_kind(Kind::Float))
    }

    fn max_tokens(&self) -> usize {
        self.model.config.max_position_embeddings
    }
}
