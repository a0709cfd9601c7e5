//! Schedules for learning rates and the regularisation weights λ, β, γ (DESIGN.md, "Objective").
//!
//! A [`Schedule`] is what a pipeline says ("warm up over 10% of training, then cosine to 0");
//! [`Schedule::resolve`] turns it into a [`ResolvedSchedule`] with concrete step numbers once the
//! plan knows `total_steps` and `steps_per_epoch`, and that is what the plan prints and the
//! trainer evaluates.
//!
//! Convention: `step` is the number of optimizer steps already taken, so the first update uses
//! the value at step 0 and training ends at step `total_steps`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A point in training, in the unit the pipeline author thinks in.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    /// An optimizer step count.
    Steps(u64),
    /// Epochs (may be fractional: 0.5 = half-way through the first epoch).
    Epochs(f64),
    /// A fraction of the whole training run, 0.0 to 1.0.
    Fraction(f64),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Steps(s) => write!(f, "{s} steps"),
            Position::Epochs(e) => write!(f, "{e} epochs"),
            Position::Fraction(x) => write!(f, "{}% of training", x * 100.0),
        }
    }
}

/// A value over training, as written in a pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    Constant {
        value: f64,
    },
    /// `from` until `start`, a straight line to `to` at `end`, `to` after.
    Linear {
        from: f64,
        to: f64,
        start: Position,
        end: Position,
    },
    /// Half a cosine from `from` (at `start`) to `to` (at `end`).
    Cosine {
        from: f64,
        to: f64,
        start: Position,
        end: Position,
    },
    /// A linear ramp from 0 at step 0 to `to` at `over`, then constant.
    WarmUp {
        to: f64,
        over: Position,
    },
    /// `values[0]` before `boundaries[0]`, `values[i]` from `boundaries[i-1]` on.
    Step {
        values: Vec<f64>,
        boundaries: Vec<Position>,
    },
    /// Linear interpolation between `(position, value)` points; flat outside them.
    Piecewise {
        points: Vec<(Position, f64)>,
    },
}

/// Why a schedule cannot be used for this run, with what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "{what} is at {position} = step {step}, after training ends (step {total}); shorten the schedule or train longer"
    )]
    AfterEnd {
        what: String,
        position: String,
        step: u64,
        total: u64,
    },
    #[error("{what} is {position}: {why}")]
    BadPosition {
        what: String,
        position: String,
        why: String,
    },
    #[error("{what} must come after {before_what} (steps {before} and {after}); swap or move them")]
    NotIncreasing {
        what: String,
        before_what: String,
        before: u64,
        after: u64,
    },
    #[error("{0}")]
    Shape(String),
    #[error("{what} is {value}, which is not a finite number")]
    NotFinite { what: String, value: f64 },
    #[error(
        "this schedule is given in epochs but the number of steps per epoch is unknown (0); give it in steps or fractions of training"
    )]
    NoEpochLength,
}

/// A schedule with every position as a concrete step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ResolvedSchedule {
    Constant {
        value: f64,
    },
    Linear {
        from: f64,
        to: f64,
        start: u64,
        end: u64,
    },
    Cosine {
        from: f64,
        to: f64,
        start: u64,
        end: u64,
    },
    WarmUp {
        to: f64,
        over: u64,
    },
    Step {
        values: Vec<f64>,
        boundaries: Vec<u64>,
    },
    Piecewise {
        points: Vec<(u64, f64)>,
    },
}

struct Resolver {
    total: u64,
    per_epoch: u64,
}

impl Resolver {
    fn step(&self, what: &str, p: Position) -> Result<u64, ScheduleError> {
        let bad = |why: &str| ScheduleError::BadPosition {
            what: what.to_string(),
            position: p.to_string(),
            why: why.to_string(),
        };
        let step = match p {
            Position::Steps(s) => s,
            Position::Epochs(e) => {
                if !e.is_finite() || e < 0.0 {
                    return Err(bad("epochs must be a finite number ≥ 0"));
                }
                if self.per_epoch == 0 {
                    return Err(ScheduleError::NoEpochLength);
                }
                (e * self.per_epoch as f64).round() as u64
            }
            Position::Fraction(x) => {
                if !(0.0..=1.0).contains(&x) {
                    return Err(bad("a fraction of training must be between 0 and 1"));
                }
                (x * self.total as f64).round() as u64
            }
        };
        if step > self.total {
            return Err(ScheduleError::AfterEnd {
                what: what.to_string(),
                position: p.to_string(),
                step,
                total: self.total,
            });
        }
        Ok(step)
    }
}

fn finite(what: &str, v: f64) -> Result<f64, ScheduleError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(ScheduleError::NotFinite {
            what: what.to_string(),
            value: v,
        })
    }
}

fn ordered(what: &str, before_what: &str, before: u64, after: u64) -> Result<(), ScheduleError> {
    if after > before {
        Ok(())
    } else {
        Err(ScheduleError::NotIncreasing {
            what: what.to_string(),
            before_what: before_what.to_string(),
            before,
            after,
        })
    }
}

impl Schedule {
    pub fn constant(value: f64) -> Schedule {
        Schedule::Constant { value }
    }

    /// Concrete steps for a run of `total_steps` optimizer steps, `steps_per_epoch` per epoch
    /// (0 when unknown, e.g. a streaming dataset; then epoch positions are an error).
    pub fn resolve(
        &self,
        total_steps: u64,
        steps_per_epoch: u64,
    ) -> Result<ResolvedSchedule, ScheduleError> {
        let r = Resolver {
            total: total_steps,
            per_epoch: steps_per_epoch,
        };
        Ok(match self {
            Schedule::Constant { value } => ResolvedSchedule::Constant {
                value: finite("the constant value", *value)?,
            },
            Schedule::Linear {
                from,
                to,
                start,
                end,
            }
            | Schedule::Cosine {
                from,
                to,
                start,
                end,
            } => {
                let (from, to) = (finite("`from`", *from)?, finite("`to`", *to)?);
                let start = r.step("the start", *start)?;
                let end = r.step("the end", *end)?;
                ordered("the end", "the start", start, end)?;
                if matches!(self, Schedule::Linear { .. }) {
                    ResolvedSchedule::Linear {
                        from,
                        to,
                        start,
                        end,
                    }
                } else {
                    ResolvedSchedule::Cosine {
                        from,
                        to,
                        start,
                        end,
                    }
                }
            }
            Schedule::WarmUp { to, over } => {
                let over = r.step("the end of warm-up", *over)?;
                ResolvedSchedule::WarmUp {
                    to: finite("`to`", *to)?,
                    over,
                }
            }
            Schedule::Step { values, boundaries } => {
                if values.len() != boundaries.len() + 1 {
                    return Err(ScheduleError::Shape(format!(
                        "a step schedule needs one more value than boundaries (a value before the first boundary and one after each); it has {} values and {} boundaries",
                        values.len(),
                        boundaries.len()
                    )));
                }
                for (i, v) in values.iter().enumerate() {
                    finite(&format!("value {}", i + 1), *v)?;
                }
                let mut steps = Vec::with_capacity(boundaries.len());
                for (i, b) in boundaries.iter().enumerate() {
                    let s = r.step(&format!("boundary {}", i + 1), *b)?;
                    if let Some(&prev) = steps.last() {
                        ordered(
                            &format!("boundary {}", i + 1),
                            &format!("boundary {i}"),
                            prev,
                            s,
                        )?;
                    }
                    steps.push(s);
                }
                ResolvedSchedule::Step {
                    values: values.clone(),
                    boundaries: steps,
                }
            }
            Schedule::Piecewise { points } => {
                if points.is_empty() {
                    return Err(ScheduleError::Shape(
                        "a piecewise schedule needs at least one (position, value) point".into(),
                    ));
                }
                let mut out: Vec<(u64, f64)> = Vec::with_capacity(points.len());
                for (i, (p, v)) in points.iter().enumerate() {
                    let s = r.step(&format!("point {}", i + 1), *p)?;
                    let v = finite(&format!("the value of point {}", i + 1), *v)?;
                    if let Some(&(prev, _)) = out.last() {
                        ordered(&format!("point {}", i + 1), &format!("point {i}"), prev, s)?;
                    }
                    out.push((s, v));
                }
                ResolvedSchedule::Piecewise { points: out }
            }
        })
    }
}

fn lerp(a: f64, b: f64, t: f64) -> f64 {
    a + (b - a) * t
}

/// Progress of `step` through `[start, end]`, clamped to [0, 1]; `end > start` is guaranteed.
fn progress(step: u64, start: u64, end: u64) -> f64 {
    if step <= start {
        0.0
    } else if step >= end {
        1.0
    } else {
        (step - start) as f64 / (end - start) as f64
    }
}

impl ResolvedSchedule {
    /// The value for the update made after `step` optimizer steps.
    pub fn value_at(&self, step: u64) -> f64 {
        match self {
            ResolvedSchedule::Constant { value } => *value,
            ResolvedSchedule::Linear {
                from,
                to,
                start,
                end,
            } => lerp(*from, *to, progress(step, *start, *end)),
            ResolvedSchedule::Cosine {
                from,
                to,
                start,
                end,
            } => {
                let t = progress(step, *start, *end);
                lerp(*from, *to, (1.0 - (std::f64::consts::PI * t).cos()) / 2.0)
            }
            ResolvedSchedule::WarmUp { to, over } => {
                if *over == 0 || step >= *over {
                    *to
                } else {
                    to * step as f64 / *over as f64
                }
            }
            ResolvedSchedule::Step { values, boundaries } => {
                values[boundaries.partition_point(|&b| b <= step)]
            }
            ResolvedSchedule::Piecewise { points } => {
                let i = points.partition_point(|&(s, _)| s <= step);
                if i == 0 {
                    points[0].1
                } else if i == points.len() {
                    points[i - 1].1
                } else {
                    let ((s0, v0), (s1, v1)) = (points[i - 1], points[i]);
                    lerp(v0, v1, progress(step, s0, s1))
                }
            }
        }
    }
}

impl fmt::Display for ResolvedSchedule {
    /// The one-line form `ardpipe plan` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolvedSchedule::Constant { value } => write!(f, "constant {value}"),
            ResolvedSchedule::Linear {
                from,
                to,
                start,
                end,
            } => write!(f, "linear {from} → {to} over steps {start}..{end}"),
            ResolvedSchedule::Cosine {
                from,
                to,
                start,
                end,
            } => write!(f, "cosine {from} → {to} over steps {start}..{end}"),
            ResolvedSchedule::WarmUp { to, over } => {
                write!(f, "warm-up 0 → {to} over steps 0..{over}, then {to}")
            }
            ResolvedSchedule::Step { values, boundaries } => {
                write!(f, "step {}", values[0])?;
                for (b, v) in boundaries.iter().zip(&values[1..]) {
                    write!(f, ", {v} from step {b}")?;
                }
                Ok(())
            }
            ResolvedSchedule::Piecewise { points } => {
                write!(f, "piecewise")?;
                for (i, (s, v)) in points.iter().enumerate() {
                    write!(f, "{} {v} @ step {s}", if i == 0 { "" } else { "," })?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Position::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn constant() {
        let s = Schedule::constant(3e-4).resolve(100, 10).unwrap();
        assert_eq!(s.value_at(0), 3e-4);
        assert_eq!(s.value_at(1000), 3e-4);
    }

    #[test]
    fn linear_exact_values_and_flat_outside() {
        let s = Schedule::Linear {
            from: 1.0,
            to: 0.0,
            start: Steps(10),
            end: Fraction(0.5),
        }
        .resolve(100, 10)
        .unwrap();
        assert_eq!(
            s,
            ResolvedSchedule::Linear {
                from: 1.0,
                to: 0.0,
                start: 10,
                end: 50
            }
        );
        close(s.value_at(0), 1.0);
        close(s.value_at(10), 1.0);
        close(s.value_at(30), 0.5);
        close(s.value_at(40), 0.25);
        close(s.value_at(50), 0.0);
        close(s.value_at(99), 0.0);
    }

    #[test]
    fn cosine_exact_values() {
        let s = Schedule::Cosine {
            from: 2.0,
            to: 0.0,
            start: Steps(0),
            end: Epochs(2.0),
        }
        .resolve(100, 50)
        .unwrap();
        close(s.value_at(0), 2.0);
        close(s.value_at(50), 1.0);
        close(s.value_at(25), 1.0 + std::f64::consts::FRAC_1_SQRT_2);
        close(s.value_at(100), 0.0);
    }

    #[test]
    fn warm_up_ramps_from_zero_then_holds() {
        let s = Schedule::WarmUp {
            to: 1e-3,
            over: Fraction(0.2),
        }
        .resolve(300, 0)
        .unwrap();
        assert_eq!(s, ResolvedSchedule::WarmUp { to: 1e-3, over: 60 });
        close(s.value_at(0), 0.0);
        close(s.value_at(15), 2.5e-4);
        close(s.value_at(60), 1e-3);
        close(s.value_at(299), 1e-3);
        let instant = Schedule::WarmUp {
            to: 5.0,
            over: Steps(0),
        }
        .resolve(10, 0)
        .unwrap();
        close(instant.value_at(0), 5.0);
    }

    #[test]
    fn step_values_switch_at_boundaries() {
        let s = Schedule::Step {
            values: vec![1.0, 0.1, 0.01],
            boundaries: vec![Steps(10), Epochs(3.0)],
        }
        .resolve(100, 10)
        .unwrap();
        assert_eq!(s.value_at(0), 1.0);
        assert_eq!(s.value_at(9), 1.0);
        assert_eq!(s.value_at(10), 0.1);
        assert_eq!(s.value_at(29), 0.1);
        assert_eq!(s.value_at(30), 0.01);
        assert_eq!(s.to_string(), "step 1, 0.1 from step 10, 0.01 from step 30");
    }

    #[test]
    fn piecewise_interpolates_and_is_flat_outside() {
        let s = Schedule::Piecewise {
            points: vec![(Steps(10), 0.0), (Steps(20), 1.0), (Fraction(1.0), 0.5)],
        }
        .resolve(40, 0)
        .unwrap();
        close(s.value_at(0), 0.0);
        close(s.value_at(15), 0.5);
        close(s.value_at(20), 1.0);
        close(s.value_at(30), 0.75);
        close(s.value_at(40), 0.5);
        close(s.value_at(50), 0.5);
    }

    #[test]
    fn ending_after_training_is_an_error_with_both_numbers() {
        let e = Schedule::Linear {
            from: 1.0,
            to: 0.0,
            start: Steps(0),
            end: Epochs(3.0),
        }
        .resolve(100, 40)
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the end is at 3 epochs = step 120, after training ends (step 100); shorten the schedule or train longer"
        );
    }

    #[test]
    fn bad_shapes_and_orders_are_explained() {
        let e = Schedule::Step {
            values: vec![1.0],
            boundaries: vec![Steps(3)],
        }
        .resolve(10, 0)
        .unwrap_err();
        assert!(e.to_string().contains("1 values and 1 boundaries"), "{e}");
        let e = Schedule::Linear {
            from: 0.0,
            to: 1.0,
            start: Steps(5),
            end: Steps(5),
        }
        .resolve(10, 0)
        .unwrap_err();
        assert!(e.to_string().contains("must come after the start"), "{e}");
        let e = Schedule::WarmUp {
            to: 1.0,
            over: Fraction(1.5),
        }
        .resolve(10, 0)
        .unwrap_err();
        assert!(e.to_string().contains("between 0 and 1"), "{e}");
        let e = Schedule::WarmUp {
            to: 1.0,
            over: Epochs(1.0),
        }
        .resolve(10, 0)
        .unwrap_err();
        assert_eq!(e, ScheduleError::NoEpochLength);
        let e = Schedule::constant(f64::NAN).resolve(10, 0).unwrap_err();
        assert!(e.to_string().contains("not a finite number"), "{e}");
        let e = Schedule::Piecewise { points: vec![] }
            .resolve(10, 0)
            .unwrap_err();
        assert!(e.to_string().contains("at least one"), "{e}");
    }

    #[test]
    fn serde_form_is_tagged_and_round_trips() {
        let s = Schedule::WarmUp {
            to: 1e-3,
            over: Fraction(0.1),
        };
        let j = serde_json::to_value(&s).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"kind": "warm_up", "to": 0.001, "over": {"fraction": 0.1}})
        );
        assert_eq!(serde_json::from_value::<Schedule>(j).unwrap(), s);
        let r = s.resolve(1000, 0).unwrap();
        let back: ResolvedSchedule =
            serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        let schema = serde_json::to_value(schemars::schema_for!(Schedule)).unwrap();
        assert!(schema.to_string().contains("warm_up"));
    }
}
