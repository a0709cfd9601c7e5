//! Carving evaluation splits out of one source: the `validation` and `test` fractions of a seeded
//! permutation of its rows. A split given as its own files is simply another dataset.

use crate::error::DataError;
use crate::shuffle::Rng;

/// Row indices of each split, in the order of the seeded permutation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FractionSplit {
    pub train: Vec<usize>,
    pub validation: Vec<usize>,
    pub test: Vec<usize>,
}

/// Split `n` rows: `round(n · validation)` rows go to validation, then `round(n · test)` to test,
/// taken in that order from the permutation seeded by `seed`; the rest trains. A fraction of 0
/// takes nothing. With `contiguous` = k > 1 the permutation is of runs of k consecutive rows and
/// each split takes whole runs until it has its rows (so it may take up to k − 1 more): lines of
/// one text stay on one side instead of leaking their context across. k = 1 is the row split.
/// The split depends only on `(n, fractions, seed, k)`, so a resumed run (and `ardpipe data
/// preview`) finds the same one.
pub fn fraction_split(
    n: usize,
    validation: f64,
    test: f64,
    seed: u64,
    contiguous: usize,
) -> Result<FractionSplit, DataError> {
    for (name, f) in [("validation", validation), ("test", test)] {
        if !(0.0..1.0).contains(&f) {
            return Err(
                DataError::config(format!("the {name} fraction {f} is not in [0, 1)"))
                    .with_help("use e.g. `validation = 10%`"),
            );
        }
    }
    let count = |f: f64| (f * n as f64).round() as usize;
    let (n_val, n_test) = (count(validation), count(test));
    if n_val + n_test >= n {
        return Err(DataError::config(format!(
            "the validation and test fractions take all {n} examples"
        ))
        .with_help("lower the fractions, or give the dataset more rows"));
    }
    let k = contiguous.max(1);
    let mut runs = Rng::from_seed(seed).permutation(n.div_ceil(k)).into_iter();
    let mut take = |want: usize| {
        let mut rows = Vec::with_capacity(want);
        while rows.len() < want {
            match runs.next() {
                Some(r) => rows.extend(r * k..((r + 1) * k).min(n)),
                None => break,
            }
        }
        rows
    };
    let validation = take(n_val);
    let test = take(n_test);
    let train: Vec<usize> = runs.flat_map(|r| r * k..((r + 1) * k).min(n)).collect();
    if train.is_empty() {
        return Err(DataError::config(format!(
            "runs of {k} rows leave nothing of {n} rows to train on after the validation and test splits"
        ))
        .with_help("lower `split.contiguous` or the fractions"));
    }
    Ok(FractionSplit {
        train,
        validation,
        test,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_tile_the_rows_and_follow_the_seed() {
        let s = fraction_split(1000, 0.1, 0.05, 7, 1).unwrap();
        assert_eq!(
            (s.validation.len(), s.test.len(), s.train.len()),
            (100, 50, 850)
        );
        let mut all: Vec<usize> = [&s.train[..], &s.validation[..], &s.test[..]].concat();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert_eq!(fraction_split(1000, 0.1, 0.05, 7, 1).unwrap(), s);
        assert_ne!(
            fraction_split(1000, 0.1, 0.05, 8, 1).unwrap().validation,
            s.validation
        );
        // The validation rows are the permutation's first: the order the trainer always used.
        assert_eq!(s.validation, Rng::from_seed(7).permutation(1000)[..100]);
        assert!(fraction_split(10, 0.5, 0.5, 1, 1).is_err());
        assert!(fraction_split(10, 1.0, 0.0, 1, 1).is_err());
        assert!(fraction_split(10, f64::NAN, 0.0, 1, 1).is_err());
        assert_eq!(fraction_split(10, 0.0, 0.0, 1, 1).unwrap().train.len(), 10);
    }

    #[test]
    fn contiguous_runs_keep_neighbours_together() {
        let s = fraction_split(1000, 0.1, 0.1, 7, 50).unwrap();
        // Whole runs of 50: 100 rows each (2 runs), the other 16 runs train.
        assert_eq!(
            (s.validation.len(), s.test.len(), s.train.len()),
            (100, 100, 800)
        );
        for part in [&s.validation, &s.test, &s.train] {
            for run in part.chunks(50) {
                assert_eq!(run[0] % 50, 0, "a run starts on a boundary: {run:?}");
                assert!(run.windows(2).all(|w| w[1] == w[0] + 1), "{run:?}");
            }
        }
        let mut all: Vec<usize> = [&s.validation[..], &s.test[..], &s.train[..]].concat();
        all.sort();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        // A short last run, and a run size larger than what is asked: whole runs, never a row
        // in two splits, and a clear error when nothing is left to train on.
        let s = fraction_split(105, 0.05, 0.0, 3, 20).unwrap();
        assert!(!s.validation.is_empty() && s.validation.len() <= 20);
        assert_eq!(s.validation.len() + s.train.len(), 105);
        assert!(fraction_split(30, 0.4, 0.4, 1, 20).is_err());
    }
}
