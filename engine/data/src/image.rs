//! Images for vision-language models: decoding a PNG or JPEG file and turning it into the pixel
//! values a vision tower reads, exactly as Hugging Face's `SiglipImageProcessor` (the processor of
//! SigLIP and PaliGemma) does: convert to RGB, resize to `height × width` with Pillow's resampling,
//! rescale by 1/255 and normalise per channel.
//!
//! The resize is a port of Pillow's two-pass convolution resampler (a horizontal pass into an
//! 8-bit image, then a vertical pass, with coefficients in 22-bit fixed point and Pillow's
//! rounding), not a generic one: a different filter support or rounding moves pixels by one or two
//! levels, which after normalisation is more than the 1e-2 the golden test allows.

use std::path::Path;

use serde_json::Value;

use crate::error::{DataError, ErrorKind};

/// An 8-bit RGB image, row-major, 3 bytes per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgb8 {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

/// The resampling filters of Pillow (and of transformers' `resample` numbers: 0 nearest,
/// 1 Lanczos, 2 bilinear, 3 bicubic, 4 box, 5 Hamming). Nearest is not a convolution and is not
/// offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    Lanczos,
    Bilinear,
    Bicubic,
    Box,
    Hamming,
}

impl Resample {
    /// From transformers' `resample` number (PIL's `Image.Resampling` values).
    pub fn from_pil(n: u64) -> Option<Self> {
        match n {
            1 => Some(Self::Lanczos),
            2 => Some(Self::Bilinear),
            3 => Some(Self::Bicubic),
            4 => Some(Self::Box),
            5 => Some(Self::Hamming),
            _ => None,
        }
    }

    fn support(self) -> f64 {
        match self {
            Self::Box => 0.5,
            Self::Bilinear | Self::Hamming => 1.0,
            Self::Bicubic => 2.0,
            Self::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        match self {
            Self::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Self::Bilinear => {
                let x = x.abs();
                if x < 1.0 { 1.0 - x } else { 0.0 }
            }
            Self::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let t = x * std::f64::consts::PI;
                    // Pillow writes the constants as C floats: keep their f32 values.
                    t.sin() / t * (0.54f32 as f64 + 0.46f32 as f64 * t.cos())
                }
            }
            Self::Bicubic => {
                // Keys' cubic convolution with a = −0.5.
                let a = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * a
                } else {
                    0.0
                }
            }
            Self::Lanczos => {
                let sinc = |x: f64| {
                    if x == 0.0 {
                        1.0
                    } else {
                        let t = x * std::f64::consts::PI;
                        t.sin() / t
                    }
                };
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

/// How pixel values are made from an image: transformers' image-processor settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageProcessor {
    /// Output size, `None` when `do_resize` is false.
    pub size: Option<(usize, usize)>,
    pub resample: Resample,
    /// Multiplier of the 0–255 values, `None` when `do_rescale` is false.
    pub rescale: Option<f32>,
    /// Per-channel mean and std, `None` when `do_normalize` is false.
    pub normalize: Option<([f32; 3], [f32; 3])>,
}

/// The largest image decoded, per side: a header claiming more is refused before any pixel is
/// allocated (a small hostile file cannot ask for gigabytes).
pub const MAX_SIDE: u32 = 16_384;
/// The most bytes the decoder may allocate for one image.
const MAX_ALLOC: u64 = 1 << 30;

impl ImageProcessor {
    /// SigLIP's (and PaliGemma's) defaults at a square `size`: bicubic, 1/255, mean = std = 0.5.
    pub fn siglip(size: usize) -> Self {
        Self {
            size: Some((size, size)),
            resample: Resample::Bicubic,
            rescale: Some(1.0 / 255.0),
            normalize: Some(([0.5; 3], [0.5; 3])),
        }
    }

    /// From a `preprocessor_config.json` as transformers writes it. Every key that changes the
    /// pixel values is read; one this reader does not implement is refused, not ignored.
    pub fn from_config(path: &Path) -> Result<Self, DataError> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, &e))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| {
            DataError::new(ErrorKind::Config, format!("not valid JSON: {e}")).in_file(path)
        })?;
        Self::from_json(&v).map_err(|e| e.in_file(path))
    }

    pub fn from_json(v: &Value) -> Result<Self, DataError> {
        let bad = |msg: String| DataError::new(ErrorKind::Config, msg);
        let flag = |key: &str, default: bool| -> Result<bool, DataError> {
            match v.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(Value::Bool(b)) => Ok(*b),
                Some(other) => Err(bad(format!("`{key}` must be true or false, not {other}"))),
            }
        };
        let floats3 = |key: &str, default: [f32; 3]| -> Result<[f32; 3], DataError> {
            match v.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(Value::Number(n)) => Ok([n.as_f64().unwrap_or(f64::NAN) as f32; 3]),
                Some(Value::Array(a)) if a.len() == 3 && a.iter().all(Value::is_number) => {
                    let f = |i: usize| a[i].as_f64().unwrap_or(f64::NAN) as f32;
                    Ok([f(0), f(1), f(2)])
                }
                Some(other) => Err(bad(format!(
                    "`{key}` must be a number or a list of 3 numbers, not {other}"
                ))),
            }
        };
        for (key, why) in [
            ("do_center_crop", "center cropping"),
            ("do_pad", "padding"),
            ("do_image_splitting", "image splitting"),
        ] {
            if flag(key, false)? {
                return Err(bad(format!("`{key}` is true: {why} is not implemented"))
                    .with_help("only resize, rescale and normalise (SigLIP's steps) are applied"));
            }
        }
        if !flag("do_convert_rgb", true)? {
            return Err(bad(
                "`do_convert_rgb` is false: images are always read as RGB".into(),
            ));
        }
        let size = if flag("do_resize", true)? {
            let s = v
                .get("size")
                .ok_or_else(|| bad("`size` is missing".into()))?;
            let side = |k: &str| s.get(k).and_then(Value::as_u64).filter(|&n| n > 0);
            match (side("height"), side("width"), side("shortest_edge")) {
                (Some(h), Some(w), None) if h <= MAX_SIDE as u64 && w <= MAX_SIDE as u64 => {
                    Some((h as usize, w as usize))
                }
                _ => {
                    return Err(bad(format!(
                        "`size` must be {{\"height\": H, \"width\": W}} with sides 1 to {MAX_SIDE}, not {s}"
                    ))
                    .with_help("aspect-preserving sizes (`shortest_edge`) are not implemented"));
                }
            }
        } else {
            None
        };
        let resample = match v.get("resample") {
            None | Some(Value::Null) => Resample::Bicubic,
            Some(r) => r.as_u64().and_then(Resample::from_pil).ok_or_else(|| {
                bad(format!(
                    "`resample` {r} is not one of 1 (Lanczos), 2 (bilinear), 3 (bicubic), 4 (box), 5 (Hamming)"
                ))
            })?,
        };
        let rescale = if flag("do_rescale", true)? {
            Some(match v.get("rescale_factor") {
                None | Some(Value::Null) => 1.0 / 255.0,
                Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN) as f32,
                Some(other) => {
                    return Err(bad(format!(
                        "`rescale_factor` must be a number, not {other}"
                    )));
                }
            })
        } else {
            None
        };
        let normalize = if flag("do_normalize", true)? {
            let mean = floats3("image_mean", [0.5; 3])?;
            let std = floats3("image_std", [0.5; 3])?;
            if std.iter().any(|s| !s.is_finite() || *s == 0.0)
                || mean.iter().any(|m| !m.is_finite())
            {
                return Err(bad(format!(
                    "`image_mean` {mean:?} / `image_std` {std:?}: a std is 0 or a value is not finite"
                )));
            }
            Some((mean, std))
        } else {
            None
        };
        Ok(Self {
            size,
            resample,
            rescale,
            normalize,
        })
    }

    /// Pixel values of an image file, channels first: `[3, height, width]` flattened.
    pub fn load(&self, path: &Path) -> Result<(Vec<f32>, [usize; 3]), DataError> {
        Ok(self.pixel_values(&decode(path)?))
    }

    /// Pixel values of a decoded image, channels first: `[3, height, width]` flattened.
    pub fn pixel_values(&self, img: &Rgb8) -> (Vec<f32>, [usize; 3]) {
        let resized;
        let img = match self.size {
            Some((h, w)) if (h, w) != (img.height, img.width) => {
                resized = resize(img, w, h, self.resample);
                &resized
            }
            _ => img,
        };
        let (h, w) = (img.height, img.width);
        let mut out = vec![0f32; 3 * h * w];
        for c in 0..3 {
            let (mean, std) = match self.normalize {
                Some((m, s)) => (m[c], s[c]),
                None => (0.0, 1.0),
            };
            let scale = self.rescale.unwrap_or(1.0);
            let plane = &mut out[c * h * w..(c + 1) * h * w];
            for (i, p) in plane.iter_mut().enumerate() {
                // transformers rescales then normalises in float32, in that order.
                let x = img.data[i * 3 + c] as f32 * scale;
                *p = (x - mean) / std;
            }
        }
        (out, [3, h, w])
    }
}

/// Decode a PNG or JPEG (or another format the `image` crate reads) into RGB, as PIL's
/// `convert("RGB")` does: grey is replicated, alpha is dropped, palettes are expanded. JPEG goes
/// through libjpeg-turbo's decoder (mozjpeg's build of it), as in Pillow: JPEG decoders differ in
/// their IDCT and chroma upsampling by a few levels, and only the same decoder gives the same
/// pixels.
pub fn decode(path: &Path) -> Result<Rgb8, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, &e))?;
    let cannot = |why: String| {
        DataError::new(ErrorKind::BadRow, format!("cannot decode the image: {why}"))
            .in_file(path)
            .with_help("images must be PNG or JPEG files; re-save the file or drop the record")
    };
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return decode_jpeg(&bytes).map_err(cannot);
    }
    let mut reader = image::ImageReader::new(std::io::Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| DataError::io(path, &e))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| {
            cannot(match &e {
                image::ImageError::Limits(_) => too_large(&e),
                image::ImageError::Unsupported(_) => format!("its format is not supported: {e}"),
                _ => format!("it is not a readable image: {e}"),
            })
        })?
        .into_rgb8();
    let (width, height) = (img.width() as usize, img.height() as usize);
    Ok(Rgb8 {
        width,
        height,
        data: img.into_raw(),
    })
}

fn too_large(detail: &dyn std::fmt::Display) -> String {
    format!("it is larger than ardpipe decodes ({MAX_SIDE} pixels a side, 1 GiB decoded): {detail}")
}

fn decode_jpeg(bytes: &[u8]) -> Result<Rgb8, String> {
    // libjpeg ends a file cut short with a warning and grey pixels (which mozjpeg silences);
    // Pillow refuses it. A complete file has its End Of Image marker after the last Start Of
    // Scan (neither can occur inside entropy-coded data; an EXIF thumbnail's come earlier).
    let last_scan = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    let complete = last_scan.is_some_and(|s| bytes[s..].windows(2).any(|w| w == [0xFF, 0xD9]));
    if !complete {
        return Err(
            "the JPEG data is cut short (no end-of-image marker after its last scan)".into(),
        );
    }
    // libjpeg reports fatal errors by unwinding (mozjpeg's error manager): catch them here.
    let decoded = std::panic::catch_unwind(|| -> Result<Rgb8, String> {
        let d = mozjpeg::Decompress::new_mem(bytes).map_err(|e| e.to_string())?;
        let (width, height) = (d.width(), d.height());
        if width > MAX_SIDE as usize || height > MAX_SIDE as usize {
            return Err(too_large(&format!("{width} × {height}")));
        }
        let mut started = d.rgb().map_err(|e| e.to_string())?;
        let data: Vec<u8> = started.read_scanlines().map_err(|e| e.to_string())?;
        started.finish().map_err(|e| e.to_string())?;
        if data.len() != width * height * 3 {
            return Err(format!(
                "{} bytes decoded for {width} × {height} RGB",
                data.len()
            ));
        }
        Ok(Rgb8 {
            width,
            height,
            data,
        })
    });
    match decoded {
        Ok(r) => r,
        Err(payload) => Err(payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_else(|| "libjpeg failed".into())),
    }
}

/// Pillow's `Image.resize((width, height), resample)` of an RGB image.
pub fn resize(img: &Rgb8, width: usize, height: usize, filter: Resample) -> Rgb8 {
    let horizontal = if width != img.width {
        let (bounds, coeffs, k) = coefficients(img.width, width, filter);
        let mut out = vec![0u8; img.height * width * 3];
        for y in 0..img.height {
            let row = &img.data[y * img.width * 3..(y + 1) * img.width * 3];
            for (x, &(start, len)) in bounds.iter().enumerate() {
                let kk = &coeffs[x * k..x * k + len];
                for c in 0..3 {
                    let mut acc: i64 = 1 << (PRECISION_BITS - 1);
                    for (i, &w) in kk.iter().enumerate() {
                        acc += row[(start + i) * 3 + c] as i64 * w as i64;
                    }
                    out[(y * width + x) * 3 + c] = clip8(acc);
                }
            }
        }
        Rgb8 {
            width,
            height: img.height,
            data: out,
        }
    } else {
        img.clone()
    };
    if height == horizontal.height {
        return horizontal;
    }
    let (bounds, coeffs, k) = coefficients(horizontal.height, height, filter);
    let stride = width * 3;
    let mut out = vec![0u8; height * stride];
    for (y, &(start, len)) in bounds.iter().enumerate() {
        let kk = &coeffs[y * k..y * k + len];
        for i in 0..stride {
            let mut acc: i64 = 1 << (PRECISION_BITS - 1);
            for (j, &w) in kk.iter().enumerate() {
                acc += horizontal.data[(start + j) * stride + i] as i64 * w as i64;
            }
            out[y * stride + i] = clip8(acc);
        }
    }
    Rgb8 {
        width,
        height,
        data: out,
    }
}

/// Fixed-point precision of the 8-bit passes: 8 bits for the result and 2 for the filters'
/// negative lobes and overshoot, out of 32.
const PRECISION_BITS: u32 = 32 - 8 - 2;

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Per output pixel: the first input pixel and how many are read, and the fixed-point weights
/// (`k` per output pixel, the first `len` used), as Pillow's `precompute_coeffs` and
/// `normalize_coeffs_8bpc` compute them.
fn coefficients(
    in_size: usize,
    out_size: usize,
    filter: Resample,
) -> (Vec<(usize, usize)>, Vec<i32>, usize) {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let k = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut coeffs = vec![0i32; out_size * k];
    let mut w = vec![0f64; k];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // Pillow rounds with a C cast of `v + 0.5` (truncation toward zero).
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let len = xmax.saturating_sub(xmin).min(k);
        let mut total = 0.0;
        for (x, wx) in w.iter_mut().enumerate().take(len) {
            *wx = filter.weight((x as f64 + xmin as f64 - center + 0.5) * ss);
            total += *wx;
        }
        for x in 0..len {
            let v = if total != 0.0 { w[x] / total } else { w[x] };
            let fixed = v * (1u64 << PRECISION_BITS) as f64;
            coeffs[xx * k + x] = if v < 0.0 {
                (-0.5 + fixed) as i32
            } else {
                (0.5 + fixed) as i32
            };
        }
        bounds.push((xmin, len));
    }
    (bounds, coeffs, k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: usize, h: usize) -> Rgb8 {
        let mut data = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                data.extend([(x * 255 / w.max(1)) as u8, (y * 255 / h.max(1)) as u8, 128]);
            }
        }
        Rgb8 {
            width: w,
            height: h,
            data,
        }
    }

    #[test]
    fn a_constant_image_stays_constant_at_any_size() {
        let img = Rgb8 {
            width: 7,
            height: 5,
            data: [10u8, 200, 255].repeat(35),
        };
        for f in [
            Resample::Bicubic,
            Resample::Bilinear,
            Resample::Lanczos,
            Resample::Box,
            Resample::Hamming,
        ] {
            for (w, h) in [(3, 2), (16, 11), (7, 5), (1, 1)] {
                let r = resize(&img, w, h, f);
                assert_eq!((r.width, r.height), (w, h));
                assert!(
                    r.data.chunks(3).all(|p| p == [10, 200, 255]),
                    "{f:?} {w}x{h}"
                );
            }
        }
    }

    #[test]
    fn siglip_values_span_minus_one_to_one_channels_first() {
        let img = Rgb8 {
            width: 2,
            height: 1,
            data: vec![0, 255, 51, 255, 0, 102],
        };
        let p = ImageProcessor {
            size: None,
            ..ImageProcessor::siglip(2)
        };
        let (v, shape) = p.pixel_values(&img);
        assert_eq!(shape, [3, 1, 2]);
        let want = [
            -1.0,
            1.0,
            1.0,
            -1.0,
            51.0 / 127.5 - 1.0,
            102.0 / 127.5 - 1.0,
        ];
        for (a, b) in v.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{v:?}");
        }
    }

    #[test]
    fn downscaling_averages_and_upscaling_interpolates() {
        let img = gradient(64, 64);
        let down = resize(&img, 16, 16, Resample::Bicubic);
        let up = resize(&img, 224, 224, Resample::Bicubic);
        // The red channel rises left to right in both.
        let red = |r: &Rgb8, x: usize| r.data[x * 3];
        assert!(red(&down, 0) < red(&down, 8) && red(&down, 8) < red(&down, 15));
        assert!(red(&up, 0) <= red(&up, 100) && red(&up, 100) < red(&up, 223));
    }

    #[test]
    fn config_keys_that_change_pixels_are_read_or_refused() {
        let ok = serde_json::json!({
            "do_resize": true, "size": {"height": 448, "width": 448}, "resample": 2,
            "do_rescale": true, "rescale_factor": 0.00392156862745098,
            "do_normalize": true, "image_mean": [0.5, 0.4, 0.3], "image_std": 0.25,
            "image_processor_type": "SiglipImageProcessor"
        });
        let p = ImageProcessor::from_json(&ok).unwrap();
        assert_eq!(p.size, Some((448, 448)));
        assert_eq!(p.resample, Resample::Bilinear);
        assert_eq!(p.normalize, Some(([0.5, 0.4, 0.3], [0.25; 3])));
        for (bad, needle) in [
            (
                serde_json::json!({"size": {"shortest_edge": 224}}),
                "shortest_edge",
            ),
            (
                serde_json::json!({"size": {"height": 224, "width": 224}, "do_center_crop": true}),
                "do_center_crop",
            ),
            (
                serde_json::json!({"size": {"height": 224, "width": 224}, "resample": 0}),
                "resample",
            ),
            (
                serde_json::json!({"size": {"height": 224, "width": 224}, "image_std": [1, 0, 1]}),
                "std is 0",
            ),
            (
                serde_json::json!({"size": {"height": 224, "width": 99999}}),
                "sides 1 to",
            ),
        ] {
            let e = ImageProcessor::from_json(&bad).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
    }
}
