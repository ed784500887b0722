//! The report on synthetic probe results with a known collision head.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::Path;

use headlab_analysis::metrics::{default_g_edges, HeadMetrics};
use headlab_report::{write_report, ReportOptions};
use headlab_store::analysis::{write_analysis, Analysis, StepRecord};
use headlab_store::metrics::{write_metrics, Metrics};
use headlab_store::series::SeriesKey;
use rand::{Rng, SeedableRng};

/// 2 layers × 4 heads; L1.H2 emerges as a sigmoid in log t around step
/// `t_mid`, and L1.H1 with it, 1 % weaker (a tie within one standard error);
/// both end above the distance baseline at matched distance.
fn synthetic_run(dir: &Path, seed: u64, t_mid: f64) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let edges = default_g_edges();
    let nb = edges.len() - 1;
    let mut a = Analysis {
        config_toml: String::new(),
        dataset: "synthetic".into(),
        n_layers: 2,
        n_heads: 4,
        n_particles: 16,
        g_edges: edges.clone(),
        ..Default::default()
    };
    let mut steps: Vec<u64> = vec![0];
    for k in 0..60 {
        steps.push((10f64 * 300f64.powf(k as f64 / 59.0)).round() as u64);
    }
    steps.dedup();
    for &s in &steps {
        let p = 1.0 / (1.0 + (-((1.0 + s as f64).ln() - t_mid.ln()) / 0.35).exp());
        let mut series: BTreeMap<String, Vec<f64>> = HeadMetrics::scalar_names()
            .into_iter()
            .chain(controls())
            .map(|n| (n.name().to_string(), vec![0.0; 8]))
            .collect();
        let mut g = vec![0.0; 8 * nb];
        for k in 0..8 {
            let strength = match k {
                6 => p,
                5 => 0.99 * p,
                _ => 0.05 * rng.gen::<f64>(),
            };
            let noise = 0.01 * (rng.gen::<f64>() - 0.5);
            series.get_mut(SeriesKey::ScoreExclNormOverlap.name()).unwrap()[k] = 0.85 * strength + noise;
            series.get_mut(SeriesKey::ScoreNormOverlap.name()).unwrap()[k] = 0.12 * strength + noise;
            series.get_mut(SeriesKey::AurocInterval.name()).unwrap()[k] = 0.5 + 0.49 * strength;
            series.get_mut(SeriesKey::Entropy.name()).unwrap()[k] =
                16f64.ln() * (1.0 - 0.6 * strength) - 0.02 * k as f64;
            series.get_mut(SeriesKey::SelfAttn.name()).unwrap()[k] = 0.85;
            series.get_mut(SeriesKey::GateContactOverlap.name()).unwrap()[k] = 0.03 + 0.08 * strength;
            series.get_mut(SeriesKey::GateFreeOverlap.name()).unwrap()[k] = 0.03;
            series.get_mut(SeriesKey::ScoreExclNormStdOverlap.name()).unwrap()[k] = 0.4;
            series.get_mut(SeriesKey::NQueriesOverlap.name()).unwrap()[k] = 400.0;
            series.get_mut(SeriesKey::AurocNew.name()).unwrap()[k] = 0.5 + 0.4 * strength;
            series.get_mut(SeriesKey::AurocMatched.name()).unwrap()[k] = 0.5 + 0.35 * strength;
            series.get_mut(SeriesKey::AurocMatchedSe.name()).unwrap()[k] = 0.012;
            series.get_mut(SeriesKey::ApproachSelectivity.name()).unwrap()[k] = 0.5 + 0.3 * strength;
            series.get_mut(SeriesKey::GeometryPosition.name()).unwrap()[k] = 0.35 * strength / 0.47;
            series.get_mut(SeriesKey::IncrGain.name()).unwrap()[k] = 0.2 * strength;
            series.get_mut(SeriesKey::IncrGainLo.name()).unwrap()[k] = 0.2 * strength - 0.05;
            series.get_mut(SeriesKey::IncrGainHi.name()).unwrap()[k] = 0.2 * strength + 0.05;
            for b in 0..nb {
                let c = 0.5 * (edges[b] + edges[b + 1].min(12.0)) as f64;
                g[k * nb + b] = if c < 0.5 {
                    f64::NAN
                } else {
                    1.0 + strength * 6.0 * (-(c - 0.95).powi(2) / 0.02).exp() - 0.3 * strength * (c > 1.2) as u8 as f64
                };
            }
        }
        a.add_step(StepRecord {
            step: s,
            series,
            g: g.clone(),
            g_excl: g,
            g_count: vec![500; 8 * nb],
            patterns: vec![],
        })
        .unwrap();
    }
    for (name, all, matched, softmax_score, softmax_matched) in [
        ("distance", 0.99, 0.5, 0.9, 0.5),
        ("time_to_contact", 0.98, 0.9, 0.8, 0.9),
        ("approach_rate", 0.6, 0.7, 0.1, 0.7),
        ("ballistic", 1.0, 0.97, 0.9, 0.97),
    ] {
        let row = a.baselines.entry(name.into()).or_default();
        for (k, v) in [
            ("auroc_all", all),
            ("auroc_new", all - 0.03),
            ("auroc_matched", matched),
            ("auroc_matched_se", 0.01),
            ("softmax_score_excl_norm_overlap", softmax_score),
            ("softmax_auroc_matched", softmax_matched),
        ] {
            row.insert(k.into(), v);
        }
    }
    for (k, v) in [
        ("bin_width", 0.025),
        ("bins", 20.0),
        ("bins_used", 14.0),
        ("unordered_pairs_per_bin", 90.0),
        ("positives_used", 300.0),
    ] {
        a.baselines.entry("_binning".into()).or_default().insert(k.into(), v);
    }
    write_analysis(&dir.join("analysis.h5"), &a).unwrap();
    let n = 3000u64;
    let m = Metrics {
        config_toml: String::new(),
        baseline_val_loss: 1.0,
        step: (1..=n).collect(),
        loss: (1..=n).map(|s| (0.02 + 0.9 / (1.0 + s as f32 / 50.0)) * (1.0 + 0.2 * rng.gen::<f32>())).collect(),
        lr: vec![1e-3; n as usize],
        grad_norm: vec![1.0; n as usize],
        val_step: (0..=30).map(|k| k * 100).collect(),
        val_loss: (0..=30).map(|k| 0.025 + 0.9 / (1.0 + (k * 100) as f32 / 50.0)).collect(),
        ..Default::default()
    };
    write_metrics(&dir.join("metrics.h5"), &m).unwrap();
}

/// The distance-controlled series the probe adds to the metrics' own.
fn controls() -> Vec<SeriesKey> {
    use SeriesKey::*;
    vec![
        AurocNew,
        AurocMatched,
        AurocMatchedSe,
        ApproachSelectivity,
        GeometryPosition,
        IncrGain,
        IncrGainLo,
        IncrGainHi,
        IncrAurocFull,
    ]
}

#[test]
fn report_of_one_and_several_runs() {
    let keep = std::env::var("HEADLAB_KEEP_REPORT").ok();
    let tmp = tempfile::tempdir().unwrap();
    let root = keep.as_deref().map(Path::new).unwrap_or(tmp.path()).to_path_buf();
    let runs: Vec<_> = (0..3).map(|k| root.join(format!("seed{k}"))).collect();
    for (k, r) in runs.iter().enumerate() {
        std::fs::create_dir_all(r).unwrap();
        synthetic_run(r, k as u64, 400.0 + 100.0 * k as f64);
    }
    let opts = ReportOptions {
        fit: headlab_analysis::fit::FitOptions { bootstrap: 10, ..Default::default() },
        ..Default::default()
    };
    // `headlab fit` first (stores the fits in each analysis.h5), as the CLI does.
    let fs =
        headlab_analysis::fitrun::fit_runs(&runs, &opts.series, &headlab_analysis::fitrun::TimeAxis::ALL, &opts.fit)
            .unwrap();
    assert_eq!(fs.collision_heads, vec![vec![(1, 2), (1, 1)]; 3], "a tie within one SE names both heads");
    assert_eq!(fs.seeds.len(), 2, "a summary over seeds per axis");
    let whole = fs.per_run[0][0].head(1, 2).unwrap().report.whole.as_ref().unwrap();
    assert_eq!(whole.best().unwrap().model, headlab_analysis::fit::FitModel::LogLogistic);
    let s = write_report(&runs[..1], None, &opts).unwrap();
    assert_eq!(s.index, runs[0].join("report/index.html"));
    let html = std::fs::read_to_string(&s.index).unwrap();
    let v = s.runs[0].verdict.as_ref().unwrap();
    let top: Vec<String> = v.top_heads().iter().map(|h| h.name()).collect();
    assert_eq!(top, vec!["L1.H2", "L1.H1"]);
    assert!(v.top_heads().iter().all(|h| h.meets_bar), "{v:?}");
    assert!(s.headline.starts_with("Collision head(s) meeting the bar"), "{}", s.headline);
    assert!(s.headline.contains("L1.H2, L1.H1 (tied within one standard error)"), "{}", s.headline);
    assert!(s.headline.contains("Margin over the best baseline (distance"), "{}", s.headline);
    assert!(s.runs[0].summary.contains("tie") && !s.runs[0].summary.contains("strongest"), "{}", s.runs[0].summary);
    // The distance baseline's softmax scores high and fails the bar; the table says so.
    assert!(!v.baseline(headlab_analysis::baselines::Baseline::Distance).unwrap().softmax_meets_bar);
    assert!(html.contains("Non-learned baselines"));
    assert!(
        html.contains("L1.H2") && html.contains("<table>") && html.contains("loglogistic"),
        "table and winning form are shown"
    );
    for f in [
        "loss.png",
        "scores.png",
        "auroc.png",
        "baselines.png",
        "g_heatmap.png",
        "g_profiles.png",
        "g_heatmap_incl.png",
        "entropy.png",
    ] {
        let p = runs[0].join("report").join(f);
        assert!(std::fs::metadata(&p).unwrap().len() > 5000, "{f} is too small to be a figure");
        assert!(html.contains(&format!("src=\"{f}\"")));
    }
    // The sigmoid in log t is power-like on the whole curve, and the summary says so.
    assert!(
        s.runs[0].summary.contains(
            "power-like relaxation is supported over exponential/logistic: the best power-like form (loglogistic)"
        ),
        "{}",
        s.runs[0].summary
    );
    assert!(s.runs[0].summary.contains("cumulative learning rate"), "{}", s.runs[0].summary);
    // Every form is tabulated for the strongest head, with a figure per axis.
    for f in ["forms_step.png", "forms_lr.png"] {
        assert!(html.contains(&format!("src=\"{f}\"")), "{f} missing");
    }
    assert!(html.contains("power_onset") && html.contains("Akaike weight"));

    // Gradient noise appears only when training measured it.
    assert!(!html.contains("grad_noise.png"));
    let mpath = runs[0].join("metrics.h5");
    let mut m = headlab_store::metrics::read_metrics(&mpath).unwrap();
    for (k, step) in [0u64, 100, 400].into_iter().enumerate() {
        m.noise.push(headlab_store::metrics::NoiseRecord {
            step,
            batches: 8,
            batch_size: 16,
            reference_rows: 256,
            full_grad_norm: 1.0,
            norm_hill_alpha: 3.0 + k as f64,
            norm_hill_se: 0.8,
            norm_gaussian_hill_alpha: 13.0,
            coord_hill_alpha: 5.0,
            coord_hill_se: 1.0,
            coord_gaussian_hill_alpha: 14.0,
            norms: vec![1.0; 8],
            ..Default::default()
        });
    }
    write_metrics(&mpath, &m).unwrap();
    let s = write_report(&runs[..1], None, &opts).unwrap();
    let html = std::fs::read_to_string(&s.index).unwrap();
    assert!(html.contains("src=\"grad_noise.png\""), "noise figure missing");
    assert!(std::fs::metadata(runs[0].join("report/grad_noise.png")).unwrap().len() > 5000);

    let out = root.join("sweep_report");
    let s = write_report(&runs, Some(&out), &opts).unwrap();
    let html = std::fs::read_to_string(&s.index).unwrap();
    assert!(s.headline.starts_with("Collision head(s) meeting the bar in 3 of 3 runs"), "{}", s.headline);
    assert!(
        html.contains("Across seeds")
            && out.join("seeds_step.png").exists()
            && out.join("seeds_lr.png").exists()
            && out.join("r2_scores.png").exists()
    );
    assert!(html.contains("over seeds") && s.headline.contains("Over seeds:"), "{}", s.headline);
    // Missing analysis: a clear error.
    let e = write_report(&[root.join("nope")], None, &opts).unwrap_err().to_string();
    assert!(e.contains("headlab probe"), "{e}");
}
