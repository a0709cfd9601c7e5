//! A metric plugin: the multi-class Matthews correlation coefficient (Gorodkin's R_K), computed
//! from a confusion matrix that is updated batch by batch (no logits are kept).
//!
//! With C the K×K confusion matrix (rows: true class, columns: predicted), t_k its row sums,
//! p_k its column sums, c its trace and s its total:
//!
//!   MCC = (c·s − Σ_k p_k·t_k) / sqrt((s² − Σ_k p_k²) · (s² − Σ_k t_k²))
//!
//! and 0 when the denominator is 0 (every prediction or every label in one class), as scikit-learn does.
//!
//! Options: `num_classes` (fixes K; otherwise the logits' width, or the largest id seen + 1),
//! `ignore_label` (default -100: positions with this label are skipped), `confusion_matrix`
//! (default false: also report every cell as `confusion.<true>.<predicted>`).

mod confusion;

use ardpipe_plugin_sdk::{
    Describe, Metric, OptionSpec, Options, PluginError, Predictions, Scalar, TensorView, capability,
};

pub use confusion::Confusion;

pub struct MccMetric {
    confusion: Confusion,
    ignore_label: i64,
    report_cells: bool,
}

impl Describe for MccMetric {
    const NAME: &'static str = "mcc";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Multi-class Matthews correlation coefficient, optionally with the confusion matrix";
    const CAPABILITIES: &'static [&'static str] = &[capability::LOGITS, capability::TOKEN_IDS];
    const OPTIONS: &'static [OptionSpec] = &[
        OptionSpec::optional(
            "num_classes",
            "integer",
            None,
            "number of classes (default: the logits' width, or the largest id seen + 1)",
        ),
        OptionSpec::optional(
            "ignore_label",
            "integer",
            Some("-100"),
            "label value of positions to skip (padding)",
        ),
        OptionSpec::optional(
            "confusion_matrix",
            "boolean",
            Some("false"),
            "also report each cell as `confusion.<true>.<predicted>`",
        ),
    ];
}

impl Metric for MccMetric {
    fn create(options: &Options) -> Result<Self, PluginError> {
        let classes = match options.u64("num_classes")? {
            Some(0) | Some(1) => {
                return Err(PluginError::option(
                    "num_classes",
                    "needs at least 2 classes for a correlation",
                ));
            }
            Some(k) if k > 100_000 => {
                return Err(PluginError::option(
                    "num_classes",
                    format!(
                        "{k} classes would need a {k}×{k} matrix; use a token-level metric instead"
                    ),
                ));
            }
            other => other.map(|k| k as usize),
        };
        Ok(MccMetric {
            confusion: Confusion::new(classes),
            ignore_label: options.i64("ignore_label")?.unwrap_or(-100),
            report_cells: options.bool("confusion_matrix")?.unwrap_or(false),
        })
    }

    fn update(
        &mut self,
        predictions: Predictions<'_>,
        labels: TensorView<'_, i64>,
    ) -> Result<(), PluginError> {
        let predicted: Vec<i64> = match &predictions {
            Predictions::Logits(logits) => {
                let (lead, width) = logits.shape.split_at(logits.shape.len().saturating_sub(1));
                if lead != labels.shape.as_slice() {
                    return Err(PluginError::new(format!(
                        "logits of shape {:?} need labels of shape {lead:?}, got {:?}",
                        logits.shape, labels.shape
                    )));
                }
                let width = width.first().copied().unwrap_or(0);
                self.confusion.fix_width(width)?;
                logits.rows().map(argmax).collect()
            }
            Predictions::Ids(ids) => {
                if ids.shape != labels.shape {
                    return Err(PluginError::new(format!(
                        "predicted ids of shape {:?} need labels of the same shape, got {:?}",
                        ids.shape, labels.shape
                    )));
                }
                ids.data.to_vec()
            }
        };
        for (&truth, &guess) in labels.data.iter().zip(&predicted) {
            if truth != self.ignore_label {
                self.confusion.add(truth, guess)?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<Vec<Scalar>, PluginError> {
        if self.confusion.total() == 0 {
            return Err(PluginError::new(
                "no labelled examples were seen (every label was the ignore label, or no batch came)",
            ));
        }
        let mut out = vec![Scalar::new("mcc", self.confusion.mcc())];
        if self.report_cells {
            let k = self.confusion.classes();
            for t in 0..k {
                for p in 0..k {
                    out.push(Scalar::new(
                        format!("confusion.{t}.{p}"),
                        self.confusion.get(t, p) as f64,
                    ));
                }
            }
        }
        Ok(out)
    }
}

/// Index of the largest score (the first one on ties; NaN never wins).
fn argmax(row: &[f32]) -> i64 {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] || row[best].is_nan() {
            best = i;
        }
    }
    best as i64
}

ardpipe_plugin_sdk::export_plugin!(metric = MccMetric);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn metric(options: serde_json::Value) -> MccMetric {
        MccMetric::create(&Options::from_json(options).unwrap()).unwrap()
    }

    fn ids(data: &[i64]) -> TensorView<'_, i64> {
        TensorView {
            data,
            shape: vec![data.len()],
        }
    }

    // Hand computation: labels [0,0,1,1,2,2], predictions [0,1,1,1,2,0].
    // C = [[1,1,0],[0,2,0],[1,0,1]]; c = 4, s = 6; t = [2,2,2]; p = [2,3,1].
    // Σp·t = 4+6+2 = 12 → numerator 4·6 − 12 = 12.
    // s² − Σp² = 36 − 14 = 22; s² − Σt² = 36 − 12 = 24 → MCC = 12 / sqrt(528) = 0.522232967867...
    const HAND_MCC: f64 = 0.522_232_967_867_093_6;

    #[test]
    fn matches_the_hand_computed_value_from_ids_in_two_batches() {
        let mut m = metric(json!({}));
        m.update(Predictions::Ids(ids(&[0, 1, 1])), ids(&[0, 0, 1]))
            .unwrap();
        m.update(Predictions::Ids(ids(&[1, 2, 0])), ids(&[1, 2, 2]))
            .unwrap();
        let out = m.finish().unwrap();
        assert_eq!(out.len(), 1);
        assert!((out[0].value - HAND_MCC).abs() < 1e-12, "{out:?}");
    }

    #[test]
    fn logits_are_argmaxed_and_ignored_labels_skipped() {
        let mut m = metric(json!({"confusion_matrix": true}));
        #[rustfmt::skip]
        let logits = [
            0.9f32, 0.1, 0.0,   0.2, 0.7, 0.1,   0.0, 0.3, 0.1,
            0.1, 0.8, 0.1,      0.0, 0.0, 5.0,   3.0, 1.0, 2.0,
            9.0, 0.0, 0.0, // ignored
        ];
        let labels = [0, 0, 1, 1, 2, 2, -100];
        let view = TensorView {
            data: &logits[..],
            shape: vec![7, 3],
        };
        m.update(Predictions::Logits(view), ids(&labels)).unwrap();
        let out = m.finish().unwrap();
        assert!((out[0].value - HAND_MCC).abs() < 1e-12, "{out:?}");
        let cell = |name: &str| out.iter().find(|s| s.name == name).unwrap().value;
        assert_eq!(cell("confusion.2.0"), 1.0);
        assert_eq!(cell("confusion.1.1"), 2.0);
        assert_eq!(out.len(), 1 + 9);
    }

    #[test]
    fn perfect_and_constant_predictions() {
        let mut m = metric(json!({}));
        m.update(Predictions::Ids(ids(&[0, 1, 2, 1])), ids(&[0, 1, 2, 1]))
            .unwrap();
        assert_eq!(m.finish().unwrap()[0].value, 1.0);
        let mut m = metric(json!({}));
        m.update(Predictions::Ids(ids(&[1, 1, 1])), ids(&[0, 1, 2]))
            .unwrap();
        assert_eq!(m.finish().unwrap()[0].value, 0.0);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut m = metric(json!({"num_classes": 2}));
        let e = m
            .update(Predictions::Ids(ids(&[0, 5])), ids(&[0, 1]))
            .unwrap_err();
        assert!(e.message.contains("5"), "{e}");
        let e = m
            .update(Predictions::Ids(ids(&[0])), ids(&[0, 1]))
            .unwrap_err();
        assert!(e.message.contains("shape"), "{e}");
        let e = MccMetric::create(&Options::from_json(json!({"num_classes": 1})).unwrap())
            .err()
            .unwrap();
        assert_eq!(e.key.as_deref(), Some("num_classes"));
        assert!(metric(json!({})).finish().is_err());
    }
}
