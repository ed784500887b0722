//! Writing the ICL lens results: `icl.h5` and an HTML page with PNG plots.
//!
//! `icl.h5` layout (kind `lens`, attribute `lens = "icl-regression"`,
//! attribute `config` = the TOML config, `data_labels` = the data settings):
//! - `/runs/`: one row per training run: `data_index`, `depth`, `optim`
//!   (0 = SGD, 1 = Adam), `lr`, `seed`, `final_loss` (+inf if diverged),
//!   `diverged` (0/1), `eval_loss` [runs, evals] (NaN after a divergence),
//!   `eval_steps` [evals].
//! - `/gaps/`: one row per (data, depth): `data_index`, `depth`,
//!   `trivial_loss`, `sgd_lr`, `adam_lr`, `sgd_mean`, `sgd_std`,
//!   `adam_mean`, `adam_std`, `log_gap_mean`, `log_gap_std`, `gap_mean`,
//!   `gap_std`, and per seed `sgd_losses`, `adam_losses`, `log_gaps` [rows, seeds].
//! - `/noise/m000`, …: one group per measurement, attributes `data`,
//!   `depth`, `optim`, `lr`, `step`, `full_grad_norm`, statistics
//!   (`{norm,gaussian_norm,coord}_{kurtosis,hill_alpha,hill_se,hill_k,hill_gaussian_alpha}`),
//!   optional `top_eigenvalue`, `directional_smoothness`; datasets `norms`,
//!   `gaussian_norms`, `coords` (standardized per coordinate, at most 10⁶ values).

use std::path::Path;

use hdf5::types::VarLenUnicode;
use headlab_store::h5util::{set_attr, set_str_attr, write_array, Ctx};
use headlab_store::{atomic_write, FileKind, StoreError};

use super::{IclError, IclReport, NoiseMeasurement, Optim};
use crate::noise::{gaussian_pdf, Histogram, NoiseStats};
use crate::plot::{num, write_png, Panel, Series};
use headlab_store::html::Page;

const MAX_COORDS: usize = 1_000_000;

/// Write `icl.h5` atomically.
pub fn write_h5(path: &Path, r: &IclReport) -> Result<(), IclError> {
    let cfg = &r.config;
    let labels: Vec<String> = cfg.data.iter().map(|d| d.label()).collect();
    let di = |d: &super::DataDist| cfg.data.iter().position(|x| x == d).unwrap_or(0) as u32;
    let config_toml = cfg.to_toml()?;
    atomic_write(path, FileKind::Lens, |f| {
        let ctx = Ctx(path);
        set_str_attr(f, path, "lens", "icl-regression")?;
        set_str_attr(f, path, "config", &config_toml)?;
        let lab: Vec<VarLenUnicode> = labels.iter().map(|s| s.parse().unwrap_or_default()).collect();
        let a = ctx.h5("data_labels", f.new_attr::<VarLenUnicode>().shape(lab.len()).create("data_labels"))?;
        ctx.h5("data_labels", a.write_raw(&lab))?;

        // Runs.
        let g = ctx.h5("runs", f.create_group("runs"))?;
        let nr = r.runs.len();
        let ne = r.runs.iter().map(|x| x.eval_loss.len()).max().unwrap_or(0);
        let steps = r.runs.iter().max_by_key(|x| x.eval_steps.len()).map(|x| x.eval_steps.clone()).unwrap_or_default();
        let col = |f: &dyn Fn(&super::RunResult) -> f64| r.runs.iter().map(f).collect::<Vec<f64>>();
        write_array(&g, path, "data_index", &r.runs.iter().map(|x| di(&x.data)).collect::<Vec<_>>(), &[nr])?;
        write_array(&g, path, "depth", &r.runs.iter().map(|x| x.depth as u32).collect::<Vec<_>>(), &[nr])?;
        write_array(
            &g,
            path,
            "optim",
            &r.runs.iter().map(|x| (x.optim == Optim::Adam) as u8).collect::<Vec<_>>(),
            &[nr],
        )?;
        write_array(&g, path, "lr", &col(&|x| x.lr), &[nr])?;
        write_array(&g, path, "seed", &r.runs.iter().map(|x| x.seed).collect::<Vec<_>>(), &[nr])?;
        write_array(&g, path, "final_loss", &col(&|x| x.final_loss), &[nr])?;
        write_array(&g, path, "diverged", &r.runs.iter().map(|x| x.diverged as u8).collect::<Vec<_>>(), &[nr])?;
        let mut ev = vec![f64::NAN; nr * ne];
        for (i, x) in r.runs.iter().enumerate() {
            ev[i * ne..i * ne + x.eval_loss.len()].copy_from_slice(&x.eval_loss);
        }
        write_array(&g, path, "eval_loss", &ev, &[nr, ne])?;
        write_array(&g, path, "eval_steps", &steps.iter().map(|&s| s as u64).collect::<Vec<_>>(), &[steps.len()])?;

        // Gaps.
        let g = ctx.h5("gaps", f.create_group("gaps"))?;
        let ng = r.gaps.len();
        let ns = cfg.seeds.len();
        let gc = |f: &dyn Fn(&super::GapRow) -> f64| r.gaps.iter().map(f).collect::<Vec<f64>>();
        write_array(&g, path, "data_index", &r.gaps.iter().map(|x| di(&x.data)).collect::<Vec<_>>(), &[ng])?;
        write_array(&g, path, "depth", &r.gaps.iter().map(|x| x.depth as u32).collect::<Vec<_>>(), &[ng])?;
        for (name, v) in [
            ("trivial_loss", gc(&|x| x.trivial_loss)),
            ("sgd_lr", gc(&|x| x.sgd.lr)),
            ("adam_lr", gc(&|x| x.adam.lr)),
            ("sgd_mean", gc(&|x| x.sgd.mean)),
            ("sgd_std", gc(&|x| x.sgd.std)),
            ("adam_mean", gc(&|x| x.adam.mean)),
            ("adam_std", gc(&|x| x.adam.std)),
            ("log_gap_mean", gc(&|x| x.log_gap_mean)),
            ("log_gap_std", gc(&|x| x.log_gap_std)),
            ("gap_mean", gc(&|x| x.gap_mean)),
            ("gap_std", gc(&|x| x.gap_std)),
        ] {
            write_array(&g, path, name, &v, &[ng])?;
        }
        let per_seed =
            |f: &dyn Fn(&super::GapRow) -> &Vec<f64>| r.gaps.iter().flat_map(|x| f(x).clone()).collect::<Vec<f64>>();
        write_array(&g, path, "sgd_losses", &per_seed(&|x| &x.sgd.losses), &[ng, ns])?;
        write_array(&g, path, "adam_losses", &per_seed(&|x| &x.adam.losses), &[ng, ns])?;
        write_array(&g, path, "log_gaps", &per_seed(&|x| &x.log_gaps), &[ng, ns])?;

        // Noise.
        let g = ctx.h5("noise", f.create_group("noise"))?;
        for (i, m) in r.noise.iter().enumerate() {
            let name = format!("m{i:03}");
            let mg = ctx.h5(&name, g.create_group(&name))?;
            set_str_attr(&mg, path, "data", &m.data.label())?;
            set_attr(&mg, path, "depth", m.depth as u32)?;
            set_str_attr(&mg, path, "optim", m.optim.name())?;
            set_attr(&mg, path, "lr", m.lr)?;
            set_attr(&mg, path, "step", m.step as u64)?;
            set_attr(&mg, path, "full_grad_norm", m.full_grad_norm)?;
            for (pre, s) in
                [("norm", &m.norm_stats), ("gaussian_norm", &m.gaussian_norm_stats), ("coord", &m.coord_stats)]
            {
                stats_attrs(&mg, path, pre, s)?;
            }
            if let Some(v) = m.top_eigenvalue {
                set_attr(&mg, path, "top_eigenvalue", v)?;
            }
            if let Some(v) = m.directional_smoothness {
                set_attr(&mg, path, "directional_smoothness", v)?;
            }
            write_array(&mg, path, "norms", &m.norms, &[m.norms.len()])?;
            write_array(&mg, path, "gaussian_norms", &m.gaussian_norms, &[m.gaussian_norms.len()])?;
            let c = &m.coords[..m.coords.len().min(MAX_COORDS)];
            write_array(&mg, path, "coords", c, &[c.len()])?;
        }
        Ok::<(), StoreError>(())
    })?;
    Ok(())
}

fn stats_attrs(g: &hdf5::Group, path: &Path, pre: &str, s: &NoiseStats) -> Result<(), StoreError> {
    set_attr(g, path, &format!("{pre}_kurtosis"), s.excess_kurtosis)?;
    set_attr(g, path, &format!("{pre}_hill_alpha"), s.hill.alpha)?;
    set_attr(g, path, &format!("{pre}_hill_se"), s.hill.se)?;
    set_attr(g, path, &format!("{pre}_hill_k"), s.hill.k as u64)?;
    set_attr(g, path, &format!("{pre}_hill_gaussian_alpha"), s.hill_gaussian.alpha)?;
    Ok(())
}

fn out_err(path: &Path, msg: String) -> IclError {
    IclError::Output { path: path.display().to_string(), msg }
}

/// Plots and `index.html` in `dir`.
pub fn write_html(dir: &Path, r: &IclReport) -> Result<(), IclError> {
    let cfg = &r.config;
    let mut page = Page::new("headlab lens: in-context linear regression");
    page.p(&format!(
        "In-context linear regression (Ahn et al. 2023, arXiv 2310.01082): d = {}, n = {} pairs per prompt, w ~ N(0, I), \
         linear transformer Z ← Z + (1/n) Σ_h W_PV Z M (Zᵀ W_KQ Z) with {} head(s), init std {}, {} training prompts, \
         minibatch {}, {} steps per run, seeds {:?}. Loss: mean squared error on {} fresh prompts; the trivial predictor 0 has loss E[y²].",
        cfg.d, cfg.n, cfg.heads, cfg.init_std, cfg.n_train, cfg.batch, cfg.steps, cfg.seeds, cfg.n_eval
    ));
    page.p(
        "Best learning rate per optimizer: lowest geometric-mean final loss over seeds (a diverged run counts as +∞). \
            Gap = log10(L_SGD / L_Adam) per seed at those learning rates; positive means Adam reached a lower loss.",
    );

    // Gap table and plot.
    page.h(2, "Adam versus SGD");
    let rows: Vec<Vec<String>> = r
        .gaps
        .iter()
        .map(|g| {
            vec![
                g.data.label(),
                g.depth.to_string(),
                num(g.trivial_loss),
                num(g.sgd.lr),
                format!("{} ± {}", num(g.sgd.mean), num(g.sgd.std)),
                num(g.adam.lr),
                format!("{} ± {}", num(g.adam.mean), num(g.adam.std)),
                format!("{} ± {}", num(g.log_gap_mean), num(g.log_gap_std)),
                format!("{} ± {}", num(g.gap_mean), num(g.gap_std)),
            ]
        })
        .collect();
    page.table(
        &["data", "depth", "E[y²]", "SGD lr", "SGD loss", "Adam lr", "Adam loss", "log10 gap", "L_SGD − L_Adam"],
        &rows,
    );
    let gap_png = "icl_gap.png";
    let series: Vec<Series> = cfg
        .data
        .iter()
        .map(|d| {
            let g: Vec<_> = r.gaps.iter().filter(|g| g.data == *d).collect();
            Series::line(d.label(), g.iter().map(|g| (g.depth as f64, g.log_gap_mean)).collect())
                .marked()
                .with_err(g.iter().map(|g| g.log_gap_std).collect())
        })
        .collect();
    let panel = Panel {
        title: "Adam-vs-SGD gap (mean ± std over seeds)".into(),
        x_label: "depth (layers)".into(),
        y_label: "log10(L_SGD / L_Adam)".into(),
        series,
        ..Default::default()
    };
    write_png(&dir.join(gap_png), &[panel], 1, (700, 450)).map_err(|e| out_err(&dir.join(gap_png), e))?;
    page.img(gap_png, "Gap between the best SGD and the best Adam loss, by depth and data setting.");

    // Per (data, depth): LR sweep and curves.
    page.h(2, "Learning-rate sweeps and training curves");
    for g in &r.gaps {
        let file = format!("icl_sweep_{}_L{}.png", slug(&g.data.label()), g.depth);
        let mut sweep = Vec::new();
        let mut curves = Vec::new();
        for (o, best) in [(Optim::Sgd, &g.sgd), (Optim::Adam, &g.adam)] {
            let lrs = match o {
                Optim::Sgd => &cfg.sgd_lrs,
                Optim::Adam => &cfg.adam_lrs,
            };
            let mut pts = Vec::new();
            let mut err = Vec::new();
            for &lr in lrs {
                let l: Vec<f64> = r
                    .runs
                    .iter()
                    .filter(|x| x.data == g.data && x.depth == g.depth && x.optim == o && x.lr == lr && !x.diverged)
                    .map(|x| x.final_loss)
                    .collect();
                if !l.is_empty() {
                    let (m, s) = headlab_sim::stats::mean_std(&l, headlab_sim::stats::Spread::Population);
                    pts.push((lr, m));
                    err.push(s);
                }
            }
            sweep.push(Series::line(o.name(), pts).marked().with_err(err));
            // Mean curve at the best LR (runs that did not diverge).
            let sel: Vec<_> = r
                .runs
                .iter()
                .filter(|x| x.data == g.data && x.depth == g.depth && x.optim == o && x.lr == best.lr && !x.diverged)
                .collect();
            if let Some(first) = sel.first() {
                let pts = first
                    .eval_steps
                    .iter()
                    .enumerate()
                    .map(|(i, &s)| {
                        (s.max(1) as f64, sel.iter().map(|x| x.eval_loss[i]).sum::<f64>() / sel.len() as f64)
                    })
                    .collect();
                curves.push(Series::line(format!("{} lr {}", o.name(), num(best.lr)), pts).marked());
            }
        }
        let panels = [
            Panel {
                title: format!("{} depth {}: final loss vs LR", g.data.label(), g.depth),
                x_label: "learning rate".into(),
                y_label: "eval loss".into(),
                log_x: true,
                log_y: true,
                series: sweep,
                ..Default::default()
            },
            Panel {
                title: "eval loss at the best LR (mean over seeds)".into(),
                x_label: "step".into(),
                y_label: "eval loss".into(),
                log_y: true,
                series: curves,
                ..Default::default()
            },
        ];
        write_png(&dir.join(&file), &panels, 2, (1200, 420)).map_err(|e| out_err(&dir.join(&file), e))?;
        page.img(&file, &format!("{} data, depth {}: left, final eval loss against learning rate (mean ± std over seeds, diverged runs left out); right, training curves at each optimizer's best LR.", g.data.label(), g.depth));
    }

    // Noise.
    if !r.noise.is_empty() {
        page.h(2, "Gradient noise");
        page.p(&format!(
            "ξ = minibatch gradient − full training-set gradient, over {} minibatches of {} prompts, along the {} trajectory at its best learning rate. \
             Norm: ‖ξ‖ against norms of Gaussian vectors with the same per-coordinate variances. Coordinates: each coordinate standardized over minibatches, pooled, against N(0,1). \
             Hill α: tail index of the largest k values (± α/√k); the Gaussian reference column is the same estimator on a Gaussian sample of the same size — a light tail reads as a large α that grows with the sample size.",
            cfg.noise.minibatches, cfg.batch, cfg.noise.optimizer.name()
        ));
        let rows: Vec<Vec<String>> = r
            .noise
            .iter()
            .map(|m| {
                let mut v = vec![
                    m.data.label(),
                    m.depth.to_string(),
                    m.step.to_string(),
                    num(m.full_grad_norm),
                    num(m.norm_stats.excess_kurtosis),
                    format!("{} ± {}", num(m.norm_stats.hill.alpha), num(m.norm_stats.hill.se)),
                    num(m.gaussian_norm_stats.hill.alpha),
                    num(m.coord_stats.excess_kurtosis),
                    format!("{} ± {}", num(m.coord_stats.hill.alpha), num(m.coord_stats.hill.se)),
                    num(m.coord_stats.hill_gaussian.alpha),
                ];
                if cfg.noise.curvature {
                    v.push(m.top_eigenvalue.map(num).unwrap_or_default());
                    v.push(m.directional_smoothness.map(num).unwrap_or_default());
                }
                v
            })
            .collect();
        let mut header = vec![
            "data",
            "depth",
            "step",
            "‖g_full‖",
            "norm kurtosis",
            "norm Hill α",
            "Gaussian-ref norm α",
            "coord kurtosis",
            "coord Hill α",
            "Gaussian-ref coord α",
        ];
        if cfg.noise.curvature {
            header.extend(["top Hessian eig", "dir. smoothness"]);
        }
        page.table(&header, &rows);
        for m in &r.noise {
            let file = format!("icl_noise_{}_L{}_s{}.png", slug(&m.data.label()), m.depth, m.step);
            noise_png(&dir.join(&file), m, cfg.noise.bins)?;
            page.img(&file, &format!("{} data, depth {}, step {}: left, histogram of the noise norm against the Gaussian reference; right, standardized coordinates against N(0,1) (log scale).", m.data.label(), m.depth, m.step));
        }
    }
    page.write(&dir.join("index.html"))?;
    Ok(())
}

fn noise_png(path: &Path, m: &NoiseMeasurement, bins: usize) -> Result<(), IclError> {
    let lo = m.norms.iter().chain(&m.gaussian_norms).fold(f64::INFINITY, |a, &b| a.min(b));
    let hi = m.norms.iter().chain(&m.gaussian_norms).fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    let hn = Histogram::new(&m.norms, bins, Some((lo, hi)));
    let hg = Histogram::new(&m.gaussian_norms, bins, Some((lo, hi)));
    let hc = Histogram::new(&m.coords, bins, None);
    let xs = hc.centers();
    let gauss: Vec<(f64, f64)> = xs.iter().map(|&x| (x, gaussian_pdf(x, 0.0, 1.0))).collect();
    let panels = [
        Panel {
            title: format!(
                "‖ξ‖ (kurtosis {}, Hill α {})",
                num(m.norm_stats.excess_kurtosis),
                num(m.norm_stats.hill.alpha)
            ),
            x_label: "noise norm".into(),
            y_label: "density".into(),
            series: vec![
                Series::hist("noise", &hn.edges, &hn.density),
                Series::hist("Gaussian ref", &hg.edges, &hg.density),
            ],
            ..Default::default()
        },
        Panel {
            title: format!(
                "standardized coordinates (kurtosis {}, Hill α {})",
                num(m.coord_stats.excess_kurtosis),
                num(m.coord_stats.hill.alpha)
            ),
            x_label: "noise / its std (per coordinate)".into(),
            y_label: "density".into(),
            log_y: true,
            series: vec![Series::hist("noise", &hc.edges, &hc.density), Series::line("N(0,1)", gauss).overlay()],
            ..Default::default()
        },
    ];
    write_png(path, &panels, 2, (1200, 420)).map_err(|e| out_err(path, e))
}

fn slug(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}
