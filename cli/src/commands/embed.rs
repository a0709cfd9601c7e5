//! `ardpipe embed`: sentence embeddings (masked mean pooling, L2-normalised) and their cosines.

use ardpipe_engine::models::arch::EncoderHead;
use ardpipe_engine::models::load_encoder;
use ardpipe_engine::models::text::embed_texts;
use ardpipe_engine::models::tokenizer::load_tokenizer;
use serde::Serialize;

use super::generate::load_options;
use crate::args::{EmbedArgs, Format};
use crate::exit::Code;

#[derive(Serialize)]
struct Row<'a> {
    text: &'a str,
    embedding: &'a [f32],
}

pub fn run(a: EmbedArgs) -> miette::Result<Code> {
    let opts = load_options(&a.compute)?;
    let enc = load_encoder(&a.model, EncoderHead::Embedding, &opts)
        .map_err(|e| miette::miette!("{e}"))?;
    let tok = load_tokenizer(&enc.location).map_err(|e| miette::miette!("{e}"))?;
    let texts: Vec<&str> = a.texts.iter().map(String::as_str).collect();
    let e = embed_texts(&enc.model, &tok.tokenizer, &texts).map_err(|e| miette::miette!("{e}"))?;
    match a.format {
        Format::Json | Format::Yaml => {
            let rows: Vec<Row<'_>> = texts
                .iter()
                .zip(&e)
                .map(|(t, v)| Row {
                    text: t,
                    embedding: v,
                })
                .collect();
            if matches!(a.format, Format::Yaml) {
                print!("{}", crate::output::yaml(&rows)?);
            } else {
                println!("{}", serde_json::to_string(&rows).expect("serialises"));
            }
        }
        Format::Text => {
            for (i, (t, v)) in texts.iter().zip(&e).enumerate() {
                let head: Vec<String> = v.iter().take(5).map(|x| format!("{x:.5}")).collect();
                println!("[{i}] dim {} [{} …]  {t}", v.len(), head.join(", "));
            }
            if texts.len() > 1 {
                println!("cosine similarity");
                for (i, a) in e.iter().enumerate() {
                    let row: Vec<String> = e
                        .iter()
                        .map(|b| {
                            format!("{:>7.4}", a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>())
                        })
                        .collect();
                    println!("  [{i}] {}", row.join(" "));
                }
            }
        }
    }
    Ok(Code::Success)
}
