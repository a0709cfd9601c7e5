//! Schedules for learning rates and the regularisation weights λ, β, γ (docs/LANGUAGE.md,
//! "Schedules").
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

/// A point in training, in the unit the pipeline author thinks in. Serialised exactly as the
/// DSL's resolved pipeline writes it (`{"unit": "steps", "value": 10}`), so a pipeline's
/// schedules deserialise straight into this type.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "unit", content = "value", rename_all = "snake_case")]
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

/// One `(position, value)` point of a piecewise schedule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SchedulePoint {
    pub at: Position,
    pub value: f64,
}

/// A value over training, as written in a pipeline (same serde form as the DSL's `Schedule`).
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
    /// A linear ramp from 0 at step 0 to `then`'s value at `over`, then `then`.
    WarmUp {
        over: Position,
        then: Box<Schedule>,
    },
    /// `from`, multiplied by `factor` every `every` (exponential step decay).
    Step {
        from: f64,
        factor: f64,
        every: Position,
    },
    /// `values[0]` before `boundaries[0]`, `values[i]` from `boundaries[i-1]` on.
    MultiStep {
        values: Vec<f64>,
        boundaries: Vec<Position>,
    },
    /// Linear interpolation between points; flat before the first and after the last.
    Piecewise {
        points: Vec<SchedulePoint>,
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

/// A resolved piecewise point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ResolvedPoint {
    pub at: u64,
    pub value: f64,
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
        over: u64,
        then: Box<ResolvedSchedule>,
    },
    Step {
        from: f64,
        factor: f64,
        every: u64,
    },
    MultiStep {
        values: Vec<f64>,
        boundaries: Vec<u64>,
    },
    Piecewise {
        points: Vec<ResolvedPoint>,
    },
}

struct Resolver {
    total: u64,
    per_epoch: u64,
}

impl Resolver {
    /// A position as a step, without the "before the end" check (periods may exceed training).
    fn raw_step(&self, what: &str, p: Position) -> Result<u64, ScheduleError> {
        let bad = |why: &str| ScheduleError::BadPosition {
            what: what.to_string(),
            position: p.to_string(),
            why: why.to_string(),
        };
        Ok(match p {
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
        })
    }

    fn step(&self, what: &str, p: Position) -> Result<u64, ScheduleError> {
        let step = self.raw_step(what, p)?;
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

    /// Warm up linearly from 0 to `to` over `over`, then hold `to`.
    pub fn warm_up(to: f64, over: Position) -> Schedule {
        Schedule::WarmUp {
            over,
            then: Box::new(Schedule::constant(to)),
        }
    }

    /// Concrete steps for a run of `total_steps` optimizer steps, `steps_per_epoch` per epoch
    /// (0 when unknown, e.g. a streaming dataset; then epoch positions are an error).
    pub fn resolve(
        &self,
        total_steps: u64,
        steps_per_epoch: u64,
    ) -> Result<ResolvedSchedule, ScheduleError> {
        self.resolve_with(&Resolver {
            total: total_steps,
            per_epoch: steps_per_epoch,
        })
    }

    fn resolve_with(&self, r: &Resolver) -> Result<ResolvedSchedule, ScheduleError> {
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
            Schedule::WarmUp { over, then } => ResolvedSchedule::WarmUp {
                over: r.step("the end of warm-up", *over)?,
                then: Box::new(then.resolve_with(r)?),
            },
            Schedule::Step {
                from,
                factor,
                every,
            } => {
                let every_step = r.raw_step("the decay period", *every)?;
                if every_step == 0 {
                    return Err(ScheduleError::BadPosition {
                        what: "the decay period".into(),
                        position: every.to_string(),
                        why: "it rounds to 0 steps; give a period of at least one step".into(),
                    });
                }
                ResolvedSchedule::Step {
                    from: finite("`from`", *from)?,
                    factor: finite("`factor`", *factor)?,
                    every: every_step,
                }
            }
            Schedule::MultiStep { values, boundaries } => {
                if values.len() != boundaries.len() + 1 {
                    return Err(ScheduleError::Shape(format!(
                        "a multi-step schedule needs one more value than boundaries (a value before the first boundary and one after each); it has {} values and {} boundaries",
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
                ResolvedSchedule::MultiStep {
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
                let mut out: Vec<ResolvedPoint> = Vec::with_capacity(points.len());
                for (i, p) in points.iter().enumerate() {
                    let at = r.step(&format!("point {}", i + 1), p.at)?;
                    let value = finite(&format!("the value of point {}", i + 1), p.value)?;
                    if let Some(prev) = out.last() {
                        ordered(
                            &format!("point {}", i + 1),
                            &format!("point {i}"),
                            prev.at,
                            at,
                        )?;
                    }
                    out.push(ResolvedPoint { at, value });
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
    /// Every value times `factor` (positions unchanged): `train.lr_scale`.
    pub fn scaled(&self, factor: f64) -> ResolvedSchedule {
        use ResolvedSchedule::*;
        match self {
            Constant { value } => Constant {
                value: value * factor,
            },
            Linear {
                from,
                to,
                start,
                end,
            } => Linear {
                from: from * factor,
                to: to * factor,
                start: *start,
                end: *end,
            },
            Cosine {
                from,
                to,
                start,
                end,
            } => Cosine {
                from: from * factor,
                to: to * factor,
                start: *start,
                end: *end,
            },
            WarmUp { over, then } => WarmUp {
                over: *over,
                then: Box::new(then.scaled(factor)),
            },
            Step {
                from,
                factor: f,
                every,
            } => Step {
                from: from * factor,
                factor: *f,
                every: *every,
            },
            MultiStep { values, boundaries } => MultiStep {
                values: values.iter().map(|v| v * factor).collect(),
                boundaries: boundaries.clone(),
            },
            Piecewise { points } => Piecewise {
                points: points
                    .iter()
                    .map(|p| ResolvedPoint {
                        at: p.at,
                        value: p.value * factor,
                    })
                    .collect(),
            },
        }
    }

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
            ResolvedSchedule::WarmUp { over, then } => {
                if *over == 0 || step >= *over {
                    then.value_at(step)
                } else {
                    then.value_at(*over) * step as f64 / *over as f64
                }
            }
            ResolvedSchedule::Step {
                from,
                factor,
                every,
            } => from * factor.powi(i32::try_from(step / every).unwrap_or(i32::MAX)),
            ResolvedSchedule::MultiStep { values, boundaries } => {
                values[boundaries.partition_point(|&b| b <= step)]
            }
            ResolvedSchedule::Piecewise { points } => {
                let i = points.partition_point(|p| p.at <= step);
                if i == 0 {
                    points[0].value
                } else if i == points.len() {
                    points[i - 1].value
                } else {
                    let (a, b) = (points[i - 1], points[i]);
                    lerp(a.value, b.value, progress(step, a.at, b.at))
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
            ResolvedSchedule::WarmUp { over, then } => {
                write!(f, "warm-up from 0 over steps 0..{over}, then {then}")
            }
            ResolvedSchedule::Step {
                from,
                factor,
                every,
            } => write!(f, "step {from} × {factor} every {every} steps"),
            ResolvedSchedule::MultiStep { values, boundaries } => {
                write!(f, "multi-step {}", values[0])?;
                for (b, v) in boundaries.iter().zip(&values[1..]) {
                    write!(f, ", {v} from step {b}")?;
                }
                Ok(())
            }
            ResolvedSchedule::Piecewise { points } => {
                write!(f, "piecewise")?;
                for (i, p) in points.iter().enumerate() {
                    let sep = if i == 0 { " " } else { ", " };
                    write!(f, "{sep}{} @ step {}", p.value, p.at)?;
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
        let s = Schedule::warm_up(1e-3, Fraction(0.2))
            .resolve(300, 0)
            .unwrap();
        close(s.value_at(0), 0.0);
        close(s.value_at(15), 2.5e-4);
        close(s.value_at(60), 1e-3);
        close(s.value_at(299), 1e-3);
        assert_eq!(
            s.to_string(),
            "warm-up from 0 over steps 0..60, then constant 0.001"
        );
        let instant = Schedule::warm_up(5.0, Steps(0)).resolve(10, 0).unwrap();
        close(instant.value_at(0), 5.0);
    }

    #[test]
    fn warm_up_into_cosine_meets_it_at_the_end_of_warm_up() {
        let s = Schedule::WarmUp {
            over: Steps(10),
            then: Box::new(Schedule::Cosine {
                from: 1.0,
                to: 0.0,
                start: Steps(10),
                end: Steps(110),
            }),
        }
        .resolve(110, 0)
        .unwrap();
        close(s.value_at(5), 0.5);
        close(s.value_at(10), 1.0);
        close(s.value_at(60), 0.5);
        close(s.value_at(110), 0.0);
    }

    #[test]
    fn step_decay_multiplies_every_period() {
        let s = Schedule::Step {
            from: 1.0,
            factor: 0.5,
            every: Epochs(1.0),
        }
        .resolve(100, 30)
        .unwrap();
        assert_eq!(s.value_at(0), 1.0);
        assert_eq!(s.value_at(29), 1.0);
        assert_eq!(s.value_at(30), 0.5);
        assert_eq!(s.value_at(95), 0.125);
        let e = Schedule::Step {
            from: 1.0,
            factor: 0.5,
            every: Fraction(0.001),
        }
        .resolve(100, 0)
        .unwrap_err();
        assert!(e.to_string().contains("rounds to 0 steps"), "{e}");
    }

    #[test]
    fn multi_step_values_switch_at_boundaries() {
        let s = Schedule::MultiStep {
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
        assert_eq!(
            s.to_string(),
            "multi-step 1, 0.1 from step 10, 0.01 from step 30"
        );
    }

    #[test]
    fn piecewise_interpolates_and_is_flat_outside() {
        let pt = |at, value| SchedulePoint { at, value };
        let s = Schedule::Piecewise {
            points: vec![
                pt(Steps(10), 0.0),
                pt(Steps(20), 1.0),
                pt(Fraction(1.0), 0.5),
            ],
        }
        .resolve(40, 0)
        .unwrap();
        close(s.value_at(0), 0.0);
        close(s.value_at(15), 0.5);
        close(s.value_at(20), 1.0);
        close(s.value_at(30), 0.75);
        close(s.value_at(40), 0.5);
        close(s.value_at(50), 0.5);
        assert_eq!(
            s.to_string(),
            "piecewise 0 @ step 10, 1 @ step 20, 0.5 @ step 40"
        );
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
        let e = Schedule::MultiStep {
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
        let e = Schedule::warm_up(1.0, Fraction(1.5))
            .resolve(10, 0)
            .unwrap_err();
        assert!(e.to_string().contains("between 0 and 1"), "{e}");
        let e = Schedule::warm_up(1.0, Epochs(1.0))
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
    fn serde_form_matches_the_dsl_pipeline_and_round_trips() {
        // The form the DSL's resolved pipeline writes (dsl/src/pipeline.rs `Schedule`).
        let dsl = serde_json::json!({
            "kind": "warm_up",
            "over": {"unit": "fraction", "value": 0.1},
            "then": {"kind": "cosine", "from": 0.001, "to": 0.0,
                     "start": {"unit": "steps", "value": 100},
                     "end": {"unit": "fraction", "value": 1.0}}
        });
        let s: Schedule = serde_json::from_value(dsl.clone()).unwrap();
        assert_eq!(serde_json::to_value(&s).unwrap(), dsl);
        let r = s.resolve(1000, 0).unwrap();
        close(r.value_at(50), 0.0005);
        let back: ResolvedSchedule =
            serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        let piecewise = serde_json::json!({"kind": "piecewise", "points": [
            {"at": {"unit": "epochs", "value": 0.5}, "value": 1.0}]});
        let p: Schedule = serde_json::from_value(piecewise).unwrap();
        close(p.resolve(10, 4).unwrap().value_at(0), 1.0);
        let schema = serde_json::to_value(schemars::schema_for!(Schedule)).unwrap();
        assert!(schema.to_string().contains("warm_up"));
    }
}
