//! Tokenizers ardpipe rebuilds from GGUF metadata equal the ones transformers builds from the same
//! file (`AutoTokenizer.from_pretrained(dir, gguf_file=...)`): tiny SentencePiece (Llama and Gemma
//! flavours: scores, byte fallback, control/user-defined/unused tokens, add_bos/add_eos) and
//! byte-level BPE vocabularies (one per `tokenizer.ggml.pre`), written by the `gguf` package. The
//! same ids on varied text (unicode, emoji through byte fallback, runs of spaces, newlines,
//! digits, special tokens in the text) and the same decoded text; unsupported files are refused
//! naming what is supported. The real Gemma 3 270M GGUF (the `gemma3` asset) too: its 262,144
//! SentencePiece tokens give transformers' ids, and its golden ids. Needs the Python peer venv
//! that `scripts/setup.sh` creates.

use ardpipe_models::ModelLocation;
use ardpipe_models::assets::asset_file;
use ardpipe_models::tokenizer::load_tokenizer;

mod support;
use support::{peer_command, run_peer};

const GEMMA3: &str = "gemma-3-270m-q4_k_m.gguf";

#[test]
fn gguf_tokenizers_equal_transformers() {
    let dir = std::env::temp_dir().join(format!("ardpipe-tokgguf-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let gemma3 = asset_file("gemma3", GEMMA3).unwrap_or_else(|e| panic!("{e}"));
    let out = run_peer(peer_command("tokenizers_gguf.py").arg(&dir).arg(&gemma3));
    let peer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let files = peer.as_object().unwrap();
    let mut checked = 0;
    for (name, want) in files.iter().filter(|(n, _)| *n != "refused") {
        let tok = load_tokenizer(&ModelLocation::Gguf(dir.join(name)))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .tokenizer;
        assert_eq!(
            tok.vocab_size() as u64,
            want["vocab_size"].as_u64().unwrap(),
            "{name}"
        );
        let texts = want["texts"].as_array().unwrap();
        for (i, text) in texts.iter().enumerate() {
            let text = text.as_str().unwrap();
            // transformers' GGUF integration gives `smollm` GPT-2's split, while SmolLM's own
            // tokenizer.json (and llama.cpp) split digits one by one first, as ardpipe does:
            // compare only texts without digits there.
            if name == "bpe_smollm.gguf" && text.chars().any(|c| c.is_ascii_digit()) {
                let ids = tok.encode(text, false).unwrap().ids;
                for id in ids {
                    let piece = tok.decode(&[id], false).unwrap();
                    assert!(
                        !piece.chars().any(|c| c.is_ascii_digit()) || piece.trim().len() == 1,
                        "{name}: {piece:?} holds several digits"
                    );
                }
                continue;
            }
            let ids: Vec<u32> = serde_json::from_value(want["ids"][i].clone()).unwrap();
            let got = tok.encode(text, true).unwrap().ids;
            assert_eq!(got, ids, "{name}: ids of {text:?}");
            assert_eq!(
                tok.decode(&ids, true).unwrap(),
                want["decoded"][i].as_str().unwrap(),
                "{name}: decoding {text:?} without special tokens"
            );
            assert_eq!(
                tok.decode(&ids, false).unwrap(),
                want["decoded_all"][i].as_str().unwrap(),
                "{name}: decoding {text:?} with special tokens"
            );
            checked += 1;
        }
    }
    assert!(
        files.contains_key(gemma3.to_str().unwrap()),
        "the peer did not load {}",
        gemma3.display()
    );
    assert!(checked >= 170, "only {checked} texts compared");

    for (name, words) in peer["refused"].as_object().unwrap() {
        let e = match load_tokenizer(&ModelLocation::Gguf(dir.join(name))) {
            Ok(_) => panic!("{name} was accepted"),
            Err(e) => e.to_string(),
        };
        for w in words.as_array().unwrap() {
            assert!(e.contains(w.as_str().unwrap()), "{name}: {e:?} lacks {w}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn gemma3_270m_gguf_golden_ids() {
    let path = asset_file("gemma3", GEMMA3).unwrap_or_else(|e| panic!("{e}"));
    let tok = load_tokenizer(&ModelLocation::Gguf(path))
        .unwrap()
        .tokenizer;
    assert_eq!(tok.vocab_size(), 262_144);
    let ids = tok.encode("The capital of France is", true).unwrap().ids;
    assert_eq!(ids, [2, 818, 5279, 529, 7001, 563]);
    assert_eq!(tok.decode(&ids, true).unwrap(), "The capital of France is");
}
