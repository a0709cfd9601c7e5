//! "Did you mean": the closest known word by edit distance, when it is close enough to be a typo.

pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= limit || c.starts_with(word) && word.len() >= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// A help line naming the suggestion, or listing what is allowed when nothing is close.
pub fn help_for(word: &str, what: &str, candidates: &[&str]) -> String {
    match closest(word, candidates.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None => format!("{what}: {}", list(candidates)),
    }
}

pub fn list(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| format!("`{w}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_words_only() {
        assert_eq!(closest("l1", ["l2", "lr"]), Some("l2"));
        assert_eq!(closest("datset", ["dataset", "model"]), Some("dataset"));
        assert_eq!(closest("zzzzzz", ["dataset", "model"]), None);
    }
}
