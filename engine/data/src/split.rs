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
/// takes nothing. The split depends only on `(n, fractions, seed)`, so a resumed run (and
/// `ardpipe data preview`) finds the same one.
pub fn fraction_split(
    n: usize,
    validation: f64,
    test: f64,
    seed: u64,
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
    let mut perm = Rng::from_seed(seed).permutation(n).into_iter();
    let validation: Vec<usize> = perm.by_ref().take(n_val).collect();
    let test: Vec<usize> = perm.by_ref().take(n_test).collect();
    Ok(FractionSplit {
        train: perm.collect(),
        validation,
        test,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_tile_the_rows_and_follow_the_seed() {
        let s = fraction_split(1000, 0.1, 0.05, 7).unwrap();
        assert_eq!(
            (s.validation.len(), s.test.len(), s.train.len()),
            (100, 50, 850)
        );
        let mut all: Vec<usize> = [&s.train[..], &s.validation[..], &s.test[..]].concat();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert_eq!(fraction_split(1000, 0.1, 0.05, 7).unwrap(), s);
        assert_ne!(
            fraction_split(1000, 0.1, 0.05, 8).unwrap().validation,
            s.validation
        );
        // The validation rows are the permutation's first: the order the trainer always used.
        assert_eq!(s.validation, Rng::from_seed(7).permutation(1000)[..100]);
        assert!(fraction_split(10, 0.5, 0.5, 1).is_err());
        assert!(fraction_split(10, 1.0, 0.0, 1).is_err());
        assert!(fraction_split(10, f64::NAN, 0.0, 1).is_err());
        assert_eq!(fraction_split(10, 0.0, 0.0, 1).unwrap().train.len(), 10);
    }
}
