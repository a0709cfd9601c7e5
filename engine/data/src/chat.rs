//! A model's chat template: its own Jinja text (tokenizer_config.json, chat_template.jinja or GGUF
//! `tokenizer.chat_template`) rendered with minijinja as transformers' `apply_chat_template` does
//! (`transformers/utils/chat_template_utils.py` in the peer venv is the reference): trim_blocks
//! and lstrip_blocks, Python string methods, Python's `json.dumps` for `tojson`,
//! `raise_exception` and `strftime_now`. Also the split of a conversation into the prompt and
//! the last assistant turn, for loss masking.

use std::collections::BTreeMap;

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error as JinjaError, ErrorKind as JinjaErrorKind};

use crate::error::DataError;
use crate::tokenizer::TextTokenizer;

type Result<T> = std::result::Result<T, DataError>;

/// One message of a conversation, as chat templates read it (`message['role']`,
/// `message['content']`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A conversation rendered for training on its last assistant turn: `prompt` is everything the
/// model reads (the earlier turns and the generation prompt), `completion` the rest of the full
/// rendering (the reply and whatever the template closes the turn with), so that
/// `prompt + completion` is the whole conversation and a loss mask covers only `completion`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatParts {
    pub prompt: String,
    pub completion: String,
}

/// A model's Jinja chat template, with the special tokens it may refer to (`bos_token`, …).
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    source: String,
    text: String,
    /// `bos_token`, `eos_token`, `unk_token`, `pad_token`, … by name, as the template sees them.
    special_tokens: BTreeMap<String, String>,
    env: Environment<'static>,
}

const TEMPLATE_NAME: &str = "chat_template";

impl ChatTemplate {
    /// Compile `text`; `source` names where it came from (used in every error).
    pub fn new(
        text: impl Into<String>,
        source: impl Into<String>,
        special_tokens: BTreeMap<String, String>,
    ) -> Result<Self> {
        let (text, source) = (text.into(), source.into());
        let mut env = Environment::new();
        // The settings transformers compiles chat templates with.
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| template_error(&source, "cannot be set up", &e))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_formatter(python_formatter);
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(TEMPLATE_NAME, text.clone())
            .map_err(|e| template_error(&source, "does not compile", &e))?;
        Ok(Self {
            source,
            text,
            special_tokens,
            env,
        })
    }

    /// Where the template came from, e.g. a `tokenizer_config.json` or a GGUF file.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The Jinja text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The named special tokens the template is rendered with.
    pub fn special_tokens(&self) -> &BTreeMap<String, String> {
        &self.special_tokens
    }

    /// Render `messages` as `tokenizer.apply_chat_template(messages, tokenize=False,
    /// add_generation_prompt=…)` does. The text already holds whatever special tokens the
    /// template writes (BOS included), so encode it without adding special tokens.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let mut ctx: BTreeMap<String, Value> = self
            .special_tokens
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
            .collect();
        ctx.insert(
            "messages".into(),
            Value::from(minijinja::value::Serde(messages)),
        );
        ctx.insert(
            "add_generation_prompt".into(),
            Value::from(add_generation_prompt),
        );
        ctx.insert("tools".into(), Value::from(()));
        ctx.insert("documents".into(), Value::from(()));
        let tmpl = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| template_error(&self.source, "does not compile", &e))?;
        tmpl.render(ctx)
            .map_err(|e| template_error(&self.source, "failed to render", &e))
    }

    /// A single user turn, ready for the assistant's reply.
    pub fn user_prompt(&self, user: &str) -> Result<String> {
        self.render(&[ChatMessage::new("user", user)], true)
    }

    /// Split a conversation that ends with an assistant turn into the prompt (the conversation
    /// before that turn, with the generation prompt) and the completion (the rest of the full
    /// rendering). Refused when the template does not render the earlier turns the same way in
    /// both, since then no split point exists.
    pub fn split_last_turn(&self, messages: &[ChatMessage]) -> Result<ChatParts> {
        let Some((last, before)) = messages.split_last() else {
            return Err(DataError::config(
                "an empty conversation has no assistant turn to split off",
            ));
        };
        if last.role != "assistant" {
            return Err(DataError::config(format!(
                "the conversation ends with a `{}` message; the last message must be the \
                 assistant's reply to split it from the prompt",
                last.role
            )));
        }
        let prompt = self.render(before, true)?;
        let full = self.render(messages, false)?;
        let Some(completion) = full.strip_prefix(prompt.as_str()) else {
            return Err(DataError::tokenizer(format!(
                "chat template from {}: the conversation rendered without its last assistant \
                 turn (with the generation prompt) is not a prefix of the whole conversation \
                 rendered, so the prompt and the reply cannot be told apart",
                self.source
            )));
        };
        Ok(ChatParts {
            completion: completion.to_string(),
            prompt,
        })
    }

    /// The ids that end an assistant turn: the special tokens the template writes right after
    /// an assistant's reply (e.g. `<|im_end|>`, `<|eot_id|>`, `<end_of_turn>`, `</s>`), found by
    /// rendering a short exchange. Empty when the template closes a turn with plain text only.
    pub fn end_of_turn_ids(&self, tokenizer: &TextTokenizer) -> Result<Vec<u32>> {
        const REPLY: &str = "ardpipe-reply-marker";
        let text = self.render(
            &[
                ChatMessage::new("user", "ardpipe-user-marker"),
                ChatMessage::new("assistant", REPLY),
            ],
            false,
        )?;
        let Some(at) = text.rfind(REPLY) else {
            return Err(DataError::tokenizer(format!(
                "chat template from {}: an assistant reply does not appear in the rendered \
                 conversation, so its end of turn cannot be found",
                self.source
            )));
        };
        let after = &text[at + REPLY.len()..];
        let ids = tokenizer.encode(after, false)?.ids;
        Ok(ids
            .into_iter()
            .find(|&id| tokenizer.is_special(id))
            .into_iter()
            .collect())
    }
}

fn template_error(source: &str, what: &str, e: &JinjaError) -> DataError {
    let mut msg = format!("the chat template from {source} {what}: {e}");
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        msg.push_str(&format!(": {c}"));
        cause = c.source();
    }
    DataError::tokenizer(msg)
}

/// Values print as Python's `str` prints them (`None`, `True`), as in transformers' Jinja.
fn python_formatter(
    out: &mut minijinja::Output<'_>,
    state: &mut minijinja::State<'_, '_>,
    value: &Value,
) -> std::result::Result<(), JinjaError> {
    if value.is_none() {
        out.write_str("None")?;
        Ok(())
    } else if value.kind() == minijinja::value::ValueKind::Bool {
        out.write_str(if value.is_true() { "True" } else { "False" })?;
        Ok(())
    } else {
        minijinja::escape_formatter(out, state, value)
    }
}

fn raise_exception(message: String) -> std::result::Result<Value, JinjaError> {
    Err(JinjaError::new(JinjaErrorKind::InvalidOperation, message))
}

/// transformers' `tojson`: `json.dumps(x, ensure_ascii=False, indent=None, separators=None,
/// sort_keys=False)`, i.e. `", "` and `": "` between items, no HTML escaping.
fn tojson(value: &Value, kwargs: Kwargs) -> std::result::Result<Value, JinjaError> {
    let indent: Option<Value> = kwargs.get("indent")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let separators: Option<Value> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let unsupported = |what: &str| {
        JinjaError::new(
            JinjaErrorKind::InvalidOperation,
            format!("tojson({what}) is not supported by ardpipe's chat templates"),
        )
    };
    if sort_keys == Some(true) {
        return Err(unsupported("sort_keys=true"));
    }
    if separators.as_ref().is_some_and(|s| !s.is_none()) {
        return Err(unsupported("separators=…"));
    }
    let indent: Option<String> = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => {
            if let Some(s) = v.as_str() {
                Some(s.to_string())
            } else if let Some(n) = v.as_usize() {
                Some(" ".repeat(n))
            } else {
                return Err(unsupported("indent of this type"));
            }
        }
    };
    let mut buf = Vec::new();
    let result = match &indent {
        Some(ind) => {
            let fmt = serde_json::ser::PrettyFormatter::with_indent(ind.as_bytes());
            let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
            serde::Serialize::serialize(value, &mut ser)
        }
        None => {
            let mut ser = serde_json::Serializer::with_formatter(&mut buf, PyFormatter);
            serde::Serialize::serialize(value, &mut ser)
        }
    };
    result.map_err(|e| {
        JinjaError::new(
            JinjaErrorKind::InvalidOperation,
            format!("tojson: cannot serialise: {e}"),
        )
    })?;
    let mut s = String::from_utf8(buf)
        .map_err(|e| JinjaError::new(JinjaErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    if ensure_ascii == Some(true) {
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            if c.is_ascii() {
                out.push(c);
            } else {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
        s = out;
    }
    Ok(Value::from_safe_string(s))
}

/// Python's `json.dumps` separators without indentation: `", "` and `": "`.
struct PyFormatter;

fn comma_unless_first<W: ?Sized + std::io::Write>(
    writer: &mut W,
    first: bool,
) -> std::io::Result<()> {
    if first {
        Ok(())
    } else {
        writer.write_all(b", ")
    }
}

impl serde_json::ser::Formatter for PyFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        comma_unless_first(writer, first)
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        comma_unless_first(writer, first)
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

/// `datetime.now().strftime(format)` for the codes chat templates use, in UTC (the clock of
/// ardpipe's machines; transformers reads the local clock).
fn strftime_now(format: String) -> std::result::Result<String, JinjaError> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    strftime(&format, secs)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

fn strftime(format: &str, unix_secs: i64) -> std::result::Result<String, JinjaError> {
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = (days + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let before = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334][month as usize - 1];
    let yday = before + day + i64::from(leap && month > 2);
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let code = chars.next().ok_or_else(|| {
            JinjaError::new(
                JinjaErrorKind::InvalidOperation,
                "strftime_now: the format ends with a lone %",
            )
        })?;
        match code {
            'd' => out.push_str(&format!("{day:02}")),
            'e' => out.push_str(&format!("{day:>2}")),
            'm' => out.push_str(&format!("{month:02}")),
            'Y' => out.push_str(&format!("{year}")),
            'y' => out.push_str(&format!("{:02}", year % 100)),
            'b' => out.push_str(&MONTHS[month as usize - 1][..3]),
            'B' => out.push_str(MONTHS[month as usize - 1]),
            'a' => out.push_str(&WEEKDAYS[weekday][..3]),
            'A' => out.push_str(WEEKDAYS[weekday]),
            'H' => out.push_str(&format!("{h:02}")),
            'I' => out.push_str(&format!("{:02}", if h % 12 == 0 { 12 } else { h % 12 })),
            'p' => out.push_str(if h < 12 { "AM" } else { "PM" }),
            'M' => out.push_str(&format!("{m:02}")),
            'S' => out.push_str(&format!("{s:02}")),
            'j' => out.push_str(&format!("{yday:03}")),
            '%' => out.push('%'),
            other => {
                return Err(JinjaError::new(
                    JinjaErrorKind::InvalidOperation,
                    format!("strftime_now: the format code %{other} is not supported"),
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strftime_matches_known_dates() {
        // 2024-02-29 13:05:09 UTC, a Thursday, day 60 of a leap year.
        let t = 1_709_211_909;
        assert_eq!(
            strftime("%d %b %Y|%B %e|%A %a|%H:%M:%S %I%p|%j|%m/%y|%%", t).unwrap(),
            "29 Feb 2024|February 29|Thursday Thu|13:05:09 01PM|060|02/24|%"
        );
        assert_eq!(strftime("%Y-%m-%d", 0).unwrap(), "1970-01-01");
        assert!(strftime("%Q", 0).is_err());
    }

    #[test]
    fn bad_templates_name_their_source() {
        let e = ChatTemplate::new("{% for %}", "here.json", BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains("here.json"), "{e}");
        let t = ChatTemplate::new(
            "{{ raise_exception('no system role') }}",
            "there.gguf",
            BTreeMap::new(),
        )
        .unwrap();
        let e = t.render(&[], false).unwrap_err().to_string();
        assert!(
            e.contains("there.gguf") && e.contains("no system role"),
            "{e}"
        );
    }
}
