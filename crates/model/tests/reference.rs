//! The typed-parts forward pass against a verbatim copy of the forward pass it
//! replaced (headlab before the split into parts, `forward_with_cache`), on
//! the same weights: outputs, recorded hooks, dropout and gradients must be
//! bit-identical.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test
#![allow(clippy::assign_op_pattern)] // the reference is written out of place, like the model
use headlab_model::*;
use tch::{Device, Kind, Tensor};

/// The old forward, copied unchanged but for `m.param` lookups (was `self`).
fn old_forward(m: &Model, x: &Tensor, record: bool, train: bool) -> (Tensor, Vec<(String, Tensor)>) {
    let c = &m.config;
    let (b, n, f) = x.size3().expect("features must be [batch, particles, features]");
    let (d, h, dh) = (c.d_model as i64, c.n_heads as i64, c.d_head() as i64);
    let p = |name: &str| m.param(name).unwrap_or_else(|| panic!("parameter {name}"));
    let mut cache: Vec<(String, Tensor)> = vec![];
    let dropout = |t: Tensor| if train && c.dropout > 0.0 { t.dropout(c.dropout, true) } else { t };
    let scale = match c.attention.scale {
        AttentionScale::InvSqrtDHead => 1.0 / (dh as f64).sqrt(),
        AttentionScale::InvDHead => 1.0 / dh as f64,
        AttentionScale::None | AttentionScale::InvKeyNormSum => 1.0,
        AttentionScale::InvN => 1.0 / n as f64,
        AttentionScale::InvSqrtN => 1.0 / (n as f64).sqrt(),
        AttentionScale::InvLogN => {
            if n >= 2 {
                1.0 / (n as f64).ln()
            } else {
                1.0
            }
        }
    };
    let mut resid = p("embed.b_in").addmm(&x.reshape([b * n, f]), p("embed.W_in"));
    for l in 0..c.n_layers {
        let w = |s: &str| p(&format!("blocks.{l}.{s}"));
        if record {
            cache.push((format!("blocks.{l}.hook_resid_pre"), resid.view([b, n, d]).detach()));
        }
        let ln = |t: &Tensor, which: &str| {
            if c.layer_norm {
                t.layer_norm([d], Some(w(&format!("{which}.w"))), Some(w(&format!("{which}.b"))), c.ln_eps, false)
            } else {
                t.shallow_clone()
            }
        };
        let a = ln(&resid, "ln1");
        let w_qkv =
            Tensor::cat(&[w("attn.W_Q"), w("attn.W_K"), w("attn.W_V")], 0).permute([1, 0, 2]).reshape([d, 3 * h * dh]);
        let b_qkv = Tensor::cat(&[w("attn.b_Q"), w("attn.b_K"), w("attn.b_V")], 0).view([3 * h * dh]);
        let qkv = b_qkv.addmm(&a, &w_qkv).view([b, n, 3, h, dh]).permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let mut scores = q.matmul(&k.transpose(-1, -2)) * scale;
        if c.attention.scale == AttentionScale::InvKeyNormSum {
            let dims = [-1i64];
            let knorm = k.square().sum_dim_intlist(dims.as_slice(), false, Kind::Float).clamp_min(1e-30).sqrt();
            scores = scores / knorm.sum_dim_intlist(dims.as_slice(), true, Kind::Float).unsqueeze(-1).clamp_min(1e-12);
        }
        let pattern = match c.attention.kind {
            AttentionKind::Softmax => scores.softmax(-1, Kind::Float),
            AttentionKind::Linear => &scores / n as f64,
        };
        let z = pattern.matmul(&v).permute([0, 2, 1, 3]).reshape([b * n, h * dh]);
        let attn_out = w("attn.b_O").addmm(&z, &w("attn.W_O").view([h * dh, d]));
        if record {
            cache.push((format!("blocks.{l}.attn.hook_attn_scores"), scores.detach()));
            cache.push((format!("blocks.{l}.attn.hook_pattern"), pattern.detach()));
        }
        resid = resid + dropout(attn_out);
        if c.mlp {
            let m = ln(&resid, "ln2");
            let hid = w("mlp.b_in").addmm(&m, w("mlp.W_in"));
            let hid = match c.activation {
                Activation::Gelu => hid.gelu("none"),
                Activation::GeluTanh => hid.gelu("tanh"),
                Activation::Relu => hid.relu(),
                Activation::Silu => hid.silu(),
            };
            resid = resid + dropout(w("mlp.b_out").addmm(&hid, w("mlp.W_out")));
        }
        if record {
            cache.push((format!("blocks.{l}.hook_resid_post"), resid.view([b, n, d]).detach()));
        }
    }
    let fin = if c.layer_norm {
        resid.layer_norm([d], Some(p("ln_final.w")), Some(p("ln_final.b")), c.ln_eps, false)
    } else {
        resid
    };
    let out = p("unembed.b_out").addmm(&fin, p("unembed.W_out"));
    (out.view([b, n, -1]), cache)
}

fn configs() -> Vec<(usize, ModelConfig)> {
    let att = |kind, scale| AttentionConfig { kind, scale };
    let mut v = vec![(2usize, ModelConfig::default())];
    for (i, scale) in AttentionScale::ALL.into_iter().enumerate() {
        v.push((
            2 + i % 2,
            ModelConfig {
                n_layers: 1,
                n_heads: 2,
                d_model: 16,
                attention: att(AttentionKind::Softmax, scale),
                ..Default::default()
            },
        ));
    }
    v.push((
        2,
        ModelConfig {
            n_layers: 2,
            n_heads: 3,
            d_model: 12,
            d_head: 5,
            d_mlp: 20,
            activation: Activation::GeluTanh,
            attention: att(AttentionKind::Linear, AttentionScale::None),
            ..Default::default()
        },
    ));
    v.push((
        3,
        ModelConfig {
            n_layers: 2,
            activation: Activation::Relu,
            mlp: false,
            layer_norm: false,
            wall_features: false,
            ..Default::default()
        },
    ));
    v.push((
        2,
        ModelConfig {
            n_layers: 3,
            n_heads: 2,
            d_model: 8,
            activation: Activation::Silu,
            mlp: false,
            ..Default::default()
        },
    ));
    v.push((2, ModelConfig { n_layers: 2, n_heads: 2, d_model: 8, layer_norm: false, ..Default::default() }));
    v.push((2, ModelConfig { n_layers: 2, n_heads: 2, d_model: 16, dropout: 0.3, ..Default::default() }));
    v
}

fn setup(case: usize, dim: usize, cfg: &ModelConfig) -> (Model, Tensor) {
    let f = cfg.d_in(dim);
    let norm = Normalization {
        dimension: dim,
        box_size: vec![1.5; dim],
        wall_range: 0.2,
        wall_features: cfg.wall_features,
        input_mean: (0..f).map(|i| 0.1 * i as f32).collect(),
        input_std: (0..f).map(|i| 0.5 + 0.05 * i as f32).collect(),
        target_mean: vec![0.01; 2 * dim],
        target_std: vec![0.3; 2 * dim],
    };
    let m = Model::new(ModelConfig { init_scale: 2.0, ..cfg.clone() }, norm, 100 + case as u64, Device::Cpu).unwrap();
    tch::manual_seed(case as i64);
    tch::no_grad(|| {
        let mut flat = m.flat_params().shallow_clone();
        let _ = flat.g_add_(&(Tensor::randn_like(&flat) * 0.1));
    });
    let x = Tensor::randn([3, 7, f as i64], (Kind::Float, Device::Cpu));
    (m, x)
}

/// libtorch's random generator is global to the process and the tests of
/// this file run on parallel threads: each test that seeds it and draws
/// (setup's weights and inputs, dropout's masks) holds this lock, or another
/// test's draws would interleave with its own.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn same(what: &str, a: &Tensor, b: &Tensor) {
    assert_eq!(a.size(), b.size(), "{what}: shape");
    let d = (a - b).abs().max().double_value(&[]);
    assert!(d == 0.0, "{what}: differs from the old forward by {d}");
}

#[test]
fn forward_is_bit_identical_to_the_old_forward() {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    for (case, (dim, cfg)) in configs().into_iter().enumerate() {
        let (m, x) = setup(case, dim, &cfg);
        let (y_old, cache_old) = old_forward(&m, &x, true, false);
        same(&format!("case {case} forward"), &m.forward(&x).unwrap(), &y_old);
        // Recording the old four hooks gives the old cache, in the old order.
        let old_names = ["hook_resid_pre", "attn.hook_attn_scores", "attn.hook_pattern", "hook_resid_post"];
        let (y, cache) = m.run_with_cache(&x, |n| old_names.iter().any(|o| n.ends_with(o))).unwrap();
        same(&format!("case {case} run_with_cache"), &y, &y_old);
        let mut names: Vec<&str> = cache.entries.iter().map(|(n, _)| n.as_str()).collect();
        let mut old: Vec<&str> = cache_old.iter().map(|(n, _)| n.as_str()).collect();
        names.sort();
        old.sort();
        assert_eq!(names, old, "case {case}");
        for (name, t) in &cache_old {
            same(&format!("case {case} {name}"), cache.get(name).unwrap(), t);
        }
        // A full recording does not change the output either.
        let (y_all, _) = m.run_with_cache(&x, |_| true).unwrap();
        same(&format!("case {case} full cache"), &y_all, &y_old);
    }
}

#[test]
fn training_loss_dropout_and_gradients_are_bit_identical() {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    for (case, (dim, cfg)) in configs().into_iter().enumerate() {
        let (m, x) = setup(case, dim, &cfg);
        let y = Tensor::randn([3, 7, 2 * dim as i64], (Kind::Float, Device::Cpu));
        tch::manual_seed(7);
        let old = old_forward(&m, &x, false, true).0.mse_loss(&y, tch::Reduction::Mean);
        let g_old = m.flat_grad(&old);
        tch::manual_seed(7);
        // The unfused training pass is bit-identical to the old one; the
        // fused kernels that `loss(.., true)` uses are checked against it
        // (tests/model.rs) and against PyTorch (tests/parity.rs) within 1e-5.
        let new = m.loss_with(&x, &y, ForwardOptions { train: true, fused: false }).unwrap();
        let g_new = m.flat_grad(&new);
        same(&format!("case {case} loss"), &new, &old);
        same(&format!("case {case} gradient"), &g_new, &g_old);
    }
}

/// Training-step throughput (forward + backward) of the old and the new
/// forward pass, interleaved in one process at the demo size. Not a test of
/// correctness: run with `cargo test -p headlab-model --test reference -- --ignored --nocapture`.
#[test]
#[ignore]
fn throughput_old_versus_new() {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(1);
    let cfg = ModelConfig::default();
    let (m, _) = setup(0, 2, &cfg);
    let x = Tensor::randn([32, 16, cfg.d_in(2) as i64], (Kind::Float, Device::Cpu));
    let y = Tensor::randn([32, 16, 4], (Kind::Float, Device::Cpu));
    let (mut t_old, mut t_new) = (0.0, 0.0);
    let steps = 50;
    for _round in 0..6 {
        let t = std::time::Instant::now();
        for _ in 0..steps {
            let _ = m.flat_grad(&old_forward(&m, &x, false, true).0.mse_loss(&y, tch::Reduction::Mean));
        }
        t_old += t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        for _ in 0..steps {
            let _ = m.flat_grad(&m.loss(&x, &y, true).unwrap());
        }
        t_new += t.elapsed().as_secs_f64();
    }
    let n = 6.0 * steps as f64;
    println!("steps/s: old {:.1}, new {:.1} (new/old {:.3})", n / t_old, n / t_new, t_old / t_new);
}
