//! Model tests: names and shapes, permutation equivariance, hooks, checkpoint round trip.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test
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
    for n in [
        "embed.W_in",
        "embed.b_in",
        "blocks.0.ln1.w",
        "blocks.1.attn.W_Q",
        "blocks.1.attn.b_V",
        "blocks.0.attn.W_O",
        "blocks.0.mlp.W_out",
        "ln_final.b",
        "unembed.W_out",
        "unembed.b_out",
    ] {
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
        let y = m.forward(&norm.features(&s)).unwrap();
        let yp = m.forward(&norm.features(&sp)).unwrap();
        let diff = max_abs_diff(&y.index_select(1, &perm), &yp);
        assert!(diff < 1e-5, "{kind:?}: permutation changed outputs by {diff}");
        // And the output really depends on the other particles (not trivially equivariant).
        let mut s2 = random_state(3, 7, 2, 1);
        s2.pos = s2.pos.shallow_clone();
        let _ = s2.pos.narrow(1, 6, 1).fill_(0.1);
        let y2 = m.forward(&norm.features(&s2)).unwrap();
        assert!(max_abs_diff(&y.narrow(1, 0, 6), &y2.narrow(1, 0, 6)) > 1e-7, "{kind:?}: particles do not interact");
    }
}

#[test]
fn hooks_have_the_documented_shapes_and_do_not_change_the_output() {
    let cfg = ModelConfig { d_mlp: 48, ..ModelConfig::default() };
    let norm = unit_norm(3, &cfg);
    let m = Model::new(cfg, norm.clone(), 1, Device::Cpu).unwrap();
    let x = norm.features(&random_state(2, 5, 3, 2));
    let (y_rec, cache) = m.run_with_cache(&x, |_| true).unwrap();
    let y = m.forward(&x).unwrap();
    assert_eq!(max_abs_diff(&y, &y_rec), 0.0);
    assert_eq!(y.size(), vec![2, 5, 6]);
    let names: Vec<&str> = cache.entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, m.hook_names(), "every hook recorded, in forward order");
    assert_eq!(names.len(), 2 + 15 * 2);
    for (name, t) in &cache.entries {
        let want: Vec<i64> =
            if name.contains("hook_q") || name.contains("hook_k") || name.contains("hook_v") || name.contains("hook_z")
            {
                vec![2, 5, 4, 16]
            } else if name.contains("hook_attn_scores") || name.contains("hook_pattern") {
                vec![2, 4, 5, 5]
            } else if name.contains("mlp.hook_") {
                vec![2, 5, 48]
            } else {
                vec![2, 5, 64]
            };
        assert_eq!(t.size(), want, "{name}");
        assert!(!t.requires_grad(), "{name} is recorded detached");
    }
    for l in 0..2 {
        let p = cache.pattern(l).unwrap();
        let rows = p.sum_dim_intlist(-1, false, Kind::Float);
        assert!(max_abs_diff(&rows, &Tensor::ones_like(&rows)) < 1e-5);
        let sc = cache.attn_scores(l).unwrap();
        assert!(max_abs_diff(&sc.softmax(-1, Kind::Float), p) < 1e-6);
        // The residual stream adds up: resid_post = resid_mid + mlp_out = resid_pre + attn_out + mlp_out.
        let g = |s: &str| cache.require(&format!("blocks.{l}.{s}")).unwrap();
        assert_eq!(max_abs_diff(&(g("hook_resid_pre") + g("hook_attn_out")), g("hook_resid_mid")), 0.0);
        assert_eq!(max_abs_diff(&(g("hook_resid_mid") + g("hook_mlp_out")), g("hook_resid_post")), 0.0);
    }
    assert_eq!(
        max_abs_diff(cache.require("hook_embed").unwrap(), cache.require("blocks.0.hook_resid_pre").unwrap()),
        0.0
    );
    assert!(cache.require("blocks.9.hook_resid_pre").unwrap_err().to_string().contains("hook_embed"));
}

#[test]
fn identity_hooks_leave_the_output_bit_identical() {
    for (mlp, layer_norm) in [(true, true), (false, false)] {
        let cfg = ModelConfig { mlp, layer_norm, ..ModelConfig::default() };
        let norm = unit_norm(2, &cfg);
        let m = Model::new(cfg, norm.clone(), 2, Device::Cpu).unwrap();
        let x = norm.features(&random_state(3, 6, 2, 4));
        let y = m.forward(&x).unwrap();
        let mut hooks = Hooks::new();
        for name in m.hook_names() {
            hooks.add(name, |t, _| Ok(t.shallow_clone()));
        }
        let y2 = m.run_with_hooks(&x, &mut hooks).unwrap();
        assert_eq!(max_abs_diff(&y, &y2), 0.0, "mlp={mlp} layer_norm={layer_norm}");
        // Each hook runs once, in forward order, and is told its name and layer.
        let order = std::cell::RefCell::new(vec![]);
        let mut hooks = Hooks::new();
        for name in m.hook_names() {
            let order = &order;
            hooks.add(name, move |t, ctx| {
                order.borrow_mut().push((ctx.name.to_string(), ctx.layer));
                Ok(t.shallow_clone())
            });
        }
        let y3 = m.run_with_hooks(&x, &mut hooks).unwrap();
        assert_eq!(max_abs_diff(&y, &y3), 0.0);
        drop(hooks);
        let order = order.into_inner();
        assert_eq!(order.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(), m.hook_names());
        assert!(order.iter().all(|(n, l)| n.starts_with("blocks.") == l.is_some()));
        assert_eq!(order.iter().find(|(n, _)| n.starts_with("blocks.1.")).unwrap().1, Some(1));
    }
}

#[test]
fn zeroing_a_heads_z_equals_zeroing_its_rows_of_w_o() {
    let cfg = ModelConfig::default();
    let norm = unit_norm(2, &cfg);
    let m = Model::new(cfg, norm.clone(), 5, Device::Cpu).unwrap();
    let x = norm.features(&random_state(3, 6, 2, 6));
    let (layer, head) = (1usize, 2i64);
    let mut hooks = Hooks::new();
    hooks.add(format!("blocks.{layer}.attn.hook_z"), |z, _| {
        let z = z.copy(); // [batch, pos, head, d_head]
        let _ = z.narrow(2, head, 1).fill_(0.0);
        Ok(z)
    });
    let y_hook = m.run_with_hooks(&x, &mut hooks).unwrap();
    let m2 = m.deep_clone(Device::Cpu).unwrap();
    tch::no_grad(|| {
        let _ = m2.param(&format!("blocks.{layer}.attn.W_O")).unwrap().get(head).fill_(0.0);
    });
    let y_w = m2.forward(&x).unwrap();
    let d = max_abs_diff(&y_hook, &y_w);
    assert!(d <= 1e-6, "zeroed z vs zeroed W_O rows: {d}");
    // And the intervention does something.
    assert!(max_abs_diff(&y_hook, &m.forward(&x).unwrap()) > 1e-4);
}

#[test]
fn an_identity_pattern_makes_z_equal_v() {
    let cfg = ModelConfig { n_layers: 1, ..ModelConfig::default() };
    let norm = unit_norm(2, &cfg);
    let m = Model::new(cfg, norm.clone(), 6, Device::Cpu).unwrap();
    let x = norm.features(&random_state(2, 5, 2, 7));
    let mut hooks = Hooks::new();
    hooks.add("blocks.0.attn.hook_pattern", |p, _| {
        let (b, h, n, _) = p.size4()?;
        Ok(Tensor::eye(n, (Kind::Float, Device::Cpu)).expand([b, h, n, n], false).contiguous())
    });
    hooks.record(|n| n.ends_with("hook_v") || n.ends_with("hook_z") || n.ends_with("hook_attn_out"));
    let _ = m.run_with_hooks(&x, &mut hooks).unwrap();
    let cache = hooks.take_cache();
    let v = cache.require("blocks.0.attn.hook_v").unwrap(); // [B,N,H,dh]
    assert_eq!(max_abs_diff(cache.require("blocks.0.attn.hook_z").unwrap(), v), 0.0);
    // attn_out = v · W_O + b_O, token by token.
    let w_o = m.param("blocks.0.attn.W_O").unwrap().detach(); // [H,dh,d]
    let b_o = m.param("blocks.0.attn.b_O").unwrap().detach();
    let hand = Tensor::einsum("bnhe,hed->bnd", &[v, &w_o], None::<i64>) + b_o;
    let got = cache.require("blocks.0.hook_attn_out").unwrap();
    let d = max_abs_diff(got, &hand);
    assert!(d <= 1e-5, "attn_out differs from v·W_O + b_O by {d}");
}

#[test]
fn bad_hooks_are_errors_that_name_the_hook() {
    let cfg = ModelConfig { mlp: false, ..ModelConfig::default() };
    let norm = unit_norm(2, &cfg);
    let m = Model::new(cfg, norm.clone(), 7, Device::Cpu).unwrap();
    let x = norm.features(&random_state(2, 4, 2, 8));
    let run = |name: &str| {
        let mut hooks = Hooks::new();
        hooks.add(name, |t, _| Ok(t.shallow_clone()));
        m.run_with_hooks(&x, &mut hooks).map(|_| ()).unwrap_err().to_string()
    };
    let e = run("blocks.0.attn.hook_result");
    assert!(
        e.contains("blocks.0.attn.hook_result") && e.contains("no such hook point") && e.contains("attn.hook_z"),
        "{e}"
    );
    let e = run("blocks.2.hook_resid_pre");
    assert!(e.contains("blocks.2.hook_resid_pre") && e.contains("2 layers"), "{e}");
    let e = run("blocks.0.mlp.hook_post");
    assert!(e.contains("mlp = false"), "{e}");
    // A replacement of the wrong shape.
    let mut hooks = Hooks::new();
    hooks.add("blocks.1.attn.hook_pattern", |p, _| Ok(p.narrow(-1, 0, 2)));
    let e = m.run_with_hooks(&x, &mut hooks).unwrap_err().to_string();
    assert!(
        e.contains("blocks.1.attn.hook_pattern") && e.contains("[2, 4, 4, 2]") && e.contains("[2, 4, 4, 4]"),
        "{e}"
    );
    // An error inside a hook is passed on with the hook's name.
    let mut hooks = Hooks::new();
    hooks.add("hook_embed", |t, _| Ok(t.f_matmul(t)?));
    let e = m.run_with_hooks(&x, &mut hooks).unwrap_err().to_string();
    assert!(e.starts_with("hook `hook_embed`"), "{e}");
    // A wrong input is an error too, not a panic.
    let e = m.forward(&x.narrow(2, 0, 3)).unwrap_err().to_string();
    assert!(e.contains("3 features"), "{e}");
}

#[test]
fn checkpoint_round_trip_reproduces_the_forward_pass() {
    let cfg = ModelConfig {
        n_layers: 1,
        d_model: 32,
        n_heads: 2,
        activation: Activation::Silu,
        attention: AttentionConfig { kind: AttentionKind::Softmax, scale: AttentionScale::InvDHead },
        ..Default::default()
    };
    let norm = unit_norm(2, &cfg);
    let m = Model::new(cfg.clone(), norm.clone(), 9, Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.h5");
    let config_toml = run_toml(&cfg);
    let ck = Checkpoint {
        step: 5,
        config_toml,
        params: m.to_arrays().unwrap(),
        norm: norm.to_arrays(),
        ..Default::default()
    };
    write_checkpoint(&path, &ck).unwrap();
    let m2 = Model::load(&path, Device::Cpu).unwrap();
    assert_eq!(m2.config, cfg);
    assert_eq!(m2.norm.input_std, norm.input_std);
    let x = norm.features(&random_state(2, 4, 2, 3));
    assert_eq!(max_abs_diff(&m.forward(&x).unwrap(), &m2.forward(&x).unwrap()), 0.0);
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
    let g = m.flat_grad(&m.loss(&x, &y, true).unwrap());
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
    assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
}

#[test]
fn device_specs_parse_print_and_check_availability() {
    for s in ["auto", "cpu", "cuda", "cuda:0", "cuda:3"] {
        let d: DeviceSpec = s.parse().unwrap();
        assert_eq!(d.to_string(), s);
        // As a config value (TOML string).
        #[derive(serde::Serialize, serde::Deserialize)]
        struct C {
            device: DeviceSpec,
        }
        let text = toml::to_string(&C { device: d }).unwrap();
        assert_eq!(text.trim(), format!("device = \"{s}\""));
        assert_eq!(toml::from_str::<C>(&text).unwrap().device, d);
    }
    assert_eq!(" cuda:2 ".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(Some(2)));
    for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", "CPU"] {
        let e = bad.parse::<DeviceSpec>().unwrap_err().to_string();
        assert!(e.contains(bad.trim()) && e.contains("auto, cpu, cuda or cuda:N"), "{e}");
    }
    assert_eq!(DeviceSpec::Cpu.resolve().unwrap(), Device::Cpu);
    // No machine has 100 GPUs: a clear error naming the flag and the count.
    let e = DeviceSpec::Cuda(Some(99)).resolve().unwrap_err().to_string();
    assert!(e.starts_with("--device cuda:99: no CUDA device") && e.contains("tch::Cuda::device_count() = "), "{e}");
    let count = tch::Cuda::device_count();
    match DeviceSpec::Cuda(None).resolve() {
        Ok(d) => assert!(count > 0 && d == Device::Cuda(0)),
        Err(e) => {
            assert_eq!(count, 0);
            assert_eq!(
                e.to_string(),
                "--device cuda: no CUDA device found (tch::Cuda::device_count() = 0); use --device cpu or auto"
            );
        }
    }
    let auto = DeviceSpec::Auto.resolve().unwrap();
    assert_eq!(auto, if count > 0 { Device::Cuda(0) } else { Device::Cpu });
}

#[test]
fn a_missing_or_empty_wall_range_is_an_error_not_1() {
    let cfg = ModelConfig::default();
    let norm = unit_norm(2, &cfg);
    let arrays = norm.to_arrays();
    let back = Normalization::from_arrays(&arrays, cfg.wall_features, "ok.h5").unwrap();
    assert_eq!(back.wall_range, 0.3f32 as f64);
    for bad in [vec![], vec![0.0f32], vec![f32::NAN], vec![0.2, 0.3]] {
        let mut arrays = norm.to_arrays();
        let w = arrays.iter_mut().find(|a| a.name == "wall_range").unwrap();
        w.shape = vec![bad.len()];
        w.data = bad.clone();
        let e =
            Normalization::from_arrays(&arrays, cfg.wall_features, "ckpt/step_00000010.h5").unwrap_err().to_string();
        assert!(
            e.contains("ckpt/step_00000010.h5") && e.contains("/norm/wall_range") && e.contains("train again"),
            "{bad:?}: {e}"
        );
    }
    let mut arrays = norm.to_arrays();
    arrays.retain(|a| a.name != "wall_range");
    let e = Normalization::from_arrays(&arrays, cfg.wall_features, "x.h5").unwrap_err().to_string();
    assert!(e.contains("wall_range"), "{e}");
}

/// The scale's name, `Display`, `FromStr` and its serde (TOML) spelling are
/// one and the same for every option, so no caller needs a TOML round trip.
#[test]
fn attention_scale_names_agree_with_serde() {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct C {
        scale: AttentionScale,
    }
    for s in AttentionScale::ALL {
        let text = toml::to_string(&C { scale: s }).unwrap();
        assert_eq!(text.trim(), format!("scale = \"{}\"", s.name()));
        assert_eq!(s.to_string(), s.name());
        assert_eq!(s.name().parse::<AttentionScale>().unwrap(), s);
        assert_eq!(toml::from_str::<C>(&text).unwrap().scale, s);
    }
    let e = "sqrt".parse::<AttentionScale>().unwrap_err().to_string();
    assert!(e.contains("`sqrt`") && e.contains("inv-key-norm-sum"), "{e}");
}

/// The fused training path (one scaled_dot_product_attention call per
/// layer) computes the same function as the unfused one, with the same
/// gradients, and a hook on `hook_z` still acts on it; a hook on the
/// pattern makes that layer take the unfused path.
#[test]
fn fused_attention_is_the_same_function_and_hooks_still_act() {
    let fused = ForwardOptions { train: false, fused: true };
    for scale in [AttentionScale::InvSqrtDHead, AttentionScale::InvN, AttentionScale::InvKeyNormSum] {
        let cfg = ModelConfig {
            attention: AttentionConfig { kind: AttentionKind::Softmax, scale },
            init_scale: 3.0,
            ..ModelConfig::default()
        };
        let norm = unit_norm(2, &cfg);
        let m = Model::new(cfg, norm.clone(), 5, Device::Cpu).unwrap();
        let x = norm.features(&random_state(4, 9, 2, 6));
        let y = m.forward(&x).unwrap();
        let yf = m.forward_with(&x, fused).unwrap();
        let d = max_abs_diff(&y, &yf);
        assert!(d <= 1e-5, "{scale:?}: fused output differs by {d}");
        // The attention is far from uniform, so agreement means something
        // (dividing by the sum of key lengths makes it nearly uniform by
        // design; that scale always runs unfused).
        let (_, cache) = m.run_with_cache(&x, |n| n.ends_with("hook_pattern")).unwrap();
        if scale != AttentionScale::InvKeyNormSum {
            let top = cache.pattern(1).unwrap().max().double_value(&[]);
            assert!(top > 3.0 / 9.0, "{scale:?}: nearly uniform attention");
        }
        // Gradients agree.
        let target = Tensor::zeros_like(&y);
        let g = m.flat_grad(&m.loss_with(&x, &target, ForwardOptions::default()).unwrap());
        let gf = m.flat_grad(&m.loss_with(&x, &target, fused).unwrap());
        let scale_g = g.abs().max().double_value(&[]).max(1.0);
        let dg = max_abs_diff(&g, &gf);
        assert!(dg <= 1e-5 * scale_g, "{scale:?}: fused gradient differs by {dg} (largest |g| {scale_g})");
        // A hook on hook_z (zero head 1 of layer 1) acts on the fused path as on the unfused one.
        let zero_z = |hooks: &mut Hooks| {
            hooks.add("blocks.1.attn.hook_z", |z, _| {
                let z = z.copy();
                let _ = z.narrow(2, 1, 1).fill_(0.0);
                Ok(z)
            });
        };
        let mut h = Hooks::new();
        zero_z(&mut h);
        let y0 = m.run_with_hooks(&x, &mut h).unwrap();
        let mut h = Hooks::new();
        zero_z(&mut h);
        let y0f = m.run_with_hooks_opts(&x, &mut h, fused).unwrap();
        assert!(max_abs_diff(&y0, &y0f) <= 1e-5, "{scale:?}: hook_z on the fused path");
        assert!(max_abs_diff(&y0f, &yf) > 1e-4, "{scale:?}: zeroing a head's z changed nothing");
        // A pattern hook (uniform attention in layer 0) is honoured: that layer runs unfused.
        let uniform = |hooks: &mut Hooks| {
            hooks.add("blocks.0.attn.hook_pattern", |p, _| Ok(Tensor::ones_like(p) / 9.0));
        };
        let mut h = Hooks::new();
        uniform(&mut h);
        let yu = m.run_with_hooks(&x, &mut h).unwrap();
        let mut h = Hooks::new();
        uniform(&mut h);
        let yuf = m.run_with_hooks_opts(&x, &mut h, fused).unwrap();
        assert!(max_abs_diff(&yu, &yuf) <= 1e-5, "{scale:?}: pattern hook on the fused path");
        assert!(max_abs_diff(&yu, &y) > 1e-4, "{scale:?}: the pattern hook changed nothing");
    }
}

/// Stopping the forward pass at a block and starting it again there
/// (TransformerLens's stop_at_layer / start_at_layer) gives the whole
/// forward pass bit for bit, at every layer and on both paths; the
/// resumed pass differentiates only the later blocks; bad layers and
/// streams are errors that say what is wrong.
#[test]
fn forward_from_a_stopped_stream_is_the_whole_forward_pass() {
    let cfg = ModelConfig { init_scale: 3.0, ..ModelConfig::default() };
    let norm = unit_norm(2, &cfg);
    let m = Model::new(cfg.clone(), norm.clone(), 7, Device::Cpu).unwrap();
    let x = norm.features(&random_state(3, 7, 2, 8));
    for opts in [ForwardOptions::default(), ForwardOptions { train: false, fused: true }] {
        let y = m.forward_with(&x, opts).unwrap();
        for layer in 0..=cfg.n_layers {
            let r = tch::no_grad(|| m.resid_pre(&x, layer, opts)).unwrap();
            assert_eq!(r.size(), vec![3, 7, cfg.d_model as i64]);
            let y2 = m.forward_from(layer, &r, opts).unwrap();
            assert_eq!(max_abs_diff(&y, &y2), 0.0, "layer {layer}, {opts:?}");
        }
    }
    // resid_pre(1) is blocks.1.hook_resid_pre.
    let (_, cache) = m.run_with_cache(&x, |n| n == "blocks.1.hook_resid_pre").unwrap();
    let r1 = m.resid_pre(&x, 1, ForwardOptions::default()).unwrap();
    assert_eq!(max_abs_diff(&r1, cache.get("blocks.1.hook_resid_pre").unwrap()), 0.0);
    // From a stream without history, only block 1's weights get gradients.
    let r1 = r1.detach();
    let loss = m.forward_from(1, &r1, ForwardOptions::default()).unwrap().square().mean(Kind::Float);
    let g = m.flat_grad(&loss);
    let (off, numel) = m.param_range("blocks.1.attn.W_Q").unwrap();
    assert!(g.narrow(0, off as i64, numel as i64).abs().max().double_value(&[]) > 0.0);
    let (off, numel) = m.param_range("blocks.0.attn.W_Q").unwrap();
    assert_eq!(g.narrow(0, off as i64, numel as i64).abs().max().double_value(&[]), 0.0);
    // Errors.
    let e = m.resid_pre(&x, cfg.n_layers + 1, ForwardOptions::default()).unwrap_err().to_string();
    assert!(e.contains(&format!("layer {}", cfg.n_layers + 1)), "{e}");
    let e = m.forward_from(0, &x, ForwardOptions::default()).unwrap_err().to_string();
    assert!(e.contains("residual stream") && e.contains(&cfg.d_model.to_string()), "{e}");
}

/// One head computed afresh, the others' z given: the same block (and
/// forward pass) as computing every head, up to f32 rounding, on the
/// fused and unfused paths and for linear attention with a key-dependent
/// scale; gradients reach only that head's slices, equal to the whole
/// pass's there; the head's own entry of the given z is ignored.
#[test]
fn forward_from_head_with_the_other_heads_z_is_the_same_block() {
    let linear = AttentionConfig { kind: AttentionKind::Linear, scale: AttentionScale::InvKeyNormSum };
    for cfg in [
        ModelConfig { init_scale: 3.0, ..ModelConfig::default() },
        ModelConfig { init_scale: 3.0, attention: linear, ..ModelConfig::default() },
    ] {
        let norm = unit_norm(2, &cfg);
        let m = Model::new(cfg.clone(), norm.clone(), 7, Device::Cpu).unwrap();
        let x = norm.features(&random_state(3, 7, 2, 8));
        let (dm, dh) = (cfg.d_model, cfg.d_head());
        for opts in [ForwardOptions::default(), ForwardOptions { train: false, fused: true }] {
            for layer in 0..cfg.n_layers {
                let r = tch::no_grad(|| m.resid_pre(&x, layer, opts)).unwrap();
                let z = tch::no_grad(|| m.attn_z(layer, &r, opts)).unwrap();
                assert_eq!(z.size(), vec![3, 7, cfg.n_heads as i64, dh as i64]);
                let y = m.forward_from(layer, &r, opts).unwrap();
                let g = m.flat_grad(&y.square().mean(Kind::Float));
                for head in 0..cfg.n_heads {
                    let y1 = m.forward_from_head(layer, head, &r, &z, opts).unwrap();
                    let what = format!("layer {layer} head {head} {opts:?} {:?}", cfg.attention);
                    assert!(max_abs_diff(&y, &y1) < 1e-5, "{what}: {}", max_abs_diff(&y, &y1));
                    let g1 = m.flat_grad(&y1.square().mean(Kind::Float));
                    for (p, per_head) in [("W_Q", dm * dh), ("W_V", dm * dh), ("b_Q", dh), ("W_O", dh * dm)] {
                        let (off, numel) = m.param_range(&format!("blocks.{layer}.attn.{p}")).unwrap();
                        let slice = |t: &Tensor, h: usize| t.narrow(0, (off + h * per_head) as i64, per_head as i64);
                        let (a, b) = (slice(&g, head), slice(&g1, head));
                        let scale = a.abs().max().double_value(&[]);
                        assert!(scale > 0.0, "{what} {p}");
                        assert!(max_abs_diff(&a, &b) <= 1e-4 * scale, "{what} {p}: {}", max_abs_diff(&a, &b));
                        let other = (head + 1) % cfg.n_heads;
                        assert_eq!(slice(&g1, other).abs().max().double_value(&[]), 0.0, "{what} {p}");
                        assert_eq!(g1.narrow(0, off as i64, numel as i64).size(), vec![numel as i64]);
                    }
                    // The head's own entry of z is not read.
                    let z_bad = z.index_fill(2, &Tensor::from(head as i64), 1e3);
                    let y2 = m.forward_from_head(layer, head, &r, &z_bad, opts).unwrap();
                    assert_eq!(max_abs_diff(&y1, &y2), 0.0, "{what}");
                }
            }
        }
        // attn_z is the hook point blocks.{l}.attn.hook_z.
        let (_, cache) = m.run_with_cache(&x, |n| n == "blocks.1.attn.hook_z").unwrap();
        let r1 = m.resid_pre(&x, 1, ForwardOptions::default()).unwrap();
        let z1 = m.attn_z(1, &r1, ForwardOptions::default()).unwrap();
        assert_eq!(max_abs_diff(&z1, cache.get("blocks.1.attn.hook_z").unwrap()), 0.0);
        // Errors name what is wrong.
        let e = m.forward_from_head(1, cfg.n_heads, &r1, &z1, ForwardOptions::default()).unwrap_err().to_string();
        assert!(e.contains(&format!("head {}", cfg.n_heads)), "{e}");
        let e = m.forward_from_head(1, 0, &r1, &r1, ForwardOptions::default()).unwrap_err().to_string();
        assert!(e.contains("z is"), "{e}");
        let e = m.attn_z(cfg.n_layers, &r1, ForwardOptions::default()).unwrap_err().to_string();
        assert!(e.contains(&format!("layer {}", cfg.n_layers)), "{e}");
    }
}
