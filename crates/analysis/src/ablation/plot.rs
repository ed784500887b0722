//! Figures of `RUN/ablation.h5`: the effect of every ablation at the final
//! checkpoint (contact vs free particles, with bootstrap intervals), the
//! effect over training beside the collision score, and activation patching.

use std::path::Path;

use headlab_store::analysis::Analysis;
use plotters::prelude::*;

use super::{Ablation, Est, Kind};
use crate::plot::{legend, StepAxis, PANEL};

fn perr(path: &Path) -> impl Fn(String) -> crate::AnalysisError + '_ {
    move |msg| crate::AnalysisError::Run { path: path.to_path_buf(), msg: format!("cannot draw plot: {msg}") }
}

const RED: RGBColor = RGBColor(214, 39, 40);
const BLUE: RGBColor = RGBColor(31, 119, 180);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const PURPLE: RGBColor = RGBColor(148, 103, 189);

/// Log-scale y range covering every finite value and bound, and 1.
fn log_range(ests: &[Est]) -> (f64, f64) {
    let mut lo: f64 = 1.0;
    let mut hi: f64 = 1.0;
    for e in ests {
        for v in [e.value, e.lo, e.hi] {
            if v.is_finite() && v > 0.0 {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
    }
    (lo / 1.3, hi * 1.3)
}

/// The label of category axis position `x`: the name at a whole index, else none.
fn category(names: &[String], x: f64) -> String {
    let r = x.round();
    if (x - r).abs() < 1e-6 && r >= 0.0 {
        names.get(r as usize).cloned().unwrap_or_default()
    } else {
        String::new()
    }
}

/// Points with 95 % interval whiskers, at x offset `dx` from each category.
/// Points, and one vertical segment per interval.
type Whiskers = (Vec<(f64, f64)>, Vec<Vec<(f64, f64)>>);

fn whiskers(ests: &[Est], dx: f64, y0: f64) -> Whiskers {
    let mut pts = Vec::new();
    let mut bars = Vec::new();
    for (i, e) in ests.iter().enumerate() {
        let x = i as f64 + dx;
        if e.value.is_finite() && e.value > 0.0 {
            pts.push((x, e.value));
        }
        if e.lo.is_finite() && e.hi.is_finite() {
            bars.push(vec![(x, e.lo.max(y0)), (x, e.hi)]);
        }
    }
    (pts, bars)
}

/// Per kind a panel: for every target, the ablated/intact one-step error of
/// particles in contact (red) and of free particles (blue), log scale, at step index `s`.
pub fn effects_figure(path: &Path, a: &Ablation, s: usize) -> crate::Result<()> {
    // Drawn beside the target and renamed over it: never a truncated PNG.
    headlab_store::with_atomic_path(path, |tmp| effects_figure_at(tmp, path, a, s))
}

/// [`effects_figure`] drawn into `tmp`; errors name `path`.
fn effects_figure_at(tmp: &Path, path: &Path, a: &Ablation, s: usize) -> crate::Result<()> {
    let e = perr(path);
    let nk = a.kinds.len().max(1);
    let rows = nk.div_ceil(2);
    let root = BitMapBackend::new(tmp, (1300, 330 * rows as u32 + 60)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let step = a.steps.get(s).copied().unwrap_or(0);
    let root = root
        .titled(
            &format!(
                "One-step error, ablated / intact, at step {step} (95 % cluster-bootstrap intervals over {} {})",
                a.n_clusters, a.cluster_unit
            ),
            ("sans-serif", 20),
        )
        .map_err(|x| e(x.to_string()))?;
    let panels = root.split_evenly((rows, 2));
    let names: Vec<String> = a.targets.iter().map(|t| t.name.clone()).collect();
    for (k, (area, kind)) in panels.iter().zip(&a.kinds).enumerate() {
        let c: Vec<Est> = (0..a.targets.len()).map(|t| a.onestep_est("contact_ratio", s, t, k)).collect();
        let f: Vec<Est> = (0..a.targets.len()).map(|t| a.onestep_est("free_ratio", s, t, k)).collect();
        let all: Vec<Est> = c.iter().chain(&f).copied().collect();
        let (y0, y1) = log_range(&all);
        let nt = a.targets.len() as f64;
        let mut ch = ChartBuilder::on(area)
            .margin(8)
            .caption(kind.name(), ("sans-serif", 17))
            .x_label_area_size(30)
            .y_label_area_size(55)
            .build_cartesian_2d(-0.6f64..nt - 0.4, (y0..y1).log_scale())
            .map_err(|x| e(x.to_string()))?;
        ch.configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE)
            .x_labels(names.len() * 2 + 1)
            .x_label_formatter(&|x| category(&names, *x))
            .y_desc("ablated / intact MSE")
            .y_label_formatter(&|y| format!("{y:.2}"))
            .draw()
            .map_err(|x| e(x.to_string()))?;
        ch.draw_series(LineSeries::new(vec![(-0.6, 1.0), (nt - 0.4, 1.0)], BLACK.mix(0.4)))
            .map_err(|x| e(x.to_string()))?;
        for (ests, dx, col, label) in [(&c, -0.12, RED, "particles in contact"), (&f, 0.12, BLUE, "free particles")] {
            let (pts, bars) = whiskers(ests, dx, y0);
            for b in bars {
                ch.draw_series(LineSeries::new(b, col.stroke_width(2))).map_err(|x| e(x.to_string()))?;
            }
            ch.draw_series(pts.iter().map(|&p| Circle::new(p, 4, col.filled())))
                .map_err(|x| e(x.to_string()))?
                .label(label)
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, col.filled()));
        }
        if k == 0 {
            legend(&mut ch, SeriesLabelPosition::UpperLeft).draw().map_err(|x| e(x.to_string()))?;
        }
    }
    root.present().map_err(|x| e(x.to_string()))?;
    Ok(())
}

/// Over training, for each target in `targets` (indices): the collision
/// score (from analysis.h5, top panel, heads only) and the contact-particle
/// error ratio under zero and off-self ablation (middle), and the
/// contact/free selectivity of the off-self ablation (bottom). Log step axis.
pub fn training_figure(
    path: &Path,
    a: &Ablation,
    an: &Analysis,
    score_series: &str,
    targets: &[usize],
) -> crate::Result<()> {
    headlab_store::with_atomic_path(path, |tmp| training_figure_at(tmp, path, a, an, score_series, targets))
}

/// [`training_figure`] drawn into `tmp`; errors name `path`.
fn training_figure_at(
    tmp: &Path,
    path: &Path,
    a: &Ablation,
    an: &Analysis,
    score_series: &str,
    targets: &[usize],
) -> crate::Result<()> {
    let e = perr(path);
    let root = BitMapBackend::new(tmp, (1000, 1000)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let root = root
        .titled("When do the heads start to matter? (ablation effect vs training step)", ("sans-serif", 20))
        .map_err(|x| e(x.to_string()))?;
    let panels = root.split_evenly((3, 1));
    let last = a.steps.last().copied().unwrap_or(1).max(an.steps.last().copied().unwrap_or(1));
    let xmax = last as f64 * 1.3 + 2.0;
    let palette =
        [RED, BLUE, GREEN, ORANGE, PURPLE, RGBColor(140, 86, 75), RGBColor(227, 119, 194), RGBColor(127, 127, 127)];
    let kz = a.kind_index(Kind::Zero);
    let ko = a.kind_index(Kind::OffSelf);
    // Panel specs: (label, series per target: Vec<(name, pts, lo/hi bars)>, log y).
    type Curve = (String, Vec<(f64, f64)>, Vec<Vec<(f64, f64)>>, RGBColor, bool);
    let mut specs: Vec<(String, Vec<Curve>, bool)> = Vec::new();
    let mut score_curves = Vec::new();
    for (m, &t) in targets.iter().enumerate() {
        let tg = &a.targets[t];
        if let [(l, h)] = tg.heads[..] {
            let v = an.head_series(score_series, l, h).unwrap_or_default();
            let p: Vec<(f64, f64)> =
                an.steps.iter().zip(&v).filter(|x| x.1.is_finite()).map(|(&s, &y)| (s as f64 + 1.0, y)).collect();
            score_curves.push((tg.name.clone(), p, vec![], palette[m % palette.len()], false));
        }
    }
    specs.push((format!("collision score ({score_series})"), score_curves, false));
    let series = |metric: &str, k: Option<usize>, dashed: bool, suffix: &str| -> Vec<Curve> {
        let Some(k) = k else { return vec![] };
        targets
            .iter()
            .enumerate()
            .map(|(m, &t)| {
                let mut pts = Vec::new();
                let mut bars = Vec::new();
                for (s, &st) in a.steps.iter().enumerate() {
                    let est = a.onestep_est(metric, s, t, k);
                    let x = st as f64 + 1.0;
                    if est.value.is_finite() && est.value > 0.0 {
                        pts.push((x, est.value));
                    }
                    if est.lo.is_finite() && est.hi.is_finite() && est.lo > 0.0 {
                        bars.push(vec![(x, est.lo), (x, est.hi)]);
                    }
                }
                (format!("{} {suffix}", a.targets[t].name), pts, bars, palette[m % palette.len()], dashed)
            })
            .collect()
    };
    let mut mid = series("contact_ratio", ko, false, "off-self");
    mid.extend(series("contact_ratio", kz, true, "zero (dashed)"));
    specs.push(("contact-particle error, ablated / intact".into(), mid, true));
    specs.push((
        "selectivity (contact ratio / free ratio), off-self".into(),
        series("selectivity", ko, false, "off-self"),
        true,
    ));
    for (area, (label, curves, logy)) in panels.iter().zip(specs) {
        let all: Vec<f64> = curves
            .iter()
            .flat_map(|c| c.1.iter().map(|p| p.1).chain(c.2.iter().flat_map(|b| b.iter().map(|p| p.1))))
            .collect();
        let mut b = PANEL.on(area, "");
        macro_rules! draw {
            ($ch:expr) => {{
                let mut c = $ch;
                c.configure_mesh()
                    .light_line_style(WHITE)
                    .step_axis("step")
                    .y_desc(label.as_str())
                    .y_label_formatter(&|y| format!("{y:.2}"))
                    .draw()
                    .map_err(|x| e(x.to_string()))?;
                if logy {
                    c.draw_series(LineSeries::new(vec![(1.0, 1.0), (xmax, 1.0)], BLACK.mix(0.4)))
                        .map_err(|x| e(x.to_string()))?;
                }
                for (name, pts, bars, col, dashed) in curves {
                    for bb in bars {
                        c.draw_series(LineSeries::new(bb, col.mix(0.6).stroke_width(1)))
                            .map_err(|x| e(x.to_string()))?;
                    }
                    if dashed {
                        c.draw_series(DashedLineSeries::new(pts.clone(), 6, 4, col.stroke_width(2)))
                            .map_err(|x| e(x.to_string()))?
                            .label(name)
                            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(1)));
                    } else {
                        c.draw_series(LineSeries::new(pts.clone(), col.stroke_width(2)))
                            .map_err(|x| e(x.to_string()))?
                            .label(name)
                            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(2)));
                    }
                    c.draw_series(pts.iter().map(|&q| Circle::new(q, 3, col.filled())))
                        .map_err(|x| e(x.to_string()))?;
                }
                legend(&mut c, SeriesLabelPosition::UpperLeft).draw().map_err(|x| e(x.to_string()))?;
            }};
        }
        if logy {
            let lo = all.iter().copied().filter(|v| *v > 0.0 && v.is_finite()).fold(1.0, f64::min) / 1.3;
            let hi = all.iter().copied().filter(|v| v.is_finite()).fold(1.0, f64::max) * 1.3;
            draw!(b
                .build_cartesian_2d((1f64..xmax).log_scale(), (lo..hi).log_scale())
                .map_err(|x| e(x.to_string()))?);
        } else {
            let lo = all.iter().copied().filter(|v| v.is_finite()).fold(0.0, f64::min) - 0.05;
            let hi = all.iter().copied().filter(|v| v.is_finite()).fold(1.0, f64::max) + 0.05;
            draw!(b.build_cartesian_2d((1f64..xmax).log_scale(), lo..hi).map_err(|x| e(x.to_string()))?);
        }
    }
    root.present().map_err(|x| e(x.to_string()))?;
    Ok(())
}

/// Activation patching: per site, the share of the clean − corrupted
/// difference in the query's predicted velocity change restored by patching
/// the clean activation into the corrupted run (denoising, green) and
/// destroyed by patching the corrupted one into the clean run (noising, orange).
pub fn patching_figure(path: &Path, a: &Ablation) -> crate::Result<()> {
    headlab_store::with_atomic_path(path, |tmp| patching_figure_at(tmp, path, a))
}

/// [`patching_figure`] drawn into `tmp`; errors name `path`.
fn patching_figure_at(tmp: &Path, path: &Path, a: &Ablation) -> crate::Result<()> {
    let e = perr(path);
    let Some(p) = &a.patching else { return Err(e("no patching results".into())) };
    let root = BitMapBackend::new(tmp, (1100, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let n = p.sites.len() as f64;
    let den: Vec<Est> = (0..p.sites.len()).map(|i| Est::from_slice(&p.denoise[i * 3..i * 3 + 3])).collect();
    let noi: Vec<Est> = (0..p.sites.len()).map(|i| Est::from_slice(&p.noise[i * 3..i * 3 + 3])).collect();
    let vals: Vec<f64> = den.iter().chain(&noi).flat_map(|x| [x.value, x.lo, x.hi]).filter(|v| v.is_finite()).collect();
    let lo = vals.iter().copied().fold(0.0, f64::min) - 0.05;
    let hi = vals.iter().copied().fold(1.0, f64::max) + 0.05;
    let names = &p.sites;
    let caption = format!(
        "Activation patching at step {} ({} pairs: partner moved out of reach; 95 % bootstrap over pairs)",
        p.step, p.n_pairs
    );
    let mut ch =
        PANEL.on(&root, &caption).build_cartesian_2d(-0.6f64..n - 0.4, lo..hi).map_err(|x| e(x.to_string()))?;
    ch.configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .x_labels(names.len() * 2 + 1)
        .x_label_formatter(&|x| category(names, *x))
        .y_desc("share of Σ|Δv_clean − Δv_corrupted|²")
        .draw()
        .map_err(|x| e(x.to_string()))?;
    for y in [0.0, 1.0] {
        ch.draw_series(LineSeries::new(vec![(-0.6, y), (n - 0.4, y)], BLACK.mix(0.4))).map_err(|x| e(x.to_string()))?;
    }
    for (ests, dx, col, label) in [
        (&den, -0.12, GREEN, "denoising: clean → corrupted run (restored)"),
        (&noi, 0.12, ORANGE, "noising: corrupted → clean run (destroyed)"),
    ] {
        for (i, est) in ests.iter().enumerate() {
            let x = i as f64 + dx;
            if est.lo.is_finite() && est.hi.is_finite() {
                ch.draw_series(LineSeries::new(vec![(x, est.lo), (x, est.hi)], col.stroke_width(2)))
                    .map_err(|x| e(x.to_string()))?;
            }
        }
        ch.draw_series(
            ests.iter()
                .enumerate()
                .filter(|(_, v)| v.value.is_finite())
                .map(|(i, v)| Circle::new((i as f64 + dx, v.value), 4, col.filled())),
        )
        .map_err(|x| e(x.to_string()))?
        .label(label)
        .legend(move |(x, y)| Circle::new((x + 8, y), 4, col.filled()));
    }
    legend(&mut ch, SeriesLabelPosition::UpperLeft).draw().map_err(|x| e(x.to_string()))?;
    root.present().map_err(|x| e(x.to_string()))?;
    Ok(())
}
