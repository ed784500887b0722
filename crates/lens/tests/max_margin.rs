//! Max-margin lens: GD converges in direction to the att-SVM solution, and the
//! QP solver's solutions satisfy every constraint and match hand-solved cases.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use headlab_lens::max_margin::{self, cosine, min_norm_margin, MaxMarginConfig, MmData, MmDataConfig, Variant};

#[test]
fn solver_matches_hand_solved_cases() {
    // One constraint a·p ≥ 1: p = a / ‖a‖².
    let s = min_norm_margin(&[vec![3.0, 4.0]], 2).unwrap();
    assert!((s.x[0] - 0.12).abs() < 1e-6 && (s.x[1] - 0.16).abs() < 1e-6, "{:?}", s.x);
    // Tokens x_opt = (1,1), others (−1,1), (1,−1): rows (2,0), (0,2) → p = (½, ½).
    let s = min_norm_margin(&[vec![2.0, 0.0], vec![0.0, 2.0]], 2).unwrap();
    assert!((s.x[0] - 0.5).abs() < 1e-6 && (s.x[1] - 0.5).abs() < 1e-6, "{:?}", s.x);
    assert_eq!(s.support, vec![0, 1]);
    // An inactive constraint: (1,0)·p ≥ 1 binds, (2,0)·p ≥ 1 then holds with slack.
    let s = min_norm_margin(&[vec![2.0, 0.0], vec![1.0, 0.0]], 2).unwrap();
    assert!((s.x[0] - 1.0).abs() < 1e-6 && s.x[1].abs() < 1e-6, "{:?}", s.x);
    assert_eq!(s.support, vec![1]);
    // Contradictory constraints are reported as infeasible, not as a bogus solution.
    let e = min_norm_margin(&[vec![1.0, 0.0], vec![-1.0, 0.0]], 2).unwrap_err().to_string();
    assert!(e.contains("infeasible"), "{e}");
    // W variant by hand: one example, x_opt = e1, x_other = 0, query z = e2:
    // constraint W[0][1] ≥ 1, so W_mm = E_01.
    let s = min_norm_margin(&[vec![0.0, 1.0, 0.0, 0.0]], 4).unwrap();
    let want = [0.0, 1.0, 0.0, 0.0];
    assert!(s.x.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6), "{:?}", s.x);
}

#[test]
fn svm_solution_satisfies_every_margin_constraint() {
    for seed in 0..3 {
        let data = MmData::generate(&MmDataConfig { seed, score_spread: 0.5, ..Default::default() });
        let rows = data.p_rows(&data.opt);
        let s = min_norm_margin(&rows, data.d).unwrap();
        for (k, r) in rows.iter().enumerate() {
            let m: f64 = r.iter().zip(&s.x).map(|(a, b)| a * b).sum();
            assert!(m >= 1.0 - 1e-6, "seed {seed} constraint {k}: margin {m}");
        }
        assert!((s.min_margin - 1.0).abs() < 1e-6, "the optimum touches the margin: {}", s.min_margin);
        // Optimality: no shorter feasible point nearby along random directions
        // (the solution is the projection of 0 onto the feasible polyhedron).
        assert!(!s.support.is_empty());
        let shrunk: Vec<f64> = s.x.iter().map(|a| a * 0.999).collect();
        assert!(rows.iter().any(|r| r.iter().zip(&shrunk).map(|(a, b)| a * b).sum::<f64>() < 1.0));
        // The W variant too.
        let wrows = data.w_rows(&data.opt);
        let w = min_norm_margin(&wrows, data.d * data.d).unwrap();
        for r in &wrows {
            assert!(r.iter().zip(&w.x).map(|(a, b)| a * b).sum::<f64>() >= 1.0 - 1e-6);
        }
    }
}

#[test]
fn gradient_descent_converges_to_the_att_svm_direction() {
    let cfg = MaxMarginConfig::default();
    let res = max_margin::run_toy(&cfg).unwrap();
    for r in &res.runs {
        let t = &r.trace;
        eprintln!(
            "{:?}: cos {:.5} margin {:.4} mass {:.4} norm {:.2} cos_v {:?} selected {}",
            r.variant,
            t.cos.last().unwrap(),
            t.margin_ratio.last().unwrap(),
            t.opt_mass.last().unwrap(),
            t.norm.last().unwrap(),
            t.cos_v.last(),
            t.selected_opt_share
        );
    }
    let p = res.run(Variant::P).unwrap();
    let w = res.run(Variant::W).unwrap();
    for r in [p, w] {
        let t = &r.trace;
        let cos = *t.cos.last().unwrap();
        assert!(cos > 0.99, "{:?}: final cosine {cos}", r.variant);
        // It got there by training: the cosine grew, the norm diverges, attention selects the optimal token.
        assert!(t.cos[1] < cos);
        assert!(*t.norm.last().unwrap() > 10.0 * res.p_svm.norm().min(1.0));
        assert!(*t.opt_mass.last().unwrap() > 0.95);
        assert!(*t.margin_ratio.last().unwrap() > 0.9);
        assert_eq!(t.selected_opt_share, 1.0);
        // The trained direction also matches the independently computed final θ.
        assert!(
            (cosine(&r.theta, if r.variant == Variant::P { &res.p_svm.x } else { &res.w_svm.as_ref().unwrap().x })
                - cos)
                .abs()
                < 1e-9
        );
    }
    // The regularization path approaches the same direction as R grows.
    let first = res.path.first().unwrap().cos;
    let last = res.path.last().unwrap().cos;
    eprintln!("path cos {first:.4} -> {last:.4}");
    assert!(last > 0.99 && last > first, "path cos {first} -> {last}");
}

#[test]
fn outputs_are_written_and_readable() {
    let mut cfg = MaxMarginConfig::default();
    cfg.train.steps = 100;
    cfg.path.radii = vec![1.0, 4.0];
    cfg.path.steps_per_radius = 50;
    let res = max_margin::run_toy(&cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let h5 = dir.path().join("max_margin.h5");
    max_margin::write_h5(&h5, &res).unwrap();
    let plots = max_margin::write_plots(dir.path(), &res).unwrap();
    assert_eq!(plots.len(), 2);
    let page = max_margin::write_page(dir.path(), &res, &plots, "max_margin.h5").unwrap();
    assert!(std::fs::read_to_string(page).unwrap().contains("max_margin_convergence.png"));
    let (f, _) = headlab_store::open_kind(&h5, Some(headlab_store::FileKind::Lens)).unwrap();
    let (pmm, shape) = headlab_store::h5util::read_array::<f64>(&f, &h5, "svm/p_mm", Some(1)).unwrap();
    assert_eq!(shape, vec![cfg.data.dim]);
    assert_eq!(pmm, res.p_svm.x);
    let (cos, _) = headlab_store::h5util::read_array::<f64>(&f, &h5, "runs/W/cos", Some(1)).unwrap();
    assert_eq!(cos, res.run(Variant::W).unwrap().trace.cos);
    let text = headlab_store::h5util::get_str_attr(&f, &h5, "config").unwrap();
    assert_eq!(MaxMarginConfig::from_toml(&text, &h5).unwrap(), cfg);
}

#[test]
fn config_errors_name_the_key() {
    let p = std::path::Path::new("mm.toml");
    let e = MaxMarginConfig::from_toml("[data]\nopt_score = -2.0\n", p).unwrap_err().to_string();
    assert!(e.contains("data.opt_score") && e.contains("-2"), "{e}");
    let e = MaxMarginConfig::from_toml("[path]\nradii = [2.0, 1.0]\n", p).unwrap_err().to_string();
    assert!(e.contains("path.radii"), "{e}");
    let e = MaxMarginConfig::from_toml("[train]\nvariants = [\"q\"]\n", p).unwrap_err().to_string();
    assert!(e.contains("mm.toml"), "{e}");
    let cfg = MaxMarginConfig::from_toml("[train]\nvariants = [\"p\", \"w\"]\n", p).unwrap();
    assert_eq!(cfg.train.variants, vec![Variant::P, Variant::W]);
}
