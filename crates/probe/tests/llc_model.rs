//! LLC of real (tiny) headlab checkpoints: whole model and per head.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use headlab_probe::llc::model::{
    head_mask, llc_for_checkpoint, load_checkpoint, CheckpointLlcOptions, CheckpointProblem, LossConvention,
};
use headlab_probe::llc::{LlcConfig, LlcProblem};
use headlab_store::checkpoint::list_checkpoints;
use headlab_testkit::toy_dataset;
use headlab_train::{train, RunOptions, TrainConfig};
use tch::Device;

/// A small run (2 heads, d_model 16) of `layers` blocks trained for `steps` steps.
fn tiny_run(dir: &std::path::Path, layers: usize, steps: u64) -> headlab_sim::Dataset {
    let ds = toy_dataset(6, 20, 8, 5);
    let mut cfg = TrainConfig {
        steps,
        batch_size: 16,
        device: headlab_model::DeviceSpec::Cpu,
        threads: 1,
        ..TrainConfig::default()
    };
    cfg.model.n_layers = layers;
    cfg.model.n_heads = 2;
    cfg.model.d_model = 16;
    cfg.checkpoints.count = 3;
    train(&cfg, &ds, dir, &RunOptions::default()).unwrap();
    ds
}

/// The last checkpoint of a 2-layer tiny run (40 steps), and its LLC data.
fn two_layer_checkpoint() -> (headlab_model::Model, headlab_probe::llc::model::LlcData) {
    let dir = tempfile::tempdir().unwrap();
    let ds = tiny_run(dir.path(), 2, 40);
    let (_, last) = list_checkpoints(dir.path()).unwrap().last().unwrap().clone();
    let (_, model, data) = load_checkpoint(&last, &ds, Device::Cpu).unwrap();
    (model, data)
}

#[test]
fn checkpoint_llc_whole_and_per_head() {
    let _serial = headlab_testkit::libtorch_serial();
    let dir = tempfile::tempdir().unwrap();
    let ds = tiny_run(dir.path(), 1, 150);
    let ckpts = list_checkpoints(dir.path()).unwrap();
    let (step, last) = ckpts.last().unwrap().clone();
    let opts = CheckpointLlcOptions {
        llc: LlcConfig { epsilon: 1e-5, gamma: 1000.0, chains: 3, draws: 120, batch_size: 32, ..LlcConfig::default() },
        per_head: true,
        // The raw training loss, at the step size this test was calibrated with.
        loss: LossConvention::Mse,
        ladder: None,
    };
    let r = llc_for_checkpoint(&last, &ds, &opts, Device::Cpu, None).unwrap();
    assert_eq!(r.step, step);
    assert_eq!(r.heads.len(), 2);
    let (_, model, data) = load_checkpoint(&last, &ds, Device::Cpu).unwrap();
    assert_eq!(r.whole.n_samples, data.n);
    assert_eq!(r.whole.moving_params, model.num_params());
    let (d, dh) = (16, 8);
    for (h, est) in r.heads.iter().enumerate() {
        // 3 projection slices [d, dh], 3 bias slices [dh], one output slice [dh, d].
        assert_eq!(est.moving_params, 4 * d * dh + 3 * dh, "head {h}");
        assert!(est.llc.is_finite());
        eprintln!("head {h}: {:.3} ± {:.3}  warnings {:?}", est.llc, est.se, est.warnings);
    }
    eprintln!("whole: {:.3} ± {:.3} warnings {:?}", r.whole.llc, r.whole.se, r.whole.warnings);
    assert!(r.whole.llc.is_finite() && r.whole.llc > 0.0);
    // A head's directions are a subset of the model's: its LLC is smaller.
    for est in &r.heads {
        assert!(est.llc < r.whole.llc, "{} vs whole {}", est.llc, r.whole.llc);
    }
    // Reproducible.
    let again =
        llc_for_checkpoint(&last, &ds, &CheckpointLlcOptions { per_head: false, ..opts.clone() }, Device::Cpu, None)
            .unwrap();
    assert_eq!(again.whole.llc.to_bits(), r.whole.llc.to_bits());
    // Masks select exactly one head's slices.
    let (mask, names) = head_mask(&model, 0, 1).unwrap();
    assert_eq!(names.len(), 7);
    let wq = model.param_range("blocks.0.attn.W_Q").unwrap();
    let m: Vec<f32> = Vec::try_from(&mask).unwrap();
    assert!(m[wq.0..wq.0 + d * dh].iter().all(|&v| v == 0.0));
    assert!(m[wq.0 + d * dh..wq.0 + 2 * d * dh].iter().all(|&v| v == 1.0));
    assert!(head_mask(&model, 0, 2).is_err());

    // Loss conventions: the frame NLL is N·D × the training MSE with n = frames;
    // per particle, D × the MSE with n = frames × N (the same nL_n).
    let w = [model.flat_params().detach().copy()];
    let at = |c: LossConvention| {
        let p = CheckpointProblem::new(&model, &data, 32, 0, c).unwrap();
        (p.loss(&w, &[0]).unwrap().double_value(&[0]), p.n_samples())
    };
    let (mse, n_mse) = at(LossConvention::Mse);
    let (frame, n_frame) = at(LossConvention::Frame);
    let (particle, n_particle) = at(LossConvention::Particle);
    let (np, dim) = (data.n_particles, data.dim);
    assert_eq!((n_mse, n_frame, n_particle), (data.n, data.n, data.n * np));
    assert!((frame / mse - (np * dim) as f64).abs() < 1e-4 * (np * dim) as f64, "{frame} vs {mse}");
    assert!((particle / mse - dim as f64).abs() < 1e-4 * dim as f64);
    assert!(((n_frame as f64) * frame - (n_particle as f64) * particle).abs() < 1e-4 * n_frame as f64 * frame);
}

/// A head of a later layer starts every pass at the cached residual stream
/// entering its block: the same losses, gradients and estimate, bit for
/// bit, as passes from the input; a first-layer head and the whole model
/// start at the input.
#[test]
fn a_later_layers_head_reuses_the_earlier_blocks_exactly() {
    let _serial = headlab_testkit::libtorch_serial();
    let (model, data) = two_layer_checkpoint();
    let whole = CheckpointProblem::new(&model, &data, 16, 0, LossConvention::Frame).unwrap();
    assert_eq!(whole.first_block(), 0);
    let head = |layer: usize| {
        let (mask, names) = head_mask(&model, layer, 1).unwrap();
        let p = CheckpointProblem::new(&model, &data, 16, 0, LossConvention::Frame)
            .unwrap()
            .with_grad_params(&model, &names)
            .unwrap()
            .sharing_star_cache(&whole);
        (p, mask)
    };
    assert_eq!(head(0).0.first_block(), 0);
    let (cached, mask) = head(1);
    assert_eq!(cached.first_block(), 1);
    let (plain, _) = head(1);
    let plain = plain.starting_at_input();
    assert_eq!(plain.first_block(), 0);
    // Away from w* inside the head's slices (twice on the same batch: the
    // second pass reads the cache).
    let w = model.flat_params().detach()
        + tch::Tensor::randn([model.num_params() as i64], tch::kind::FLOAT_CPU) * &mask * 0.05;
    for _ in 0..2 {
        for b in [0, 1] {
            let (lc, gc) = cached.loss_and_grad(&[w.shallow_clone()], &[b], &[true]).unwrap();
            let (lp, gp) = plain.loss_and_grad(&[w.shallow_clone()], &[b], &[true]).unwrap();
            assert_eq!(lc.double_value(&[0]).to_bits(), lp.double_value(&[0]).to_bits(), "batch {b}");
            let (gc, gp) = (gc[0].as_ref().unwrap(), gp[0].as_ref().unwrap());
            assert_eq!((gc - gp).abs().max().double_value(&[]), 0.0, "batch {b}");
            assert!(gc.abs().max().double_value(&[]) > 0.0);
        }
    }
    let llc = LlcConfig { epsilon: 1e-5, gamma: 1000.0, chains: 2, draws: 30, batch_size: 16, ..LlcConfig::default() };
    let w_star = [model.flat_params().detach().copy()];
    let est = |p: &CheckpointProblem<'_>| {
        headlab_probe::llc::estimate(p, &w_star, &[headlab_probe::llc::Movable::Mask(mask.copy())], &llc, None).unwrap()
    };
    assert_eq!(est(&cached).llc.to_bits(), est(&plain).llc.to_bits());
}

/// A head's estimate computes only that head in its block, the other
/// heads' z cached at w* (shared by the heads of the layer): the same
/// losses and gradients as passes from the input up to f32 rounding, in
/// the first layer and a later one; a head that moved does not leak into
/// the cache another head of its layer reads; the estimate agrees with
/// the one from the input.
#[test]
fn a_heads_estimate_computes_only_that_head_with_the_others_cached_at_w_star() {
    let _serial = headlab_testkit::libtorch_serial();
    let (model, data) = two_layer_checkpoint();
    let whole = CheckpointProblem::new(&model, &data, 16, 0, LossConvention::Frame).unwrap();
    let problem = || CheckpointProblem::new(&model, &data, 16, 0, LossConvention::Frame).unwrap();
    let moved = |mask: &tch::Tensor, seed: i64| {
        tch::manual_seed(seed);
        model.flat_params().detach()
            + tch::Tensor::randn([model.num_params() as i64], tch::kind::FLOAT_CPU) * mask * 0.05
    };
    let close =
        |a: &CheckpointProblem<'_>, b: &CheckpointProblem<'_>, w: &tch::Tensor, mask: &tch::Tensor, what: &str| {
            for batch in [0, 1, 0] {
                let (la, ga) = a.loss_and_grad(&[w.shallow_clone()], &[batch], &[true]).unwrap();
                let (lb, gb) = b.loss_and_grad(&[w.shallow_clone()], &[batch], &[true]).unwrap();
                let (la, lb) = (la.double_value(&[0]), lb.double_value(&[0]));
                assert!((la - lb).abs() <= 1e-5 * lb.abs(), "{what} batch {batch}: loss {la} vs {lb}");
                let (ga, gb) = (ga[0].as_ref().unwrap() * mask, gb[0].as_ref().unwrap() * mask);
                let scale = gb.abs().max().double_value(&[]);
                assert!(scale > 0.0, "{what}");
                let diff = (&ga - &gb).abs().max().double_value(&[]);
                assert!(diff <= 1e-4 * scale, "{what} batch {batch}: gradient differs by {diff} (max {scale})");
            }
        };
    for layer in [0, 1] {
        let (fast, mask) = problem().for_head(&model, layer, 1).unwrap();
        let fast = fast.sharing_star_cache(&whole);
        assert_eq!((fast.first_block(), fast.only_head()), (layer, Some(1)));
        let (plain, _) = problem().for_head(&model, layer, 1).unwrap();
        let plain = plain.starting_at_input();
        assert_eq!((plain.first_block(), plain.only_head()), (0, None));
        close(&fast, &plain, &moved(&mask, layer as i64), &mask, &format!("head {layer}.1"));
    }
    // Head 1.1 moved and filled the shared cache of layer 1; head 1.0 reads
    // it and must see head 1's z at w*: the same numbers as with a cache of its own.
    let (shared, mask0) = problem().for_head(&model, 1, 0).unwrap();
    let shared = shared.sharing_star_cache(&whole);
    let (own, _) = problem().for_head(&model, 1, 0).unwrap();
    let w0 = moved(&mask0, 7);
    for batch in [0, 1] {
        let (ls, gs) = shared.loss_and_grad(&[w0.shallow_clone()], &[batch], &[true]).unwrap();
        let (lo, go) = own.loss_and_grad(&[w0.shallow_clone()], &[batch], &[true]).unwrap();
        assert_eq!(ls.double_value(&[0]).to_bits(), lo.double_value(&[0]).to_bits(), "batch {batch}");
        assert_eq!((gs[0].as_ref().unwrap() - go[0].as_ref().unwrap()).abs().max().double_value(&[]), 0.0);
    }
    // The estimate, against the one from the input.
    let llc = LlcConfig { epsilon: 1e-5, gamma: 1000.0, chains: 2, draws: 30, batch_size: 16, ..LlcConfig::default() };
    let w_star = [model.flat_params().detach().copy()];
    let (fast, mask) = problem().for_head(&model, 1, 0).unwrap();
    let (plain, _) = problem().for_head(&model, 1, 0).unwrap();
    let plain = plain.starting_at_input();
    let est = |p: &CheckpointProblem<'_>| {
        headlab_probe::llc::estimate(p, &w_star, &[headlab_probe::llc::Movable::Mask(mask.copy())], &llc, None).unwrap()
    };
    let (a, b) = (est(&fast).llc, est(&plain).llc);
    assert!((a - b).abs() <= 1e-4 * b.abs().max(0.1), "llc {a} vs {b}");
}
