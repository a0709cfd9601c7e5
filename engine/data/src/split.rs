//! Train/eval splits: either separate files (two specs), or a seeded ratio split of one dataset.

use crate::error::DataError;
use crate::record::Record;
use crate::shuffle::stable_hash;

/// Split `records` so that `round(n · eval_fraction)` rows go to eval. Which rows is decided by a
/// seeded hash of each row's content (not its position), so the split is deterministic and stays
/// the same when the file's rows are reordered. Returns (train, eval), each in input order.
pub fn ratio_split(
    records: Vec<Record>,
    eval_fraction: f64,
    seed: u64,
) -> Result<(Vec<Record>, Vec<Record>), DataError> {
    if !(eval_fraction > 0.0 && eval_fraction < 1.0) {
        return Err(DataError::config(format!(
            "eval fraction {eval_fraction} is not between 0 and 1"
        ))
        .with_help("use e.g. 0.1 for a 90/10 split"));
    }
    let n = records.len();
    let n_eval = (n as f64 * eval_fraction).round() as usize;
    if n_eval == 0 || n_eval == n {
        return Err(DataError::config(format!(
            "an eval fraction of {eval_fraction} of {n} rows leaves one side empty"
        ))
        .with_help("use more data or a fraction nearer 0.5"));
    }
    let key = |r: &Record| {
        stable_hash(
            seed,
            &[
                r.text.as_bytes(),
                r.text_pair.as_deref().unwrap_or("").as_bytes(),
                r.label.as_deref().unwrap_or("").as_bytes(),
            ],
        )
    };
    // Ties (identical rows) are interchangeable, so sorting by (hash, position) is still order-stable
    // as a multiset.
    let mut keyed: Vec<(u64, usize)> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (key(r), i))
        .collect();
    keyed.sort_unstable();
    let mut is_eval = vec![false; n];
    for &(_, i) in &keyed[..n_eval] {
        is_eval[i] = true;
    }
    let (mut train, mut eval) = (Vec::with_capacity(n - n_eval), Vec::with_capacity(n_eval));
    for (r, e) in records.into_iter().zip(is_eval) {
        if e {
            eval.push(r);
        } else {
            train.push(r);
        }
    }
    Ok((train, eval))
}
