//! The tokenizer that belongs to a model: `tokenizer.json` of a Hugging Face folder, or the one
//! rebuilt from a GGUF file's metadata (byte-level BPE or SentencePiece); plus the model's own
//! chat template, rendered with Jinja (minijinja) as transformers' `apply_chat_template` does
//! (`transformers/utils/chat_template_utils.py` in the peer venv is the reference).

use std::collections::BTreeMap;
use std::path::Path;

use ardpipe_data::{BpeSpec, SpmFlavour, SpmSpec, TextTokenizer};
use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error as JinjaError, ErrorKind as JinjaErrorKind};

use crate::error::{ModelError, Result};
use crate::gguf::GgufFile;
use crate::gguf::llama::{GgufTokenizerMeta, tokenizer_meta};
use crate::model::ModelLocation;

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
            return Err(ModelError::Usage(
                "an empty conversation has no assistant turn to split off".into(),
            ));
        };
        if last.role != "assistant" {
            return Err(ModelError::Usage(format!(
                "the conversation ends with a `{}` message; the last message must be the \
                 assistant's reply to split it from the prompt",
                last.role
            )));
        }
        let prompt = self.render(before, true)?;
        let full = self.render(messages, false)?;
        let Some(completion) = full.strip_prefix(prompt.as_str()) else {
            return Err(ModelError::Tokenizer(format!(
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
            return Err(ModelError::Tokenizer(format!(
                "chat template from {}: an assistant reply does not appear in the rendered \
                 conversation, so its end of turn cannot be found",
                self.source
            )));
        };
        let after = &text[at + REPLY.len()..];
        let ids = tokenizer
            .encode(after, false)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?
            .ids;
        Ok(ids
            .into_iter()
            .find(|&id| tokenizer.is_special(id))
            .into_iter()
            .collect())
    }
}

fn template_error(source: &str, what: &str, e: &JinjaError) -> ModelError {
    let mut msg = format!("the chat template from {source} {what}: {e}");
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        msg.push_str(&format!(": {c}"));
        cause = c.source();
    }
    ModelError::Tokenizer(msg)
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

impl serde_json::ser::Formatter for PyFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
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

/// A model's tokenizer and its chat template (when it has one).
pub struct ModelTokenizer {
    pub tokenizer: TextTokenizer,
    pub chat: Option<ChatTemplate>,
}

fn tok_err(e: ardpipe_data::DataError) -> ModelError {
    ModelError::Tokenizer(e.to_string())
}

/// The SentencePiece flavours transformers builds, by `general.architecture`.
const GEMMA_ARCHES: &[&str] = &["gemma", "gemma2", "gemma3"];
/// Architectures whose SentencePiece vocabulary transformers builds another way (ardpipe does
/// not rebuild those).
const OTHER_SPM_ARCHES: &[&str] = &["phi3", "gemma4", "gemma3n", "t5", "t5encoder"];

pub fn load_tokenizer(location: &ModelLocation) -> Result<ModelTokenizer> {
    match location {
        ModelLocation::Gguf(p) => {
            let g = GgufFile::open(p)?;
            let m = tokenizer_meta(&g)?;
            gguf_tokenizer(p, m)
        }
        ModelLocation::HfFolder(dir) => {
            let tokenizer =
                TextTokenizer::from_file(&dir.join("tokenizer.json")).map_err(tok_err)?;
            let chat = hf_chat_template(dir)?;
            Ok(ModelTokenizer { tokenizer, chat })
        }
    }
}

fn gguf_tokenizer(p: &Path, m: GgufTokenizerMeta) -> Result<ModelTokenizer> {
    let name_of = |id: Option<u32>| id.and_then(|i| m.tokens.get(i as usize)).cloned();
    let mut special = BTreeMap::new();
    for (key, id) in [
        ("bos_token", m.bos),
        ("eos_token", m.eos),
        ("unk_token", m.unk),
        ("pad_token", m.pad),
    ] {
        if let Some(t) = name_of(id) {
            special.insert(key.to_string(), t);
        }
    }
    let tokenizer = match m.model.as_str() {
        "gpt2" => TextTokenizer::from_bpe(BpeSpec {
            pre: m.pre.clone().unwrap_or_else(|| "gpt2".into()),
            tokens: m.tokens,
            merges: m.merges,
            token_types: m.token_types,
            bos: m.bos,
            eos: m.eos,
            unk: m.unk,
            pad: m.pad,
            add_bos: m.add_bos,
            add_eos: m.add_eos,
        }),
        "llama" => {
            let arch = m.architecture.as_str();
            if OTHER_SPM_ARCHES.contains(&arch) {
                return Err(ModelError::config(
                    p,
                    format!(
                        "a SentencePiece tokenizer of architecture `{arch}` is not rebuilt from \
                         GGUF by ardpipe (supported: the Llama flavour, e.g. llama or mistral, and \
                         {}); use the model's Hugging Face folder with its tokenizer.json",
                        GEMMA_ARCHES.join(", ")
                    ),
                ));
            }
            let flavour = if GEMMA_ARCHES.contains(&arch) {
                if m.add_space_prefix == Some(true) {
                    return Err(ModelError::config(
                        p,
                        "tokenizer.ggml.add_space_prefix is true in a Gemma file: Gemma's \
                         tokenizer adds no dummy prefix and ardpipe will not guess which is meant; \
                         re-convert the model",
                    ));
                }
                SpmFlavour::Gemma
            } else {
                if m.add_space_prefix == Some(false) {
                    return Err(ModelError::config(
                        p,
                        "tokenizer.ggml.add_space_prefix is false: ardpipe rebuilds SentencePiece \
                         vocabularies of the Llama flavour with the dummy prefix (a `▁` before the \
                         text), as transformers does; use the model's Hugging Face folder with its \
                         tokenizer.json",
                    ));
                }
                SpmFlavour::Llama
            };
            TextTokenizer::from_spm(SpmSpec {
                tokens: m.tokens,
                scores: m.scores,
                merges: m.merges,
                token_types: m.token_types,
                bos: m.bos,
                eos: m.eos,
                unk: m.unk,
                pad: m.pad,
                // A SentencePiece file that does not say adds BOS (llama.cpp and transformers).
                add_bos: m.add_bos_written.unwrap_or(true),
                add_eos: m.add_eos,
                flavour,
            })
        }
        other => {
            return Err(ModelError::config(
                p,
                format!(
                    "tokenizer.ggml.model is `{other}`: ardpipe rebuilds byte-level BPE (`gpt2`) \
                     and SentencePiece (`llama`) tokenizers from GGUF; use the model's Hugging \
                     Face folder with its tokenizer.json instead"
                ),
            ));
        }
    }
    .map_err(|e| ModelError::config(p, format!("tokenizer: {e}")))?;
    let chat = match m.chat_template {
        Some(t) => Some(ChatTemplate::new(
            t,
            format!("GGUF `tokenizer.chat_template` of {}", p.display()),
            special,
        )?),
        None => None,
    };
    Ok(ModelTokenizer { tokenizer, chat })
}

/// The chat template of a Hugging Face folder: `chat_template.jinja` (what transformers 5 saves),
/// else `tokenizer_config.json`'s `chat_template`, a string or a list of named templates (the one
/// named `default`). Its special tokens come from `tokenizer_config.json`.
fn hf_chat_template(dir: &Path) -> Result<Option<ChatTemplate>> {
    let cfg_path = dir.join("tokenizer_config.json");
    let cfg: Option<serde_json::Value> = match std::fs::read_to_string(&cfg_path) {
        Ok(s) => Some(
            serde_json::from_str(&s)
                .map_err(|e| ModelError::format(&cfg_path, format!("not valid JSON: {e}")))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(ModelError::io(&cfg_path, e)),
    };
    let mut special = BTreeMap::new();
    if let Some(cfg) = &cfg {
        for key in [
            "bos_token",
            "eos_token",
            "unk_token",
            "sep_token",
            "pad_token",
            "cls_token",
            "mask_token",
        ] {
            let v = cfg.get(key);
            if let Some(s) = v.and_then(|v| {
                v.as_str()
                    .or_else(|| v.get("content").and_then(|c| c.as_str()))
            }) {
                special.insert(key.to_string(), s.to_string());
            }
        }
    }
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        let text = std::fs::read_to_string(&jinja).map_err(|e| ModelError::io(&jinja, e))?;
        return ChatTemplate::new(text, jinja.display().to_string(), special).map(Some);
    }
    let Some(t) = cfg.as_ref().and_then(|c| c.get("chat_template")) else {
        return Ok(None);
    };
    let source = format!("`chat_template` of {}", cfg_path.display());
    let text = match t {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(list) => {
            let named: Vec<(&str, &str)> = list
                .iter()
                .filter_map(|e| Some((e.get("name")?.as_str()?, e.get("template")?.as_str()?)))
                .collect();
            match named.iter().find(|(n, _)| *n == "default") {
                Some((_, t)) => t.to_string(),
                None => {
                    return Err(ModelError::config(
                        &cfg_path,
                        format!(
                            "chat_template lists templates named {:?} but none named `default`, \
                             the one a plain chat uses",
                            named.iter().map(|(n, _)| *n).collect::<Vec<_>>()
                        ),
                    ));
                }
            }
        }
        serde_json::Value::Null => return Ok(None),
        _ => {
            return Err(ModelError::config(
                &cfg_path,
                "chat_template is neither a string nor a list of {name, template}",
            ));
        }
    };
    ChatTemplate::new(text, source, special).map(Some)
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
