//! The SGLD LLC estimator against exact finite-sample targets.
//!
//! At finite nβ and with localization γ even a perfect sampler does not
//! return d/2 (or 1/2 for the degenerate model); these tests compare with
//! what it should return. Loss convention: L_n = mean of ½(y − f)² (see
//! `headlab_probe::llc::toy`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use headlab_probe::llc::toy::{product_model_target, LinearRegression, ProductModel};
use headlab_probe::llc::{estimate, LlcConfig, LlcError, LlcProblem, Movable};
use tch::Tensor;

fn lr_config(epsilon: f64, gamma: f64, chains: usize, draws: usize) -> LlcConfig {
    LlcConfig { epsilon, gamma, chains, draws, burn_in: 0.2, seed: 7, ..LlcConfig::default() }
}

fn check_linear_regression(d: usize, chains: usize, draws: usize) {
    let n = 2000;
    let lr = LinearRegression::new(n, d, 50, 0.5, 2.0, 11).unwrap();
    let gamma = 100.0;
    let cfg_probe = LlcConfig::default();
    let n_beta = cfg_probe.n_beta(n);
    let hmax = lr.hessian_eigenvalues().iter().cloned().fold(0.0, f64::max);
    // Step size: ε·a_max = 0.02 keeps the discretization bias near 0.5 %.
    let epsilon = 0.02 / (n_beta * hmax + gamma);
    let cfg = lr_config(epsilon, gamma, chains, draws);
    let est = estimate(&lr, &[lr.w_star()], &Movable::all(1), &cfg, None).unwrap();
    let target = lr.exact_llc(n_beta, gamma);
    let rel = (est.llc - target) / target;
    eprintln!(
        "d={d}: estimate {:.4} ± {:.4} (all steps {:.4}), target {:.4}, d/2 = {}, rel err {:.4}",
        est.llc,
        est.se,
        est.llc_all_steps,
        target,
        d as f64 / 2.0,
        rel
    );
    assert!(est.warnings.is_empty(), "{:?}", est.warnings);
    assert_eq!(est.n_failed(), 0);
    assert!(rel.abs() < 0.05, "estimate {} vs exact {target}", est.llc);
    // The test has power: the reported uncertainty is well inside 5 %.
    assert!(est.se < 0.015 * target, "se {} too large for a 5 % test", est.se);
    // ... and it tells the finite-γ target from the asymptotic d/2.
    assert!((d as f64 / 2.0 - target) / target > 0.2);
    assert!((est.llc - d as f64 / 2.0).abs() > 0.15 * target);
}

#[test]
fn linear_regression_d10_matches_exact_target() {
    check_linear_regression(10, 64, 6000);
}

#[test]
fn linear_regression_d50_matches_exact_target() {
    check_linear_regression(50, 32, 3000);
}

#[test]
fn quadrature_target_of_the_degenerate_model() {
    // The reference value: about 0.39 at n = 1e4, γ = 1 (Sxx = 1, Sxy = 0).
    let n = 1e4_f64;
    let t = product_model_target(n / n.ln(), 1.0, 1.0, 0.0);
    assert!((0.37..0.40).contains(&t), "{t}");
    // The 1-D semi-analytic quadrature agrees with a brute-force 2-D grid
    // (at a milder nβ where a 2-D grid resolves the cross-shaped density).
    for &(nb, gamma, sxx, sxy) in &[(50.0, 1.0, 1.1, 0.05), (200.0, 2.0, 0.9, -0.02)] {
        let semi = product_model_target(nb, gamma, sxx, sxy);
        let m = 3000;
        let half = 9.0 / f64::sqrt(gamma);
        let h = 2.0 * half / m as f64;
        let (mut num, mut den) = (0.0, 0.0);
        for i in 0..=m {
            for j in 0..=m {
                let (w1, w2) = (-half + i as f64 * h, -half + j as f64 * h);
                let p = w1 * w2;
                let e = nb * (0.5 * p * p * sxx - p * sxy);
                let wt = (-e - 0.5 * gamma * (w1 * w1 + w2 * w2)).exp();
                num += wt * e;
                den += wt;
            }
        }
        let brute = num / den;
        assert!((semi - brute).abs() < 2e-3 * brute.abs().max(0.1), "{semi} vs {brute}");
    }
}

fn check_degenerate(n: usize, batch: usize, epsilon: f64, draws: usize, chains: usize) {
    // Large batches: SGLD's minibatch-gradient noise would otherwise inflate
    // the stiff direction across the arms of the cross-shaped posterior.
    let pm = ProductModel::new(n, batch, true, 3).unwrap();
    let gamma = 1.0;
    let cfg = LlcConfig { epsilon, gamma, chains, draws, burn_in: 0.25, seed: 1, threads: 1, ..LlcConfig::default() };
    let n_beta = cfg.n_beta(n);
    let target = pm.exact_llc(n_beta, gamma);
    let est = estimate(&pm, &[pm.w_star()], &Movable::all(1), &cfg, None).unwrap();
    eprintln!(
        "degenerate n={n}: estimate {:.4} ± {:.4} (all steps {:.4}), target {:.4}",
        est.llc, est.se, est.llc_all_steps, target
    );
    assert!(target < 0.4, "target {target}");
    assert_eq!(est.n_failed(), 0);
    assert!(est.se < 0.02, "se {}", est.se);
    assert!((est.llc - target).abs() < 3.0 * est.se, "{} ± {} vs {target}", est.llc, est.se);
    // Clearly below the regular value d/2 = 1 for two parameters, and below 1/2.
    assert!(est.llc + 5.0 * est.se < 0.5);
}

#[test]
fn degenerate_product_model_matches_quadrature_and_is_below_regular() {
    // n = 1000 (nβ ≈ 145): the posterior is a narrow cross, stiff across
    // its arms (curvature ≈ nβ·w²) and slow along them (γ = 1), so the step
    // and the number of steps scale with nβ. Target ≈ 0.347.
    check_degenerate(1000, 500, 4e-4, 15_000, 256);
}

/// The reference setting, n = 1e4 (target ≈ 0.38); slow (≈ 1 min).
#[test]
#[ignore]
fn degenerate_product_model_n1e4() {
    check_degenerate(10_000, 2500, 4e-5, 150_000, 256);
}

#[test]
fn product_model_analytic_gradient_matches_autograd() {
    let pm = ProductModel::new(100, 50, false, 1).unwrap();
    let w = Tensor::from_slice(&[0.3f64, -0.7, 1.1, 0.2]).reshape([2, 2]);
    let (loss, grads) = pm.loss_and_grad(&[w.shallow_clone()], &[0, 1], &[true]).unwrap();
    let leaf = w.detach().set_requires_grad(true);
    let l2 = pm.loss(&[leaf.shallow_clone()], &[0, 1]).unwrap();
    let g2 = Tensor::run_backward(&[l2.sum(tch::Kind::Double)], &[&leaf], false, false).remove(0);
    assert!(loss.allclose(&l2, 1e-12, 1e-12, false));
    assert!(grads[0].as_ref().unwrap().allclose(&g2, 1e-12, 1e-12, false));
}

#[test]
fn same_seed_same_estimate_and_thread_count_does_not_matter() {
    let mut lr = LinearRegression::new(400, 5, 20, 0.5, 2.0, 5).unwrap();
    lr.stacked = false;
    let cfg = LlcConfig { epsilon: 1e-4, gamma: 50.0, chains: 4, draws: 200, threads: 1, ..LlcConfig::default() };
    let a = estimate(&lr, &[lr.w_star()], &Movable::all(1), &cfg, None).unwrap();
    let b = estimate(&lr, &[lr.w_star()], &Movable::all(1), &cfg, None).unwrap();
    assert_eq!(a.llc.to_bits(), b.llc.to_bits());
    assert_eq!(a.delta_trace, b.delta_trace);
    let two = LlcConfig { threads: 2, ..cfg.clone() };
    let c = estimate(&lr, &[lr.w_star()], &Movable::all(1), &two, None).unwrap();
    assert_eq!(a.llc.to_bits(), c.llc.to_bits(), "thread count changed the estimate");
    let other = LlcConfig { seed: 1, ..cfg.clone() };
    let d = estimate(&lr, &[lr.w_star()], &Movable::all(1), &other, None).unwrap();
    assert_ne!(a.llc, d.llc);
    // Stacking the chains is the same computation, chain by chain.
    lr.stacked = true;
    let s = estimate(&lr, &[lr.w_star()], &Movable::all(1), &cfg, None).unwrap();
    for (x, y) in a.chains.iter().zip(&s.chains) {
        assert!((x.llc - y.llc).abs() < 1e-9 * x.llc.abs().max(1.0), "{} vs {}", x.llc, y.llc);
    }
}

#[test]
fn paired_beats_unpaired() {
    // Small batches: one batch's loss at w* is a noisy stand-in for L_n(w*).
    let n = 2000;
    let lr = LinearRegression::new(n, 10, 20, 0.5, 2.0, 21).unwrap();
    let gamma = 100.0;
    let n_beta = LlcConfig::default().n_beta(n);
    let target = lr.exact_llc(n_beta, gamma);
    let ln_star: f64 = (0..lr.n_batches()).map(|b| lr.batch_loss(&lr.w_star(), b)).sum::<f64>() / lr.n_batches() as f64;
    let (mut err_paired, mut err_unpaired) = (0.0, 0.0);
    let seeds = 6;
    for seed in 0..seeds {
        let cfg =
            LlcConfig { epsilon: 3e-5, gamma, chains: 8, draws: 2000, burn_in: 0.2, seed, ..LlcConfig::default() };
        let est = estimate(&lr, &[lr.w_star()], &Movable::all(1), &cfg, None).unwrap();
        err_paired += (est.llc - target).powi(2);
        err_unpaired += (est.llc_unpaired - target).powi(2);
        // The difference is known: the reference batch's offset from L_n(w*),
        // up to the average of L_Bt(w*) over the chains' batches.
        let offset = n_beta * (ln_star - lr.batch_loss(&lr.w_star(), est.reference_batch));
        let draws = (cfg.chains * (cfg.draws - cfg.burn_in_steps())) as f64;
        let batch_sd = {
            let v: Vec<f64> = (0..lr.n_batches()).map(|b| lr.batch_loss(&lr.w_star(), b)).collect();
            (v.iter().map(|x| (x - ln_star).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
        };
        let tol = 5.0 * n_beta * batch_sd / draws.sqrt();
        assert!(
            ((est.llc_unpaired - est.llc) - offset).abs() < tol,
            "unpaired − paired = {}, expected {offset} ± {tol}",
            est.llc_unpaired - est.llc
        );
    }
    let (rp, ru) = ((err_paired / seeds as f64).sqrt(), (err_unpaired / seeds as f64).sqrt());
    eprintln!("rms error: paired {rp:.4}, unpaired {ru:.4} (target {target:.3})");
    assert!(rp < 0.05 * target, "paired rms error {rp}");
    assert!(ru > 4.0 * rp, "unpaired rms error {ru} vs paired {rp}");
}

#[test]
fn masked_parameters_give_the_refined_target() {
    // Only the first 4 of 12 coordinates move: the target uses the Hessian's
    // block H_SS of the moving coordinates.
    let n = 2000;
    let d = 12;
    let lr = LinearRegression::new(n, d, 50, 0.5, 2.0, 9).unwrap();
    let gamma = 100.0;
    let n_beta = LlcConfig::default().n_beta(n);
    let mask = Tensor::from_slice(&(0..d).map(|j| if j < 4 { 1.0 } else { 0.0 }).collect::<Vec<f64>>());
    let est = estimate(
        &lr,
        &[lr.w_star()],
        &[Movable::Mask(mask)],
        &LlcConfig { epsilon: 3e-5, gamma, chains: 256, draws: 4000, burn_in: 0.2, threads: 1, ..LlcConfig::default() },
        None,
    )
    .unwrap();
    assert_eq!(est.moving_params, 4);
    // H_SS from the data: nβ-weighted eigenvalues of the 4×4 block.
    let h = lr.hessian();
    let hss = h.narrow(0, 0, 4).narrow(1, 0, 4);
    let eig = Vec::<f64>::try_from(&hss.linalg_eigvalsh("L")).unwrap();
    let target = 0.5 * eig.iter().map(|h| n_beta * h / (n_beta * h + gamma)).sum::<f64>();
    eprintln!("masked: {} ± {} vs {target}", est.llc, est.se);
    assert!(((est.llc - target) / target).abs() < 0.05, "{} vs {target}", est.llc);
}

/// A problem that misbehaves on a few batches away from w*, to check that
/// failed chains are excluded and reported.
struct Poisoned {
    inner: LinearRegression,
    nan_batch: usize,
    huge_batch: usize,
}

impl LlcProblem for Poisoned {
    fn n_samples(&self) -> usize {
        self.inner.n_samples()
    }
    fn n_batches(&self) -> usize {
        self.inner.n_batches()
    }
    fn loss(&self, params: &[Tensor], batches: &[usize]) -> headlab_probe::llc::Result<Tensor> {
        let l = self.inner.loss(params, batches)?;
        let at_star = params[0].equal(&self.inner.w_star());
        Ok(if at_star {
            l
        } else if batches[0] == self.nan_batch {
            l * f64::NAN
        } else if batches[0] == self.huge_batch {
            l + 1e9
        } else {
            l
        })
    }
}

#[test]
fn failed_chains_are_excluded_and_reported() {
    let mut inner = LinearRegression::new(20_000, 3, 10, 0.5, 2.0, 2).unwrap();
    inner.stacked = false;
    let p = Poisoned { inner, nan_batch: 17, huge_batch: 1234 };
    // Find a seed where some but not all chains meet a poisoned batch.
    let mut found = false;
    for seed in 0..20 {
        let cfg = LlcConfig { epsilon: 1e-5, gamma: 100.0, chains: 8, draws: 300, seed, ..LlcConfig::default() };
        let est = estimate(&p, &[p.inner.w_star()], &Movable::all(1), &cfg, None).unwrap();
        let failed: Vec<_> = est.chains.iter().filter(|c| !c.status.is_ok()).collect();
        if failed.is_empty() {
            continue;
        }
        found = true;
        for c in &failed {
            assert!(c.llc.is_nan());
            assert!(est.delta_trace[c.chain].last().unwrap().is_nan());
        }
        let good: Vec<f64> = est.chains.iter().filter(|c| c.status.is_ok()).map(|c| c.llc).collect();
        let mean = good.iter().sum::<f64>() / good.len() as f64;
        assert!((est.llc - mean).abs() < 1e-12, "failed chains were averaged in");
        assert!(est.llc.is_finite());
        let w = est.warnings.join("\n");
        assert!(w.contains("excluded") && w.contains("--epsilon"), "{w}");
        assert!(w.contains("non-finite") || w.contains("diverged"), "{w}");
        break;
    }
    assert!(found, "no seed produced a failing chain; the test lost its power");
}

#[test]
fn too_large_a_step_fails_with_advice() {
    let lr = LinearRegression::new(2000, 10, 50, 0.5, 2.0, 1).unwrap();
    // ε·a well above the stability limit 4 of the stiffest direction.
    let cfg = LlcConfig { epsilon: 0.05, gamma: 100.0, chains: 4, draws: 200, ..LlcConfig::default() };
    let err = estimate(&lr, &[lr.w_star()], &Movable::all(1), &cfg, None).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LlcError::AllChainsFailed { .. }), "{msg}");
    assert!(msg.contains("--epsilon") && msg.contains("too large"), "{msg}");
}

#[test]
fn drift_down_is_warned_when_not_at_a_minimum() {
    let lr = LinearRegression::new(2000, 10, 50, 0.5, 2.0, 4).unwrap();
    // Start away from the least-squares solution: the loss falls along the chains.
    let off = lr.w_star() + 0.3;
    let cfg = LlcConfig { epsilon: 1e-5, gamma: 1.0, chains: 4, draws: 1000, ..LlcConfig::default() };
    let est = estimate(&lr, &[off], &Movable::all(1), &cfg, None).unwrap();
    let w = est.warnings.join("\n");
    eprintln!("{w}");
    assert!(w.contains("not at a local minimum"), "{w}");
    assert!(est.llc < 0.0);
    // ... and flagged, with the reason, as not a minimum and negative.
    let codes = est.diagnosis.codes();
    assert!(codes.contains("not-minimum") && codes.contains("negative"), "{codes}");
    assert!(!est.diagnosis.reliable());
    // At the minimum there is no such warning, and no flag.
    let est = estimate(&lr, &[lr.w_star()], &Movable::all(1), &cfg, None).unwrap();
    assert!(!est.warnings.join("\n").contains("not at a local minimum"));
    assert!(est.diagnosis.reliable(), "{:?}", est.diagnosis);
}

#[test]
fn ladder_finds_the_plateau_and_flags_too_large_steps() {
    use headlab_probe::llc::select::{select_and_estimate, LadderConfig};
    let n = 2000;
    let lr = LinearRegression::new(n, 10, 50, 0.5, 2.0, 8).unwrap();
    let gamma = 100.0;
    let base = LlcConfig { gamma, chains: 8, draws: 600, burn_in: 0.3, seed: 3, ..LlcConfig::default() };
    let target = lr.exact_llc(base.n_beta(n), gamma);
    // A ladder reaching from unmixed steps up to divergence (ε·nβ·a_max ≈ 4 near 8e-3).
    let good = LadderConfig {
        epsilons: vec![1e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-2, 3e-2],
        gammas: vec![gamma],
        chains: 8,
        draws: 600,
        ..LadderConfig::default()
    };
    let s = select_and_estimate(&lr, &[lr.w_star()], &Movable::all(1), &base, &good, None).unwrap();
    for p in &s.ladder {
        eprintln!("ε {:e}: {:.3} ± {:.3} failed {}", p.epsilon, p.llc, p.se, p.n_failed);
    }
    eprintln!(
        "{} -> {:.3} ± {:.3} flags {}",
        s.choice.reason,
        s.estimate.llc,
        s.estimate.se,
        s.estimate.diagnosis.codes()
    );
    assert!(s.choice.reliable, "{}", s.choice.reason);
    assert!((1e-5..=3e-4).contains(&s.estimate.config.epsilon), "chosen ε {}", s.estimate.config.epsilon);
    assert!(s.estimate.diagnosis.reliable(), "{:?}", s.estimate.diagnosis);
    assert!(((s.estimate.llc - target) / target).abs() < 0.1, "{} vs {target}", s.estimate.llc);
    // Only step sizes near or past the stability limit: no plateau, flagged.
    let too_large = LadderConfig { epsilons: vec![3e-3, 5e-3, 7e-3, 1e-2], ..good };
    let s = select_and_estimate(&lr, &[lr.w_star()], &Movable::all(1), &base, &too_large, None).unwrap();
    for p in &s.ladder {
        eprintln!("ε {:e}: {:.3} ± {:.3} failed {}", p.epsilon, p.llc, p.se, p.n_failed);
    }
    eprintln!("{}", s.choice.reason);
    assert!(!s.choice.reliable, "{}", s.choice.reason);
    assert!(s.estimate.diagnosis.codes().contains("no-plateau"));
    assert!(s.estimate.warnings[0].contains("no step-size plateau"), "{:?}", s.estimate.warnings);
}

#[test]
fn calibration_recommends_a_stable_step() {
    let n = 2000;
    let lr = LinearRegression::new(n, 10, 50, 0.5, 2.0, 8).unwrap();
    let gamma = 100.0;
    let target = lr.exact_llc(LlcConfig::default().n_beta(n), gamma);
    let base = LlcConfig { chains: 16, draws: 1500, burn_in: 0.3, ..LlcConfig::default() };
    let eps = [3e-7, 3e-6, 1e-5, 3e-5, 1e-4, 1e-2];
    let cal =
        headlab_probe::llc::calibrate(&lr, &[lr.w_star()], &Movable::all(1), &base, &eps, &[gamma], None).unwrap();
    for p in cal.points.iter().map(|p| &p.rung) {
        eprintln!("ε {:e}: {:.3} ± {:.3} failed {}", p.epsilon, p.llc, p.se, p.n_failed);
    }
    eprintln!("{}", cal.note);
    let last = &cal.points.last().unwrap().rung;
    assert_eq!(last.n_failed, last.chains, "ε = 1e-2 must fail");
    // The tiniest step has not mixed: far below the target.
    assert!(cal.points[0].rung.llc < 0.7 * target);
    let (e, g) = cal.recommended.expect("a recommendation");
    assert_eq!(g, gamma);
    assert!((3e-6..=1e-4).contains(&e), "recommended ε {e}");
    let p = &cal.points.iter().find(|p| p.rung.epsilon == e).unwrap().rung;
    assert!(((p.llc - target) / target).abs() < 0.1, "{} vs {target}", p.llc);
}

#[test]
fn config_errors_name_the_key() {
    let bad = LlcConfig { epsilon: -1.0, ..LlcConfig::default() };
    let e = bad.validate().unwrap_err().to_string();
    assert!(e.contains("epsilon") && e.contains("-1"), "{e}");
    let bad = LlcConfig { burn_in: 0.95, ..LlcConfig::default() };
    assert!(bad.validate().unwrap_err().to_string().contains("burn_in"));
    let e = toml::from_str::<LlcConfig>("epsilon = 1e-3\nstep = 3\n").unwrap_err().to_string();
    assert!(e.contains("step"), "{e}");
    let c: LlcConfig = toml::from_str("epsilon = 1e-3\nchains = 8\n").unwrap();
    assert_eq!((c.epsilon, c.chains, c.gamma), (1e-3, 8, LlcConfig::default().gamma));
}
