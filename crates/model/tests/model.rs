//! Model tests: names and shapes, permutation equivariance, hooks, checkpoint round trip.
use headlab_model::*;
use headlab_store::checkpoint::{read_checkpoint, write_checkpoint, Checkpoint};
use tch::{Device, Kind, Tensor};

fn unit_norm(d: usize, cfg: &ModelConfig) -> Normalization {
    let f = cfg.d_in(d);
    Normalization {
        dimension: d,
        box_size: vec![2.0; d],
        wall_range: 0.3,
        wall_features: cfg.wall_features,
        input_mean: vec![0.5; f],
        input_std: vec![0.7; f],
        target_mean: vec![0.01; 2 * d],
        target_std: vec![0.2; 2 * d],
    }
}

fn random_state(b: i64, n: i64, d: i64, seed: i64) -> State {
    tch::manual_seed(seed);
    State {
        pos: Tensor::rand([b, n, d], (Kind::Float, Device::Cpu)) * 2.0,
        vel: Tensor::randn([b, n, d], (Kind::Float, Device::Cpu)),
        radii: Tensor::rand([b, n], (Kind::Float, Device::Cpu)) * 0.1 + 0.05,
        masses: Tensor::rand([b, n], (Kind::Float, Device::Cpu)) + 0.5,
    }
}

/// A run config text with the model under [model] (nested tables included).
fn run_toml(cfg: &ModelConfig) -> String {
    let mut t = toml::Table::new();
    t.insert("model".into(), toml::Value::try_from(cfg).unwrap());
    toml::to_string(&t).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn parameter_names_and_shapes_follow_transformerlens() {
    let cfg = ModelConfig::default();
    let m = Model::new(cfg.clone(), unit_norm(2, &cfg), 0, Device::Cpu).unwrap();
    let names: Vec<&str> = m.named_parameters().iter().map(|(n, _)| *n).collect();
    for n in ["embed.W_in", "embed.b_in", "blocks.0.ln1.w", "blocks.1.attn.W_Q", "blocks.1.attn.b_V", "blocks.0.attn.W_O", "blocks.0.mlp.W_out", "ln_final.b", "unembed.W_out", "unembed.b_out"] {
        assert!(names.contains(&n), "missing {n} in {names:?}");
    }
    assert_eq!(m.param("blocks.0.attn.W_Q").unwrap().size(), vec![4, 64, 16]);
    assert_eq!(m.param("blocks.0.attn.b_Q").unwrap().size(), vec![4, 16]);
    assert_eq!(m.param("blocks.0.attn.W_O").unwrap().size(), vec![4, 16, 64]);
    assert_eq!(m.param("embed.W_in").unwrap().size(), vec![cfg.d_in(2) as i64, 64]);
    assert_eq!(m.param("unembed.W_out").unwrap().size(), vec![64, 4]);
    let total: i64 = m.parameters().iter().map(|t| t.numel() as i64).sum();
    assert_eq!(total as usize, m.num_params());
    // The named parameters are views of the flat buffer.
    tch::no_grad(|| {
        let _ = m.flat_params().shallow_clone().fill_(0.5);
    });
    assert_eq!(m.param("blocks.1.mlp.b_in").unwrap().mean(Kind::Float).double_value(&[]), 0.5);
}

#[test]
fn permuting_particles_permutes_outputs() {
    for kind in [AttentionKind::Softmax, AttentionKind::Linear] {
        let mut cfg = ModelConfig::default();
        cfg.attention.kind = kind;
        cfg.attention.scale = AttentionScale::InvDHead;
        let norm = unit_norm(2, &cfg);
        let m = Model::new(cfg, norm.clone(), 3, Device::Cpu).unwrap();
        let s = random_state(3, 7, 2, 1);
        let perm = Tensor::from_slice(&[3i64, 0, 6, 1, 5, 2, 4]);
        let sp = State {
            pos: s.pos.index_select(1, &perm),
            vel: s.vel.index_select(1, &perm),
            radii: s.radii.index_select(1, &perm),
            masses: s.masses.index_select(1, &perm),
        };
        let y = m.forward(&norm.features(&s));
        let yp = m.forward(&norm.features(&sp));
        let diff = max_abs_diff(&y.index_select(1, &perm), &yp);
        assert!(diff < 1e-5, "{kind:?}: permutation changed outputs by {diff}");
        // And the output really depends on the other particles (not trivially equivariant).
        let mut s2 = random_state(3, 7, 2, 1);
        s2.pos = s2.pos.shallow_clone();
        let _ = s2.pos.narrow(1, 6, 1).fill_(0.1);
        let y2 = m.forward(&norm.features(&s2));
        assert!(max_abs_diff(&y.narrow(1, 0, 6), &y2.narrow(1, 0, 6)) > 1e-7, "{kind:?}: particles do not interact");
    }
}

#[test]
fn hooks_have_the_documented_shapes_and_do_not_change_the_output() {
    let cfg = ModelConfig::default();
    let norm = unit_norm(3, &cfg);
    let m = Model::new(cfg, norm.clone(), 1, Device::Cpu).unwrap();
    let x = norm.features(&random_state(2, 5, 3, 2));
    let (y_rec, cache) = m.forward_with_cache(&x, true, false);
    let (y, empty) = m.forward_with_cache(&x, false, false);
    assert!(empty.entries.is_empty());
    assert_eq!(max_abs_diff(&y, &y_rec), 0.0);
    assert_eq!(y.size(), vec![2, 5, 6]);
    for l in 0..2 {
        let p = cache.pattern(l).unwrap();
        assert_eq!(p.size(), vec![2, 4, 5, 5]);
        let rows = p.sum_dim_intlist(-1, false, Kind::Float);
        assert!(max_abs_diff(&rows, &Tensor::ones_like(&rows)) < 1e-5);
        let sc = cache.attn_scores(l).unwrap();
        assert!(max_abs_diff(&sc.softmax(-1, Kind::Float), p) < 1e-6);
        assert_eq!(cache.get(&format!("blocks.{l}.hook_resid_post")).unwrap().size(), vec![2, 5, 64]);
    }
}

#[test]
fn checkpoint_round_trip_reproduces_the_forward_pass() {
    let cfg = ModelConfig { n_layers: 1, d_model: 32, n_heads: 2, activation: Activation::Silu, attention: AttentionConfig { kind: AttentionKind::Softmax, scale: AttentionScale::InvDHead }, ..Default::default() };
    let norm = unit_norm(2, &cfg);
    let m = Model::new(cfg.clone(), norm.clone(), 9, Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.h5");
    let config_toml = run_toml(&cfg);
    let ck = Checkpoint { step: 5, config_toml, params: m.to_arrays(), norm: norm.to_arrays(), ..Default::default() };
    write_checkpoint(&path, &ck).unwrap();
    let m2 = Model::load(&path, Device::Cpu).unwrap();
    assert_eq!(m2.config, cfg);
    assert_eq!(m2.norm.input_std, norm.input_std);
    let x = norm.features(&random_state(2, 4, 2, 3));
    assert_eq!(max_abs_diff(&m.forward(&x), &m2.forward(&x)), 0.0);
    // A config that does not match the stored weights is a clear error.
    let mut ck2 = read_checkpoint(&path).unwrap();
    ck2.config_toml = "[model]\nn_layers = 1\nd_model = 64\nn_heads = 2\n".into();
    let e = Model::from_checkpoint(&ck2, Device::Cpu, "c.h5").err().unwrap().to_string();
    assert!(e.contains("c.h5") && e.contains("embed.W_in") && e.contains("shape"), "{e}");
}

#[test]
fn gradients_flow_to_every_parameter() {
    let cfg = ModelConfig::default();
    let norm = unit_norm(2, &cfg);
    let m = Model::new(cfg, norm.clone(), 4, Device::Cpu).unwrap();
    let x = norm.features(&random_state(4, 6, 2, 5));
    let y = Tensor::randn([4, 6, 4], (Kind::Float, Device::Cpu));
    let g = m.flat_grad(&m.loss(&x, &y, true));
    assert_eq!(g.size(), vec![m.num_params() as i64]);
    for (name, _) in m.named_parameters() {
        let (off, n) = m.param_range(name).unwrap();
        let gn = g.narrow(0, off as i64, n as i64).abs().sum(Kind::Float).double_value(&[]);
        assert!(gn > 0.0, "no gradient reaches {name}");
    }
}

#[test]
fn bad_configs_name_the_key() {
    let e = ModelConfig { d_model: 30, n_heads: 4, ..Default::default() }.validate().unwrap_err().to_string();
    assert!(e.contains("model.d_model") && e.contains("30"), "{e}");
    let e = ModelConfig { dropout: 1.5, ..Default::default() }.validate().unwrap_err().to_string();
    assert!(e.contains("model.dropout"), "{e}");
    let e = toml::from_str::<ModelConfig>("n_layer = 2").unwrap_err().to_string();
    assert!(e.contains("n_layer"), "{e}");
    let e = toml::from_str::<ModelConfig>("[attention]\nscale = \"sqrt\"").unwrap_err().to_string();
    assert!(e.contains("inv-sqrt-d-head"), "{e}");
    assert!(parse_device("gpu").is_err());
    assert_eq!(parse_device("cuda:1").unwrap(), Device::Cuda(1));
}
