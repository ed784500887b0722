//! HDF5 output, PNG plots and HTML page of the max-margin toy lens.
//!
//! HDF5 layout (`kind = "lens"`, attribute `lens = "max_margin"`, `config` = TOML):
//! ```text
//! /data/{x [n,T,d], y [n], z [n,d], v [d]} f64, /data/opt [n] u64
//! /svm/p_mm [d], /svm/W_mm [d,d], /svm/v_mm [d] f64 (attrs: <name>_norm, <name>_min_margin)
//! /runs/<p|W|joint>/{step u64, loss, cos, norm, margin_ratio, opt_mass, cos_v?} f64,
//!                   theta, v (final) f64, selected [n] u64; attrs selected_opt_share,
//!                   cos_selected, cos_v_selected (NaN unless other tokens were selected)
//! /path/{radius, norm, cos, loss, opt_mass} f64
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use headlab_store::h5util::{set_attr, set_str_attr, write_array, Ctx};
use headlab_store::{atomic_write, FileKind};

use super::{MaxMarginError, MaxMarginResult, Variant};
use crate::plot::{write_png, xy, LegendPos, Panel, Series, PALETTE};
use headlab_store::html::{escape, Page};

/// Write `max_margin.h5` atomically.
pub fn write_h5(path: &Path, res: &MaxMarginResult) -> Result<(), MaxMarginError> {
    let d = &res.data;
    let config_toml = res.config.to_toml()?;
    atomic_write(path, FileKind::Lens, |f| {
        let ctx = Ctx(path);
        set_str_attr(f, path, "lens", "max_margin")?;
        set_str_attr(
            f,
            path,
            "paper",
            "Tarzanagh et al. 2023, Max-Margin Token Selection in Attention Mechanism, arXiv 2306.13596",
        )?;
        set_str_attr(f, path, "config", &config_toml)?;
        let g = ctx.h5("data", f.create_group("data"))?;
        write_array(&g, path, "x", &d.x, &[d.n, d.t, d.d])?;
        write_array(&g, path, "y", &d.y, &[d.n])?;
        write_array(&g, path, "z", &d.z, &[d.n, d.d])?;
        write_array(&g, path, "v", &d.v, &[d.d])?;
        write_array(&g, path, "opt", &d.opt.iter().map(|&o| o as u64).collect::<Vec<_>>(), &[d.n])?;
        let g = ctx.h5("svm", f.create_group("svm"))?;
        let put = |name: &str, s: &super::SvmSolution, shape: &[usize]| -> Result<(), headlab_store::StoreError> {
            write_array(&g, path, name, &s.x, shape)?;
            set_attr(&g, path, &format!("{name}_norm"), s.norm())?;
            set_attr(&g, path, &format!("{name}_min_margin"), s.min_margin)
        };
        put("p_mm", &res.p_svm, &[d.d])?;
        if let Some(s) = &res.w_svm {
            put("W_mm", s, &[d.d, d.d])?;
        }
        if let Some(s) = &res.v_svm {
            put("v_mm", s, &[d.d])?;
        }
        let runs = ctx.h5("runs", f.create_group("runs"))?;
        for r in &res.runs {
            let g = ctx.h5(r.variant.name(), runs.create_group(r.variant.name()))?;
            let t = &r.trace;
            let e = t.steps.len();
            write_array(&g, path, "step", &t.steps, &[e])?;
            for (name, v) in [
                ("loss", &t.loss),
                ("cos", &t.cos),
                ("norm", &t.norm),
                ("margin_ratio", &t.margin_ratio),
                ("opt_mass", &t.opt_mass),
            ] {
                write_array(&g, path, name, v, &[e])?;
            }
            if !t.cos_v.is_empty() {
                write_array(&g, path, "cos_v", &t.cos_v, &[e])?;
            }
            let shape = if r.variant == Variant::W { vec![d.d, d.d] } else { vec![d.d] };
            write_array(&g, path, "theta", &r.theta, &shape)?;
            write_array(&g, path, "v", &r.v, &[d.d])?;
            set_attr(&g, path, "selected_opt_share", t.selected_opt_share)?;
            write_array(&g, path, "selected", &r.selected.iter().map(|&o| o as u64).collect::<Vec<_>>(), &[d.n])?;
            set_attr(&g, path, "cos_selected", r.cos_selected.unwrap_or(f64::NAN))?;
            set_attr(&g, path, "cos_v_selected", r.cos_v_selected.unwrap_or(f64::NAN))?;
        }
        let g = ctx.h5("path", f.create_group("path"))?;
        let n = res.path.len();
        for (name, v) in [
            ("radius", res.path.iter().map(|p| p.radius).collect::<Vec<_>>()),
            ("norm", res.path.iter().map(|p| p.norm).collect()),
            ("cos", res.path.iter().map(|p| p.cos).collect()),
            ("loss", res.path.iter().map(|p| p.loss).collect()),
            ("opt_mass", res.path.iter().map(|p| p.opt_mass).collect()),
        ] {
            write_array(&g, path, name, &v, &[n])?;
        }
        Ok(())
    })?;
    Ok(())
}

fn plot_err(path: &Path) -> impl Fn(String) -> MaxMarginError + '_ {
    move |msg| MaxMarginError::Plot { path: path.to_path_buf(), msg }
}

/// Write `max_margin_convergence.png` (and `max_margin_path.png` when the path was followed).
pub fn write_plots(dir: &Path, res: &MaxMarginResult) -> Result<Vec<PathBuf>, MaxMarginError> {
    std::fs::create_dir_all(dir).map_err(|source| MaxMarginError::Io { path: dir.to_path_buf(), source })?;
    let mut out = Vec::new();
    let p = dir.join("max_margin_convergence.png");
    let x = |r: &super::VariantRun| -> Vec<f64> { r.trace.steps.iter().map(|&s| (s.max(1)) as f64).collect() };
    let label = |v: Variant| match v {
        Variant::P => "p (v fixed)",
        Variant::W => "W (v fixed)",
        Variant::Joint => "p, trained with v",
    };
    let mut cos = Vec::new();
    let mut margin = Vec::new();
    let mut mass = Vec::new();
    let mut norm = Vec::new();
    for (i, r) in res.runs.iter().enumerate() {
        let c = PALETTE[i % PALETTE.len()];
        // One minus cosine on a log axis shows the slow approach to 1.
        cos.push(Series::line(label(r.variant), xy(&x(r), r.trace.cos.iter().map(|c| 1.0 - c))).colored(c));
        if !r.trace.cos_v.is_empty() {
            cos.push(
                Series::line("v, trained with p, vs v_mm", xy(&x(r), r.trace.cos_v.iter().map(|c| 1.0 - c)))
                    .colored(PALETTE[4]),
            );
        }
        margin.push(Series::line(label(r.variant), xy(&x(r), r.trace.margin_ratio.iter().copied())).colored(c));
        mass.push(Series::line(label(r.variant), xy(&x(r), r.trace.opt_mass.iter().copied())).colored(c));
        norm.push(Series::line(label(r.variant), xy(&x(r), r.trace.norm.iter().copied())).colored(c));
    }
    let panels = [
        Panel {
            title: "1 − cos(trained direction, SVM solution)".into(),
            x_label: "gradient step".into(),
            y_label: "1 − cosine".into(),
            series: cos,
            log_x: true,
            log_y: true,
            legend: LegendPos::LowerLeft,
            ..Default::default()
        },
        Panel {
            title: "Normalized margin / max margin".into(),
            x_label: "gradient step".into(),
            y_label: "min margin · ‖θ_mm‖ / ‖θ‖".into(),
            series: margin,
            log_x: true,
            legend: LegendPos::LowerRight,
            ..Default::default()
        },
        Panel {
            title: "Softmax mass on the optimal token".into(),
            x_label: "gradient step".into(),
            y_label: "mean attention".into(),
            series: mass,
            log_x: true,
            y_range: Some((0.0, 1.02)),
            legend: LegendPos::LowerRight,
            ..Default::default()
        },
        Panel {
            title: "Parameter norm".into(),
            x_label: "gradient step".into(),
            y_label: "‖θ‖".into(),
            series: norm,
            log_x: true,
            log_y: true,
            legend: LegendPos::UpperLeft,
            ..Default::default()
        },
    ];
    write_png(&p, &panels, 2, (1200, 850)).map_err(plot_err(&p))?;
    out.push(p);
    if !res.path.is_empty() {
        let p = dir.join("max_margin_path.png");
        let r: Vec<f64> = res.path.iter().map(|q| q.radius).collect();
        let panels = [
            Panel {
                title: "Regularization path: cos(p̄(R), p_mm)".into(),
                x_label: "radius R".into(),
                y_label: "cosine".into(),
                series: vec![Series::line("cos", xy(&r, res.path.iter().map(|q| q.cos)))],
                log_x: true,
                legend: LegendPos::None,
                ..Default::default()
            },
            Panel {
                title: "Regularization path: loss and optimal-token mass".into(),
                x_label: "radius R".into(),
                y_label: "value".into(),
                series: vec![
                    Series::line("loss", xy(&r, res.path.iter().map(|q| q.loss))).colored(PALETTE[1]),
                    Series::line("optimal-token mass", xy(&r, res.path.iter().map(|q| q.opt_mass))).colored(PALETTE[2]),
                ],
                log_x: true,
                legend: LegendPos::UpperLeft,
                ..Default::default()
            },
        ];
        write_png(&p, &panels, 2, (1200, 450)).map_err(plot_err(&p))?;
        out.push(p);
    }
    Ok(out)
}

/// Write `index.html` into `dir`.
pub fn write_page(
    dir: &Path,
    res: &MaxMarginResult,
    plots: &[PathBuf],
    h5_name: &str,
) -> Result<PathBuf, MaxMarginError> {
    let c = &res.config;
    let d = &res.data;
    let mut h = String::new();
    let _ = write!(
        h,
        "<p>Model <code>f(X) = vᵀXᵀ softmax(X p)</code> (or <code>softmax(X W z)</code>) on {n} examples of {t} tokens in \
         R<sup>{dd}</sup>, labels ±1; the designated token of each example scores {os} (γ = Y·vᵀx), the others {ot}{sp}. \
         {gd} gradient descent, step {lr}, {st} steps, {loss:?} loss. The SVMs are solved with the Clarabel QP solver. \
         Data: <code>{h5_name}</code>.</p>\
         <p>att-SVM: ‖p_mm‖ = {pn:.4}, {ns} support constraints of {nc}, smallest margin {pm:.6}.</p>",
        n = d.n,
        t = d.t,
        dd = d.d,
        os = c.data.opt_score,
        ot = c.data.other_score,
        sp = if c.data.score_spread > 0.0 { format!(" ± {}", c.data.score_spread) } else { String::new() },
        gd = if c.train.normalized { "Normalized" } else { "Plain" },
        lr = c.train.lr,
        st = c.train.steps,
        loss = c.train.loss,
        pn = res.p_svm.norm(),
        ns = res.p_svm.support.len(),
        nc = d.n * (d.t - 1),
        pm = res.p_svm.min_margin,
    );
    h.push_str("<table><tr><th>trained</th><th>final cos with SVM</th><th>final margin ratio</th><th>final optimal-token mass</th><th>final ‖θ‖</th><th>argmax attention = designated</th><th>cos(v, v_mm)</th><th>cos with SVM of the selected tokens (θ; v)</th></tr>");
    for r in &res.runs {
        let t = &r.trace;
        let last = |v: &[f64]| v.last().copied().unwrap_or(f64::NAN);
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{:.5}</td><td>{:.4}</td><td>{:.4}</td><td>{:.3}</td><td>{:.0}%</td><td>{}</td><td>{}</td></tr>",
            r.variant.name(),
            last(&t.cos),
            last(&t.margin_ratio),
            last(&t.opt_mass),
            last(&t.norm),
            100.0 * t.selected_opt_share,
            if t.cos_v.is_empty() { "—".to_string() } else { format!("{:.4}", last(&t.cos_v)) },
            match (r.cos_selected, r.cos_v_selected) {
                (Some(a), Some(b)) => format!("{a:.4}; {b:.4}"),
                (Some(a), None) => format!("{a:.4}"),
                _ => "—".to_string(),
            }
        );
    }
    h.push_str("</table><p>Joint training moves v too, so the scores change and attention may settle on other tokens than the designated ones; the paper's prediction is then convergence to the SVM of the tokens it selected (last column).</p>");
    if !res.path.is_empty() {
        h.push_str("<h2>Regularization path</h2><table><tr><th>R</th><th>‖p̄(R)‖</th><th>cos(p̄(R), p_mm)</th><th>loss</th><th>optimal-token mass</th></tr>");
        for q in &res.path {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{:.3}</td><td>{:.5}</td><td>{:.4}</td><td>{:.4}</td></tr>",
                q.radius, q.norm, q.cos, q.loss, q.opt_mass
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
    let mut page = Page::new("headlab lens: max-margin token selection")
        .heading("Max-margin token selection (Tarzanagh et al. 2023)");
    page.raw(&h);
    let path = dir.join("index.html");
    page.write(&path)?;
    Ok(path)
}
