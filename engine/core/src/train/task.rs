//! The model a run trains, seen through its task: which linears adapters may take, which
//! head tensors train, and the task loss of one batch.

use ardpipe_adapters::AdaptableLinear;
use ardpipe_models::arch::{Bert, DecoderClassifier, Llama, PaliGemma};
use tch::{Kind, Reduction, Tensor};

use super::TrainError;

/// One batch on the model's device.
pub struct TensorBatch {
    /// `[b, t]` int64.
    pub input_ids: Tensor,
    /// `[b, t]` int64, 1 = token, 0 = padding.
    pub attention_mask: Tensor,
    /// Whether any position is padding (known on the host when the batch is built). Without
    /// padding a causal LM needs no mask: attention takes the fused causal path, which keeps
    /// no `[t, t]` mask and shares the KV heads inside the kernel.
    pub padded: bool,
    /// Classification: `[b]` class ids. Causal LM: `[b, t]` next-token targets, −100 ignored.
    pub labels: Tensor,
    /// Causal LM with several examples packed into one row: `[b, t]` int64, the example each
    /// token belongs to (1, 2, …; 0 = padding). Attention stays within an example and positions
    /// restart at each example's first token. `None`: one sequence per row.
    pub segments: Option<Tensor>,
    /// A vision-language model's images, one per row: `[b, channels, side, side]` f32, and
    /// each row's bidirectional prefix (image + BOS + prompt tokens), `[b]` int64.
    pub vision: Option<VisionInputs>,
    /// Tokens that count for throughput (non-padding).
    pub tokens: i64,
    /// This process's fraction of the global batch's examples (1 without data parallelism):
    /// the weight that makes the mean of all processes' losses the global batch's mean.
    pub share: f64,
}

impl TensorBatch {
    /// The mask a causal LM's forward pass needs: none when no position is padding.
    pub fn causal_mask(&self) -> Option<&Tensor> {
        self.padded.then_some(&self.attention_mask)
    }
}

/// What a vision-language batch adds to the token ids.
pub struct VisionInputs {
    pub pixel_values: Tensor,
    pub prefix_len: Tensor,
}

pub enum TaskModel {
    CausalLm(Box<Llama>),
    Classifier(Box<Bert>),
    /// A decoder with transformers' sequence-classification `score` head.
    DecoderClassifier(Box<DecoderClassifier>),
    /// A vision-language model (PaliGemma): images and prompts in, answers out.
    VisionLm(Box<PaliGemma>),
}

impl TaskModel {
    pub fn linears(&self) -> Vec<&AdaptableLinear> {
        match self {
            TaskModel::CausalLm(m) => m.linears(),
            TaskModel::Classifier(m) => m.linears(),
            TaskModel::DecoderClassifier(m) => m.linears(),
            TaskModel::VisionLm(m) => m.linears(),
        }
    }

    pub fn linears_mut(&mut self) -> Vec<&mut AdaptableLinear> {
        match self {
            TaskModel::CausalLm(m) => m.linears_mut(),
            TaskModel::Classifier(m) => m.linears_mut(),
            TaskModel::DecoderClassifier(m) => m.linears_mut(),
            TaskModel::VisionLm(m) => m.linears_mut(),
        }
    }

    /// The AdaLoRA adapters on the modules at `paths` (one allocator's block).
    pub fn adalora_adapters(
        &mut self,
        paths: &[String],
    ) -> Vec<&mut ardpipe_adapters::adalora::AdaLora> {
        self.linears_mut()
            .into_iter()
            .filter(|l| paths.contains(&l.path))
            .filter_map(|l| l.adapter.as_mut().and_then(|a| a.as_adalora_mut()))
            .collect()
    }

    /// Every base weight by transformers' name (the head excluded: see `head_parameters`).
    pub fn base_parameters(&self) -> Vec<(String, Tensor)> {
        match self {
            TaskModel::CausalLm(m) => m.base_parameters(),
            TaskModel::Classifier(m) => m.base_parameters(),
            TaskModel::DecoderClassifier(m) => m.model.base_parameters(),
            TaskModel::VisionLm(m) => m.base_parameters(),
        }
    }

    /// Tensors of the task head that train with the adapters (PEFT's `modules_to_save`).
    pub fn head_parameters(&self) -> Vec<(String, Tensor)> {
        match self {
            TaskModel::CausalLm(_) | TaskModel::VisionLm(_) => vec![],
            TaskModel::Classifier(m) => m.head_parameters(),
            TaskModel::DecoderClassifier(m) => m.head_parameters(),
        }
    }

    /// The head's modules as PEFT's `modules_to_save` names them (the modules whose saved
    /// copies replace the base's: `bert.pooler.dense` and `classifier`, RoBERTa's whole
    /// `classifier`, a decoder's `score`).
    pub fn modules_to_save(&self) -> Vec<String> {
        match self {
            TaskModel::CausalLm(_) | TaskModel::VisionLm(_) => vec![],
            TaskModel::Classifier(m) => m.modules_to_save(),
            TaskModel::DecoderClassifier(_) => vec!["score".into()],
        }
    }

    /// Logits for a batch: `[b, classes]` or `[b, t, vocab]`. Packed causal-LM rows
    /// (`segments`) attend within each example, positions restarting at its first token;
    /// a classifier refuses them (one label per row: a row cannot pack examples).
    pub fn logits(&self, batch: &TensorBatch, train: bool) -> Result<Tensor, TrainError> {
        self.check_batch(batch)?;
        Ok(match self {
            TaskModel::VisionLm(m) => {
                let v = batch.vision.as_ref().expect("checked above");
                m.forward(
                    &batch.input_ids,
                    &v.pixel_values,
                    Some(&batch.attention_mask),
                    &v.prefix_len,
                    train,
                )?
            }
            TaskModel::CausalLm(m) => match &batch.segments {
                Some(segments) => m.forward_packed(&batch.input_ids, segments, train)?,
                None => m.forward(&batch.input_ids, batch.causal_mask(), train)?,
            },
            TaskModel::Classifier(m) => {
                m.classify(&batch.input_ids, &batch.attention_mask, train)?
            }
            TaskModel::DecoderClassifier(m) => {
                use ardpipe_models::arch::SequenceClassifier;
                m.classify(&batch.input_ids, &batch.attention_mask, train)?
            }
        })
    }

    /// The training loss of a batch (dropout on), with the same value and gradients as
    /// [`TaskModel::loss`]'s but, for a language model, without the `[b, t, vocab]` logits:
    /// the decoder's final hidden states go through the fused chunked head + cross-entropy
    /// (`Llama::lm_loss`, engine/models/src/lm_loss.rs), which holds one chunk of rows'
    /// logits at a time. Classifiers' logits are small: they keep [`TaskModel::loss`].
    ///
    /// One difference: a batch with no label at all (every target −100) gives 0 with no
    /// gradient here, where the unfused mean over nothing is NaN.
    pub fn train_loss(&self, batch: &TensorBatch) -> Result<Tensor, TrainError> {
        self.check_batch(batch)?;
        let train = true;
        Ok(match self {
            TaskModel::CausalLm(m) => {
                let h = match &batch.segments {
                    Some(segments) => m.packed_hidden_state(&batch.input_ids, segments, train)?,
                    None => m.last_hidden_state(&batch.input_ids, batch.causal_mask(), train)?,
                };
                m.lm_loss(&h, &batch.labels)?
            }
            TaskModel::VisionLm(m) => {
                let v = batch.vision.as_ref().expect("checked above");
                let h = m.last_hidden_state(
                    &batch.input_ids,
                    &v.pixel_values,
                    Some(&batch.attention_mask),
                    &v.prefix_len,
                    train,
                )?;
                m.decoder.lm_loss(&h, &batch.labels)?
            }
            TaskModel::Classifier(_) | TaskModel::DecoderClassifier(_) => {
                self.loss(batch, train)?.0
            }
        })
    }

    /// What every forward of a batch refuses: packed rows on a model other than a causal LM,
    /// images on a model without a vision tower or a vision-language model without them.
    fn check_batch(&self, batch: &TensorBatch) -> Result<(), TrainError> {
        if batch.segments.is_some() && !matches!(self, TaskModel::CausalLm(_)) {
            return Err(TrainError::Other(
                "a classification batch came with packed segments: a classifier takes one \
                 example per row (one label each); pack only causal-LM data"
                    .into(),
            ));
        }
        if batch.vision.is_some() != matches!(self, TaskModel::VisionLm(_)) {
            return Err(TrainError::Other(
                if batch.vision.is_some() {
                    "a batch with images came to a model that reads no image: use a \
                     vision-language model (model_type paligemma) for a dataset that maps `image`"
                } else {
                    "a vision-language model needs an image with every example: map the \
                     dataset's `image` field"
                }
                .into(),
            ));
        }
        Ok(())
    }

    /// Mean task loss (cross-entropy) and the logits it came from.
    pub fn loss(&self, batch: &TensorBatch, train: bool) -> Result<(Tensor, Tensor), TrainError> {
        let logits = self.logits(batch, train)?;
        let loss = task_loss(&logits, &batch.labels);
        Ok((loss, logits))
    }
}

/// Cross-entropy in f32 whatever the compute precision; LM targets of −100 are ignored.
pub fn task_loss(logits: &Tensor, labels: &Tensor) -> Tensor {
    let logits = logits.to_kind(Kind::Float);
    if logits.dim() == 3 {
        let v = logits.size()[2];
        logits.view([-1, v]).cross_entropy_loss::<Tensor>(
            &labels.view([-1]),
            None,
            Reduction::Mean,
            -100,
            0.0,
        )
    } else {
        logits.cross_entropy_loss::<Tensor>(labels, None, Reduction::Mean, -100, 0.0)
    }
}
