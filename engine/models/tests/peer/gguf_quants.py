"""Reference dequantisation for engine/models/tests/gguf_quants.rs, by the `gguf` package.

usage: gguf_quants.py OUT_DIR

For every GGML type ardpipe reads it writes random blocks (random bytes, with every f16 scale
field set to a random finite number, subnormals and zero included) and the package's dequantised
values:
  OUT_DIR/blocks/<TYPE>.bin   the raw blocks
  OUT_DIR/blocks/<TYPE>.f32   gguf.quants.dequantize(blocks, type) as little-endian f32
and one GGUF file written by gguf.GGUFWriter holding a tensor `t.<TYPE>` of each type (shape
rows x cols, from the same bytes), so that the Rust test can load it through GgufFile:
  OUT_DIR/all_types.gguf
  OUT_DIR/manifest.json       {"types": [{"name", "id", "blocks", "shape"}]}
"""

import json
import sys
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES

# (type, byte offsets of its f16 scale fields within a block)
TYPES = [
    (T.F32, []),
    (T.F16, []),
    (T.BF16, []),
    (T.Q4_0, [0]),
    (T.Q4_1, [0, 2]),
    (T.Q5_0, [0]),
    (T.Q5_1, [0, 2]),
    (T.Q8_0, [0]),
    (T.Q2_K, [80, 82]),
    (T.Q3_K, [108]),
    (T.Q4_K, [0, 2]),
    (T.Q5_K, [0, 2]),
    (T.Q6_K, [208]),
]

rng = np.random.default_rng(20261206)


def finite_f16(n):
    mag = 10.0 ** rng.uniform(-8, 3, n)  # below 6e-5 f16 is subnormal, below 3e-8 zero
    sign = rng.choice([-1.0, 1.0], n)
    v = (sign * mag).astype(np.float16)
    v[rng.random(n) < 0.02] = 0
    assert np.isfinite(v).all()
    return v


def random_blocks(qtype, scale_offsets, n_blocks):
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, (n_blocks, type_size), dtype=np.uint8)
    if qtype == T.F32:
        bits = raw.view(np.uint32)
        # exponent 255 is inf/NaN: clear its top bit
        bad = (bits >> 23) & 0xFF == 0xFF
        bits[bad] &= np.uint32(0xBFFFFFFF)
    elif qtype == T.F16:
        raw = finite_f16(n_blocks).view(np.uint8).reshape(n_blocks, 2)
    elif qtype == T.BF16:
        bits = raw.view(np.uint16)
        bad = (bits >> 7) & 0xFF == 0xFF
        bits[bad] &= np.uint16(0xBFFF)
    for off in scale_offsets:
        raw[:, off : off + 2] = finite_f16(n_blocks).view(np.uint8).reshape(n_blocks, 2)
    return raw


def main():
    out = Path(sys.argv[1])
    (out / "blocks").mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(out / "all_types.gguf"), "quant-test")
    manifest = []
    for qtype, offsets in TYPES:
        block_size, type_size = GGML_QUANT_SIZES[qtype]
        n_blocks = 4096 if block_size > 1 else 65536
        raw = random_blocks(qtype, offsets, n_blocks)
        want = gguf.quants.dequantize(raw.reshape(-1), qtype).astype(np.float32)
        assert want.size == n_blocks * block_size and np.isfinite(want).all(), qtype.name
        (out / "blocks" / f"{qtype.name}.bin").write_bytes(raw.tobytes())
        (out / "blocks" / f"{qtype.name}.f32").write_bytes(want.astype("<f4").tobytes())
        # The same bytes as a tensor of 4 rows, each a whole number of blocks.
        rows = 4
        per_row = n_blocks // rows
        tensor = raw.reshape(rows, per_row * type_size)
        writer.add_tensor(f"t.{qtype.name}", tensor, raw_shape=tensor.shape, raw_dtype=qtype)
        manifest.append(
            {
                "name": qtype.name,
                "id": int(qtype),
                "blocks": n_blocks,
                "shape": [rows, per_row * block_size],
            }
        )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    # The file as the package itself reads it back, dequantised: the same values.
    reader = gguf.GGUFReader(str(out / "all_types.gguf"))
    for t in reader.tensors:
        name = t.name.removeprefix("t.")
        want = np.frombuffer((out / "blocks" / f"{name}.f32").read_bytes(), dtype="<f4")
        got = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).reshape(-1)
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), name
    (out / "manifest.json").write_text(json.dumps({"types": manifest}))


if __name__ == "__main__":
    main()
