//! Supervised examples on the real SmolLM2 tokenizer and chat template (from its GGUF): which
//! token positions carry loss (decoded and compared with the answers), `train_on = all`,
//! truncation from either side, packing and padding into causal-LM batches whose labels and
//! segments never cross an example, length bucketing; and the chat rendering, token ids and
//! answer spans against transformers' `apply_chat_template(tokenize=True)` (the Python peer).

mod common;

use std::path::Path;
use std::sync::OnceLock;

use ardpipe_data::chat::{ChatMessage, ChatTemplate};
use ardpipe_data::{
    CausalBatch, Encoded, ErrorKind, IGNORE_INDEX, Origin, Record, SupervisedEncoder,
    SupervisedExample, TextTokenizer, TrainOn, TruncationSide, Turns, bucket_batches, plan_rows,
};

fn smollm() -> &'static (TextTokenizer, ChatTemplate) {
    static S: OnceLock<(TextTokenizer, ChatTemplate)> = OnceLock::new();
    S.get_or_init(|| {
        let (spec, template) = common::gguf::smollm_spec_and_template();
        (TextTokenizer::from_bpe(spec).unwrap(), template)
    })
}

fn origin(line: u64) -> Origin {
    Origin {
        file: Path::new("sft.jsonl").into(),
        line,
    }
}

fn supervised(turns: Turns, line: u64) -> Record {
    let mut r = Record::new("", origin(line));
    r.turns = Some(turns);
    r
}

fn chat(messages: &[(&str, &str)], line: u64) -> Record {
    supervised(
        Turns::Chat(
            messages
                .iter()
                .map(|(r, c)| ChatMessage::new(*r, *c))
                .collect(),
        ),
        line,
    )
}

fn prompt_completion(prompt: &str, completion: &str, line: u64) -> Record {
    supervised(
        Turns::PromptCompletion {
            prompt: prompt.into(),
            completion: completion.into(),
        },
        line,
    )
}

fn encoder(train_on: TrainOn, max_length: usize, side: TruncationSide) -> SupervisedEncoder {
    let (tok, template) = smollm();
    SupervisedEncoder::new(tok, Some(template.clone()), train_on, max_length, side).unwrap()
}

fn example(enc: &SupervisedEncoder, r: &Record) -> SupervisedExample {
    match enc.encode(r).unwrap() {
        Encoded::Example(e) => e,
        Encoded::NoAnswerLeft(n) => panic!("no answer left: {n:?}"),
    }
}

/// The decoded runs of consecutive tokens that carry loss.
fn loss_spans(tok: &TextTokenizer, ex: &SupervisedExample) -> Vec<String> {
    let mut spans = Vec::new();
    let mut run: Vec<u32> = Vec::new();
    for (&id, &m) in ex.ids.iter().zip(&ex.loss_mask).chain([(&0, &false)]) {
        if m {
            run.push(id);
        } else if !run.is_empty() {
            spans.push(tok.decode(&run, false).unwrap());
            run.clear();
        }
    }
    spans
}

const CONVERSATION: [(&str, &str); 5] = [
    ("system", "You are terse."),
    ("user", "What is 2+2?"),
    ("assistant", "4."),
    ("user", "And 3+3?"),
    ("assistant", "6, of course."),
];

#[test]
fn chat_loss_covers_every_assistant_turn_and_its_end_of_turn() {
    let (tok, template) = smollm();
    let enc = encoder(TrainOn::Completions, 4096, TruncationSide::Right);
    let ex = example(&enc, &chat(&CONVERSATION, 1));
    // The whole rendering is encoded once, without added specials: it decodes back to itself.
    let messages: Vec<ChatMessage> = CONVERSATION
        .iter()
        .map(|(r, c)| ChatMessage::new(*r, *c))
        .collect();
    let full = template.render(&messages, false).unwrap();
    assert_eq!(tok.decode(&ex.ids, false).unwrap(), full);
    assert_eq!(ex.ids.len(), ex.loss_mask.len());
    // Loss exactly on each answer and the `<|im_end|>\n` that closes its turn (ChatML).
    assert_eq!(
        loss_spans(tok, &ex),
        ["4.<|im_end|>\n", "6, of course.<|im_end|>\n"]
    );
    let eot = template.end_of_turn_ids(tok).unwrap();
    assert_eq!(eot, [tok.eos_id().unwrap()], "<|im_end|> ends a turn");
    let last_eot = ex.ids.iter().rposition(|&t| t == eot[0]).unwrap();
    assert!(ex.loss_mask[last_eot]);

    // The same conversation under train_on = all: the same ids, every token trained on.
    let all = example(
        &encoder(TrainOn::All, 4096, TruncationSide::Right),
        &chat(&CONVERSATION, 1),
    );
    assert_eq!(all.ids, ex.ids);
    assert!(all.loss_mask.iter().all(|&m| m));
}

#[test]
fn prompt_completion_loss_covers_the_completion_and_eos() {
    let (tok, _) = smollm();
    let r = prompt_completion("The capital of France is", " Paris.", 1);
    let ex = example(
        &encoder(TrainOn::Completions, 64, TruncationSide::Right),
        &r,
    );
    // SmolLM2 adds no BOS: the prompt's ids, then the completion's, then EOS.
    assert_eq!(ex.ids[..5], [504, 3575, 282, 4649, 314]);
    assert_eq!(loss_spans(tok, &ex), [" Paris.<|im_end|>"]);
    assert_eq!(*ex.ids.last().unwrap(), tok.eos_id().unwrap());
    assert_eq!(ex.targets(), ex.len() - 5);
    let all = example(&encoder(TrainOn::All, 64, TruncationSide::Right), &r);
    assert_eq!(all.ids, ex.ids);
    assert!(all.loss_mask.iter().all(|&m| m));
}

#[test]
fn a_tokenizer_that_adds_bos_starts_the_prompt_with_it_and_left_truncation_keeps_it() {
    // MiniLM puts [CLS] before a text (its BOS here) and [SEP] is its EOS.
    let tok = TextTokenizer::from_file(&common::asset("minilm", "tokenizer.json")).unwrap();
    let r = prompt_completion("a man is playing", "a guitar", 1);
    let enc =
        SupervisedEncoder::new(&tok, None, TrainOn::Completions, 64, TruncationSide::Left).unwrap();
    let ex = example(&enc, &r);
    assert_eq!(ex.ids, [101, 1037, 2158, 2003, 2652, 1037, 2858, 102]);
    assert_eq!(
        ex.loss_mask,
        [false, false, false, false, false, true, true, true]
    );
    let short =
        SupervisedEncoder::new(&tok, None, TrainOn::Completions, 5, TruncationSide::Left).unwrap();
    let cut = example(&short, &r);
    assert_eq!(cut.ids, [101, 2652, 1037, 2858, 102], "[CLS] stays first");
    assert_eq!(cut.loss_mask, [false, false, true, true, true]);

    // A template that writes `bos_token` itself: the rendering is encoded without added special
    // tokens (as apply_chat_template(tokenize=True) does), so it starts with one BOS, not two.
    let template = ChatTemplate::new(
        "{{ bos_token }}{% for m in messages %}{{ m.role }}: {{ m.content }}{{ eos_token }}\
         {% endfor %}{% if add_generation_prompt %}assistant: {% endif %}",
        "bos-writing.jinja",
        [("bos_token", "[CLS]"), ("eos_token", "[SEP]")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into(),
    )
    .unwrap();
    let enc = SupervisedEncoder::new(
        &tok,
        Some(template),
        TrainOn::Completions,
        64,
        TruncationSide::Right,
    )
    .unwrap();
    let ex = example(
        &enc,
        &chat(&[("user", "a man"), ("assistant", "a guitar")], 2),
    );
    assert_eq!(ex.ids[..2], [101, 5310], "one [CLS], then `user`");
    assert_eq!(ex.ids.iter().filter(|&&t| t == 101).count(), 1);
    assert_eq!(loss_spans(&tok, &ex), ["a guitar [SEP]"]);
}

#[test]
fn truncation_from_either_side_and_examples_without_an_answer_left() {
    let (tok, _) = smollm();
    let r = chat(&CONVERSATION, 7);
    let whole = example(
        &encoder(TrainOn::Completions, 4096, TruncationSide::Right),
        &r,
    );
    let n = whole.len();
    // Right: the end goes, the second answer is cut short.
    let right = example(
        &encoder(TrainOn::Completions, n - 4, TruncationSide::Right),
        &r,
    );
    assert_eq!(right.ids, whole.ids[..n - 4]);
    assert_eq!(right.loss_mask, whole.loss_mask[..n - 4]);
    assert_eq!(loss_spans(tok, &right)[0], "4.<|im_end|>\n");
    // Left: the start goes (SmolLM2 adds no BOS to keep), both answers stay whole.
    let left = example(
        &encoder(TrainOn::Completions, n - 4, TruncationSide::Left),
        &r,
    );
    assert_eq!(left.ids, whole.ids[4..]);
    assert_eq!(left.loss_mask, whole.loss_mask[4..]);
    assert_eq!(loss_spans(tok, &left), loss_spans(tok, &whole));
    // Nothing to learn once the answers are cut off: reported with where and why.
    let first_answer = whole.loss_mask.iter().position(|&m| m).unwrap();
    let gone = encoder(TrainOn::Completions, first_answer, TruncationSide::Right)
        .encode(&r)
        .unwrap();
    let Encoded::NoAnswerLeft(reason) = gone else {
        panic!("{gone:?}")
    };
    assert_eq!(
        (reason.origin.line, reason.length, reason.max_length),
        (7, n, first_answer)
    );
    let e = reason.to_error();
    assert_eq!((e.kind, e.line), (ErrorKind::BadRow, Some(7)));
    assert!(e.to_string().contains("no answer token"), "{e}");
}

#[test]
fn records_that_cannot_be_supervised_are_clear_errors() {
    let (tok, _) = smollm();
    let enc = encoder(TrainOn::Completions, 512, TruncationSide::Right);
    let plain = enc
        .encode(&Record::new("just text", origin(3)))
        .unwrap_err();
    assert_eq!((plain.kind, plain.line), (ErrorKind::BadRow, Some(3)));
    let msg = plain.to_string();
    assert!(
        msg.contains("prompt") && msg.contains("completion") && msg.contains("messages"),
        "{msg}"
    );
    let no_answer = enc.encode(&chat(&[("user", "hi")], 4)).unwrap_err();
    assert_eq!(
        (no_answer.kind, no_answer.line),
        (ErrorKind::BadRow, Some(4))
    );
    assert!(no_answer.to_string().contains("assistant"), "{no_answer}");
    let no_template =
        SupervisedEncoder::new(tok, None, TrainOn::Completions, 512, TruncationSide::Right)
            .unwrap()
            .encode(&chat(&CONVERSATION, 5))
            .unwrap_err();
    assert!(
        no_template.to_string().contains("chat template"),
        "{no_template}"
    );
    // A template that rewrites earlier assistant turns (as reasoning templates drop earlier
    // thinking): no silent fallback, the record and the template are named.
    let rewriting = ChatTemplate::new(
        "{% for m in messages %}{% if m.role == 'assistant' and not loop.last %}\
         <|im_start|>assistant\n(earlier answer)<|im_end|>\n{% else %}\
         <|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endif %}{% endfor %}\
         {% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
        "rewriting.jinja",
        Default::default(),
    )
    .unwrap();
    let e = SupervisedEncoder::new(
        tok,
        Some(rewriting),
        TrainOn::Completions,
        512,
        TruncationSide::Right,
    )
    .unwrap()
    .encode(&chat(&CONVERSATION, 6))
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("sft.jsonl:6") && msg.contains("rewriting.jinja") && msg.contains("rewrites"),
        "{msg}"
    );
    assert!(SupervisedEncoder::new(tok, None, TrainOn::All, 1, TruncationSide::Right).is_err());
}

/// Examples of varied lengths: chats and prompt/completions.
fn corpus(enc: &SupervisedEncoder) -> Vec<SupervisedExample> {
    let mut out = Vec::new();
    for i in 0..24 {
        let words = "one two three four five six seven eight nine ten";
        let q: String = words
            .split(' ')
            .take(1 + i % 10)
            .collect::<Vec<_>>()
            .join(" ");
        let r = if i % 3 == 0 {
            prompt_completion(&format!("Count: {q}"), &format!(" {i}"), i as u64 + 1)
        } else {
            chat(
                &[("user", &q), ("assistant", &format!("Answer {i}: {q}"))],
                i as u64 + 1,
            )
        };
        out.push(example(enc, &r));
    }
    out
}

/// Every label is the next token of the same example and carries that token's loss flag; no
/// label or segment crosses an example.
fn check_batch(batch: &CausalBatch, rows: &[Vec<&SupervisedExample>], max_length: usize) {
    assert_eq!(batch.batch, rows.len());
    assert!(batch.seq <= max_length);
    for (r, exs) in rows.iter().enumerate() {
        let o = r * batch.seq;
        let mut pos = 0;
        for (k, ex) in exs.iter().enumerate() {
            for j in 0..ex.len() {
                let t = o + pos + j;
                assert_eq!(batch.input_ids[t], ex.ids[j] as i64);
                assert_eq!(batch.segments[t], k as i64 + 1);
                assert_eq!(batch.attention_mask[t], 1);
                let want = match ex.loss_mask.get(j + 1) {
                    Some(true) => ex.ids[j + 1] as i64,
                    _ => IGNORE_INDEX,
                };
                assert_eq!(batch.labels[t], want, "row {r}, example {k}, token {j}");
            }
            pos += ex.len();
        }
        assert!(pos <= max_length);
        for t in o + pos..o + batch.seq {
            assert_eq!(
                (batch.segments[t], batch.attention_mask[t], batch.labels[t]),
                (0, 0, IGNORE_INDEX)
            );
        }
    }
}

#[test]
fn packed_rows_fit_max_length_and_never_cross_an_example() {
    let max_length = 64;
    let enc = encoder(TrainOn::Completions, max_length, TruncationSide::Right);
    let exs = corpus(&enc);
    let order = ardpipe_data::epoch_permutation(exs.len(), 11, 0);
    let lengths: Vec<usize> = order.iter().map(|&i| exs[i].len()).collect();
    let plan = plan_rows(&lengths, max_length).unwrap();
    assert_eq!(
        plan,
        plan_rows(&lengths, max_length).unwrap(),
        "deterministic"
    );
    // Every example once, in order, rows full up to the next example that did not fit.
    assert_eq!(plan.concat(), (0..order.len()).collect::<Vec<_>>());
    for (w, row) in plan.windows(2).zip(&plan) {
        let used: usize = row.iter().map(|&p| lengths[p]).sum();
        assert!(used <= max_length);
        assert!(
            used + lengths[w[1][0]] > max_length,
            "greedy: the next one did not fit"
        );
    }
    assert!(plan.len() < exs.len(), "short examples share rows");
    let rows: Vec<Vec<usize>> = plan
        .iter()
        .map(|r| r.iter().map(|&p| order[p]).collect())
        .collect();
    let batch = CausalBatch::packed(&exs, &rows, 2).unwrap();
    let by_row: Vec<Vec<&SupervisedExample>> = rows
        .iter()
        .map(|r| r.iter().map(|&i| &exs[i]).collect())
        .collect();
    check_batch(&batch, &by_row, max_length);
    let targets: usize = exs.iter().map(|e| e.targets()).sum();
    assert_eq!(batch.targets(), targets, "every answer token but none else");
    assert_eq!(batch.tokens(), exs.iter().map(|e| e.len()).sum::<usize>());

    // Padded: one example per row, to the longest of the batch.
    let some: Vec<&SupervisedExample> = exs[..5].iter().collect();
    let padded = CausalBatch::padded(&some, 2).unwrap();
    assert_eq!(padded.seq, some.iter().map(|e| e.len()).max().unwrap());
    let one_each: Vec<Vec<&SupervisedExample>> = some.iter().map(|&e| vec![e]).collect();
    check_batch(&padded, &one_each, max_length);
}

#[test]
fn length_buckets_are_deterministic_and_group_similar_lengths() {
    let lengths: Vec<usize> = (0..1000).map(|i| (i * 7919) % 300 + 1).collect();
    let order = ardpipe_data::epoch_permutation(lengths.len(), 5, 2);
    let batches = bucket_batches(&order, &lengths, 4, 5, 2).unwrap();
    assert_eq!(batches, bucket_batches(&order, &lengths, 4, 5, 2).unwrap());
    assert_ne!(batches, bucket_batches(&order, &lengths, 4, 5, 3).unwrap());
    let mut seen = batches.concat();
    seen.sort();
    assert_eq!(seen, (0..1000).collect::<Vec<_>>(), "every example once");
    assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= 4));
    // Within a mega-batch of 200 the spread of a batch is small, against random batches'.
    let spread = |bs: &[Vec<usize>]| -> f64 {
        bs.iter()
            .map(|b| {
                let l: Vec<usize> = b.iter().map(|&i| lengths[i]).collect();
                (l.iter().max().unwrap() - l.iter().min().unwrap()) as f64
            })
            .sum::<f64>()
            / bs.len() as f64
    };
    let random: Vec<Vec<usize>> = order.chunks(4).map(<[usize]>::to_vec).collect();
    assert!(
        spread(&batches) * 10.0 < spread(&random),
        "{} vs {}",
        spread(&batches),
        spread(&random)
    );
    // Batches are shuffled: the first ones are not all the longest.
    let firsts: Vec<usize> = batches.iter().take(10).map(|b| lengths[b[0]]).collect();
    assert!(firsts.windows(2).any(|w| w[0] < w[1]), "{firsts:?}");
    assert!(bucket_batches(&order, &lengths, 0, 5, 2).is_err());
}

// ---------- against transformers ----------

#[test]
fn chat_ids_and_answer_spans_match_transformers() {
    let conversations: Vec<Vec<(&str, &str)>> = vec![
        CONVERSATION.to_vec(),
        vec![("user", "Hello"), ("assistant", "Hi! How can I help?")],
        vec![
            ("user", "Ça va? 😀 日本語 <b>&</b> \"quoted\""),
            ("assistant", "<think>\nhmm\n</think>\n\nTrès bien!"),
            ("user", "Tell me a joke\nplease"),
            (
                "assistant",
                "Why did the chicken cross the road?\n\nTo get to the other side.",
            ),
        ],
        // Leading spaces merge with the template's newline into one token: TRL finds the
        // prompt's ids are no prefix of the conversation's; ardpipe reports the record. (No
        // digit after the spaces: transformers' GGUF loader drops SmolLM2's individual-digit
        // pre-tokenizer, which ardpipe keeps as the GGUF's `smollm` pre-tokenizer says, and
        // whitespace before a digit then splits differently.)
        vec![
            ("user", "What is 2+2?"),
            ("assistant", "  Four, of course.  "),
        ],
    ];
    let pcs = [
        ("The capital of France is", " Paris."),
        ("Translate to French: cat\n", "chat"),
        ("Q: 12 + 345 =", " 357"),
    ];
    let mut cases: Vec<serde_json::Value> = conversations
        .iter()
        .map(|c| {
            let messages: Vec<serde_json::Value> = c
                .iter()
                .map(|(r, m)| serde_json::json!({"role": r, "content": m}))
                .collect();
            serde_json::json!({ "messages": messages })
        })
        .collect();
    cases.extend(
        pcs.iter()
            .map(|(p, c)| serde_json::json!({"prompt": p, "completion": c})),
    );
    let dir = common::TempDir::new("sft-peer");
    let cases_path = dir.write("cases.json", serde_json::to_vec(&cases).unwrap());
    let gguf = common::gguf::smollm_gguf();
    let peer = common::run_peer("sft_chat.py", &[cases_path.as_os_str(), gguf.as_os_str()]);
    let (tok, template) = smollm();
    assert_eq!(peer["eos"], tok.eos_id().unwrap());
    let enc = encoder(TrainOn::Completions, 4096, TruncationSide::Right);
    let results = peer["results"].as_array().unwrap();
    let mut spans_checked = 0;
    let mut refused = 0;
    for (c, want) in conversations.iter().zip(results) {
        let messages: Vec<ChatMessage> = c.iter().map(|(r, m)| ChatMessage::new(*r, *m)).collect();
        assert_eq!(template.render(&messages, false).unwrap(), want["text"]);
        let want_ids: Vec<u32> = serde_json::from_value(want["ids"].clone()).unwrap();
        assert_eq!(
            tok.encode(want["text"].as_str().unwrap(), false)
                .unwrap()
                .ids,
            want_ids
        );
        let spans = want["spans"].as_array().unwrap();
        let exact = spans.iter().all(|s| s["prefix"] == true);
        match enc.encode(&chat(c, 1)) {
            Ok(Encoded::Example(ex)) => {
                assert!(exact, "transformers finds no exact boundary for {c:?}");
                assert_eq!(ex.ids, want_ids);
                let mut mask = vec![false; want_ids.len()];
                for s in spans {
                    let (a, b) = (s["start"].as_u64().unwrap(), s["end"].as_u64().unwrap());
                    mask[a as usize..b as usize].fill(true);
                    spans_checked += 1;
                }
                assert_eq!(ex.loss_mask, mask, "{c:?}");
            }
            Ok(other) => panic!("{other:?}"),
            Err(e) => {
                assert!(
                    !exact,
                    "transformers finds exact boundaries for {c:?}, ardpipe: {e}"
                );
                assert_eq!(e.kind, ErrorKind::BadRow, "{e}");
                assert!(e.to_string().contains("spans the boundary"), "{e}");
                refused += 1;
            }
        }
    }
    assert_eq!((spans_checked, refused), (5, 1));
    for ((p, c), want) in pcs.iter().zip(&results[conversations.len()..]) {
        let ex = example(&enc, &prompt_completion(p, c, 1));
        let want_ids: Vec<u32> = serde_json::from_value(want["ids"].clone()).unwrap();
        let start = want["start"].as_u64().unwrap() as usize;
        assert_eq!(ex.ids, want_ids, "{p:?} {c:?}");
        let mask: Vec<bool> = (0..want_ids.len()).map(|j| j >= start).collect();
        assert_eq!(ex.loss_mask, mask, "{p:?} {c:?}");
    }
}

/// The ChatterBot chat asset (scripts/setup.py writes it as chat JSONL): every conversation
/// encodes with the SmolLM2 template, its loss covers exactly each answer and the end of its
/// turn, and all of them pack into rows whose labels stay within their example.
#[test]
fn chatterbot_conversations_mask_their_answers_and_pack() {
    #[derive(serde::Deserialize)]
    struct Line {
        messages: Vec<ChatMessage>,
    }
    let (tok, _) = smollm();
    let path = common::asset("chatterbot", "chat.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let max_length = 256;
    let enc = encoder(TrainOn::Completions, max_length, TruncationSide::Left);
    let mut exs = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line: Line = serde_json::from_str(raw).unwrap();
        let r = supervised(Turns::Chat(line.messages.clone()), i as u64 + 1);
        let ex = example(&enc, &r);
        if ex.len() < max_length {
            let answers: Vec<String> = line
                .messages
                .iter()
                .filter(|m| m.role == "assistant")
                .map(|m| format!("{}<|im_end|>\n", m.content))
                .collect();
            assert_eq!(loss_spans(tok, &ex), answers, "line {}", i + 1);
        }
        exs.push(ex);
    }
    assert_eq!(exs.len(), 2_025);
    let lengths: Vec<usize> = exs.iter().map(SupervisedExample::len).collect();
    let plan = plan_rows(&lengths, max_length).unwrap();
    let batch = CausalBatch::packed(&exs, &plan, tok.pad_id().unwrap_or(0)).unwrap();
    let by_row: Vec<Vec<&SupervisedExample>> = plan
        .iter()
        .map(|r| r.iter().map(|&i| &exs[i]).collect())
        .collect();
    check_batch(&batch, &by_row, max_length);
    let tokens: usize = lengths.iter().sum();
    println!(
        "{} conversations, {tokens} tokens ({} trained on) in {} packed rows of {max_length} \
         ({:.0}% full)",
        exs.len(),
        batch.targets(),
        plan.len(),
        100.0 * tokens as f64 / (plan.len() * max_length) as f64
    );
    assert!(
        plan.len() * max_length * 85 < tokens * 100,
        "rows are over 85% full"
    );
}
