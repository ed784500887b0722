//! Saturation diagnostics of a physics run: near-uniform attention at a tiny
//! initialization reads as unsaturated with the uniform-row Jacobian norm;
//! huge unscaled scores read as saturated; files are written.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test
use headlab_lens::scaling::{run_saturation, write_run_h5, write_run_html, RunSaturationOptions};
use headlab_model::{AttentionScale, Model, ModelConfig, Normalization};
use headlab_store::checkpoint::{checkpoint_path, write_checkpoint, Checkpoint};
use headlab_store::h5util::{open_kind, read_array};
use headlab_testkit::toy_dataset;
use tch::Device;

fn run_toml(cfg: &ModelConfig) -> String {
    let mut t = toml::Table::new();
    t.insert("model".into(), toml::Value::try_from(cfg).unwrap());
    toml::to_string(&t).unwrap()
}

#[test]
fn run_saturation_reads_uniform_and_saturated_checkpoints() {
    tch::set_num_threads(1);
    let n = 6;
    let ds = toy_dataset(4, 10, n, 5);
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let norm = Normalization::from_dataset(&ds, &[0, 1, 2, 3], true).unwrap();
    // Step 0: tiny weights, so every pattern row is nearly uniform.
    // Step 7: large weights and no score scaling, so rows are nearly one-hot.
    for (step, init_scale, scale) in [(0u64, 1e-4, AttentionScale::InvSqrtDHead), (7, 40.0, AttentionScale::None)] {
        let cfg = ModelConfig {
            n_layers: 2,
            n_heads: 2,
            d_model: 16,
            init_scale,
            attention: headlab_model::AttentionConfig { scale, ..Default::default() },
            ..Default::default()
        };
        let m = Model::new(cfg.clone(), norm.clone(), step, Device::Cpu).unwrap();
        let ck = Checkpoint {
            step,
            config_toml: run_toml(&cfg),
            params: m.to_arrays().unwrap(),
            norm: norm.to_arrays(),
            scalars: vec![("val_loss".into(), 0.5)],
            ..Default::default()
        };
        std::fs::create_dir_all(run.join("ckpt")).unwrap();
        write_checkpoint(&checkpoint_path(&run, step), &ck).unwrap();
    }
    let opts = RunSaturationOptions { eval_frames: 12, batch: 5, ..Default::default() };
    let r = run_saturation(&run, &ds, &opts).unwrap();
    assert_eq!(r.steps, vec![0, 7]);
    assert_eq!((r.n_layers, r.n_heads, r.n_particles, r.frames.len()), (2, 2, n, 12));
    assert_eq!(r.frames_source, "validation draw");
    let uniform_j = ((n - 1) as f64).sqrt() / n as f64;
    for l in 0..2 {
        for h in 0..2 {
            let s0 = &r.sat[0][l][h];
            assert_eq!(s0.rows, 12 * n);
            assert_eq!(s0.frac_saturated, 0.0);
            assert!(
                (s0.jacobian_fro - uniform_j).abs() < 1e-3,
                "L{l}H{h}: ‖J‖ {} vs uniform {uniform_j}",
                s0.jacobian_fro
            );
            assert!((s0.entropy_norm - 1.0).abs() < 1e-4 && (s0.entropy - (n as f64).ln()).abs() < 1e-3);
            let s1 = &r.sat[1][l][h];
            assert!(s1.max_weight > 0.9 && s1.frac_saturated > 0.5, "L{l}H{h}: {s1:?}");
            assert!(s1.jacobian_fro < 0.5 * uniform_j && s1.entropy_norm < 0.3, "L{l}H{h}: {s1:?}");
        }
    }
    let h5 = run.join("lens_scaling.h5");
    write_run_h5(&h5, &r).unwrap();
    let (f, _) = open_kind(&h5, None).unwrap();
    let (v, shape) = read_array::<f64>(&f.group("series").unwrap(), &h5, "frac_saturated", Some(3)).unwrap();
    assert_eq!(shape, vec![2, 2, 2]);
    assert_eq!(v[4], r.sat[1][0][0].frac_saturated);
    let out = run.join("lens_scaling");
    write_run_html(&out, &r).unwrap();
    assert!(out.join("scaling_run.png").metadata().unwrap().len() > 1000);
    assert!(std::fs::read_to_string(out.join("index.html")).unwrap().contains("L1.H1"));
}
