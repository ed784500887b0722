//! The report shows one scan/snap/max-margin figure per head when the run
//! has `lens_physics.h5` (written by `headlab lens physics`), and none without.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::Path;

use headlab_analysis::lens_physics::{default_freeze, write_lens_physics, LensPhysics, SERIES};
use headlab_analysis::metrics::{default_g_edges, HeadMetrics};
use headlab_report::{write_report, ReportOptions};
use headlab_store::analysis::{write_analysis, Analysis, StepRecord};
use headlab_store::series::SeriesKey;

fn steps() -> Vec<u64> {
    let mut s: Vec<u64> = (0..25).map(|k| (3f64 * 1000f64.powf(k as f64 / 24.0)).round() as u64).collect();
    s.dedup();
    s
}

/// 1 layer × 2 heads; head 1 becomes a collision head around step 300.
fn analysis(dir: &Path) {
    let edges = default_g_edges();
    let nb = edges.len() - 1;
    let mut a = Analysis {
        dataset: "synthetic".into(),
        n_layers: 1,
        n_heads: 2,
        n_particles: 8,
        g_edges: edges,
        ..Default::default()
    };
    for s in steps() {
        let p = 1.0 / (1.0 + (-((1.0 + s as f64).ln() - 300f64.ln()) / 0.4).exp());
        let mut series: BTreeMap<String, Vec<f64>> =
            HeadMetrics::scalar_names().into_iter().map(|n| (n.name().to_string(), vec![0.01, 0.01])).collect();
        series.get_mut(SeriesKey::ScoreExclNormOverlap.name()).unwrap()[1] = 0.8 * p;
        series.get_mut(SeriesKey::AurocInterval.name()).unwrap()[1] = 0.5 + 0.49 * p;
        series.insert(SeriesKey::Entropy.name().to_string(), vec![8f64.ln(), 8f64.ln() * (1.0 - 0.8 * p)]);
        a.add_step(StepRecord {
            step: s,
            series,
            g: vec![1.0; 2 * nb],
            g_excl: vec![1.0; 2 * nb],
            g_count: vec![5; 2 * nb],
            patterns: vec![],
        })
        .unwrap();
    }
    write_analysis(&dir.join("analysis.h5"), &a).unwrap();
}

fn lens(dir: &Path) {
    let st = steps();
    let (s, n, f) = (st.len(), 8, 1);
    let mut series = BTreeMap::new();
    for name in SERIES {
        series.insert(name.to_string(), (0..s * 2).map(|k| 0.1 + 0.001 * k as f64).collect());
    }
    let mut lp = LensPhysics {
        config_toml: "x = 1".into(),
        n_layers: 1,
        n_heads: 2,
        n_particles: n,
        freeze_frames: f,
        steps: st.clone(),
        series,
        // Head 0 keeps moving; head 1's logits settle after step 300.
        logits: st
            .iter()
            .map(|&t| {
                (0..2 * f * n * n)
                    .map(|k| {
                        if k < n * n {
                            ((t as f64 * 0.37 + k as f64).sin()) as f32
                        } else {
                            ((k % 7) as f32 - 3.0) * (t.min(300) as f32 / 300.0)
                        }
                    })
                    .collect()
            })
            .collect(),
        svm_eval_index: vec![0],
        svm_query: vec![1],
        svm_partner: vec![2],
        ..Default::default()
    };
    lp.detect_snaps(&default_freeze());
    assert!(lp.snap_step(0, 1).is_some() && lp.snap_step(0, 0).is_none(), "{:?}", lp.snap);
    write_lens_physics(&headlab_analysis::lens_physics::lens_physics_path(dir), &lp).unwrap();
}

#[test]
fn lens_figures_appear_when_lens_physics_exists() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    analysis(&run);
    let opts = ReportOptions {
        fit: headlab_analysis::fit::FitOptions { bootstrap: 5, ..Default::default() },
        ..Default::default()
    };
    let s = write_report(std::slice::from_ref(&run), None, &opts).unwrap();
    let html = std::fs::read_to_string(&s.index).unwrap();
    assert!(!html.contains("lens_L0H0.png"), "no lens file, no lens figures");
    lens(&run);
    let s = write_report(std::slice::from_ref(&run), None, &opts).unwrap();
    let html = std::fs::read_to_string(&s.index).unwrap();
    for f in ["lens_L0H0.png", "lens_L0H1.png"] {
        assert!(html.contains(&format!("src=\"{f}\"")), "{f} missing from index.html");
        assert!(std::fs::metadata(run.join("report").join(f)).unwrap().len() > 10_000);
    }
    assert!(html.contains("the head never freezes"), "snap verdict of head 0");
    assert!(html.contains("snaps at step"), "snap verdict of head 1");
}
