//! Streaming built-in metrics: updated batch by batch from tch tensors, never holding every
//! logit. Reductions (argmax, bincount, cross-entropy sums) run on the tensor's device; only a
//! handful of counts per batch cross to the host.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::{Kind, Reduction, Tensor};

/// Label value that marks "no target here" (padding, prompt tokens), as in PyTorch.
pub const IGNORE_INDEX: i64 = -100;

#[derive(Debug, thiserror::Error)]
pub enum MetricError {
    #[error("{metric}: {why}")]
    Shape { metric: &'static str, why: String },
    #[error(
        "{metric}: label {label} is outside 0..{classes}; the label vocabulary and the head disagree"
    )]
    LabelOutOfRange {
        metric: &'static str,
        label: i64,
        classes: usize,
    },
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

pub type Result<T, E = MetricError> = std::result::Result<T, E>;

/// The built-in metrics a pipeline can ask for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    Loss,
    Perplexity,
    Accuracy,
    MacroF1,
}

impl MetricKind {
    pub fn name(self) -> &'static str {
        match self {
            MetricKind::Loss => "loss",
            MetricKind::Perplexity => "perplexity",
            MetricKind::Accuracy => "accuracy",
            MetricKind::MacroF1 => "macro_f1",
        }
    }

    /// Whether a larger value is better (for early stopping and "best" checkpoints).
    pub fn higher_is_better(self) -> bool {
        matches!(self, MetricKind::Accuracy | MetricKind::MacroF1)
    }
}

/// Mean of per-batch losses, weighted by the number of examples (or tokens) in each batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MeanLoss {
    sum: f64,
    weight: f64,
}

impl MeanLoss {
    pub fn update(&mut self, batch_mean_loss: f64, weight: f64) {
        self.sum += batch_mean_loss * weight;
        self.weight += weight;
    }
    pub fn value(&self) -> Option<f64> {
        (self.weight > 0.0).then(|| self.sum / self.weight)
    }
}

/// Token-level negative log-likelihood, accumulated as a sum: perplexity = exp(total NLL /
/// tokens), the token mean over the whole evaluation (not a mean of batch perplexities).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenNll {
    nll_sum: f64,
    tokens: u64,
}

impl TokenNll {
    /// `logits`: [..., V]; `targets`: [...] (same leading shape) with [`IGNORE_INDEX`] where
    /// there is nothing to predict. Targets must already be aligned to positions (a causal LM
    /// shifts them by one before calling).
    pub fn update(&mut self, logits: &Tensor, targets: &Tensor) -> Result<()> {
        let shape = logits.size();
        let Some((&v, lead)) = shape.split_last() else {
            return Err(MetricError::Shape {
                metric: "perplexity",
                why: "logits are a scalar; expected [..., vocabulary]".into(),
            });
        };
        if targets.size() != lead {
            return Err(MetricError::Shape {
                metric: "perplexity",
                why: format!(
                    "logits {shape:?} and targets {:?} disagree: targets must have the logits' shape without the last axis",
                    targets.size()
                ),
            });
        }
        let flat_logits = logits.f_reshape([-1, v])?.f_to_kind(Kind::Float)?;
        let flat_targets = targets.f_reshape([-1])?.f_to_kind(Kind::Int64)?;
        let nll = flat_logits.f_cross_entropy_loss::<Tensor>(
            &flat_targets,
            None,
            Reduction::Sum,
            IGNORE_INDEX,
            0.0,
        )?;
        let count = flat_targets.f_ne(IGNORE_INDEX)?.f_sum(Kind::Int64)?;
        let both = Tensor::f_stack(
            &[nll.f_to_kind(Kind::Double)?, count.f_to_kind(Kind::Double)?],
            0,
        )?
        .f_to_device(tch::Device::Cpu)?;
        let host = Vec::<f64>::try_from(&both)?;
        self.nll_sum += host[0];
        self.tokens += host[1] as u64;
        Ok(())
    }

    pub fn mean_nll(&self) -> Option<f64> {
        (self.tokens > 0).then(|| self.nll_sum / self.tokens as f64)
    }
    pub fn perplexity(&self) -> Option<f64> {
        self.mean_nll().map(f64::exp)
    }
    pub fn tokens(&self) -> u64 {
        self.tokens
    }
}

/// Per-class true positive / false positive / false negative counts: enough for accuracy,
/// per-class precision/recall and macro-F1, at O(classes) memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassCounts {
    tp: Vec<u64>,
    fp: Vec<u64>,
    fn_: Vec<u64>,
}

impl ClassCounts {
    pub fn new(classes: usize) -> ClassCounts {
        ClassCounts {
            tp: vec![0; classes],
            fp: vec![0; classes],
            fn_: vec![0; classes],
        }
    }

    pub fn classes(&self) -> usize {
        self.tp.len()
    }

    /// `logits`: [N, C]; `labels`: [N] (entries equal to [`IGNORE_INDEX`] are skipped).
    pub fn update(&mut self, logits: &Tensor, labels: &Tensor) -> Result<()> {
        let c = self.classes();
        let shape = logits.size();
        if shape.len() != 2 || shape[1] as usize != c {
            return Err(MetricError::Shape {
                metric: "accuracy/macro_f1",
                why: format!("logits are {shape:?}; expected [batch, {c}]"),
            });
        }
        if labels.size() != [shape[0]] {
            return Err(MetricError::Shape {
                metric: "accuracy/macro_f1",
                why: format!("labels are {:?}; expected [{}]", labels.size(), shape[0]),
            });
        }
        let labels = labels.f_to_kind(Kind::Int64)?;
        let keep = labels.f_ne(IGNORE_INDEX)?;
        let labels = labels.f_masked_select(&keep)?;
        let pred = logits.f_argmax(-1, false)?.f_masked_select(&keep)?;
        if labels.numel() == 0 {
            return Ok(());
        }
        let (lo, hi) = (
            labels.f_min()?.int64_value(&[]),
            labels.f_max()?.int64_value(&[]),
        );
        for bad in [lo, hi] {
            if bad < 0 || bad as usize >= c {
                return Err(MetricError::LabelOutOfRange {
                    metric: "accuracy/macro_f1",
                    label: bad,
                    classes: c,
                });
            }
        }
        let n = c as i64;
        let correct = pred.f_eq_tensor(&labels)?;
        let tp = labels
            .f_masked_select(&correct)?
            .f_bincount::<Tensor>(None, n)?;
        let predicted = pred.f_bincount::<Tensor>(None, n)?;
        let actual = labels.f_bincount::<Tensor>(None, n)?;
        // One [3, C] copy to the host per batch.
        let counts = Tensor::f_stack(&[&tp, &predicted, &actual], 0)?
            .f_to_device(tch::Device::Cpu)?
            .f_reshape([-1])?;
        let host = Vec::<i64>::try_from(&counts)?;
        for k in 0..c {
            let (t, p, a) = (host[k] as u64, host[c + k] as u64, host[2 * c + k] as u64);
            self.tp[k] += t;
            self.fp[k] += p - t;
            self.fn_[k] += a - t;
        }
        Ok(())
    }

    pub fn total(&self) -> u64 {
        self.tp.iter().sum::<u64>() + self.fn_.iter().sum::<u64>()
    }

    pub fn accuracy(&self) -> Option<f64> {
        let total = self.total();
        (total > 0).then(|| self.tp.iter().sum::<u64>() as f64 / total as f64)
    }

    /// Unweighted mean of per-class F1 over the classes that occur in the labels or the
    /// predictions (scikit-learn's `f1_score(average="macro")` with its default labels).
    pub fn macro_f1(&self) -> Option<f64> {
        let mut sum = 0.0;
        let mut n = 0;
        for k in 0..self.classes() {
            let denom = 2 * self.tp[k] + self.fp[k] + self.fn_[k];
            if denom > 0 {
                sum += 2.0 * self.tp[k] as f64 / denom as f64;
                n += 1;
            }
        }
        (n > 0).then(|| sum / n as f64)
    }

    /// The most frequent true class's share: the majority-class baseline to compare against.
    pub fn majority_baseline(&self) -> Option<f64> {
        let total = self.total();
        let support = (0..self.classes()).map(|k| self.tp[k] + self.fn_[k]);
        (total > 0).then(|| support.max().unwrap_or(0) as f64 / total as f64)
    }
}

/// The metrics of one evaluation pass, producing named scalars.
#[derive(Debug, Clone)]
pub struct MetricSet {
    kinds: Vec<MetricKind>,
    loss: MeanLoss,
    nll: TokenNll,
    counts: Option<ClassCounts>,
}

impl MetricSet {
    /// `classes`: the number of labels for classification metrics (ignored otherwise).
    pub fn new(kinds: &[MetricKind], classes: Option<usize>) -> Result<MetricSet> {
        let needs_counts = kinds
            .iter()
            .any(|k| matches!(k, MetricKind::Accuracy | MetricKind::MacroF1));
        let counts = match (needs_counts, classes) {
            (false, _) => None,
            (true, Some(c)) if c >= 2 => Some(ClassCounts::new(c)),
            (true, _) => {
                return Err(MetricError::Shape {
                    metric: "accuracy/macro_f1",
                    why: "classification metrics need a classification head with at least 2 classes; use loss or perplexity for a language model".into(),
                });
            }
        };
        let mut kinds = kinds.to_vec();
        kinds.sort();
        kinds.dedup();
        Ok(MetricSet {
            kinds,
            loss: MeanLoss::default(),
            nll: TokenNll::default(),
            counts,
        })
    }

    /// A classification batch: `logits` [N, C], `labels` [N], and the batch's mean loss.
    pub fn update_classification(
        &mut self,
        logits: &Tensor,
        labels: &Tensor,
        loss: f64,
    ) -> Result<()> {
        let n = labels
            .f_ne(IGNORE_INDEX)?
            .f_sum(Kind::Int64)?
            .int64_value(&[]);
        self.loss.update(loss, n as f64);
        if let Some(c) = &mut self.counts {
            c.update(logits, labels)?;
        }
        Ok(())
    }

    /// A language-model batch: `logits` [B, T, V], `targets` [B, T] already shifted. The loss is
    /// the token mean, so `loss` and `perplexity` agree: perplexity = exp(loss).
    pub fn update_lm(&mut self, logits: &Tensor, targets: &Tensor) -> Result<()> {
        let before = self.nll.clone();
        self.nll.update(logits, targets)?;
        let tokens = self.nll.tokens - before.tokens;
        if tokens > 0 {
            self.loss.update(
                (self.nll.nll_sum - before.nll_sum) / tokens as f64,
                tokens as f64,
            );
        }
        Ok(())
    }

    /// Named scalars, e.g. `{"accuracy": 0.61, "loss": 1.2, "macro_f1": 0.55}`; metrics with
    /// nothing counted yet are absent rather than 0.
    pub fn compute(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for k in &self.kinds {
            let v = match k {
                MetricKind::Loss => self.loss.value(),
                MetricKind::Perplexity => self.nll.perplexity(),
                MetricKind::Accuracy => self.counts.as_ref().and_then(ClassCounts::accuracy),
                MetricKind::MacroF1 => self.counts.as_ref().and_then(ClassCounts::macro_f1),
            };
            if let Some(v) = v {
                out.insert(k.name().to_string(), v);
            }
        }
        out
    }

    pub fn class_counts(&self) -> Option<&ClassCounts> {
        self.counts.as_ref()
    }
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MetricsRecord {
    pub step: u64,
    /// `train` or `eval` (or a dataset split name).
    pub split: String,
    pub values: BTreeMap<String, f64>,
}

/// One line of `ranks.jsonl`: α and effective rank of every unit at a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RankRecord {
    pub step: u64,
    pub units: Vec<UnitRank>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UnitRank {
    /// Module kind, e.g. `query`, `value`, `q_proj`, `mlp.up_proj`.
    pub module: String,
    pub layer: u32,
    /// Head (or MLP group) index within the module.
    pub head: u32,
    pub alpha: f64,
    pub rank: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t2(rows: &[[f32; 3]]) -> Tensor {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_slice(&flat).reshape([rows.len() as i64, 3])
    }

    #[test]
    fn accuracy_and_macro_f1_match_hand_counts_across_batches() {
        // y_true = [0,0,1,1,2,2,0], y_pred = [0,1,1,1,0,2,0]  (batches of 4 and 3)
        // class 0: tp 2, fp 1, fn 1 → F1 = 4/6; class 1: tp 2, fp 1, fn 0 → 4/5;
        // class 2: tp 1, fp 0, fn 1 → 2/3. macro = (2/3 + 4/5 + 2/3) / 3; accuracy 5/7.
        let mut c = ClassCounts::new(3);
        c.update(
            &t2(&[[9., 0., 0.], [0., 9., 0.], [0., 9., 0.], [0., 9., 0.]]),
            &Tensor::from_slice(&[0i64, 0, 1, 1]),
        )
        .unwrap();
        c.update(
            &t2(&[[9., 0., 0.], [0., 0., 9.], [9., 0., 0.]]),
            &Tensor::from_slice(&[2i64, 2, 0]),
        )
        .unwrap();
        assert_eq!(c.accuracy().unwrap(), 5.0 / 7.0);
        let expect = (2.0 / 3.0 + 4.0 / 5.0 + 2.0 / 3.0) / 3.0;
        assert!((c.macro_f1().unwrap() - expect).abs() < 1e-12);
        assert_eq!(c.majority_baseline().unwrap(), 3.0 / 7.0);
    }

    #[test]
    fn absent_classes_do_not_count_in_macro_f1_and_ignored_labels_are_skipped() {
        let mut c = ClassCounts::new(3);
        c.update(
            &t2(&[[9., 0., 0.], [0., 9., 0.], [0., 0., 9.]]),
            &Tensor::from_slice(&[0i64, 1, IGNORE_INDEX]),
        )
        .unwrap();
        // Class 2 neither labelled nor predicted (the prediction was on an ignored row).
        assert_eq!(c.macro_f1().unwrap(), 1.0);
        assert_eq!(c.total(), 2);
    }

    #[test]
    fn bad_shapes_and_labels_are_errors_not_panics() {
        let mut c = ClassCounts::new(3);
        let e = c
            .update(
                &Tensor::zeros([2, 4], (Kind::Float, tch::Device::Cpu)),
                &Tensor::from_slice(&[0i64, 1]),
            )
            .unwrap_err();
        assert!(e.to_string().contains("expected [batch, 3]"), "{e}");
        let e = c
            .update(&t2(&[[1., 0., 0.]]), &Tensor::from_slice(&[5i64]))
            .unwrap_err();
        assert!(e.to_string().contains("label 5 is outside 0..3"), "{e}");
        let mut n = TokenNll::default();
        let e = n
            .update(
                &Tensor::zeros([2, 3, 5], (Kind::Float, tch::Device::Cpu)),
                &Tensor::zeros([2, 4], (Kind::Int64, tch::Device::Cpu)),
            )
            .unwrap_err();
        assert!(e.to_string().contains("disagree"), "{e}");
        assert!(MetricSet::new(&[MetricKind::Accuracy], None).is_err());
    }

    #[test]
    fn perplexity_is_exp_of_the_token_mean_nll() {
        // Uniform logits over V = 4: NLL = ln 4 per token, perplexity exactly 4.
        let mut n = TokenNll::default();
        let logits = Tensor::zeros([2, 3, 4], (Kind::Float, tch::Device::Cpu));
        let targets = Tensor::from_slice(&[0i64, 1, IGNORE_INDEX, 3, 2, 1]).reshape([2, 3]);
        n.update(&logits, &targets).unwrap();
        assert_eq!(n.tokens(), 5);
        assert!((n.perplexity().unwrap() - 4.0).abs() < 1e-5);
        // A second batch with a sure prediction (NLL ≈ 0) halves the mean NLL in log space.
        let sure = Tensor::full([1, 5, 4], -1e4, (Kind::Float, tch::Device::Cpu));
        let _ = sure.narrow(2, 0, 1).fill_(0.0);
        n.update(
            &sure,
            &Tensor::zeros([1, 5], (Kind::Int64, tch::Device::Cpu)),
        )
        .unwrap();
        assert!((n.mean_nll().unwrap() - 4f64.ln() / 2.0).abs() < 1e-5);
    }

    #[test]
    fn metric_set_reports_named_scalars() {
        let mut m = MetricSet::new(
            &[
                MetricKind::MacroF1,
                MetricKind::Loss,
                MetricKind::Accuracy,
                MetricKind::Loss,
            ],
            Some(3),
        )
        .unwrap();
        assert!(m.compute().is_empty());
        m.update_classification(
            &t2(&[[9., 0., 0.], [0., 9., 0.]]),
            &Tensor::from_slice(&[0i64, 0]),
            1.0,
        )
        .unwrap();
        m.update_classification(&t2(&[[0., 0., 9.]]), &Tensor::from_slice(&[2i64]), 4.0)
            .unwrap();
        let v = m.compute();
        assert_eq!(
            v.keys().collect::<Vec<_>>(),
            ["accuracy", "loss", "macro_f1"]
        );
        assert_eq!(v["accuracy"], 2.0 / 3.0);
        assert_eq!(v["loss"], 2.0); // (1.0·2 + 4.0·1) / 3
        // class 0: tp1 fn1 → 2/3; class 1: fp1 → 0; class 2: tp1 → 1.
        assert!((v["macro_f1"] - (2.0 / 3.0 + 0.0 + 1.0) / 3.0).abs() < 1e-12);

        let mut lm = MetricSet::new(&[MetricKind::Loss, MetricKind::Perplexity], None).unwrap();
        lm.update_lm(
            &Tensor::zeros([1, 2, 8], (Kind::Float, tch::Device::Cpu)),
            &Tensor::from_slice(&[1i64, 2]).reshape([1, 2]),
        )
        .unwrap();
        let v = lm.compute();
        assert!((v["perplexity"] - 8.0).abs() < 1e-4);
        assert!((v["loss"].exp() - v["perplexity"]).abs() < 1e-9);
    }
}
