//! Image decoding and SigLIP preprocessing against transformers' `SiglipImageProcessor` on the
//! real easy-VQA images, at PaliGemma-2's three resolutions, a downscale, each resampling filter,
//! and a JPEG; plus the errors a bad image file gets.

mod common;

use std::path::PathBuf;

use ardpipe_data::ErrorKind;
use ardpipe_data::image::{ImageProcessor, Resample, decode};

/// Run `tests/peer/siglip_pixels.py` on `cases` (see its docstring): it writes case N's pixel
/// values to `dir/N.f32` and returns the processor's settings.
fn siglip_peer(cases: &serde_json::Value, dir: &common::TempDir) -> serde_json::Value {
    let cases_path = dir.write("cases.json", serde_json::to_vec(cases).unwrap());
    common::run_peer(
        "siglip_pixels.py",
        &[cases_path.as_os_str(), dir.path().as_os_str()],
    )
}

struct Case {
    image: PathBuf,
    size: usize,
    resample: (u64, Resample),
    jpeg: Option<PathBuf>,
}

#[test]
fn pixel_values_match_transformers_on_real_images() {
    let dir = common::TempDir::new("siglip");
    let bicubic = (3, Resample::Bicubic);
    let img = |split: &str, n: u32| common::asset("easyvqa", &format!("{split}/images/{n}.png"));
    let mut cases = vec![];
    // PaliGemma-2's sizes (upscaling the 64-pixel images), on train and test images.
    for (i, size) in [224, 448, 896].into_iter().enumerate() {
        cases.push(Case {
            image: img("train", i as u32 * 7),
            size,
            resample: bicubic,
            jpeg: None,
        });
    }
    // A downscale (the filter's support widens), and every filter transformers can name.
    for (n, resample) in [
        (3, bicubic),
        (11, (1, Resample::Lanczos)),
        (12, (2, Resample::Bilinear)),
        (13, (4, Resample::Box)),
        (14, (5, Resample::Hamming)),
    ] {
        cases.push(Case {
            image: img("test", n),
            size: 24,
            resample,
            jpeg: None,
        });
    }
    // A JPEG that Pillow writes (4:2:0 chroma, so the decoder's upsampling matters).
    let jpeg = dir.path().join("photo.jpg");
    cases.push(Case {
        image: img("train", 100),
        size: 224,
        resample: bicubic,
        jpeg: Some(jpeg.clone()),
    });
    let spec: Vec<serde_json::Value> = cases
        .iter()
        .map(|c| {
            let mut v = serde_json::json!({
                "image": c.image, "height": c.size, "width": c.size, "resample": c.resample.0,
            });
            if let Some(j) = &c.jpeg {
                v["jpeg"] = serde_json::json!(j);
            }
            v
        })
        .collect();
    let settings = siglip_peer(&serde_json::json!(spec), &dir);
    assert_eq!(settings["image_mean"], serde_json::json!([0.5, 0.5, 0.5]));
    assert_eq!(settings["image_std"], serde_json::json!([0.5, 0.5, 0.5]));

    let mut report = vec![];
    for (i, c) in cases.iter().enumerate() {
        let bytes = std::fs::read(dir.path().join(format!("{i}.f32"))).unwrap();
        let want: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let p = ImageProcessor {
            resample: c.resample.1,
            ..ImageProcessor::siglip(c.size)
        };
        let (got, shape) = p.load(c.jpeg.as_ref().unwrap_or(&c.image)).unwrap();
        assert_eq!(shape, [3, c.size, c.size]);
        assert_eq!(got.len(), want.len());
        let max = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        report.push(format!(
            "{} at {}: max |Δ| {max:.2e}",
            if c.jpeg.is_some() { "jpeg" } else { "png" },
            c.size
        ));
        // The same bytes (JPEG: through the same libjpeg-turbo decoder) and the same resampling
        // arithmetic: equal values, float rounding aside.
        let tol = 1e-6;
        assert!(
            max <= tol,
            "case {i} ({:?} {}): max |Δ| {max}",
            c.resample.1,
            c.size
        );
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn bad_image_files_are_errors_that_name_the_file() {
    let dir = common::TempDir::new("bad-images");
    let text = dir.write("notes.png", "this is not an image");
    let e = decode(&text).unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadRow);
    let msg = e.to_string();
    assert!(
        msg.contains("notes.png") && msg.contains("cannot decode"),
        "{msg}"
    );

    // A real PNG cut in half.
    let png = std::fs::read(common::asset("easyvqa", "train/images/0.png")).unwrap();
    let cut = dir.write("cut.png", &png[..png.len() / 2]);
    let msg = decode(&cut).unwrap_err().to_string();
    assert!(
        msg.contains("cut.png") && msg.contains("cannot decode"),
        "{msg}"
    );

    // A header claiming 100,000 × 100,000 pixels (its checksum fixed) is refused before
    // anything is allocated.
    let mut huge = png.clone();
    huge[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    huge[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = png_crc(&huge[12..29]);
    huge[29..33].copy_from_slice(&crc.to_be_bytes());
    let huge = dir.write("huge.png", &huge);
    let msg = decode(&huge).unwrap_err().to_string();
    assert!(
        msg.contains("huge.png") && msg.contains("larger than"),
        "{msg}"
    );

    // A JPEG cut short (libjpeg would fill the rest with grey), and one with garbage in its scan.
    let jpeg = dir.path().join("whole.jpg");
    let spec = serde_json::json!([{
        "image": common::asset("easyvqa", "train/images/5.png"), "height": 8, "width": 8,
        "resample": 3, "jpeg": jpeg,
    }]);
    siglip_peer(&spec, &dir);
    let whole = std::fs::read(&jpeg).unwrap();
    assert_eq!(decode(&jpeg).unwrap().width, 64);
    let cut = dir.write("cut.jpg", &whole[..whole.len() * 2 / 3]);
    let msg = decode(&cut).unwrap_err().to_string();
    assert!(
        msg.contains("cut.jpg") && msg.contains("cut short"),
        "{msg}"
    );
    let mut header_only = whole[..whole.len() / 4].to_vec();
    header_only.extend([0xFF, 0xD9]);
    let bad = dir.write("bad.jpg", &header_only);
    let msg = decode(&bad).unwrap_err().to_string();
    assert!(
        msg.contains("bad.jpg") && msg.contains("cannot decode"),
        "{msg}"
    );

    let missing = dir.path().join("missing.png");
    let e = decode(&missing).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Io);
    assert!(e.to_string().contains("missing.png"), "{e}");
}

/// The CRC-32 of a PNG chunk (type and data), to forge a header that passes the decoder's check.
fn png_crc(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
