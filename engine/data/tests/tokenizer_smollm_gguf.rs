//! `from_bpe` on the real SmolLM2 vocabulary, its metadata read by the tests' minimal GGUF header
//! reader (tests/common/gguf.rs): the golden ids (those of "The capital of France is" that
//! engine/models/tests/golden_smollm2.rs feeds the model) must come out.

mod common;

use ardpipe_data::TextTokenizer;
use common::gguf::smollm_spec;

#[test]
fn smollm2_golden_ids_and_round_trip() {
    let spec = smollm_spec();
    assert_eq!(spec.pre, "smollm");
    assert_eq!(spec.tokens.len(), 49_152);
    assert_eq!(spec.merges.len(), 48_900);
    let tok = TextTokenizer::from_bpe(spec).unwrap();
    assert_eq!(tok.vocab_size(), 49_152);
    assert_eq!((tok.bos_id(), tok.eos_id()), (Some(1), Some(2)));

    let ids = tok.encode("The capital of France is", true).unwrap().ids;
    assert_eq!(ids, [504, 3575, 282, 4649, 314]);
    assert_eq!(tok.id_to_token(7042).as_deref(), Some("ĠParis"));

    let chat = "<|im_start|>user\nWhat is 12 + 345?<|im_end|>\n";
    let ids = tok.encode(chat, true).unwrap().ids;
    assert_eq!(ids[0], 1, "control tokens must be matched whole");
    assert_eq!(*ids.iter().rev().nth(1).unwrap(), 2);
    assert_eq!(tok.decode(&ids, false).unwrap(), chat);
    assert_eq!(tok.decode(&ids, true).unwrap(), "user\nWhat is 12 + 345?\n");
    // Digits are split one by one before byte-level BPE.
    let digits = tok.encode("345", false).unwrap().ids;
    assert_eq!(digits.len(), 3);
    // Non-ASCII text survives the byte-level round trip.
    let text = "Ça coûte 3€ — naïve café";
    let ids = tok.encode(text, false).unwrap().ids;
    assert_eq!(tok.decode(&ids, true).unwrap(), text);
}
