//! Seeds of the random streams derived from a run's seed: one function,
//! [`derive_seed`], and one [`Stream`] per use, so that no two uses share a
//! generator by accident and every salt lives in this file.
//!
//! The derivations are the ones headlab always used (each was an ad-hoc salt
//! next to its generator before): results made by earlier versions are
//! reproduced bit for bit. The tests pin each stream to its old formula.
//! Adding a stream: add a variant with a salt not used elsewhere, and a test.
//!
//! Independent generators that are ChaCha *streams* of one seed
//! (`ChaCha8Rng::set_stream`: the simulator's one stream per trajectory, the
//! SGLD chains' noise and batch streams) are not salts and stay where they are.

/// A use of randomness that derives its seed from a run's seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    // --- training (headlab-train) ---
    /// The split of trajectories into training and validation.
    TrainValSplit,
    /// libtorch's generator (dropout) before the update at `step`.
    Dropout {
        /// The training step.
        step: u64,
    },
    /// Minibatches of a gradient-noise measurement at `step` during training.
    GradNoiseBatches {
        /// The training step.
        step: u64,
    },
    /// The Gaussian reference norms of that measurement.
    GradNoiseGaussian {
        /// The training step.
        step: u64,
    },
    /// The tail statistics (bootstraps) of that measurement.
    GradNoiseStats {
        /// The training step.
        step: u64,
    },
    /// One of the tail statistics of a gradient-noise measurement, from its
    /// statistics seed: 1 the noise norms, 2 the Gaussian reference norms,
    /// 3 the standardized coordinates.
    TailStatistic {
        /// Which statistic (1, 2 or 3).
        which: u64,
    },

    // --- analysis (headlab-analysis) ---
    /// The probe's evaluation frames (trajectory, frame) sample.
    EvalSet,
    /// The fits of one head's series (`headlab fit`), from the fit seed.
    FitHead {
        /// Layer of the head.
        layer: usize,
        /// Head index in its layer.
        head: usize,
    },
    /// The residual bootstrap of one fitted form (its index in the model list).
    FitBootstrap {
        /// Index of the fitted form.
        model: usize,
    },
    /// The bootstrap of the emergence step (half the final value).
    EmergenceBootstrap,
    /// The seed-level case bootstrap of a fit pooled over runs.
    PooledBootstrap,

    // --- LLC (headlab-probe) ---
    /// The order in which the LLC's model adapter visits its data rows.
    LlcRowOrder,

    // --- lenses (headlab-lens) ---
    /// The (frame, query) sample of the physics lens.
    PhysicsLensQueries,
    /// One (score spread, particle count) cell of the scaling lens.
    ScalingCell {
        /// Index of the score spread.
        spread: usize,
        /// Index of the particle count.
        n: usize,
    },
    /// The initial weights of the in-context regression transformer.
    IclInit,
    /// The training prompts of the in-context regression lens.
    IclTrainPrompts,
    /// The evaluation prompts of the in-context regression lens.
    IclEvalPrompts,
    /// The training minibatches of the in-context regression lens.
    IclBatches,
    /// Minibatches of a gradient-noise measurement of that lens at `step`.
    IclNoiseBatches {
        /// The training step.
        step: u64,
    },
    /// The Gaussian reference norms of that measurement.
    IclNoiseGaussian {
        /// The training step.
        step: u64,
    },
    /// The evaluation samples of the scan-and-snap toy.
    ScanSnapEval,
    /// The `index`-th replicate after a main run (seed + 1 + index), as in
    /// the scan-and-snap dataset-size sweep.
    Replicate {
        /// 0 for the first replicate.
        index: u64,
    },
}

/// Salt of the training/validation split.
const SPLIT_SALT: u64 = 0x5eed_5917;
/// Mixed into the seed of gradient-noise measurements during training so
/// they never share a stream with the training batches.
const GRAD_NOISE_SALT: u64 = 0x6e01_5e5a_17ad;
/// Salt of the Gaussian reference of a gradient-noise measurement.
const GAUSSIAN_SALT: u64 = 0x6a55;
/// The xorshift64* output multiplier, used to spread a step number over 64 bits.
const XORSHIFT_MUL: u64 = 0x2545_f491_4f6c_dd1d;
/// 2^32 / golden ratio (Fibonacci hashing), used to spread small indices.
const GOLDEN_32: u64 = 0x9e37_79b9;

/// The seed of `stream` for a run whose seed is `seed`.
pub fn derive_seed(seed: u64, stream: Stream) -> u64 {
    match stream {
        Stream::TrainValSplit => seed ^ SPLIT_SALT,
        Stream::Dropout { step } => seed.wrapping_mul(1_000_003).wrapping_add(step),
        Stream::GradNoiseBatches { step } => seed ^ GRAD_NOISE_SALT ^ step.wrapping_mul(XORSHIFT_MUL),
        Stream::GradNoiseGaussian { step } => seed ^ GRAD_NOISE_SALT ^ step ^ GAUSSIAN_SALT,
        Stream::GradNoiseStats { step } => seed ^ step,
        Stream::TailStatistic { which } => seed.wrapping_add(which),
        Stream::EvalSet => seed ^ 0xE7A1,
        Stream::FitHead { layer, head } => seed ^ ((layer * 1000 + head) as u64),
        Stream::FitBootstrap { model } => seed ^ GOLDEN_32.wrapping_mul(model as u64 + 1),
        Stream::EmergenceBootstrap => seed ^ 0xE3E,
        Stream::PooledBootstrap => seed ^ 0x5EED,
        Stream::LlcRowOrder => seed ^ 0x11c_ba7c,
        Stream::PhysicsLensQueries => seed ^ 0x5F3A,
        Stream::ScalingCell { spread, n } => seed ^ ((spread as u64) << 32) ^ ((n as u64) << 16),
        Stream::IclInit => seed ^ 0x05ee_d1c1,
        Stream::IclTrainPrompts => seed.wrapping_mul(GOLDEN_32).wrapping_add(1),
        Stream::IclEvalPrompts => seed.wrapping_mul(GOLDEN_32).wrapping_add(2),
        Stream::IclBatches => seed.wrapping_add(0xba7c4),
        Stream::IclNoiseBatches { step } => seed ^ step.wrapping_mul(0x2545_f491),
        Stream::IclNoiseGaussian { step } => seed ^ GAUSSIAN_SALT ^ step,
        Stream::ScanSnapEval => seed ^ 0x5eed_e7a1,
        Stream::Replicate { index } => seed.wrapping_add(1).wrapping_add(index),
    }
}

#[cfg(test)]
mod tests {
    //! Each stream against the expression that computed it before
    //! `derive_seed` existed (copied verbatim from the old call sites), over
    //! seeds and indices that include 0, small values and u64::MAX.
    use super::*;

    const SEEDS: [u64; 6] = [0, 1, 7, 12345, 0xdead_beef_dead_beef, u64::MAX];
    const STEPS: [u64; 5] = [0, 1, 250, 3000, 1 << 40];

    #[test]
    fn train_streams_match_the_old_salts() {
        for &seed in &SEEDS {
            // crates/train/src/data.rs: seed ^ SPLIT_SALT, SPLIT_SALT = 0x5eed_5917
            assert_eq!(derive_seed(seed, Stream::TrainValSplit), seed ^ 0x5eed_5917);
            for &step in &STEPS {
                // crates/train/src/lib.rs (dropout before each step)
                assert_eq!(
                    derive_seed(seed, Stream::Dropout { step }),
                    seed.wrapping_mul(1_000_003).wrapping_add(step)
                );
                // crates/train/src/lib.rs gradient_noise, NOISE_SALT = 0x6e01_5e5a_17ad
                assert_eq!(
                    derive_seed(seed, Stream::GradNoiseBatches { step }),
                    seed ^ 0x6e01_5e5a_17ad ^ step.wrapping_mul(0x2545_f491_4f6c_dd1d)
                );
                assert_eq!(
                    derive_seed(seed, Stream::GradNoiseGaussian { step }),
                    seed ^ 0x6e01_5e5a_17ad ^ step ^ 0x6a55
                );
                assert_eq!(derive_seed(seed, Stream::GradNoiseStats { step }), seed ^ step);
            }
            // crates/train/src/noise.rs: stats_seed + 1, + 2, + 3 (wrapping: overflow checks are off)
            for which in 1..=3u64 {
                assert_eq!(derive_seed(seed, Stream::TailStatistic { which }), seed.wrapping_add(which));
            }
        }
        assert_eq!(derive_seed(7, Stream::TailStatistic { which: 2 }), 9);
    }

    #[test]
    fn analysis_streams_match_the_old_salts() {
        for &seed in &SEEDS {
            // crates/analysis/src/evalset.rs
            assert_eq!(derive_seed(seed, Stream::EvalSet), seed ^ 0xE7A1);
            // crates/analysis/src/fitrun.rs
            for layer in 0..4usize {
                for head in 0..8usize {
                    assert_eq!(
                        derive_seed(seed, Stream::FitHead { layer, head }),
                        seed ^ ((layer * 1000 + head) as u64)
                    );
                }
            }
            // crates/analysis/src/fit.rs
            for mi in 0..4usize {
                assert_eq!(
                    derive_seed(seed, Stream::FitBootstrap { model: mi }),
                    seed ^ (0x9E37_79B9 * (mi as u64 + 1))
                );
            }
            assert_eq!(derive_seed(seed, Stream::EmergenceBootstrap), seed ^ 0xE3E);
            assert_eq!(derive_seed(seed, Stream::PooledBootstrap), seed ^ 0x5EED);
        }
    }

    #[test]
    #[allow(clippy::unusual_byte_groupings)] // the old literals, copied verbatim
    fn probe_and_lens_streams_match_the_old_salts() {
        for &seed in &SEEDS {
            // crates/probe/src/llc/model.rs
            assert_eq!(derive_seed(seed, Stream::LlcRowOrder), seed ^ 0x11c_ba7c);
            // crates/lens/src/physics.rs
            assert_eq!(derive_seed(seed, Stream::PhysicsLensQueries), seed ^ 0x5F3A);
            // crates/lens/src/scaling.rs
            for si in 0..3usize {
                for ni in 0..5usize {
                    assert_eq!(
                        derive_seed(seed, Stream::ScalingCell { spread: si, n: ni }),
                        seed ^ ((si as u64) << 32) ^ ((ni as u64) << 16)
                    );
                }
            }
            // crates/lens/src/icl/{model,data,train}.rs
            assert_eq!(derive_seed(seed, Stream::IclInit), seed ^ 0x5eed_1c1);
            assert_eq!(derive_seed(seed, Stream::IclTrainPrompts), seed.wrapping_mul(0x9e37_79b9).wrapping_add(1));
            assert_eq!(derive_seed(seed, Stream::IclEvalPrompts), seed.wrapping_mul(0x9e37_79b9).wrapping_add(2));
            assert_eq!(derive_seed(seed, Stream::IclBatches), seed.wrapping_add(0xba7c4));
            for step in [0usize, 1, 99, 5000] {
                assert_eq!(
                    derive_seed(seed, Stream::IclNoiseBatches { step: step as u64 }),
                    seed ^ (step as u64).wrapping_mul(0x2545_f491)
                );
                assert_eq!(
                    derive_seed(seed, Stream::IclNoiseGaussian { step: step as u64 }),
                    seed ^ 0x6a55 ^ step as u64
                );
            }
            // crates/lens/src/scan_snap/model.rs and scan_snap.rs (sweep seeds t.seed + 1 + s)
            assert_eq!(derive_seed(seed, Stream::ScanSnapEval), seed ^ 0x5eed_e7a1);
            for s in 0..4u64 {
                assert_eq!(derive_seed(seed, Stream::Replicate { index: s }), seed.wrapping_add(1 + s));
            }
        }
        assert_eq!(derive_seed(10, Stream::Replicate { index: 2 }), 13);
    }

    #[test]
    fn streams_of_one_seed_differ() {
        // Distinct uses get distinct seeds for a typical run seed.
        let seed = 0;
        let all = [
            Stream::TrainValSplit,
            Stream::EvalSet,
            Stream::EmergenceBootstrap,
            Stream::PooledBootstrap,
            Stream::LlcRowOrder,
            Stream::PhysicsLensQueries,
            Stream::IclInit,
            Stream::IclTrainPrompts,
            Stream::IclEvalPrompts,
            Stream::IclBatches,
            Stream::ScanSnapEval,
            Stream::GradNoiseGaussian { step: 0 },
        ];
        let mut v: Vec<u64> = all.iter().map(|&s| derive_seed(seed, s)).collect();
        v.sort();
        v.dedup();
        assert_eq!(v.len(), all.len());
    }
}
