//! HDF5 output, PNG plots and the HTML page of the scan-and-snap toy lens.
//!
//! HDF5 layout (`kind = "lens"`, attribute `lens = "scan_snap"`, `config` = TOML):
//! ```text
//! /vocab/kind [V] i32 (0 query, 1 distinctive, 2 common), /vocab/class [V] i32 (-1 if none)
//! /main/{step u64, train_loss, eval_loss, eval_acc, entropy, mass_distinct,
//!        mass_common, mass_self, rel_change} [E] f32, /main/logits [E, Q, V] f32
//!        attributes snap_step, steepest_drop_step (i64, -1 = none)
//! /lr_sweep/{ratio, lr_attention, lr_decoder} [R] f64, snap_step [R] i64,
//!        step [E'] u64, entropy / mass_distinct / rel_change [R, E'] f32, logits [R, E', Q, V] f32
//! /data_sweep/{size u64, seed u64, lock_rate, mass_common, eval_acc,
//!        purity_logit_corr, mean_common_purity} [S] f32
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use headlab_store::h5util::{set_attr, set_str_attr, write_array};
use headlab_store::{atomic_write, FileKind, StoreError};

use super::{ScanSnapError, ScanSnapResult, TokenKind, Trace};
use crate::plot::{write_png, xy, LegendPos, Panel, Series, BLACK_ISH, PALETTE};
use headlab_store::html::{escape, Page};

fn opt(v: Option<u64>) -> i64 {
    v.map(|s| s as i64).unwrap_or(-1)
}

/// Write `scan_snap.h5` atomically.
pub fn write_h5(path: &Path, res: &ScanSnapResult) -> Result<(), ScanSnapError> {
    let config_toml = res.config.to_toml()?;
    atomic_write(path, FileKind::Lens, |f| {
        set_str_attr(f, path, "lens", "scan_snap")?;
        set_str_attr(f, path, "paper", "Tian et al. 2023, Scan and Snap, arXiv 2305.16380")?;
        set_str_attr(f, path, "config", &config_toml)?;
        let ctx = headlab_store::h5util::Ctx(path);
        let g = ctx.h5("vocab", f.create_group("vocab"))?;
        let kinds: Vec<i32> = res.kinds.iter().map(|k| k.code()).collect();
        let classes: Vec<i32> =
            res.kinds.iter().map(|k| if let TokenKind::Distinct(c) = k { *c as i32 } else { -1 }).collect();
        write_array(&g, path, "kind", &kinds, &[kinds.len()])?;
        write_array(&g, path, "class", &classes, &[classes.len()])?;
        let g = ctx.h5("main", f.create_group("main"))?;
        write_trace(&g, path, &res.main, res.config.task.n_queries)?;
        let g = ctx.h5("lr_sweep", f.create_group("lr_sweep"))?;
        let r = res.lr_sweep.len();
        write_array(&g, path, "ratio", &res.lr_sweep.iter().map(|p| p.ratio).collect::<Vec<_>>(), &[r])?;
        write_array(&g, path, "lr_attention", &res.lr_sweep.iter().map(|p| p.lr_attention).collect::<Vec<_>>(), &[r])?;
        write_array(&g, path, "lr_decoder", &res.lr_sweep.iter().map(|p| p.lr_decoder).collect::<Vec<_>>(), &[r])?;
        write_array(
            &g,
            path,
            "snap_step",
            &res.lr_sweep.iter().map(|p| opt(p.trace.snap_step)).collect::<Vec<_>>(),
            &[r],
        )?;
        if let Some(first) = res.lr_sweep.first() {
            let e = first.trace.steps.len();
            write_array(&g, path, "step", &first.trace.steps, &[e])?;
            for (name, get) in [
                ("entropy", (|t: &Trace| t.entropy.clone()) as fn(&Trace) -> Vec<f32>),
                ("mass_distinct", |t: &Trace| t.mass_distinct.clone()),
                ("rel_change", |t: &Trace| t.rel_change.clone()),
            ] {
                let flat: Vec<f32> = res.lr_sweep.iter().flat_map(|p| get(&p.trace)).collect();
                write_array(&g, path, name, &flat, &[r, e])?;
            }
            let nq = res.config.task.n_queries;
            let flat: Vec<f32> = res.lr_sweep.iter().flat_map(|p| p.trace.logits.iter().copied()).collect();
            write_array(&g, path, "logits", &flat, &[r, e, nq, first.trace.dim / nq.max(1)])?;
        }
        let g = ctx.h5("data_sweep", f.create_group("data_sweep"))?;
        let s = res.data_sweep.len();
        let d = &res.data_sweep;
        write_array(&g, path, "size", &d.iter().map(|p| p.size as u64).collect::<Vec<_>>(), &[s])?;
        write_array(&g, path, "seed", &d.iter().map(|p| p.seed).collect::<Vec<_>>(), &[s])?;
        for (name, vals) in [
            ("lock_rate", d.iter().map(|p| p.lock_rate).collect::<Vec<_>>()),
            ("mass_common", d.iter().map(|p| p.mass_common).collect()),
            ("eval_acc", d.iter().map(|p| p.eval_acc).collect()),
            ("purity_logit_corr", d.iter().map(|p| p.purity_logit_corr).collect()),
            ("mean_common_purity", d.iter().map(|p| p.mean_common_purity).collect()),
        ] {
            write_array(&g, path, name, &vals, &[s])?;
        }
        Ok(())
    })?;
    Ok(())
}

fn write_trace(g: &hdf5::Group, path: &Path, t: &Trace, nq: usize) -> Result<(), StoreError> {
    let e = t.steps.len();
    write_array(g, path, "step", &t.steps, &[e])?;
    for (name, v) in [
        ("train_loss", &t.train_loss),
        ("eval_loss", &t.eval_loss),
        ("eval_acc", &t.eval_acc),
        ("entropy", &t.entropy),
        ("mass_distinct", &t.mass_distinct),
        ("mass_common", &t.mass_common),
        ("mass_self", &t.mass_self),
        ("rel_change", &t.rel_change),
    ] {
        write_array(g, path, name, v, &[e])?;
    }
    write_array(g, path, "logits", &t.logits, &[e, nq, t.dim / nq.max(1)])?;
    set_attr(g, path, "snap_step", opt(t.snap_step))?;
    set_attr(g, path, "steepest_drop_step", opt(t.steepest_drop_step))?;
    Ok(())
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn steps(t: &Trace) -> Vec<f64> {
    t.steps.iter().map(|&s| s as f64).collect()
}

fn plot_err(path: &Path) -> impl Fn(String) -> ScanSnapError + '_ {
    move |msg| ScanSnapError::Plot { path: path.to_path_buf(), msg }
}

/// Write the PNGs into `dir`; returns their paths (file names start with `scan_snap_`).
pub fn write_plots(dir: &Path, res: &ScanSnapResult) -> Result<Vec<PathBuf>, ScanSnapError> {
    std::fs::create_dir_all(dir).map_err(|source| ScanSnapError::Io { path: dir.to_path_buf(), source })?;
    let mut out = Vec::new();
    let m = &res.main;
    let snap: Vec<(f64, String)> =
        m.snap_step.map(|s| vec![(s as f64, format!("snap (step {s})"))]).unwrap_or_default();
    let x = steps(m);

    // 1. Attention over training.
    let p = dir.join("scan_snap_attention.png");
    let seq = res.config.task.context_len as f64 + 1.0;
    let panels = [
        Panel {
            title: "Query attention mass".into(),
            x_label: "training step".into(),
            y_label: "mean attention mass".into(),
            series: vec![
                Series::line("distinctive", xy(&x, f64s(&m.mass_distinct))),
                Series::line("common", xy(&x, f64s(&m.mass_common))),
                Series::line("query (self)", xy(&x, f64s(&m.mass_self))).colored(PALETTE[7]),
            ],
            vlines: snap.clone(),
            y_range: Some((0.0, 1.0)),
            ..Default::default()
        },
        Panel {
            title: format!("Attention entropy (uniform = ln {seq} = {:.2})", seq.ln()),
            x_label: "training step".into(),
            y_label: "entropy (nats)".into(),
            series: vec![Series::line("entropy", xy(&x, f64s(&m.entropy))).colored(PALETTE[4])],
            vlines: snap.clone(),
            ..Default::default()
        },
        Panel {
            title: "Eval loss".into(),
            x_label: "training step".into(),
            y_label: "cross-entropy".into(),
            series: vec![Series::line("eval loss", xy(&x, f64s(&m.eval_loss))).colored(PALETTE[2])],
            log_y: true,
            vlines: snap.clone(),
            ..Default::default()
        },
        Panel {
            title: format!("Relative logit change over {} steps", res.config.freeze.window),
            x_label: "training step".into(),
            y_label: scale_label(res.config.freeze.scale).into(),
            series: vec![
                Series::line("relative change", xy(&x, f64s(&m.rel_change))).colored(PALETTE[3]),
                Series::line("threshold", xy(&x, vec![res.config.freeze.threshold as f64; x.len()]))
                    .colored(PALETTE[7]),
            ],
            log_y: true,
            vlines: snap.clone(),
            ..Default::default()
        },
    ];
    write_png(&p, &panels, 2, (1200, 800)).map_err(plot_err(&p))?;
    out.push(p);

    // 2. Per-token logits of the first query.
    let p = dir.join("scan_snap_logits.png");
    let v = res.kinds.len();
    let mut series = Vec::new();
    let mut named = [false; 3];
    for (tok, kind) in res.kinds.iter().enumerate() {
        let (c, name) = match kind {
            TokenKind::Distinct(_) => (0, "distinctive tokens"),
            TokenKind::Common => (1, "common tokens"),
            TokenKind::Query(0) => (2, "query token"),
            TokenKind::Query(_) => continue,
        };
        let y: Vec<f64> = (0..m.steps.len()).map(|e| m.logits[e * m.dim + tok] as f64).collect();
        let label = if named[c] { String::new() } else { name.to_string() };
        named[c] = true;
        series.push(Series::line(label, xy(&x, y)).colored([PALETTE[0], PALETTE[1], PALETTE[7]][c]).thin());
    }
    let panels = [Panel {
        title: format!("Attention logits of query 0 against each of the {v} tokens (centred)"),
        x_label: "training step".into(),
        y_label: "logit".into(),
        series,
        vlines: snap.clone(),
        ..Default::default()
    }];
    write_png(&p, &panels, 1, (1000, 600)).map_err(plot_err(&p))?;
    out.push(p);

    // 3. Learning-rate ratio sweep.
    if !res.lr_sweep.is_empty() {
        let p = dir.join("scan_snap_lr_ratio.png");
        let ratios: Vec<f64> = res.lr_sweep.iter().map(|q| q.ratio).collect();
        let snaps: Vec<f64> =
            res.lr_sweep.iter().map(|q| q.trace.snap_step.map(|s| s as f64).unwrap_or(f64::NAN)).collect();
        let ent: Vec<f64> = res.lr_sweep.iter().map(|q| Trace::last(&q.trace.entropy) as f64).collect();
        let md: Vec<f64> = res.lr_sweep.iter().map(|q| Trace::last(&q.trace.mass_distinct) as f64).collect();
        let curves: Vec<Series> = res
            .lr_sweep
            .iter()
            .map(|q| Series::line(format!("ratio {}", q.ratio), xy(&steps(&q.trace), f64s(&q.trace.entropy))))
            .collect();
        let mut rc: Vec<Series> = res
            .lr_sweep
            .iter()
            .map(|q| Series::line(format!("ratio {}", q.ratio), xy(&steps(&q.trace), f64s(&q.trace.rel_change))))
            .collect();
        let xs0 = steps(&res.lr_sweep[0].trace);
        rc.push(
            Series::line("threshold", xy(&xs0, vec![res.config.freeze.threshold as f64; xs0.len()]))
                .colored(BLACK_ISH)
                .thin(),
        );
        let panels = [
            Panel {
                title: "Snap step vs decoder/attention LR ratio".into(),
                x_label: "lr_decoder / lr_attention".into(),
                y_label: "snap step".into(),
                series: vec![Series::dots("snap step", xy(&ratios, snaps))],
                log_x: true,
                legend: LegendPos::None,
                ..Default::default()
            },
            Panel {
                title: "Final attention vs LR ratio".into(),
                x_label: "lr_decoder / lr_attention".into(),
                y_label: "value".into(),
                series: vec![
                    Series::dots("final entropy (nats)", xy(&ratios, ent)).colored(PALETTE[4]),
                    Series::dots("final distinctive mass", xy(&ratios, md)).colored(PALETTE[0]),
                ],
                log_x: true,
                legend: LegendPos::LowerLeft,
                ..Default::default()
            },
            Panel {
                title: "Entropy over training, one curve per ratio".into(),
                x_label: "training step".into(),
                y_label: "entropy (nats)".into(),
                series: curves,
                ..Default::default()
            },
            Panel {
                title: format!("Relative logit change over {} steps", res.config.freeze.window),
                x_label: "training step".into(),
                y_label: scale_label(res.config.freeze.scale).into(),
                series: rc,
                log_y: true,
                ..Default::default()
            },
        ];
        write_png(&p, &panels, 2, (1300, 900)).map_err(plot_err(&p))?;
        out.push(p);
    }

    // 4. Dataset-size sweep.
    if !res.data_sweep.is_empty() {
        let p = dir.join("scan_snap_dataset.png");
        // Categorical axis: finite sizes in increasing order, then ∞.
        let mut sizes = dataset_sizes(res);
        if sizes.first() == Some(&0) {
            sizes.remove(0);
            sizes.push(0);
        }
        let ticks: Vec<String> = sizes.iter().map(|&s| if s == 0 { "∞".to_string() } else { s.to_string() }).collect();
        let xs = |s: usize| sizes.iter().position(|&q| q == s).unwrap_or(0) as f64;
        let pick = |f: fn(&super::DataPoint) -> f32| -> (Vec<f64>, Vec<f64>) {
            res.data_sweep.iter().map(|d| (xs(d.size), f(d) as f64)).unzip()
        };
        let mean = |f: fn(&super::DataPoint) -> f32| -> (Vec<f64>, Vec<f64>) {
            sizes
                .iter()
                .map(|&s| {
                    let v: Vec<f64> = res
                        .data_sweep
                        .iter()
                        .filter(|d| d.size == s)
                        .map(|d| f(d) as f64)
                        .filter(|x| x.is_finite())
                        .collect();
                    (xs(s), if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 })
                })
                .unzip()
        };
        let (lx, ly) = pick(|d| d.lock_rate);
        let (mx, my) = mean(|d| d.lock_rate);
        let (cx, cy) = pick(|d| d.mass_common);
        let (qx, qy) = pick(|d| d.purity_logit_corr);
        let title_inf = "training-set size (sequences)".to_string();
        let (mcx, mcy) = mean(|d| d.mass_common);
        let (mqx, mqy) = mean(|d| d.purity_logit_corr);
        let panels = [
            Panel {
                title: "Attention locked onto accidental co-occurrences".into(),
                x_label: title_inf.clone(),
                y_label: "share of top logits held by common tokens".into(),
                series: vec![
                    Series::dots("per seed", xy(&lx, ly)).colored(PALETTE[1]),
                    Series::line("mean", xy(&mx, my)).colored(PALETTE[0]),
                ],
                x_ticks: Some(ticks.clone()),
                y_range: Some((-0.05, 1.05)),
                ..Default::default()
            },
            Panel {
                title: "Final attention mass on common tokens".into(),
                x_label: title_inf.clone(),
                y_label: "mass".into(),
                series: vec![
                    Series::dots("per seed", xy(&cx, cy)).colored(PALETTE[1]),
                    Series::line("mean", xy(&mcx, mcy)).colored(PALETTE[0]),
                ],
                x_ticks: Some(ticks.clone()),
                ..Default::default()
            },
            Panel {
                title: "corr(train-set class purity, logit) over common tokens".into(),
                x_label: title_inf,
                y_label: "Pearson r".into(),
                series: vec![
                    Series::dots("per seed", xy(&qx, qy)).colored(PALETTE[2]),
                    Series::line("mean", xy(&mqx, mqy)).colored(PALETTE[0]),
                ],
                x_ticks: Some(ticks),
                y_range: Some((-1.05, 1.05)),
                ..Default::default()
            },
        ];
        write_png(&p, &panels, 3, (1500, 450)).map_err(plot_err(&p))?;
        out.push(p);
    }
    Ok(out)
}

fn scale_label(s: super::FreezeScale) -> &'static str {
    match s {
        super::FreezeScale::Rms => "RMS logit change",
        super::FreezeScale::Displacement => "‖Δz‖ / ‖z − z(0)‖",
        super::FreezeScale::Norm => "‖Δz‖ / ‖z‖",
    }
}

fn dataset_sizes(res: &ScanSnapResult) -> Vec<usize> {
    let mut s: Vec<usize> = res.data_sweep.iter().map(|d| d.size).collect();
    s.sort_unstable();
    s.dedup();
    s
}

fn fmt_opt(v: Option<u64>) -> String {
    v.map(|s| s.to_string()).unwrap_or_else(|| "—".into())
}

/// Write `index.html` into `dir`, showing the plots (file names relative to `dir`).
pub fn write_page(
    dir: &Path,
    res: &ScanSnapResult,
    plots: &[PathBuf],
    h5_name: &str,
) -> Result<PathBuf, ScanSnapError> {
    let m = &res.main;
    let c = &res.config;
    let mut h = String::new();
    let _ = write!(
        h,
        "<p>Toy next-token task: {k} classes, {d} distinctive tokens per class, {nc} common tokens, {nq} query token(s), \
         context of {l} tokens, each distinctive with probability {p}. One-layer single-head transformer without positional \
         encoding, plain SGD with learning rate {la} for W_Q, W_K (attention) and {ld} for W_V, W_out (decoder), {st} steps. \
         Data: <code>{h5_name}</code>.</p>\
         <p><b>Scan:</b> the query's attention moves from uniform to the distinctive tokens: entropy {e0:.3} → {e1:.3} nats, \
         distinctive mass {d0:.3} → {d1:.3}, common mass {c0:.3} → {c1:.3}. \
         <b>Snap:</b> the attention logits freeze (change over {w} steps, scale <code>{sc:?}</code>, stays below {thr}) at step {snap}; \
         the entropy falls fastest around step {drop}.</p>",
        k = c.task.n_classes,
        d = c.task.distinct_per_class,
        nc = c.task.n_common,
        nq = c.task.n_queries,
        l = c.task.context_len,
        p = c.task.distinct_prob,
        la = c.train.lr_attention,
        ld = c.train.lr_decoder,
        st = c.train.steps,
        e0 = m.entropy[0],
        e1 = Trace::last(&m.entropy),
        d0 = m.mass_distinct[0],
        d1 = Trace::last(&m.mass_distinct),
        c0 = m.mass_common[0],
        c1 = Trace::last(&m.mass_common),
        w = c.freeze.window,
        thr = c.freeze.threshold,
        sc = c.freeze.scale,
        snap = fmt_opt(m.snap_step),
        drop = fmt_opt(m.steepest_drop_step),
    );
    if !res.lr_sweep.is_empty() {
        h.push_str("<h2>Learning-rate ratio</h2><p>The paper predicts that a faster decoder snaps the attention earlier and leaves it less sparse.</p><table><tr><th>lr_decoder / lr_attention</th><th>snap step</th><th>final entropy</th><th>final distinctive mass</th><th>final eval accuracy</th></tr>");
        for q in &res.lr_sweep {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr>",
                q.ratio,
                fmt_opt(q.trace.snap_step),
                Trace::last(&q.trace.entropy),
                Trace::last(&q.trace.mass_distinct),
                Trace::last(&q.trace.eval_acc)
            );
        }
        h.push_str("</table>");
    }
    if !res.data_sweep.is_empty() {
        h.push_str("<h2>Small datasets</h2><p>A common token that, by chance, occurs mostly with one class in a small training set looks distinctive; \
            <i>lock rate</i> is the share of the attention's top choices (the tokens with the highest final logits, as many as there are distinctive tokens) taken by common tokens; <i>purity</i> is the largest share of a common token's training-set occurrences that come with one class (1/K when balanced).</p>\
            <table><tr><th>training-set size</th><th>seeds</th><th>mean lock rate</th><th>mean common mass</th><th>mean common-token purity</th><th>mean corr(purity, logit)</th><th>mean eval accuracy</th></tr>");
        for s in dataset_sizes(res) {
            let pts: Vec<_> = res.data_sweep.iter().filter(|d| d.size == s).collect();
            let mean = |f: &dyn Fn(&super::DataPoint) -> f32| {
                let v: Vec<f32> = pts.iter().map(|d| f(d)).filter(|x| x.is_finite()).collect();
                if v.is_empty() {
                    "—".to_string()
                } else {
                    format!("{:.3}", v.iter().sum::<f32>() / v.len() as f32)
                }
            };
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                if s == 0 { "∞".to_string() } else { s.to_string() },
                pts.len(),
                mean(&|d| d.lock_rate),
                mean(&|d| d.mass_common),
                mean(&|d| d.mean_common_purity),
                mean(&|d| d.purity_logit_corr),
                mean(&|d| d.eval_acc)
            );
        }
        h.push_str("</table>");
    }
    h.push_str("<h2>Plots</h2>");
    for p in plots {
        let name = p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let _ = write!(h, "<p><img src=\"{n}\" alt=\"{n}\"></p>", n = escape(&name));
    }
    let _ = write!(h, "<h2>Configuration</h2><pre>{}</pre>", escape(&c.to_toml()?));
    let mut page = Page::new("headlab lens: scan and snap").heading("Scan and snap (Tian et al. 2023)");
    page.raw(&h);
    let path = dir.join("index.html");
    page.write(&path)?;
    Ok(path)
}
