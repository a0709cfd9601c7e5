//! From the checked pipeline's types to the engine's: adapter configurations and schedules.

use crate::schedule::{Position, ResolvedSchedule, Schedule, ScheduleError, SchedulePoint};
use ardpipe_adapters::ops::QuantScheme;
use ardpipe_adapters::{
    AdaLoraConfig, AlphaUpdate, ArdLoraConfig, FullConfig, LoraConfig, MethodConfig, TvMode,
};
use ardpipe_dsl::pipeline as p;

pub fn position(pos: &p::Position) -> Position {
    match *pos {
        p::Position::Steps(s) => Position::Steps(s),
        p::Position::Epochs(e) => Position::Epochs(e),
        p::Position::Fraction(f) => Position::Fraction(f),
    }
}

/// Steps of a position once the run's length is known (for intervals such as compaction).
pub fn position_steps(pos: &p::Position, total: u64, per_epoch: u64) -> u64 {
    match *pos {
        p::Position::Steps(s) => s,
        p::Position::Epochs(e) => (e * per_epoch as f64).round() as u64,
        p::Position::Fraction(f) => (f * total as f64).round() as u64,
    }
}

/// The method's adapter configuration. `total_steps` fixes AdaLoRA's budget schedule and
/// ARD-LoRA's compaction interval when they are given in epochs or fractions (pass 1 when
/// only shapes matter, as in the planner's parameter counts).
pub fn method_config(method: &p::Method, total_steps: u64) -> MethodConfig {
    method_config_with_epochs(method, total_steps, 0)
}

pub fn method_config_with_epochs(method: &p::Method, total: u64, per_epoch: u64) -> MethodConfig {
    match method {
        p::Method::ArdLora(c) => MethodConfig::ArdLora(ArdLoraConfig {
            r0: c.r0 as usize,
            alpha_init: c.alpha.init,
            alpha_min: c.alpha.min,
            alpha_max: c.alpha.max,
            scale: c.scale,
            dropout: c.dropout,
            groups: c.groups as usize,
            compaction_interval: c
                .compaction
                .as_ref()
                .map(|k| position_steps(&k.every, total, per_epoch) as usize)
                .unwrap_or(0),
            compaction_margin: c
                .compaction
                .as_ref()
                .map(|k| k.margin as usize)
                .unwrap_or(0),
            // β and γ are schedules: the trainer evaluates them each step and weighs the terms.
            beta: 1.0,
            gamma: 1.0,
            alpha_update: match c.alpha.update {
                p::AlphaUpdate::Proximal => AlphaUpdate::Proximal,
                p::AlphaUpdate::Penalty => AlphaUpdate::Penalty,
            },
            tv: match c.regularizer.tv {
                p::TvAxis::Depth => TvMode::Depth,
                p::TvAxis::Time { .. } => TvMode::Time,
            },
            tv_ema_decay: match c.regularizer.tv {
                p::TvAxis::Time { ema_decay } => ema_decay,
                p::TvAxis::Depth => 0.9,
            },
        }),
        p::Method::Lora(c) => MethodConfig::Lora(lora(c)),
        p::Method::Dora(c) => MethodConfig::Dora(lora(c)),
        p::Method::AdaLora(c) => MethodConfig::Adalora(AdaLoraConfig {
            init_r: c.init_r as usize,
            target_r: c.target_r as usize,
            lora_alpha: c.scale,
            dropout: c.dropout,
            beta1: c.beta1,
            beta2: c.beta2,
            orth_reg_weight: c.orth_reg,
            tinit: Some(position_steps(&c.tinit, total, per_epoch) as usize),
            tfinal: Some(position_steps(&c.tfinal, total, per_epoch) as usize),
            delta_t: Some(position_steps(&c.delta_t, total, per_epoch).max(1) as usize),
            ..AdaLoraConfig::default()
        }),
        p::Method::Full(_) => MethodConfig::Full(FullConfig { train_bias: true }),
        p::Method::HeadOnly(_) => MethodConfig::HeadOnly,
    }
}

fn lora(c: &p::Lora) -> LoraConfig {
    LoraConfig {
        r: c.rank as usize,
        lora_alpha: c.scale,
        dropout: c.dropout,
    }
}

/// The engine's form of a pipeline schedule.
pub fn schedule(s: &p::Schedule) -> Schedule {
    match s {
        p::Schedule::Constant { value } => Schedule::Constant { value: *value },
        p::Schedule::Linear {
            from,
            to,
            start,
            end,
        } => Schedule::Linear {
            from: *from,
            to: *to,
            start: position(start),
            end: position(end),
        },
        p::Schedule::Cosine {
            from,
            to,
            start,
            end,
        } => Schedule::Cosine {
            from: *from,
            to: *to,
            start: position(start),
            end: position(end),
        },
        p::Schedule::WarmUp { over, then } => Schedule::WarmUp {
            over: position(over),
            then: Box::new(schedule(then)),
        },
        p::Schedule::Step {
            from,
            factor,
            every,
        } => Schedule::Step {
            from: *from,
            factor: *factor,
            every: position(every),
        },
        p::Schedule::Piecewise { points } => Schedule::Piecewise {
            points: points
                .iter()
                .map(|pt| SchedulePoint {
                    at: position(&pt.at),
                    value: pt.value,
                })
                .collect(),
        },
    }
}

/// Resolve a pipeline schedule for a run of `total` steps (`per_epoch` 0 when unknown).
pub fn resolve_schedule(
    s: &p::Schedule,
    total: u64,
    per_epoch: u64,
) -> Result<ResolvedSchedule, ScheduleError> {
    schedule(s).resolve(total, per_epoch)
}

/// `model.quantize` as the adapters' quantised linears take it.
pub fn quant_scheme(q: p::Quantize) -> Option<QuantScheme> {
    match q {
        p::Quantize::None => None,
        p::Quantize::Int8 => Some(QuantScheme::Int8),
        p::Quantize::Int4 { group } => Some(QuantScheme::Int4 {
            group: group as usize,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_into_cosine() {
        let s = p::Schedule::WarmUp {
            over: p::Position::Steps(10),
            then: Box::new(p::Schedule::Cosine {
                from: 1.0,
                to: 0.0,
                start: p::Position::Steps(0),
                end: p::Position::Fraction(1.0),
            }),
        };
        let r = resolve_schedule(&s, 100, 0).unwrap();
        assert_eq!(r.value_at(0), 0.0);
        let at5 = r.value_at(5);
        // The ramp climbs to the value `then` has where warm-up ends (step 10), as
        // engine::schedule defines warm-up.
        let cos10 = (1.0 + (std::f64::consts::PI * 0.1).cos()) / 2.0;
        assert!((at5 - 0.5 * cos10).abs() < 1e-12, "{at5}");
        assert!((r.value_at(50) - 0.5).abs() < 1e-12);
        assert!(r.value_at(100).abs() < 1e-12);
    }

    #[test]
    fn step_schedule_multiplies_every_interval() {
        let s = p::Schedule::Step {
            from: 1.0,
            factor: 0.5,
            every: p::Position::Steps(10),
        };
        let r = resolve_schedule(&s, 35, 0).unwrap();
        assert_eq!(r.value_at(0), 1.0);
        assert_eq!(r.value_at(9), 1.0);
        assert_eq!(r.value_at(10), 0.5);
        assert_eq!(r.value_at(30), 0.125);
    }

    #[test]
    fn warm_up_past_the_end_is_an_error() {
        let s = p::Schedule::WarmUp {
            over: p::Position::Steps(200),
            then: Box::new(p::Schedule::Constant { value: 1.0 }),
        };
        assert!(resolve_schedule(&s, 100, 0).is_err());
    }
}
