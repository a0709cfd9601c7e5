//! `distributed { ... }`: data-parallel settings. The same pipeline runs on one process or on
//! N; this block only tunes how the N talk to each other.

use crate::ast::{Block, ExprKind};
use crate::diag::{Code, Problem};
use crate::pipeline::*;
use crate::reader::{Ctx, Reader, wrong_type};
use crate::suggest;

pub(super) const KEYS: &[&str] = &["backend", "bucket_mb", "timeout"];
pub const BACKENDS: &[&str] = &["auto", "gloo", "nccl"];
/// Units of `timeout`, with how many seconds each is.
const TIME_UNITS: &[(&str, f64)] = &[
    ("s", 1.0),
    ("sec", 1.0),
    ("second", 1.0),
    ("seconds", 1.0),
    ("min", 60.0),
    ("minute", 60.0),
    ("minutes", 60.0),
    ("h", 3600.0),
    ("hour", 3600.0),
    ("hours", 3600.0),
];
/// The largest gradient bucket, in MiB.
const MAX_BUCKET_MB: f64 = 1024.0;
/// The longest timeout: a week (a longer wait is a mistake, and stays representable everywhere).
const MAX_TIMEOUT_SECONDS: f64 = 7.0 * 24.0 * 3600.0;

/// `device` is the model's, when the model block checked (for `nccl` on the CPU).
pub fn check(b: &Block, device: Option<Device>, cx: &mut Ctx) -> Option<Distributed> {
    let defaults = Distributed::default();
    let mut r = Reader::new(b, cx);
    let mut ok = true;

    let backend = match r.value("backend", cx) {
        None => defaults.backend,
        Some(v) => match crate::reader::as_symbol(&v, "backend", BACKENDS, cx) {
            Some("nccl") => {
                if device == Some(Device::Cpu) {
                    cx.push(
                        Problem::error(
                            Code::Contradiction,
                            v.span,
                            "nccl needs CUDA, and the model runs on the CPU (`device = cpu`)",
                        )
                        .label("nccl on the CPU")
                        .help("use `backend = gloo` (or `auto`, which picks gloo on the CPU)"),
                    );
                    ok = false;
                }
                DistBackend::Nccl
            }
            Some("gloo") => DistBackend::Gloo,
            Some(_) => DistBackend::Auto,
            None => {
                ok = false;
                defaults.backend
            }
        },
    };

    let bucket_mb = match r.value("bucket_mb", cx) {
        None => Some(defaults.bucket_mb),
        Some(v) => match &v.kind {
            ExprKind::Number { value, text } => {
                if *value > 0.0 && *value <= MAX_BUCKET_MB {
                    Some(*value)
                } else {
                    cx.push(
                        Problem::error(
                            Code::OutOfRange,
                            v.span,
                            format!(
                                "`bucket_mb` must be more than 0 and at most {MAX_BUCKET_MB}, not {text}"
                            ),
                        )
                        .label("out of range")
                        .help(format!(
                            "the all-reduce bucket is in MiB: e.g. `bucket_mb = {}` (fractions such as 0.5 are allowed)",
                            defaults.bucket_mb
                        )),
                    );
                    None
                }
            }
            ExprKind::Quantity { unit, .. } => {
                cx.push(
                    Problem::error(
                        Code::BadUnit,
                        unit.span,
                        format!(
                            "`bucket_mb` takes a plain number of MiB, not `{}`",
                            unit.name
                        ),
                    )
                    .label("unexpected unit")
                    .help("remove the unit: `bucket_mb = 25` is 25 MiB"),
                );
                None
            }
            _ => {
                wrong_type(&v, "bucket_mb", "a number of MiB", cx);
                None
            }
        },
    };

    let timeout_seconds = match r.value("timeout", cx) {
        None => Some(defaults.timeout_seconds),
        Some(v) => match &v.kind {
            ExprKind::Quantity { value, unit, text } => {
                match TIME_UNITS.iter().find(|(u, _)| *u == unit.name) {
                    Some((_, scale)) => {
                        let seconds = value * scale;
                        if *value > 0.0 && seconds <= MAX_TIMEOUT_SECONDS {
                            Some(seconds)
                        } else {
                            cx.push(
                                Problem::error(
                                    Code::OutOfRange,
                                    v.span,
                                    format!(
                                        "`timeout` must be more than 0 and at most a week (168 h), not {text} {}",
                                        unit.name
                                    ),
                                )
                                .label("out of range")
                                .help("how long a collective may wait, e.g. `timeout = 30 min`"),
                            );
                            None
                        }
                    }
                    None => {
                        let units: Vec<&str> = TIME_UNITS.iter().map(|(u, _)| *u).collect();
                        let help = match suggest::closest(&unit.name, units.iter().copied()) {
                            Some(s) => format!(
                                "did you mean `{s}`? Units of time: {}",
                                suggest::list(&units)
                            ),
                            None => format!("units of time: {}", suggest::list(&units)),
                        };
                        cx.push(
                            Problem::error(
                                Code::BadUnit,
                                unit.span,
                                format!(
                                    "`timeout` is a time, and `{}` is not a unit of time",
                                    unit.name
                                ),
                            )
                            .label("not a unit of time")
                            .help(help),
                        );
                        None
                    }
                }
            }
            ExprKind::Number { text, .. } => {
                cx.push(
                    Problem::error(Code::BadUnit, v.span, "`timeout` needs a unit of time")
                        .label("no unit")
                        .help(format!("write `timeout = {text} s` (or `min`, `h`)")),
                );
                None
            }
            _ => {
                wrong_type(&v, "timeout", "a time such as `30 min` or `300 s`", cx);
                None
            }
        },
    };

    r.finish(KEYS, &[], &|_| None, cx);
    if !ok {
        return None;
    }
    Some(Distributed {
        backend,
        bucket_mb: bucket_mb?,
        timeout_seconds: timeout_seconds?,
    })
}
