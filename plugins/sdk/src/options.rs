//! The options of a pipeline's plugin block, as the plugin reads them.
//!
//! The host passes them as JSON bytes, already checked against the plugin's declared
//! [`OptionSpec`]s (unknown keys, missing required keys, kinds; defaults filled in). The SDK parses
//! them and checks the keys again before `open`/`create` runs — so a plugin's own tests, which call
//! `open` directly, get the same errors — and the plugin's own code only reads values. Every error
//! names the key.

use serde_json::{Map, Value};

use crate::PluginError;

/// One option a plugin accepts (what `ardpipe plugin inspect` shows).
#[derive(Debug, Clone, Copy)]
pub struct OptionSpec {
    pub key: &'static str,
    /// `string`, `path`, `integer`, `number`, `boolean`, `list of strings` (free text for humans).
    pub kind: &'static str,
    pub required: bool,
    /// The default as a user would write it, when there is one.
    pub default: Option<&'static str>,
    pub help: &'static str,
}

impl OptionSpec {
    /// A required option.
    pub const fn required(key: &'static str, kind: &'static str, help: &'static str) -> Self {
        OptionSpec {
            key,
            kind,
            required: true,
            default: None,
            help,
        }
    }

    /// An optional option with the default it falls back to (`None` when it simply stays unset).
    pub const fn optional(
        key: &'static str,
        kind: &'static str,
        default: Option<&'static str>,
        help: &'static str,
    ) -> Self {
        OptionSpec {
            key,
            kind,
            required: false,
            default,
            help,
        }
    }
}

/// Parsed options: a JSON object. Getters return `Ok(None)` when a key is absent and an error
/// naming the key when its value has the wrong type.
#[derive(Debug, Clone, Default)]
pub struct Options {
    map: Map<String, Value>,
}

impl Options {
    /// Parses the bytes the host passed; empty bytes mean "no options".
    pub fn parse(bytes: &[u8]) -> Result<Options, PluginError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Options::default());
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(map)) => Ok(Options { map }),
            Ok(other) => Err(PluginError::new(format!(
                "options must be a JSON object (key: value pairs), got {}",
                kind_of(&other)
            ))),
            Err(e) => Err(PluginError::new(format!("options are not valid JSON: {e}"))),
        }
    }

    /// Builds options from a JSON value (handy in a plugin's own unit tests).
    pub fn from_json(value: Value) -> Result<Options, PluginError> {
        Options::parse(value.to_string().as_bytes())
    }

    /// Refuses keys not in `specs` (with a "did you mean" when one is close) and missing required keys.
    pub fn check(&self, specs: &[OptionSpec]) -> Result<(), PluginError> {
        for key in self.map.keys() {
            if !specs.iter().any(|s| s.key == key) {
                let known: Vec<&str> = specs.iter().map(|s| s.key).collect();
                let hint = match closest(key, &known) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None if known.is_empty() => "this plugin takes no options".to_string(),
                    None => format!("known options: {}", known.join(", ")),
                };
                return Err(PluginError::option(
                    key,
                    format!("unknown option `{key}`: {hint}"),
                ));
            }
        }
        for spec in specs.iter().filter(|s| s.required) {
            if !self.map.contains_key(spec.key) {
                return Err(PluginError::option(
                    spec.key,
                    format!(
                        "missing required option `{}` ({}): {}",
                        spec.key, spec.kind, spec.help
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn raw(&self) -> &Map<String, Value> {
        &self.map
    }

    pub fn contains(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    pub fn str(&self, key: &str) -> Result<Option<&str>, PluginError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(wrong_type(key, "a string", other)),
        }
    }

    pub fn required_str(&self, key: &str) -> Result<&str, PluginError> {
        self.str(key)?
            .ok_or_else(|| PluginError::option(key, format!("missing required option `{key}`")))
    }

    pub fn u64(&self, key: &str) -> Result<Option<u64>, PluginError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .or_else(|| whole(n).and_then(|f| (f >= 0.0).then_some(f as u64)))
                .map(Some)
                .ok_or_else(|| wrong_type(key, "a whole number ≥ 0", &Value::Number(n.clone()))),
            Some(other) => Err(wrong_type(key, "a whole number ≥ 0", other)),
        }
    }

    pub fn i64(&self, key: &str) -> Result<Option<i64>, PluginError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| whole(n).map(|f| f as i64))
                .map(Some)
                .ok_or_else(|| wrong_type(key, "a whole number", &Value::Number(n.clone()))),
            Some(other) => Err(wrong_type(key, "a whole number", other)),
        }
    }

    pub fn f64(&self, key: &str) -> Result<Option<f64>, PluginError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(other) => Err(wrong_type(key, "a number", other)),
        }
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, PluginError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(wrong_type(key, "true or false", other)),
        }
    }

    /// A list of strings; a single string counts as a list of one.
    pub fn str_list(&self, key: &str) -> Result<Option<Vec<String>>, PluginError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(wrong_type(key, "a list of strings", other)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(wrong_type(key, "a list of strings", other)),
        }
    }
}

/// A float that is a whole number within f64's exact-integer range: pipelines write every number
/// as f64 (`limit = 100` arrives as `100.0`), and that must still count as an integer.
fn whole(n: &serde_json::Number) -> Option<f64> {
    n.as_f64()
        .filter(|f| f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0)
}

fn wrong_type(key: &str, expected: &str, got: &Value) -> PluginError {
    PluginError::option(
        key,
        format!(
            "option `{key}` must be {expected}, got {} `{got}`",
            kind_of(got)
        ),
    )
}

/// How an option value reads in a message ("a number"); the host's option check uses it too.
#[doc(hidden)]
pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The known key nearest to `key` by edit distance, when it is plausibly a typo; the host's
/// option check uses it too.
#[doc(hidden)]
pub fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, k)| *d <= (k.len().max(key.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SPECS: &[OptionSpec] = &[
        OptionSpec::required("path", "path", "where the files are"),
        OptionSpec::optional("shuffle", "boolean", Some("true"), "shuffle with the seed"),
    ];

    #[test]
    fn empty_bytes_are_no_options() {
        let o = Options::parse(b"").unwrap();
        assert!(o.raw().is_empty());
        assert!(o.check(&[]).is_ok());
    }

    #[test]
    fn typo_gets_a_suggestion_and_names_the_key() {
        let o = Options::from_json(json!({"pth": "x"})).unwrap();
        let e = o.check(SPECS).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("pth"));
        assert!(e.message.contains("did you mean `path`"), "{e}");
    }

    #[test]
    fn missing_required_key_is_named() {
        let o = Options::from_json(json!({"shuffle": false})).unwrap();
        let e = o.check(SPECS).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("path"));
    }

    #[test]
    fn wrong_type_names_key_and_value() {
        let o = Options::from_json(json!({"path": "x", "shuffle": "yes"})).unwrap();
        assert!(o.check(SPECS).is_ok());
        let e = o.bool("shuffle").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("shuffle"));
        assert!(e.message.contains("true or false"), "{e}");
        assert_eq!(o.required_str("path").unwrap(), "x");
    }

    #[test]
    fn non_object_options_are_refused() {
        assert!(
            Options::parse(b"[1,2]")
                .unwrap_err()
                .message
                .contains("JSON object")
        );
        assert!(
            Options::parse(b"{")
                .unwrap_err()
                .message
                .contains("not valid JSON")
        );
    }

    #[test]
    fn whole_floats_count_as_integers() {
        let o = Options::from_json(json!({"a": 100.0, "b": -3.0, "c": 1.5, "d": -1.0})).unwrap();
        assert_eq!(o.u64("a").unwrap(), Some(100));
        assert_eq!(o.i64("b").unwrap(), Some(-3));
        assert!(o.u64("c").is_err());
        assert!(o.u64("d").is_err());
    }

    #[test]
    fn lists_accept_a_single_string() {
        let o = Options::from_json(json!({"a": "x", "b": ["y", "z"], "c": [1]})).unwrap();
        assert_eq!(o.str_list("a").unwrap().unwrap(), vec!["x"]);
        assert_eq!(o.str_list("b").unwrap().unwrap(), vec!["y", "z"]);
        assert!(o.str_list("c").is_err());
    }
}
