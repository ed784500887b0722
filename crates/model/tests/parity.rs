//! The PyTorch re-implementation (tools/headlab_torch.py) loads a checkpoint
//! and reproduces the Rust forward pass, features, every hook activation and
//! one intervention (a head's `hook_z` zeroed) within 1e-5. Runs the script in
//! $HEADLAB_PYTHON (set by tools/setup.sh); skipped with a message when it is
//! unset, except under CI=true, where that is a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test
use std::path::PathBuf;
use std::process::Command;

use headlab_model::*;
use headlab_store::checkpoint::{write_checkpoint, Checkpoint};
use headlab_store::h5util::{read_array, write_array};
use headlab_store::{atomic_write, FileKind};
use tch::{Device, Kind, Tensor};

/// A run config text with the model under [model] (nested tables included).
fn run_toml(cfg: &ModelConfig) -> String {
    let mut t = toml::Table::new();
    t.insert("model".into(), toml::Value::try_from(cfg).unwrap());
    toml::to_string(&t).unwrap()
}

fn host(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.contiguous().view([-1])).unwrap()
}

#[test]
fn pytorch_reimplementation_matches_rust_forward() {
    let Some(python) = headlab_testkit::python_or_skip("the PyTorch parity test") else { return };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools/headlab_torch.py");
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (2usize, ModelConfig::default()),
        (
            3,
            ModelConfig {
                n_layers: 3,
                n_heads: 2,
                d_model: 24,
                d_head: 8,
                d_mlp: 40,
                activation: Activation::GeluTanh,
                attention: AttentionConfig { kind: AttentionKind::Softmax, scale: AttentionScale::InvDHead },
                ..Default::default()
            },
        ),
        (
            2,
            ModelConfig {
                n_layers: 1,
                attention: AttentionConfig { kind: AttentionKind::Linear, scale: AttentionScale::InvSqrtN },
                activation: Activation::Relu,
                wall_features: false,
                ..Default::default()
            },
        ),
        (
            2,
            ModelConfig {
                n_layers: 2,
                attention: AttentionConfig { kind: AttentionKind::Softmax, scale: AttentionScale::InvKeyNormSum },
                ..Default::default()
            },
        ),
        (
            3,
            ModelConfig {
                n_layers: 1,
                attention: AttentionConfig { kind: AttentionKind::Softmax, scale: AttentionScale::InvLogN },
                ..Default::default()
            },
        ),
        // Attention-only, no LayerNorm (the parameters are absent from the checkpoint).
        (2, ModelConfig { n_layers: 2, mlp: false, layer_norm: false, ..Default::default() }),
        (
            2,
            ModelConfig {
                n_layers: 1,
                mlp: false,
                layer_norm: false,
                attention: AttentionConfig { kind: AttentionKind::Linear, scale: AttentionScale::None },
                ..Default::default()
            },
        ),
        (2, ModelConfig { n_layers: 2, mlp: false, ..Default::default() }),
        (2, ModelConfig { n_layers: 2, layer_norm: false, ..Default::default() }),
    ];
    for (case, (dim, cfg)) in cases.into_iter().enumerate() {
        let f = cfg.d_in(dim);
        let norm = Normalization {
            dimension: dim,
            box_size: (0..dim).map(|a| 1.0 + a as f64 * 0.5).collect(),
            wall_range: 0.2,
            wall_features: cfg.wall_features,
            input_mean: (0..f).map(|i| 0.1 * i as f32).collect(),
            input_std: (0..f).map(|i| 0.5 + 0.05 * i as f32).collect(),
            target_mean: vec![0.01; 2 * dim],
            target_std: vec![0.3; 2 * dim],
        };
        // Large, non-trivial weights (LayerNorm gains and biases included) so
        // that attention patterns are far from uniform.
        // Without LayerNorm the residual stream grows with the weights, and
        // f32 rounding at |x| ~ 100 would exceed the 1e-5 comparison.
        let init_scale = match (cfg.attention.kind, cfg.layer_norm) {
            (AttentionKind::Linear, _) => 1.0,
            (_, false) if !cfg.mlp => 2.0,
            (_, false) => 1.0,
            _ => 3.0,
        };
        let m = Model::new(ModelConfig { init_scale, ..cfg.clone() }, norm.clone(), case as u64, Device::Cpu).unwrap();
        let names: Vec<&str> = m.named_parameters().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names.iter().any(|n| n.contains("mlp.")), cfg.mlp, "case {case}: mlp parameters present iff mlp");
        assert_eq!(
            names.iter().any(|n| n.contains("ln")),
            cfg.layer_norm,
            "case {case}: LayerNorm parameters present iff layer_norm"
        );
        tch::manual_seed(case as i64);
        tch::no_grad(|| {
            let mut flat = m.flat_params().shallow_clone();
            let _ = flat.g_add_(&(Tensor::randn_like(&flat) * 0.1));
        });
        let ck_path = dir.path().join(format!("ck{case}.h5"));
        let config_toml = run_toml(&cfg);
        write_checkpoint(
            &ck_path,
            &Checkpoint {
                step: 1,
                config_toml,
                params: m.to_arrays().unwrap(),
                norm: norm.to_arrays(),
                ..Default::default()
            },
        )
        .unwrap();

        let (b, n) = (3i64, 9i64);
        let s = State {
            pos: Tensor::rand([b, n, dim as i64], (Kind::Float, Device::Cpu)),
            vel: Tensor::randn([b, n, dim as i64], (Kind::Float, Device::Cpu)),
            radii: Tensor::rand([b, n], (Kind::Float, Device::Cpu)) * 0.1 + 0.02,
            masses: Tensor::rand([b, n], (Kind::Float, Device::Cpu)) + 0.5,
        };
        let inp = dir.path().join(format!("in{case}.h5"));
        atomic_write(&inp, FileKind::Analysis, |file| {
            let (bu, nu, du) = (b as usize, n as usize, dim);
            write_array(file, &inp, "pos", &host(&s.pos), &[bu, nu, du])?;
            write_array(file, &inp, "vel", &host(&s.vel), &[bu, nu, du])?;
            write_array(file, &inp, "radii", &host(&s.radii), &[bu, nu])?;
            write_array(file, &inp, "masses", &host(&s.masses), &[bu, nu])
        })
        .unwrap();
        let out = dir.path().join(format!("out{case}.h5"));
        // The intervention: zero the last head's z in the last layer.
        let (zl, zh) = (cfg.n_layers - 1, cfg.n_heads - 1);
        let st = Command::new(&python)
            .arg(&script)
            .arg("parity")
            .arg(&ck_path)
            .arg(&inp)
            .arg(&out)
            .args([zl.to_string(), zh.to_string()])
            .status()
            .unwrap_or_else(|e| panic!("cannot run HEADLAB_PYTHON={python}: {e}"));
        assert!(st.success(), "{} failed (is torch installed in {python}?)", script.display());

        let x = m.norm.features(&s);
        let (y, cache) = m.run_with_cache(&x, |_| true).unwrap();
        let mut hooks = Hooks::new();
        hooks.add(format!("blocks.{zl}.attn.hook_z"), |z, _| {
            let z = z.copy();
            let _ = z.narrow(2, zh as i64, 1).fill_(0.0);
            Ok(z)
        });
        let y_zero = m.run_with_hooks(&x, &mut hooks).unwrap();
        let file = hdf5::File::open(&out).unwrap();
        let mut compared = 0;
        let mut check = |name: &str, t: &Tensor| {
            let (py, shape) = read_array::<f32>(&file, &out, name, None).unwrap();
            assert_eq!(shape.iter().map(|&s| s as i64).collect::<Vec<_>>(), t.size(), "case {case}: {name} shape");
            let rs = host(t);
            let diff = rs.iter().zip(&py).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            let mag = rs.iter().fold(0f32, |m, x| m.max(x.abs()));
            assert!(diff <= 1e-5, "case {case}: {name} differs by {diff} (largest |value| {mag})");
            compared += 1;
        };
        check("features", &x);
        for (name, t) in &cache.entries {
            check(name, t);
        }
        check("output", &y);
        // The fused training path (scaled_dot_product_attention) matches PyTorch too.
        let y_fused = m.forward_with(&x, ForwardOptions { train: false, fused: true }).unwrap();
        check("output", &y_fused);
        check("output_zero_z", &y_zero);
        assert_eq!(compared, 4 + m.hook_names().len());
        assert!((&y_zero - &y).abs().max().double_value(&[]) > 1e-4, "case {case}: zeroing a head changed nothing");
        // The patterns are genuinely non-uniform (so the comparison means something).
        let p = cache.pattern(0).unwrap();
        // (Dividing by the sum of key lengths makes rows nearly uniform by
        // design; there the hook_attn_scores comparison above is the check.)
        if cfg.attention.kind == AttentionKind::Softmax && cfg.attention.scale != AttentionScale::InvKeyNormSum {
            assert!(p.max().double_value(&[]) > 3.0 / n as f64, "case {case}: attention is nearly uniform");
        }
    }
}
