//! In-context regression lens: the model equals the paper's formula, the
//! Hessian-vector products are right, the outputs are written, and the
//! Adam-vs-SGD comparison on the default task.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use headlab_lens::icl::{
    hvp, run_sweep, sample_prompts, top_eigenvalue, write_h5, write_html, DataDist, IclConfig, LinearTransformer,
    Prompts,
};
use tch::{Device, Kind, Tensor};

fn v64(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(&t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

/// Dense row-major matrices on the host.
fn mm(a: &[f64], b: &[f64], r: usize, k: usize, c: usize) -> Vec<f64> {
    let mut o = vec![0.0; r * c];
    for i in 0..r {
        for j in 0..c {
            o[i * c + j] = (0..k).map(|l| a[i * k + l] * b[l * c + j]).sum();
        }
    }
    o
}
fn tr(a: &[f64], r: usize, c: usize) -> Vec<f64> {
    let mut o = vec![0.0; r * c];
    for i in 0..r {
        for j in 0..c {
            o[j * r + i] = a[i * c + j];
        }
    }
    o
}

#[test]
fn forward_matches_the_papers_formula() {
    tch::set_num_threads(1);
    let cfg = IclConfig { d: 2, n: 3, ..Default::default() };
    let p = sample_prompts(&cfg, DataDist::Gaussian, 4, 7, Device::Cpu).unwrap();
    let (m, cols) = (3usize, 4usize);
    let model = LinearTransformer::new(2, 2, 2, 0.3, 5, Device::Cpu);
    let got = v64(&model.predict(&p.z));
    let z_all = v64(&p.z);
    let w: Vec<(Vec<f64>, Vec<f64>)> = (0..2).map(|l| (v64(&model.w_pv[l]), v64(&model.w_kq[l]))).collect();
    for b in 0..4 {
        let mut z = z_all[b * m * cols..(b + 1) * m * cols].to_vec();
        // The query's label slot starts at 0.
        assert_eq!(z[(m - 1) * cols + cols - 1], 0.0);
        for (pv, kq) in &w {
            let mut zm = z.clone();
            for r in 0..m {
                zm[r * cols + cols - 1] = 0.0; // Z M
            }
            let mut upd = vec![0.0; m * cols];
            for h in 0..2 {
                let wpv = &pv[h * m * m..(h + 1) * m * m];
                let wkq = &kq[h * m * m..(h + 1) * m * m];
                let a = mm(&tr(&z, m, cols), &mm(wkq, &z, m, m, cols), cols, m, cols);
                let u = mm(wpv, &mm(&zm, &a, m, cols, cols), m, m, cols);
                for (x, y) in upd.iter_mut().zip(u) {
                    *x += y;
                }
            }
            for (x, y) in z.iter_mut().zip(upd) {
                *x += y / 3.0; // 1/n
            }
        }
        let want = -z[(m - 1) * cols + cols - 1];
        assert!((got[b] - want).abs() < 1e-4 * (1.0 + want.abs()), "prompt {b}: {} vs {want}", got[b]);
    }
}

#[test]
fn prompts_have_unit_variance_covariates_and_linear_labels() {
    let cfg = IclConfig { d: 3, n: 10, ..Default::default() };
    for dist in [DataDist::Gaussian, DataDist::StudentT(5.0), DataDist::MultiT(6.0)] {
        let p = sample_prompts(&cfg, dist, 4000, 1, Device::Cpu).unwrap();
        assert_eq!(p.z.size(), vec![4000, 4, 11]);
        let x = v64(&p.z.narrow(1, 0, 3));
        let var = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
        assert!((var - 1.0).abs() < 0.12, "{}: var {var}", dist.label());
        // E[y²] = d for unit-variance x and w ~ N(0, I).
        let y = v64(&p.y);
        let ey2 = y.iter().map(|v| v * v).sum::<f64>() / y.len() as f64;
        assert!((ey2 - 3.0).abs() < 0.6, "{}: E[y²] {ey2}", dist.label());
    }
    assert!("student-t:0".parse::<DataDist>().is_err() && "cauchy".parse::<DataDist>().is_err());
    let bad = IclConfig { data: vec![DataDist::StudentT(2.0)], ..Default::default() };
    assert!(bad.validate().unwrap_err().to_string().contains("standardize"));
}

#[test]
fn hessian_vector_products_match_finite_differences() {
    tch::set_num_threads(1);
    let cfg = IclConfig { d: 2, n: 4, ..Default::default() };
    let p = sample_prompts(&cfg, DataDist::Gaussian, 64, 3, Device::Cpu).unwrap();
    let p = Prompts { z: p.z.to_kind(Kind::Double), y: p.y.to_kind(Kind::Double) };
    let mk = |shift: f64, v: &[Tensor]| {
        let m = LinearTransformer::new(2, 1, 1, 0.4, 9, Device::Cpu);
        let pv = (m.w_pv[0].detach().to_kind(Kind::Double) + &v[0] * shift).set_requires_grad(true);
        let kq = (m.w_kq[0].detach().to_kind(Kind::Double) + &v[1] * shift).set_requires_grad(true);
        LinearTransformer::from_weights(vec![pv], vec![kq])
    };
    let v = vec![
        Tensor::randn([1, 3, 3], (Kind::Double, Device::Cpu)),
        Tensor::randn([1, 3, 3], (Kind::Double, Device::Cpu)),
    ];
    let zero = vec![v[0].zeros_like(), v[1].zeros_like()];
    let m0 = mk(0.0, &zero);
    let hv: Vec<f64> = hvp(&m0, &p, &v).iter().flat_map(v64).collect();
    let grad = |m: &LinearTransformer| -> Vec<f64> {
        let l = m.loss(&p);
        Tensor::run_backward(&[&l], &m.params(), false, false).iter().flat_map(v64).collect()
    };
    let eps = 1e-5;
    let (gp, gm) = (grad(&mk(eps, &v)), grad(&mk(-eps, &v)));
    for i in 0..hv.len() {
        let fd = (gp[i] - gm[i]) / (2.0 * eps);
        assert!((hv[i] - fd).abs() < 1e-5 * (1.0 + fd.abs()), "component {i}: hvp {} vs finite difference {fd}", hv[i]);
    }
    // Power iteration: the returned λ is an eigenvalue whose magnitude is at
    // least the Rayleigh quotient of any direction (here: random ones).
    let lam = top_eigenvalue(&m0, &p, 200, 1);
    for s in 0..5 {
        tch::manual_seed(100 + s);
        let u = vec![
            Tensor::randn([1, 3, 3], (Kind::Double, Device::Cpu)),
            Tensor::randn([1, 3, 3], (Kind::Double, Device::Cpu)),
        ];
        let hu: Vec<f64> = hvp(&m0, &p, &u).iter().flat_map(v64).collect();
        let uu: Vec<f64> = u.iter().flat_map(v64).collect();
        let rq = uu.iter().zip(&hu).map(|(a, b)| a * b).sum::<f64>() / uu.iter().map(|a| a * a).sum::<f64>();
        assert!(lam.abs() >= rq.abs() - 1e-6 * lam.abs(), "λ {lam} below Rayleigh quotient {rq}");
    }
}

#[test]
fn results_are_written_to_hdf5_and_html() {
    tch::set_num_threads(1);
    let mut cfg = IclConfig {
        d: 2,
        n: 5,
        data: vec![DataDist::Gaussian],
        depths: vec![1],
        n_train: 256,
        n_eval: 64,
        batch: 16,
        steps: 20,
        eval_every: 10,
        sgd_lrs: vec![0.01],
        adam_lrs: vec![0.01, 0.03],
        seeds: vec![0, 1],
        ..Default::default()
    };
    cfg.noise.steps = vec![0, 20];
    cfg.noise.minibatches = 32;
    cfg.noise.curvature = true;
    cfg.noise.power_iters = 5;
    let r = run_sweep(&cfg, Device::Cpu, None).unwrap();
    assert_eq!(r.runs.len(), 6);
    assert_eq!(r.gaps.len(), 1);
    assert_eq!(r.noise.len(), 2);
    let m = &r.noise[1];
    assert_eq!((m.step, m.norms.len(), m.gaussian_norms.len()), (20, 32, 32));
    assert!(m.top_eigenvalue.is_some_and(|v| v.is_finite()));
    // Directional smoothness needs an update: there is one after step 0, none after the last step.
    assert!(r.noise[0].directional_smoothness.is_some_and(|v| v.is_finite()) && m.directional_smoothness.is_none());
    // The noise has zero mean over minibatches only approximately, but its
    // norms are positive and the full gradient is not zero.
    assert!(m.norms.iter().all(|&x| x > 0.0) && m.full_grad_norm > 0.0);

    let dir = tempfile::tempdir().unwrap();
    let h5 = dir.path().join("icl.h5");
    write_h5(&h5, &r).unwrap();
    write_html(dir.path(), &r).unwrap();
    let (f, _) = headlab_store::open_kind(&h5, Some(headlab_store::FileKind::Lens)).unwrap();
    let (loss, shape) = headlab_store::h5util::read_array::<f64>(&f, &h5, "runs/eval_loss", Some(2)).unwrap();
    assert_eq!(shape, vec![6, 3]);
    assert_eq!(loss[2], r.runs[0].final_loss);
    let (lg, shape) = headlab_store::h5util::read_array::<f64>(&f, &h5, "gaps/log_gaps", Some(2)).unwrap();
    assert_eq!(shape, vec![1, 2]);
    assert_eq!(lg, r.gaps[0].log_gaps);
    let g = f.group("noise/m001").unwrap();
    let eig: f64 = headlab_store::h5util::get_attr(&g, &h5, "top_eigenvalue").unwrap();
    assert_eq!(Some(eig), m.top_eigenvalue);
    let cfg_text = headlab_store::h5util::get_str_attr(&f, &h5, "config").unwrap();
    assert_eq!(IclConfig::from_toml(&cfg_text, "icl.h5").unwrap(), cfg);
    let html = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
    for png in ["icl_gap.png", "icl_sweep_gaussian_L1.png", "icl_noise_gaussian_L1_s20.png"] {
        assert!(html.contains(png), "{png} not linked");
        assert!(std::fs::metadata(dir.path().join(png)).unwrap().len() > 5000, "{png} is empty");
    }
}

/// The headline comparison on the default task (d = 5, n = 20, defaults for
/// everything but the grid and the seeds, to keep the test short): the grid
/// holds the best learning rate of each optimizer found by the full default
/// sweep at depth 1.
#[test]
fn adam_beats_sgd_and_heavier_tails_widen_the_gap() {
    tch::set_num_threads(1);
    let mut cfg = IclConfig {
        depths: vec![1],
        seeds: vec![0, 1],
        sgd_lrs: vec![0.1, 0.3],
        adam_lrs: vec![0.01, 0.03],
        ..Default::default()
    };
    cfg.noise.steps = vec![];
    let r = run_sweep(&cfg, Device::Cpu, None).unwrap();
    let g = |d: DataDist| r.gaps.iter().find(|g| g.data == d).unwrap();
    let (gauss, heavy) = (g(DataDist::Gaussian), g(DataDist::StudentT(6.0)));
    for x in [gauss, heavy] {
        eprintln!(
            "{} depth 1: SGD {:.4} (lr {}), Adam {:.4} (lr {}), log10 gap {:.4} ± {:.4}, per seed {:?}",
            x.data.label(),
            x.sgd.mean,
            x.sgd.lr,
            x.adam.mean,
            x.adam.lr,
            x.log_gap_mean,
            x.log_gap_std,
            x.log_gaps
        );
        assert!(x.log_gap_mean > 0.0 && x.gap_mean > 0.0, "Adam does not beat SGD on {}", x.data.label());
        // Both learn: well below the trivial loss E[y²] = 5.
        assert!(x.adam.mean < 0.5 * x.trivial_loss);
    }
    assert!(
        heavy.log_gap_mean > gauss.log_gap_mean,
        "gap gaussian {} vs student-t:6 {}",
        gauss.log_gap_mean,
        heavy.log_gap_mean
    );
}
