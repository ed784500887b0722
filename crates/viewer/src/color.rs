//! Colormaps and the scales they are drawn with: viridis (perceptual,
//! sequential) for attention and speed, a blue–white–red diverging map for
//! the signed collision score, and gray for "no value".

/// sRGB in [0, 1].
pub type Rgb = [f32; 3];

/// Gray for particles without a value (no partner, no cached attention).
pub const NO_VALUE: Rgb = [0.45, 0.45, 0.45];

/// Which colormap a mode uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colormap {
    /// Viridis: perceptual, sequential (attention, speed).
    Viridis,
    /// Blue–white–red, centred on zero (the signed collision score).
    Diverging,
}

impl Colormap {
    /// Color at t in [0, 1] (clamped).
    pub fn at(self, t: f32) -> Rgb {
        let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
        match self {
            Colormap::Viridis => viridis(t),
            Colormap::Diverging => diverging(t),
        }
    }
}

/// matplotlib's viridis, as the 6th-order polynomial fit by Matt Zucker
/// (max error below one 8-bit step).
pub fn viridis(t: f32) -> Rgb {
    #[allow(clippy::excessive_precision)] // the fit's coefficients as published
    const C: [[f32; 3]; 7] = [
        [0.277_727_33, 0.005_407_344_5, 0.334_099_8],
        [0.105_093_04, 1.404_613_5, 1.384_590_2],
        [-0.330_861_83, 0.214_847_56, 0.095_095_16],
        [-4.634_230_5, -5.799_101, -19.332_441],
        [6.228_27, 14.179_933, 56.690_553],
        [4.776_385, -13.745_146, -65.353_035],
        [-5.435_456, 4.645_852_6, 26.312_435],
    ];
    let mut out = [0f32; 3];
    for (k, o) in out.iter_mut().enumerate() {
        let mut v = C[6][k];
        for i in (0..6).rev() {
            v = v * t + C[i][k];
        }
        *o = v.clamp(0.0, 1.0);
    }
    out
}

/// ColorBrewer RdBu (reversed: blue for low, red for high), 5 stops.
pub fn diverging(t: f32) -> Rgb {
    const S: [Rgb; 5] = [
        [0.129, 0.400, 0.675],
        [0.404, 0.663, 0.812],
        [0.969, 0.969, 0.969],
        [0.937, 0.541, 0.384],
        [0.698, 0.094, 0.169],
    ];
    let x = t * 4.0;
    let i = (x.floor() as usize).min(3);
    let w = x - i as f32;
    [0, 1, 2].map(|k| S[i][k] * (1.0 - w) + S[i + 1][k] * w)
}

/// A linear color scale: value → colormap position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    /// The colormap.
    pub map: Colormap,
    /// Value at the colormap's start.
    pub lo: f32,
    /// Value at its end.
    pub hi: f32,
}

impl Scale {
    /// Position of `v` on the colormap, clamped to [0, 1] (0 when the range is empty).
    pub fn t(&self, v: f32) -> f32 {
        if !(self.hi > self.lo) {
            return 0.0;
        }
        (v - self.lo) / (self.hi - self.lo)
    }
    /// Color of a value; NaN gives [`NO_VALUE`].
    pub fn color(&self, v: f32) -> Rgb {
        if v.is_nan() {
            NO_VALUE
        } else {
            self.map.at(self.t(v))
        }
    }
    /// Palette slot (0..=255) of a value, or `None` for NaN.
    pub fn slot(&self, v: f32) -> Option<usize> {
        if v.is_nan() {
            None
        } else {
            Some((self.t(v).clamp(0.0, 1.0) * 255.0).round() as usize)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viridis_endpoints_and_monotone_lightness() {
        let close = |a: Rgb, b: Rgb| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 0.02);
        assert!(close(viridis(0.0), [0.267, 0.005, 0.329]), "{:?}", viridis(0.0));
        assert!(close(viridis(0.5), [0.128, 0.567, 0.551]), "{:?}", viridis(0.5));
        assert!(close(viridis(1.0), [0.993, 0.906, 0.144]), "{:?}", viridis(1.0));
        // perceptual: luminance increases along the map
        let lum = |c: Rgb| 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
        let mut last = -1.0;
        for i in 0..=50 {
            let l = lum(viridis(i as f32 / 50.0));
            assert!(l > last, "luminance not increasing at {i}");
            last = l;
        }
    }

    #[test]
    fn scale_maps_and_marks_missing() {
        let s = Scale { map: Colormap::Diverging, lo: -1.0, hi: 1.0 };
        assert_eq!(s.slot(-1.0), Some(0));
        assert_eq!(s.slot(1.0), Some(255));
        assert_eq!(s.slot(0.0), Some(128));
        assert_eq!(s.slot(5.0), Some(255));
        assert_eq!(s.slot(f32::NAN), None);
        assert_eq!(s.color(f32::NAN), NO_VALUE);
        // the middle of the diverging map is near white
        assert!(s.color(0.0).iter().all(|&c| c > 0.9));
    }
}
