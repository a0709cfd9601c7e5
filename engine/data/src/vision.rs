//! Image questions for a PaliGemma-style vision-language model: a record with an image, a
//! question and an answer becomes one training example exactly as transformers'
//! `PaliGemmaProcessor` builds it (`models/paligemma/processing_paligemma.py`), and examples
//! are collated into padded batches.
//!
//! One example's ids:
//!
//! ```text
//! [image] × num_image_tokens ++ encode(bos_text + question + "\n") ++ encode(answer + eos_text)
//! ```
//!
//! The processor writes the text `<image>…<image>` + `bos_token` + question + `"\n"` and passes
//! the answer with the EOS text appended as the second text of a pair; the tokenizer encodes the
//! two texts separately and adds no special tokens (the processor switches BOS and EOS off).
//! The image tokens and BOS are special tokens, which split the text before anything else, so
//! the question is encoded as the text after BOS (not as a text of its own: a SentencePiece
//! tokenizer that marks only the first word of a text would mark it differently). The image,
//! BOS and question tokens are the prefix (token type 0), which the model attends to both ways;
//! the answer and its EOS (token type 1) are what the loss is computed on.

use std::path::Path;

use crate::error::{DataError, ErrorKind};
use crate::image::ImageProcessor;
use crate::pack::CausalBatch;
use crate::record::{Record, Turns};
use crate::sft::SupervisedExample;
use crate::tokenizer::TextTokenizer;

/// One encoded image question.
#[derive(Debug, Clone, PartialEq)]
pub struct VisionExample {
    /// The ids, with the loss mask true on the answer's tokens and its EOS (token type 1), false
    /// on the prefix: the text part, batched as supervised examples are.
    pub text: SupervisedExample,
    /// The image tokens, BOS and the question: the block the model attends to bidirectionally.
    pub prefix_len: usize,
    /// The image's pixel values, channels first, `pixel_shape` = `[3, height, width]`.
    pub pixel_values: Vec<f32>,
    pub pixel_shape: [usize; 3],
}

impl VisionExample {
    pub fn len(&self) -> usize {
        self.text.len()
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }
}

/// Encodes image-question records (see the module documentation).
#[derive(Debug, Clone)]
pub struct VisionEncoder {
    tokenizer: TextTokenizer,
    image_token_id: u32,
    num_image_tokens: usize,
    max_length: usize,
    images: ImageProcessor,
    bos: u32,
    bos_text: String,
    eos_text: String,
}

impl VisionEncoder {
    /// `image_token_id`: the id of the `<image>` placeholder (the processor adds it to the
    /// tokenizer as a new special token, so it is usually the tokenizer's vocabulary size).
    /// `num_image_tokens`: how many the image becomes (the processor's `image_seq_length`).
    /// `max_length` counts every token, the image's included. The image processor must resize
    /// to a fixed size, so that the images of a batch stack.
    pub fn new(
        tokenizer: &TextTokenizer,
        image_token_id: u32,
        num_image_tokens: usize,
        max_length: usize,
        images: ImageProcessor,
    ) -> Result<Self, DataError> {
        let special =
            |id: Option<u32>, what: &str, name: &str| -> Result<(u32, String), DataError> {
                let id = id.ok_or_else(|| {
                    DataError::config(format!(
                        "the tokenizer has no {what} token, which a PaliGemma example needs"
                    ))
                    .with_help(format!(
                        "use the model's own tokenizer; it names a {name} token (or set it with \
                     the tokenizer's special ids)"
                    ))
                })?;
                let text = tokenizer.id_to_token(id).unwrap_or_default();
                // The processor writes BOS and EOS as text; they must encode back to their own id.
                if tokenizer.encode(&text, false)?.ids != [id] {
                    return Err(DataError::config(format!(
                        "the tokenizer's {what} token `{text}` (id {id}) does not encode to itself"
                    ))
                    .with_help(format!(
                        "the {name} token must be a special (added) token of the tokenizer"
                    )));
                }
                Ok((id, text))
            };
        let (bos, bos_text) = special(tokenizer.bos_id(), "beginning-of-sequence", "bos")?;
        let (eos, eos_text) = special(tokenizer.eos_id(), "end-of-sequence", "eos")?;
        if image_token_id == bos || image_token_id == eos {
            return Err(DataError::config(format!(
                "the image token id {image_token_id} is the tokenizer's BOS or EOS"
            ))
            .with_help("the image placeholder is its own token (`<image>`)"));
        }
        if num_image_tokens == 0 {
            return Err(DataError::config("0 image tokens per image")
                .with_help("use the model's image_seq_length (e.g. 256 at 224 × 224)"));
        }
        if max_length < num_image_tokens + 2 {
            return Err(DataError::config(format!(
                "max_length {max_length} leaves no room for text after the image's \
                 {num_image_tokens} tokens"
            ))
            .with_help(format!(
                "use a max_length well above {num_image_tokens} (the image's tokens, BOS, the \
                 question and the answer all count)"
            )));
        }
        if images.size.is_none() {
            return Err(
                DataError::config("the image processor does not resize the images")
                    .with_help("a vision tower reads one image size: set do_resize and size"),
            );
        }
        Ok(Self {
            tokenizer: tokenizer.clone(),
            image_token_id,
            num_image_tokens,
            max_length,
            images,
            bos,
            bos_text,
            eos_text,
        })
    }

    pub fn max_length(&self) -> usize {
        self.max_length
    }

    pub fn num_image_tokens(&self) -> usize {
        self.num_image_tokens
    }

    pub fn image_token_id(&self) -> u32 {
        self.image_token_id
    }

    /// Token ids, loss mask and prefix length of a question and its answer (no image read).
    pub fn tokens(
        &self,
        question: &str,
        answer: &str,
    ) -> Result<(Vec<u32>, Vec<bool>, usize), DataError> {
        let mut ids = self.prompt(question)?;
        let prefix_len = ids.len();
        let answer = self
            .tokenizer
            .encode(&format!("{answer}{}", self.eos_text), false)?
            .ids;
        ids.extend_from_slice(&answer);
        let loss_mask = (0..ids.len()).map(|j| j >= prefix_len).collect();
        Ok((ids, loss_mask, prefix_len))
    }

    /// The prompt of a question without an answer, what generation starts from: the image
    /// tokens, BOS, the question and `\n` (the whole bidirectional prefix; `max_length` is not
    /// applied).
    pub fn prompt(&self, question: &str) -> Result<Vec<u32>, DataError> {
        let text = self
            .tokenizer
            .encode(&format!("{}{question}\n", self.bos_text), false)?
            .ids;
        if text.first() != Some(&self.bos) {
            return Err(DataError::tokenizer(format!(
                "the question after `{}` does not encode with BOS first",
                self.bos_text
            )));
        }
        let mut ids = Vec::with_capacity(self.num_image_tokens + text.len());
        ids.extend(std::iter::repeat_n(
            self.image_token_id,
            self.num_image_tokens,
        ));
        ids.extend_from_slice(&text);
        Ok(ids)
    }

    /// Encode one record: its image's pixel values and its question/answer tokens. Every
    /// problem with the record (no image, no question, an unreadable image, too long) is a row
    /// error at the record, so the dataset's bad-row policy applies.
    pub fn encode(&self, record: &Record) -> Result<VisionExample, DataError> {
        let (ids, loss_mask, prefix_len, image) = self.text(record)?;
        let (pixel_values, pixel_shape) = self
            .pixels(image)
            .map_err(|(msg, help)| bad_row(record, msg, help))?;
        Ok(VisionExample {
            text: SupervisedExample { ids, loss_mask },
            prefix_len,
            pixel_values,
            pixel_shape,
        })
    }

    /// What [`VisionEncoder::encode`] checks, for a whole split without keeping pixels: the
    /// record's length in tokens, or its row error. Each image file is read once
    /// (`checked` remembers the files seen and why a bad one failed): a data set asks many
    /// questions about one image.
    pub fn measure(
        &self,
        record: &Record,
        checked: &mut std::collections::HashMap<std::path::PathBuf, Option<(String, String)>>,
    ) -> Result<usize, DataError> {
        let (ids, _, _, image) = self.text(record)?;
        let why = checked
            .entry(image.to_path_buf())
            .or_insert_with(|| self.pixels(image).err());
        match why {
            None => Ok(ids.len()),
            Some((msg, help)) => Err(bad_row(record, msg.clone(), help.clone())),
        }
    }

    /// The record's ids, loss mask, prefix length and image path, checked but for the image.
    fn text<'r>(&self, record: &'r Record) -> Result<TextPart<'r>, DataError> {
        let row = |msg: String, help: String| bad_row(record, msg, help);
        let Some(image) = &record.image else {
            return Err(row(
                "the record has no image".into(),
                "map the dataset's `image` field (the image file's path), or read an image \
                 folder per class"
                    .into(),
            ));
        };
        let (question, answer) = match &record.turns {
            Some(Turns::PromptCompletion { prompt, completion }) => (prompt, completion),
            Some(Turns::Chat(_)) => {
                return Err(row(
                    "a conversation about an image is not supported".into(),
                    "map `prompt` (the question) and `completion` (the answer)".into(),
                ));
            }
            None => {
                return Err(row(
                    format!(
                        "the record of image {} has no question and answer",
                        image.display()
                    ),
                    "map `prompt` and `completion`, or make them from the class with a prompt \
                     template (vision::class_prompt)"
                        .into(),
                ));
            }
        };
        let (ids, loss_mask, prefix_len) =
            self.tokens(question, answer).map_err(|e| record.error(e))?;
        if ids.len() > self.max_length {
            return Err(row(
                format!(
                    "{} tokens > max_length {} ({} image tokens, {} of BOS and question, {} of \
                     answer and EOS)",
                    ids.len(),
                    self.max_length,
                    self.num_image_tokens,
                    prefix_len - self.num_image_tokens,
                    ids.len() - prefix_len
                ),
                "the image, the question and the answer are kept whole: raise max_length, or \
                 shorten the question or the answer"
                    .into(),
            ));
        }
        Ok((ids, loss_mask, prefix_len, image))
    }

    /// The image's pixel values, or (message, help) naming the image and why it cannot be read.
    fn pixels(&self, image: &Path) -> Result<(Vec<f32>, [usize; 3]), (String, String)> {
        let resolved_from = || {
            format!(
                "image paths are resolved from the data file's folder{}; fix the path or remove \
                 the row",
                image
                    .parent()
                    .map(|d| format!(" (here {})", d.display()))
                    .unwrap_or_default()
            )
        };
        match std::fs::metadata(image) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err((
                    format!("image {} does not exist", image.display()),
                    resolved_from(),
                ));
            }
            Ok(m) if !m.is_file() => {
                return Err((
                    format!("image {} is not a file", image.display()),
                    resolved_from(),
                ));
            }
            _ => {}
        }
        self.images.load(image).map_err(|e| {
            (
                format!("image {}: {}", image.display(), e.message),
                e.help.unwrap_or_else(|| {
                    "images must be readable PNG or JPEG files; re-save the file or remove the row"
                        .into()
                }),
            )
        })
    }
}

/// A record's ids, loss mask and prefix length, and its image file.
type TextPart<'r> = (Vec<u32>, Vec<bool>, usize, &'r Path);

/// A bad row at the record: its message and how to fix it.
fn bad_row(record: &Record, msg: String, help: String) -> DataError {
    record.error(DataError::new(ErrorKind::BadRow, msg).with_help(help))
}

/// A question and answer for an image's class (a record of an image folder per class): the
/// `prompt` as given, the answer `answer_template` with `{label}` replaced by the class.
pub fn class_prompt(
    record: &Record,
    prompt: &str,
    answer_template: &str,
) -> Result<Turns, DataError> {
    if !answer_template.contains("{label}") {
        return Err(DataError::config(format!(
            "the answer template `{answer_template}` has no `{{label}}`"
        ))
        .with_help("write where the class goes, e.g. `{label}` or `a photo of a {label}`"));
    }
    if prompt.contains("{label}") {
        return Err(DataError::config(format!(
            "the prompt `{prompt}` contains `{{label}}`: it would give the answer away"
        ))
        .with_help("only the answer template names the class"));
    }
    let Some(label) = record.label.as_deref() else {
        return Err(record.error(
            DataError::new(ErrorKind::BadRow, "the record has no class label")
                .with_help("read the images as an image folder per class (root/<class>/<image>)"),
        ));
    };
    Ok(Turns::PromptCompletion {
        prompt: prompt.to_string(),
        completion: answer_template.replace("{label}", label),
    })
}

/// A batch of image questions: the token arrays, right-padded, as a [`CausalBatch`] of one
/// example per row (next-token labels on the answers), and `[batch, 3, height, width]` pixel
/// values.
#[derive(Debug, Clone, PartialEq)]
pub struct VisionBatch {
    pub text: CausalBatch,
    /// Per row: the length of the bidirectional prefix (image tokens, BOS, question).
    pub prefix_len: Vec<i64>,
    pub pixel_values: Vec<f32>,
    /// `[3, height, width]` of each image.
    pub pixel_shape: [usize; 3],
}

impl VisionBatch {
    /// Stack examples, one per row, padded on the right to the longest with `pad_id` (masked).
    /// Every image must have the same shape.
    pub fn collate(examples: &[&VisionExample], pad_id: u32) -> Result<Self, DataError> {
        let Some(first) = examples.first() else {
            return Err(DataError::new(ErrorKind::Empty, "empty image batch")
                .with_help("batches need at least one example"));
        };
        let pixel_shape = first.pixel_shape;
        let mut pixel_values =
            Vec::with_capacity(examples.len() * pixel_shape.iter().product::<usize>());
        for ex in examples {
            if ex.pixel_shape != pixel_shape
                || ex.pixel_values.len() != pixel_shape.iter().product::<usize>()
            {
                return Err(DataError::config(format!(
                    "images of shape {:?} and {pixel_shape:?} in one batch",
                    ex.pixel_shape
                ))
                .with_help("encode every image with the same image processor (one size)"));
            }
            if ex.text.loss_mask.len() != ex.len() || ex.prefix_len > ex.len() {
                return Err(DataError::config(
                    "an image example whose ids, loss mask and prefix disagree in length",
                ));
            }
            pixel_values.extend_from_slice(&ex.pixel_values);
        }
        let texts: Vec<&SupervisedExample> = examples.iter().map(|e| &e.text).collect();
        Ok(Self {
            text: CausalBatch::padded(&texts, pad_id)?,
            prefix_len: examples.iter().map(|e| e.prefix_len as i64).collect(),
            pixel_values,
            pixel_shape,
        })
    }

    /// `[batch, 3, height, width]`.
    pub fn pixel_values_shape(&self) -> [usize; 4] {
        let [c, h, w] = self.pixel_shape;
        [self.text.batch, c, h, w]
    }
}
