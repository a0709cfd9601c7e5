//! Every GGML tensor type ardpipe reads (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K,
//! Q3_K, Q4_K, Q5_K, Q6_K) dequantises to exactly the values of the `gguf` Python package
//! (`gguf.quants.dequantize`), on random blocks it dequantised and in a file its `GGUFWriter`
//! wrote; damaged or truncated blocks are errors naming the tensor. Needs the Python peer venv
//! that `scripts/setup.sh` creates (engine/models/tests/peer/gguf_quants.py).
//!
//! Tolerance: none. Both sides compute the same IEEE f32 products in the same order
//! (`(d·sc)·q − dmin·m`, no fused multiply-add), so every value must agree bit for bit.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use ardpipe_models::gguf::writer::GgufWriter;
use ardpipe_models::gguf::{GgmlType, GgufFile};

mod support;
use support::{peer_command, run_peer};

struct Fixture {
    dir: PathBuf,
    /// (type, blocks, torch shape of `t.<TYPE>` in all_types.gguf)
    types: Vec<(GgmlType, usize, Vec<usize>)>,
}

/// One peer run for the whole binary: random blocks of every type, their dequantised values and
/// a GGUF file holding them.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ardpipe-gguf-quants-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        run_peer(peer_command("gguf_quants.py").arg(&dir));
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        let types = m["types"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let id = t["id"].as_u64().unwrap() as u32;
                let ty = GgmlType::from_u32(id)
                    .unwrap_or_else(|| panic!("ardpipe does not read {}", t["name"]));
                assert_eq!(ty.name(), t["name"].as_str().unwrap());
                let shape = serde_json::from_value(t["shape"].clone()).unwrap();
                (ty, t["blocks"].as_u64().unwrap() as usize, shape)
            })
            .collect();
        Fixture { dir, types }
    })
}

fn f32s(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// Values whose bits differ, and the first such (index, got, want).
fn bit_differences(got: &[f32], want: &[f32]) -> (usize, Option<(usize, f32, f32)>) {
    assert_eq!(got.len(), want.len());
    let mut first = None;
    let mut n = 0;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if g.to_bits() != w.to_bits() {
            n += 1;
            first.get_or_insert((i, *g, *w));
        }
    }
    (n, first)
}

#[test]
fn every_type_dequantises_bit_for_bit_like_the_gguf_package() {
    let f = fixture();
    assert_eq!(f.types.len(), GgmlType::ALL.len(), "every type is covered");
    for &(ty, blocks, _) in &f.types {
        let raw = std::fs::read(f.dir.join(format!("blocks/{}.bin", ty.name()))).unwrap();
        let want = f32s(&f.dir.join(format!("blocks/{}.f32", ty.name())));
        assert_eq!(raw.len(), blocks * ty.block_bytes());
        let mut got = vec![f32::NAN; want.len()];
        ty.dequantise_into(&raw, &mut got).unwrap();
        let (n, first) = bit_differences(&got, &want);
        assert_eq!(
            n,
            0,
            "{}: {n} of {} values differ from gguf.quants.dequantize; first (index, ours, \
             theirs): {first:?}",
            ty.name(),
            want.len()
        );
        eprintln!("{}: {} values equal bit for bit", ty.name(), want.len());
    }
}

#[test]
fn a_file_from_the_gguf_packages_writer_loads_with_the_same_values() {
    let f = fixture();
    let g = GgufFile::open(f.dir.join("all_types.gguf")).unwrap();
    assert_eq!(g.tensors.len(), f.types.len());
    for (ty, _, shape) in &f.types {
        let t = g.tensor(&format!("t.{}", ty.name())).unwrap();
        assert_eq!(t.ty, ty.id(), "{}", t.name);
        assert_eq!(&t.shape, shape, "{}", t.name);
        let got = g.dequantise(t).unwrap();
        let want = f32s(&f.dir.join(format!("blocks/{}.f32", ty.name())));
        let (n, first) = bit_differences(&got, &want);
        assert_eq!(n, 0, "{}: {n} values differ; first {first:?}", t.name);
    }
}

fn open_error(path: &Path) -> String {
    match GgufFile::open(path) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn truncated_and_damaged_blocks_are_errors_naming_the_tensor() {
    let f = fixture();
    let bytes = std::fs::read(f.dir.join("all_types.gguf")).unwrap();
    let dir = f.dir.join("damaged");
    std::fs::create_dir_all(&dir).unwrap();

    // A download cut in the last tensor's data.
    let cut = dir.join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let e = open_error(&cut);
    assert!(e.contains("truncated GGUF") && e.contains("t.Q6_K"), "{e}");

    // An infinite scale in the third Q4_K block: found by its bytes (random, so unique).
    let g = GgufFile::open(f.dir.join("all_types.gguf")).unwrap();
    for (name, d_at) in [("t.Q4_K", 0usize), ("t.Q6_K", 208), ("t.Q5_0", 0)] {
        let t = g.tensor(name).unwrap();
        let ty = GgmlType::from_u32(t.ty).unwrap();
        let raw = g.raw(t).unwrap();
        let block = &raw[2 * ty.block_bytes()..3 * ty.block_bytes()];
        let at = bytes.windows(block.len()).position(|w| w == block).unwrap();
        let mut bad = bytes.clone();
        bad[at + d_at..at + d_at + 2].copy_from_slice(&half::f16::INFINITY.to_le_bytes());
        let p = dir.join(format!("{name}.gguf"));
        std::fs::write(&p, &bad).unwrap();
        let g2 = GgufFile::open(&p).unwrap();
        let e = g2
            .dequantise(g2.tensor(name).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(name) && e.contains("block 2") && e.contains("not a finite"),
            "{e}"
        );
    }

    // A K-quant tensor whose rows are not whole 256-value super-blocks.
    let mut w = GgufWriter::new();
    w.tensor("odd", &[2, 64], &[0.5; 128], GgmlType::F32);
    let p = dir.join("odd.gguf");
    w.write_with_type_override(&p, &[("odd", GgmlType::Q4_K.id())])
        .unwrap();
    let e = open_error(&p);
    assert!(e.contains("`odd`") && e.contains("block size 256"), "{e}");

    // A type ardpipe does not read (IQ2_XXS) is named, not read as garbage.
    let mut w = GgufWriter::new();
    w.tensor("iq", &[256], &[0.5; 256], GgmlType::F32);
    let p = dir.join("iq.gguf");
    w.write_with_type_override(&p, &[("iq", 16)]).unwrap();
    let g = GgufFile::open(&p).unwrap();
    let e = g
        .dequantise(g.tensor("iq").unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("IQ2_XXS"), "{e}");
}

/// Dequantisation runs over every weight at load time: time it on 32M values of each of the
/// types real models use most, and fail only when it is absurdly slow (under 20M values/s
/// would make a 270M-parameter load take over 10 s).
#[test]
fn dequantisation_is_fast() {
    const N: usize = 1 << 25;
    for ty in [
        GgmlType::Q4_K,
        GgmlType::Q6_K,
        GgmlType::Q5_0,
        GgmlType::Q8_0,
    ] {
        let blocks = N / ty.block_values();
        // Zero bytes are valid blocks (scale 0) of every type.
        let raw = vec![0u8; blocks * ty.block_bytes()];
        let mut out = vec![0f32; N];
        let t = Instant::now();
        ty.dequantise_into(&raw, &mut out).unwrap();
        let s = t.elapsed().as_secs_f64();
        let rate = N as f64 / s / 1e6;
        eprintln!(
            "{}: {N} values in {:.3} s ({rate:.0}M values/s)",
            ty.name(),
            s
        );
        assert!(rate > 20.0, "{}: {rate:.1}M values/s", ty.name());
    }
}
