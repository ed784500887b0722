//! Mean and standard deviation, once for every crate (normalization
//! statistics, fits, tail statistics, the LLC): [`mean_std`], with the
//! divisor named at each call ([`Spread`]).
//!
//! It lives in the simulator crate because that is the one crate every other
//! crate (the model included) already depends on.

/// Which standard deviation: the divisor of the sum of squared deviations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spread {
    /// Divide by n: the standard deviation of the values themselves (for
    /// example normalization statistics, or the spread of bootstrap
    /// replicates around their mean).
    Population,
    /// Divide by n − 1 (Bessel's correction): the estimate of a population's
    /// standard deviation from a sample of it (for example the spread between
    /// seeds or chains). Undefined (NaN) for a single value.
    Sample,
}

/// Mean and standard deviation of `v`, summed left to right in `f64`.
///
/// Empty `v` gives `(NaN, NaN)`; with [`Spread::Sample`] a single value gives
/// `(value, NaN)`. Non-finite values are not filtered: filter first if they
/// may occur.
pub fn mean_std(v: &[f64], spread: Spread) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let ss = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>();
    let s = match spread {
        Spread::Population => (ss / n).sqrt(),
        Spread::Sample if v.len() < 2 => f64::NAN,
        Spread::Sample => (ss / (v.len() - 1) as f64).sqrt(),
    };
    (m, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn population_and_sample() {
        let v = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        let (m, s) = mean_std(&v, Spread::Population);
        assert_eq!(m, 5.0);
        assert_eq!(s, 2.0);
        let (m, s) = mean_std(&v, Spread::Sample);
        assert_eq!(m, 5.0);
        assert!((s - (32.0f64 / 7.0).sqrt()).abs() < 1e-15);
    }

    #[test]
    fn degenerate_inputs() {
        let (m, s) = mean_std(&[], Spread::Population);
        assert!(m.is_nan() && s.is_nan());
        assert_eq!(mean_std(&[3.0], Spread::Population), (3.0, 0.0));
        let (m, s) = mean_std(&[3.0], Spread::Sample);
        assert_eq!(m, 3.0);
        assert!(s.is_nan());
    }

    #[test]
    fn same_bits_as_the_loops_it_replaced() {
        // The copies it replaced summed left to right: the same bits.
        let v: Vec<f64> = (0..1000).map(|i| ((i * 7919) % 1013) as f64 * 0.37 - 100.0).collect();
        let m = v.iter().sum::<f64>() / v.len() as f64;
        let pop = (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64).sqrt();
        let samp = (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64).sqrt();
        assert_eq!(mean_std(&v, Spread::Population), (m, pop));
        assert_eq!(mean_std(&v, Spread::Sample), (m, samp));
    }
}
