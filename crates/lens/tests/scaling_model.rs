//! The physics model's attention scale options compute the same scores as
//! the lens's reference implementation (layer 0, every head).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use headlab_lens::scaling::{scaled_scores, ScoreScale};
use headlab_model::{AttentionScale, Model, ModelConfig, Normalization, State};
use tch::{Device, Kind, Tensor};

#[test]
fn model_scale_options_match_the_reference_formulas() {
    tch::set_num_threads(1);
    let pairs = [
        (AttentionScale::InvSqrtDHead, ScoreScale::InvSqrtDHead),
        (AttentionScale::InvDHead, ScoreScale::InvDHead),
        (AttentionScale::None, ScoreScale::None),
        (AttentionScale::InvN, ScoreScale::InvN),
        (AttentionScale::InvSqrtN, ScoreScale::InvSqrtN),
        (AttentionScale::InvLogN, ScoreScale::InvLogN),
        (AttentionScale::InvKeyNormSum, ScoreScale::InvKeyNormSum),
    ];
    tch::manual_seed(4);
    let (b, n, d) = (2i64, 6i64, 2usize);
    let s = State {
        pos: Tensor::rand([b, n, d as i64], (Kind::Float, Device::Cpu)) * 2.0,
        vel: Tensor::randn([b, n, d as i64], (Kind::Float, Device::Cpu)),
        radii: Tensor::rand([b, n], (Kind::Float, Device::Cpu)) * 0.1 + 0.05,
        masses: Tensor::rand([b, n], (Kind::Float, Device::Cpu)) + 0.5,
    };
    for (ms, ls) in pairs {
        let mut cfg = ModelConfig { n_layers: 1, n_heads: 2, d_model: 16, ..Default::default() };
        cfg.attention.scale = ms;
        let f = cfg.d_in(d);
        let norm = Normalization {
            dimension: d,
            box_size: vec![2.0; d],
            wall_range: 0.3,
            wall_features: cfg.wall_features,
            input_mean: vec![0.5; f],
            input_std: vec![0.7; f],
            target_mean: vec![0.0; 2 * d],
            target_std: vec![1.0; 2 * d],
        };
        let m = Model::new(cfg.clone(), norm.clone(), 1, Device::Cpu).unwrap();
        let x = norm.features(&s);
        let (_, cache) = m.run_with_cache(&x, |_| true).unwrap();
        let got = cache.get("blocks.0.attn.hook_attn_scores").unwrap().shallow_clone(); // [B,H,N,N]
                                                                                        // Recompute layer-0 queries and keys by hand.
        let p = |k: &str| m.param(k).unwrap().shallow_clone();
        let dm = cfg.d_model as i64;
        let resid = p("embed.b_in").addmm(&x.reshape([b * n, f as i64]), &p("embed.W_in"));
        let a = resid.layer_norm([dm], Some(&p("blocks.0.ln1.w")), Some(&p("blocks.0.ln1.b")), cfg.ln_eps, false);
        for h in 0..2 {
            let q = (a.matmul(&p("blocks.0.attn.W_Q").get(h)) + p("blocks.0.attn.b_Q").get(h)).view([b, n, -1]);
            let k = (a.matmul(&p("blocks.0.attn.W_K").get(h)) + p("blocks.0.attn.b_K").get(h)).view([b, n, -1]);
            let want = scaled_scores(&q, &k, None, ls);
            let g = got.select(1, h);
            let err = (&g - &want).abs().max().double_value(&[]);
            let scale = want.abs().max().double_value(&[]);
            assert!(err <= 1e-4 * (1.0 + scale), "{}: head {h}: max error {err} (scores up to {scale})", ls.name());
        }
    }
}
