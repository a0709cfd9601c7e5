//! Supervised examples: a prompt/completion or chat [`Record`] encoded into token ids and a loss
//! mask that covers the answers only (or every token under [`TrainOn::All`]), truncated to
//! `max_length`. [`crate::pack`] turns such examples into packed or padded causal-LM batches.
//!
//! How the answer tokens are found, exactly:
//! - Prompt/completion: the two parts are encoded separately (as TRL does), so the boundary is
//!   where the prompt's tokens end: `prefix ++ encode(prompt) ++ encode(completion) ++ [eos]`,
//!   where `prefix` is what the tokenizer puts before any text it encodes with special tokens
//!   (BOS for SentencePiece models, nothing for SmolLM2's byte-level BPE). The loss covers the
//!   completion and the EOS.
//! - Chat: the conversation is rendered once with the model's template and encoded once without
//!   added special tokens (transformers' `apply_chat_template(tokenize=True)` does the same, so a
//!   template that writes `bos_token` itself gets exactly one BOS). For the assistant message `i`,
//!   the rendering of `messages[..i]` with the generation prompt and the rendering of
//!   `messages[..=i]` are each a prefix of the whole rendering; their encodings must also be a
//!   prefix of the whole encoding (TRL's check). The tokens between the two are that turn's
//!   answer: its text and whatever the template closes the turn with (`<|im_end|>` and the
//!   newline after it for ChatML). Comparing token prefixes rather than mapping character
//!   offsets makes the boundary exact by construction: a token that merged text from both sides
//!   of a boundary would break the prefix, and that record is reported instead of guessed.

use serde::{Deserialize, Serialize};

use crate::chat::{ChatMessage, ChatTemplate};
use crate::error::{DataError, ErrorKind};
use crate::record::{Origin, Record, Turns};
use crate::tokenizer::{TextTokenizer, TruncationSide};

/// Which tokens of a supervised example carry loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainOn {
    /// The completion of a prompt/completion record, every assistant turn of a chat (with the
    /// end-of-turn the template writes).
    #[default]
    Completions,
    /// Every token (the prompt too), as in plain language modelling.
    All,
}

/// One encoded supervised example: `loss_mask[j]` says whether token `j` is a target (predicted
/// from the tokens before it). [`crate::pack`] shifts this into next-token labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisedExample {
    pub ids: Vec<u32>,
    pub loss_mask: Vec<bool>,
}

impl SupervisedExample {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Tokens that are trained on: masked tokens after the first (nothing predicts the first
    /// token of an example, since examples never see each other).
    pub fn targets(&self) -> usize {
        self.loss_mask.iter().skip(1).filter(|&&m| m).count()
    }
}

/// Why an example was left out: after truncation no token carries loss. Counted and skipped
/// (or turned into an error with [`NoAnswerLeft::to_error`]) under the dataset's bad-row policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoAnswerLeft {
    pub origin: Origin,
    /// Tokens before truncation.
    pub length: usize,
    pub max_length: usize,
    pub side: TruncationSide,
}

impl NoAnswerLeft {
    /// A row error at the record, for the bad-row policy's report.
    pub fn to_error(&self) -> DataError {
        let side = match self.side {
            TruncationSide::Left => "left",
            TruncationSide::Right => "right",
        };
        DataError::new(
            ErrorKind::BadRow,
            format!(
                "no answer token is left after truncating {} tokens to max_length {} from the \
                 {side}",
                self.length, self.max_length
            ),
        )
        .at(&self.origin.file, self.origin.line)
        .with_help(
            "raise max_length, shorten the prompt, or truncate from the other side (the answer \
             is at the end: truncate from the left to keep it)",
        )
    }
}

/// The result of encoding one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoded {
    Example(SupervisedExample),
    /// Nothing left to train on; the caller counts or stops under its bad-row policy.
    NoAnswerLeft(NoAnswerLeft),
}

/// Encodes supervised records (prompt/completion or chat) for causal-LM fine-tuning.
#[derive(Debug, Clone)]
pub struct SupervisedEncoder {
    tokenizer: TextTokenizer,
    template: Option<ChatTemplate>,
    train_on: TrainOn,
    max_length: usize,
    side: TruncationSide,
    /// What the tokenizer puts before a text encoded with special tokens (BOS, or nothing).
    prefix: Vec<u32>,
    eos: u32,
}

impl SupervisedEncoder {
    /// `template`: the model's chat template, needed for chat records only. `max_length`
    /// counts every token, specials included.
    pub fn new(
        tokenizer: &TextTokenizer,
        template: Option<ChatTemplate>,
        train_on: TrainOn,
        max_length: usize,
        side: TruncationSide,
    ) -> Result<Self, DataError> {
        if max_length < 2 {
            return Err(DataError::config(format!(
                "max_length {max_length} is too small to train on anything"
            ))
            .with_help("use at least 2 (typically 512 to 4096)"));
        }
        let eos = tokenizer.eos_id().ok_or_else(|| {
            DataError::config("the tokenizer has no end-of-sequence token to end a completion with")
                .with_help("use the model's own tokenizer; it names an eos token")
        })?;
        Ok(Self {
            prefix: leading_specials(tokenizer)?,
            tokenizer: tokenizer.clone(),
            template,
            train_on,
            max_length,
            side,
            eos,
        })
    }

    pub fn max_length(&self) -> usize {
        self.max_length
    }

    pub fn train_on(&self) -> TrainOn {
        self.train_on
    }

    /// Encode, mask and truncate one record. Errors are located at the record.
    pub fn encode(&self, record: &Record) -> Result<Encoded, DataError> {
        let ex = match &record.turns {
            None => {
                return Err(record.error(
                    DataError::new(
                        ErrorKind::BadRow,
                        "a plain-text record has no prompt/completion or messages to fine-tune on",
                    )
                    .with_help(
                        "map the dataset's `prompt` and `completion` fields, or its `messages` \
                         field ([{role, content}, …]); plain text trains as a language model \
                         (packed blocks) instead",
                    ),
                ));
            }
            Some(Turns::PromptCompletion { prompt, completion }) => {
                self.prompt_completion(prompt, completion)
            }
            Some(Turns::Chat(messages)) => self.chat(messages),
        }
        .map_err(|e| if e.file.is_some() { e } else { record.error(e) })?;
        Ok(self.truncate(ex, &record.origin))
    }

    fn prompt_completion(
        &self,
        prompt: &str,
        completion: &str,
    ) -> Result<SupervisedExample, DataError> {
        let p = self.tokenizer.encode(prompt, false)?.ids;
        let c = self.tokenizer.encode(completion, false)?.ids;
        let n_prompt = self.prefix.len() + p.len();
        let mut ids = Vec::with_capacity(n_prompt + c.len() + 1);
        ids.extend_from_slice(&self.prefix);
        ids.extend_from_slice(&p);
        ids.extend_from_slice(&c);
        ids.push(self.eos);
        let all = self.train_on == TrainOn::All;
        let loss_mask = (0..ids.len()).map(|j| all || j >= n_prompt).collect();
        Ok(SupervisedExample { ids, loss_mask })
    }

    fn chat(&self, messages: &[ChatMessage]) -> Result<SupervisedExample, DataError> {
        let Some(template) = &self.template else {
            return Err(DataError::config(
                "a chat record (messages) needs the model's chat template, and none was given",
            )
            .with_help(
                "use a model whose tokenizer_config.json, chat_template.jinja or GGUF names a \
                 chat template, or give the data as prompt/completion",
            ));
        };
        if !messages.iter().any(|m| m.role == "assistant") {
            return Err(DataError::new(
                ErrorKind::BadRow,
                "the conversation has no assistant message, so there is no answer to train on",
            )
            .with_help("every conversation needs at least one {\"role\": \"assistant\"} message"));
        }
        let full = template.render(messages, false)?;
        let ids = self.tokenizer.encode(&full, false)?.ids;
        let mut loss_mask = vec![self.train_on == TrainOn::All; ids.len()];
        if self.train_on == TrainOn::All {
            return Ok(SupervisedExample { ids, loss_mask });
        }
        for (i, m) in messages.iter().enumerate() {
            if m.role != "assistant" {
                continue;
            }
            let before = template.render(&messages[..i], true)?;
            let through = template.render(&messages[..=i], false)?;
            for (what, text) in [
                (
                    "the conversation before it, with the generation prompt,",
                    &before,
                ),
                ("the conversation through it", &through),
            ] {
                if !full.starts_with(text.as_str()) {
                    return Err(DataError::tokenizer(format!(
                        "chat template from {}: for assistant message {}, {what} does not render \
                         as the start of the whole conversation: the template rewrites earlier \
                         turns, so the answer tokens cannot be located",
                        template.source(),
                        i + 1
                    ))
                    .with_help(
                        "use a template that renders a conversation turn by turn (many \
                         reasoning templates drop earlier thinking), or give the data as \
                         prompt/completion",
                    ));
                }
            }
            let start = self.token_prefix(&before, &ids, i)?;
            let end = self.token_prefix(&through, &ids, i)?;
            for flag in &mut loss_mask[start..end.max(start)] {
                *flag = true;
            }
        }
        Ok(SupervisedExample { ids, loss_mask })
    }

    /// The number of tokens of `text` (a prefix of the rendered conversation), checking that its
    /// encoding is a prefix of the whole conversation's encoding `ids`.
    fn token_prefix(&self, text: &str, ids: &[u32], message: usize) -> Result<usize, DataError> {
        let part = self.tokenizer.encode(text, false)?.ids;
        if ids.starts_with(&part) {
            return Ok(part.len());
        }
        let at = part.iter().zip(ids).take_while(|(a, b)| a == b).count();
        let show = |v: &[u32]| {
            let end = (at + 2).min(v.len());
            self.tokenizer
                .decode(&v[at.min(end)..end], false)
                .unwrap_or_default()
        };
        Err(DataError::new(
            ErrorKind::BadRow,
            format!(
                "around assistant message {}, a token spans the boundary between prompt and \
                 answer (the part alone ends in {:?}, the whole conversation has {:?} there), \
                 so the answer's first or last token is not exact",
                message + 1,
                show(&part),
                show(ids)
            ),
        )
        .with_help(
            "this happens when an answer starts or ends with text that merges with the \
             template's markup (e.g. leading whitespace); strip the messages' content",
        ))
    }

    fn truncate(&self, mut ex: SupervisedExample, origin: &Origin) -> Encoded {
        let length = ex.ids.len();
        if length > self.max_length {
            match self.side {
                TruncationSide::Right => {
                    ex.ids.truncate(self.max_length);
                    ex.loss_mask.truncate(self.max_length);
                }
                TruncationSide::Left => {
                    // The leading special tokens (BOS) stay: models trained with BOS first
                    // predict badly without it. The cut is right after them.
                    let keep = if ex.ids.starts_with(&self.prefix)
                        && self.prefix.len() < self.max_length
                    {
                        self.prefix.len()
                    } else {
                        0
                    };
                    let cut = length - (self.max_length - keep);
                    ex.ids.drain(keep..cut);
                    ex.loss_mask.drain(keep..cut);
                }
            }
        }
        if ex.targets() == 0 {
            return Encoded::NoAnswerLeft(NoAnswerLeft {
                origin: origin.clone(),
                length,
                max_length: self.max_length,
                side: self.side,
            });
        }
        Encoded::Example(ex)
    }
}

/// The special tokens a tokenizer puts before every text it encodes with special tokens: BOS for
/// SentencePiece models, `[CLS]` for BERT, nothing for byte-level BPE models such as SmolLM2.
pub fn leading_specials(tokenizer: &TextTokenizer) -> Result<Vec<u32>, DataError> {
    let with = tokenizer.encode("a", true)?.ids;
    let without = tokenizer.encode("a", false)?.ids;
    if without.is_empty() {
        return Ok(Vec::new());
    }
    Ok(with
        .windows(without.len())
        .position(|w| w == without.as_slice())
        .map(|p| with[..p].to_vec())
        .unwrap_or_default())
}
