//! The physics comparison of scale options runs end to end at a toy budget
//! and records finite, consistent numbers per (particle count, option).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test
use headlab_lens::scaling::physics::{
    run_physics_scaling, scene_with_particles, write_physics_h5, write_physics_html, PhysicsScalingConfig,
};
use headlab_model::AttentionScale;
use headlab_sim::Scene;
use headlab_store::h5util::{open_kind, read_array};

fn demo_scene() -> String {
    format!("{}/../../scenes/demo.toml", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn scene_variant_keeps_the_packing_fraction() {
    let base = Scene::from_file(std::path::Path::new(&demo_scene())).unwrap();
    let s = scene_with_particles(&base, 4 * base.n_particles);
    assert_eq!(s.n_particles, 4 * base.n_particles);
    for (a, b) in s.box_size.0.iter().zip(&base.box_size.0) {
        assert!((a / b - 2.0).abs() < 1e-12, "2-D box side must double for 4x the particles");
    }
}

#[test]
fn physics_comparison_runs_and_writes_results() {
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().unwrap();
    let cfg = PhysicsScalingConfig {
        scene: demo_scene(),
        particles: vec![6, 12],
        options: vec![AttentionScale::InvSqrtDHead, AttentionScale::InvKeyNormSum],
        trajectories: 4,
        frames: 8,
        steps: 30,
        batch_size: 8,
        d_model: 16,
        n_heads: 2,
        checkpoints: 3,
        eval_frames: 8,
        ..Default::default()
    };
    let mut calls = 0;
    let r = run_physics_scaling(&cfg, dir.path(), headlab_model::DeviceSpec::Cpu, &mut |done, total, _| {
        calls += 1;
        assert_eq!((done, total), (calls, 4));
    })
    .unwrap();
    assert_eq!(r.points.len(), 4);
    for (i, p) in r.points.iter().enumerate() {
        assert_eq!((p.particles, p.option), (cfg.particles[i / 2], cfg.options[i % 2]));
        assert!(p.val_ratio.is_finite() && p.val_ratio > 0.0, "{p:?}");
        assert!(
            (0.0..=1.0).contains(&p.frac_saturated) && p.entropy_norm > 0.0 && p.entropy_norm <= 1.0 + 1e-9,
            "{p:?}"
        );
        assert!(p.run_dir.join("analysis.h5").exists());
        assert!(p.emergence_step == -1 || p.best_score >= 0.0);
    }
    // Dividing by the key-length sum keeps the softmax close to uniform.
    for n in 0..2 {
        assert!(r.points[2 * n + 1].entropy_norm > r.points[2 * n].entropy_norm - 0.05, "{:?}", r.points);
    }
    let h5 = dir.path().join("scaling_physics.h5");
    write_physics_h5(&h5, &r).unwrap();
    let (f, _) = open_kind(&h5, None).unwrap();
    let (v, shape) = read_array::<f64>(&f, &h5, "val_ratio", Some(2)).unwrap();
    assert_eq!(shape, vec![2, 2]);
    assert_eq!(v[3], r.points[3].val_ratio);
    write_physics_html(dir.path(), &r).unwrap();
    assert!(dir.path().join("scaling_physics.png").exists());
    assert!(std::fs::read_to_string(dir.path().join("index.html")).unwrap().contains("inv-key-norm-sum"));
}
