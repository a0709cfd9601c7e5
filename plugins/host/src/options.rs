//! The host's check of a plugin's options against the ones its descriptor declares, done for
//! every plugin (C or Rust) before `open`/`create` runs: unknown keys and missing required keys
//! are refused, values are checked (and normalised) against the declared kind, and declared
//! defaults are filled in. So a plugin receives exactly the JSON object docs/PLUGINS.md describes,
//! e.g. `n = 3` as the integer `3` for an `integer` option, not the `3.0` a pipeline number is.

use ardpipe_plugin_sdk::{closest, kind_of};
use serde_json::{Map, Number, Value};

use crate::error::{ErrorKind, PluginError};
use crate::info::{OptionInfo, PluginInfo};

/// The kinds the host understands; any other declared kind is free text and passed unchecked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OptionKind {
    String,
    Path,
    Integer,
    Number,
    Boolean,
    ListOfStrings,
}

impl OptionKind {
    fn parse(kind: &str) -> Option<OptionKind> {
        Some(match kind.trim().to_ascii_lowercase().as_str() {
            "string" => OptionKind::String,
            "path" => OptionKind::Path,
            "integer" => OptionKind::Integer,
            "number" => OptionKind::Number,
            "boolean" => OptionKind::Boolean,
            "list of strings" => OptionKind::ListOfStrings,
            _ => return None,
        })
    }

    fn expected(self) -> &'static str {
        match self {
            OptionKind::String => "a string",
            OptionKind::Path => "a path (a string)",
            OptionKind::Integer => "a whole number",
            OptionKind::Number => "a number",
            OptionKind::Boolean => "true or false",
            OptionKind::ListOfStrings => "a list of strings",
        }
    }

    /// `value` in the form the plugin receives, or `None` when it is not of this kind.
    fn normalise(self, value: &Value) -> Option<Value> {
        match (self, value) {
            (OptionKind::String | OptionKind::Path, Value::String(_))
            | (OptionKind::Boolean, Value::Bool(_)) => Some(value.clone()),
            (OptionKind::Number, Value::Number(_)) => Some(value.clone()),
            (OptionKind::Integer, Value::Number(n)) => integer(n).map(Value::Number),
            (OptionKind::ListOfStrings, Value::String(_)) => {
                Some(Value::Array(vec![value.clone()]))
            }
            (OptionKind::ListOfStrings, Value::Array(items))
                if items.iter().all(Value::is_string) =>
            {
                Some(value.clone())
            }
            _ => None,
        }
    }

    /// A declared default (written as a user would write it) as the value the plugin receives.
    fn default_value(self, text: &str) -> Option<Value> {
        let text = text.trim();
        match self {
            OptionKind::String | OptionKind::Path => Some(Value::String(
                serde_json::from_str::<String>(text).unwrap_or_else(|_| text.to_string()),
            )),
            OptionKind::Integer | OptionKind::Number | OptionKind::Boolean => {
                self.normalise(&serde_json::from_str(text).ok()?)
            }
            OptionKind::ListOfStrings => match serde_json::from_str::<Value>(text) {
                Ok(v) => self.normalise(&v),
                Err(_) => Some(Value::Array(
                    text.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| Value::String(s.to_string()))
                        .collect(),
                )),
            },
        }
    }
}

/// A number that is whole (pipelines write every number as f64, so `3` arrives as `3.0`) as a JSON
/// integer; `None` for a fraction or a value outside the exactly representable range.
fn integer(n: &Number) -> Option<Number> {
    if n.is_i64() || n.is_u64() {
        return Some(n.clone());
    }
    let f = n.as_f64()?;
    (f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0).then(|| Number::from(f as i64))
}

/// Checks `options_json` (a JSON object; empty bytes mean none) against `info`'s declared options
/// and returns the JSON object the plugin receives. `during` is the call it is for.
pub(crate) fn check(
    info: &PluginInfo,
    options_json: &[u8],
    during: &'static str,
) -> Result<Vec<u8>, PluginError> {
    let error = |key: &str, detail: String| {
        let mut e = PluginError::new(
            &info.name,
            &info.path,
            ErrorKind::BadOption {
                during,
                detail: format!("{detail}; {}", declared(&info.options)),
            },
        );
        e.key = Some(key.to_string());
        e
    };
    let given: Map<String, Value> = if options_json.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        match serde_json::from_slice::<Value>(options_json) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Err(invalid(
                    info,
                    during,
                    "options must be a JSON object".into(),
                ));
            }
            Err(e) => {
                return Err(invalid(
                    info,
                    during,
                    format!("options are not valid JSON (a JSON object is needed): {e}"),
                ));
            }
        }
    };
    let mut out = Map::new();
    for (key, value) in &given {
        let Some(spec) = info.options.iter().find(|o| &o.key == key) else {
            let known: Vec<&str> = info.options.iter().map(|o| o.key.as_str()).collect();
            let hint = match closest(key, &known) {
                Some(near) => format!("unknown option `{key}` (did you mean `{near}`?)"),
                None => format!("unknown option `{key}`"),
            };
            return Err(error(key, hint));
        };
        if value.is_null() {
            continue;
        }
        let value = match OptionKind::parse(&spec.kind) {
            None => value.clone(),
            Some(kind) => kind.normalise(value).ok_or_else(|| {
                error(
                    key,
                    format!(
                        "option `{key}` must be {} ({}), got {} `{value}`",
                        kind.expected(),
                        spec.kind,
                        kind_of(value)
                    ),
                )
            })?,
        };
        out.insert(key.clone(), value);
    }
    for spec in &info.options {
        if out.contains_key(&spec.key) {
            continue;
        }
        if spec.required {
            return Err(error(
                &spec.key,
                format!("missing required option `{}` ({})", spec.key, spec.kind),
            ));
        }
        let default = spec
            .default
            .as_deref()
            .zip(OptionKind::parse(&spec.kind))
            .and_then(|(text, kind)| kind.default_value(text));
        if let Some(v) = default {
            out.insert(spec.key.clone(), v);
        }
    }
    serde_json::to_vec(&Value::Object(out))
        .map_err(|e| invalid(info, during, format!("options: {e}")))
}

fn invalid(info: &PluginInfo, during: &'static str, detail: String) -> PluginError {
    PluginError::new(
        &info.name,
        &info.path,
        ErrorKind::InvalidInput { during, detail },
    )
}

/// The declared options as `ardpipe plugin inspect` lists them: `key (kind, required)`.
fn declared(options: &[OptionInfo]) -> String {
    if options.is_empty() {
        return "it declares no options".into();
    }
    let list: Vec<String> = options
        .iter()
        .map(|o| {
            let mut facts = vec![o.kind.clone()];
            if o.required {
                facts.push("required".into());
            }
            if let Some(d) = &o.default {
                facts.push(format!("default {d}"));
            }
            format!("{} ({})", o.key, facts.join(", "))
        })
        .collect();
    format!("it declares: {}", list.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::info::Kind;
    use serde_json::json;

    fn info(options: &[(&str, &str, bool, Option<&str>)]) -> PluginInfo {
        PluginInfo {
            name: "p".into(),
            version: "1".into(),
            description: String::new(),
            abi_version: 1,
            kind: Kind::Loader,
            capabilities: vec![],
            options: options
                .iter()
                .map(|(key, kind, required, default)| OptionInfo {
                    key: key.to_string(),
                    kind: kind.to_string(),
                    required: *required,
                    default: default.map(str::to_string),
                    help: String::new(),
                })
                .collect(),
            path: "/lib/libp.so".into(),
        }
    }

    fn run(i: &PluginInfo, v: Value) -> Result<Value, PluginError> {
        check(i, v.to_string().as_bytes(), "open").map(|b| serde_json::from_slice(&b).unwrap())
    }

    #[test]
    fn values_are_normalised_and_defaults_filled() {
        let i = info(&[
            ("n", "integer", true, None),
            ("x", "number", false, Some("0.5")),
            ("flag", "boolean", false, Some("false")),
            ("names", "list of strings", false, None),
            ("path", "path", false, None),
            ("free", "anything at all", false, Some("7")),
        ]);
        let out = run(&i, json!({"n": 3.0, "names": "a", "path": "/d"})).unwrap();
        assert_eq!(
            out,
            json!({"n": 3, "x": 0.5, "flag": false, "names": ["a"], "path": "/d"})
        );
        assert!(out["n"].is_i64(), "an integer option arrives as an integer");
    }

    #[test]
    fn unknown_missing_and_mistyped_options_are_refused_naming_the_declared_ones() {
        let i = info(&[
            ("path", "path", true, None),
            ("limit", "integer", false, None),
        ]);
        let e = run(&i, json!({"path": "/d", "limt": 3})).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("limt"));
        let text = e.to_string();
        assert!(text.contains("plugin `p` refused option `limt`"), "{text}");
        assert!(text.contains("did you mean `limit`?"), "{text}");
        assert!(
            text.contains("path (path, required), limit (integer)"),
            "{text}"
        );
        let e = run(&i, json!({})).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("path"));
        assert!(e.to_string().contains("missing required option `path`"));
        let e = run(&i, json!({"path": "/d", "limit": 2.5})).unwrap_err();
        assert!(
            e.to_string()
                .contains("option `limit` must be a whole number (integer), got a number `2.5`"),
            "{e}"
        );
        let e = run(&i, json!({"path": 1})).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("path"));
        let e = check(&i, b"[1]", "open").unwrap_err();
        assert!(e.to_string().contains("JSON object"), "{e}");
    }
}
