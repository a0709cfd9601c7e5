"""transformers' pixel values for images, for engine/data/tests/images.rs.

Usage: siglip_pixels.py CASES_JSON OUT_DIR

CASES_JSON is a list of {"image": PATH, "height": H, "width": W, "resample": N} (and optionally
"jpeg": PATH: first re-save the image there as a JPEG with Pillow at quality 90, then process that
file). Each case goes through SiglipImageProcessor (the slow, Pillow-based processor that
PaliGemma's processor uses) with that size and resample; its `pixel_values[0]` (3 × H × W) is
written to OUT_DIR/N.f32 as little-endian float32. Prints the processor's settings as JSON.
"""

import json
import os
import sys

import numpy as np
from PIL import Image
from transformers import SiglipImageProcessor


def main():
    cases, out = json.load(open(sys.argv[1])), sys.argv[2]
    settings = None
    for i, case in enumerate(cases):
        path = case["image"]
        if "jpeg" in case:
            Image.open(path).convert("RGB").save(case["jpeg"], format="JPEG", quality=90)
            path = case["jpeg"]
        proc = SiglipImageProcessor(
            size={"height": case["height"], "width": case["width"]}, resample=case["resample"]
        )
        settings = proc.to_dict()
        pixels = proc(images=Image.open(path), return_tensors="np")["pixel_values"][0]
        assert pixels.shape == (3, case["height"], case["width"]), pixels.shape
        pixels.astype("<f4").tofile(os.path.join(out, f"{i}.f32"))
    print(json.dumps({"image_mean": settings["image_mean"], "image_std": settings["image_std"],
                      "rescale_factor": settings["rescale_factor"]}))


if __name__ == "__main__":
    main()
