//! The report's figures (PNG, via plotters).

use std::path::Path;

use headlab_analysis::fit::{FitModel, Series, SeriesFit};
use headlab_store::analysis::Analysis;
use headlab_store::metrics::Metrics;
use headlab_store::series::SeriesKey;
use plotters::prelude::*;

use crate::ReportError;
use headlab_analysis::baselines::Baseline;
use headlab_analysis::heads::{bar, score_se, RunVerdict};
use headlab_analysis::metrics::{merge_sparse_bins, MergedG, G_MIN_PAIRS};
use headlab_analysis::plot::{legend, Frame, StepAxis};

/// g of one head at step index `s` on bins merged to hold at least
/// [`G_MIN_PAIRS`] pairs each.
fn merged_g(a: &Analysis, excl: bool, s: usize, l: usize, h: usize) -> MergedG {
    let b = a.n_bins();
    let off = (s * a.n_layers * a.n_heads + l * a.n_heads + h) * b;
    let count = a.g_count.get(off..off + b).unwrap_or(&[]);
    merge_sparse_bins(&a.g_edges, a.head_g(excl, s, l, h), count, G_MIN_PAIRS)
}

fn err<E: std::fmt::Debug>(path: &Path) -> impl Fn(E) -> ReportError + '_ {
    move |e| ReportError::Plot { path: path.to_path_buf(), msg: format!("{e:?}") }
}

/// The color of a fitted form in every figure.
pub fn model_color(m: FitModel) -> RGBColor {
    match m {
        FitModel::Power => RGBColor(214, 39, 40),
        FitModel::PowerOnset => RGBColor(227, 119, 194),
        FitModel::Onset => RGBColor(148, 103, 189),
        FitModel::Exp => RGBColor(44, 160, 44),
        FitModel::Logistic => RGBColor(255, 127, 14),
        FitModel::LogLogistic => RGBColor(140, 86, 75),
    }
}

const SCORE: RGBColor = RGBColor(31, 119, 180);

/// A figure of one chart, titled at 22 pixels.
pub(crate) const FIGURE: Frame = Frame { caption: 22, margin: 12, x_label_area: 45, y_label_area: 60 };
/// One head's panel in a grid of heads.
const HEAD_PANEL: Frame = Frame { caption: 15, margin: 6, x_label_area: 32, y_label_area: 42 };
/// A panel of the collision score beside the LLC (on a right axis, sized by the caller).
pub(crate) const LLC_PANEL: Frame = Frame { caption: 16, margin: 8, x_label_area: 35, y_label_area: 45 };

/// Training and validation loss against step (log–log).
pub fn loss_figure(path: &Path, m: &Metrics, title: &str) -> Result<(), ReportError> {
    // Drawn beside the target and renamed over it: never a truncated PNG.
    headlab_store::with_atomic_path(path, |tmp| loss_figure_at(tmp, m, title))
}

fn loss_figure_at(path: &Path, m: &Metrics, title: &str) -> Result<(), ReportError> {
    let root = BitMapBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let mut pts: Vec<(f64, f64)> = m
        .step
        .iter()
        .zip(&m.loss)
        .filter(|(_, l)| l.is_finite() && **l > 0.0)
        .map(|(&s, &l)| (s.max(1) as f64, l as f64))
        .collect();
    // Smooth the noisy training loss with a centred running mean over ~1 %
    // of the run, narrowed near the start (at most ±10 % of the step) so that
    // on the log axis early points are not averaged with much later ones.
    let w = (pts.len() / 100).max(1);
    let smooth: Vec<(f64, f64)> = (0..pts.len())
        .map(|i| {
            let w = w.min(i / 10);
            let lo = i.saturating_sub(w);
            let hi = (i + w + 1).min(pts.len());
            (pts[i].0, pts[lo..hi].iter().map(|p| p.1).sum::<f64>() / (hi - lo) as f64)
        })
        .collect();
    let val: Vec<(f64, f64)> = m
        .val_step
        .iter()
        .zip(&m.val_loss)
        .filter(|(_, l)| l.is_finite() && **l > 0.0)
        .map(|(&s, &l)| (s.max(1) as f64, l as f64))
        .collect();
    let all: Vec<f64> = pts
        .iter()
        .chain(&val)
        .map(|p| p.1)
        .chain(std::iter::once(m.baseline_val_loss).filter(|v| *v > 0.0 && v.is_finite()))
        .collect();
    if all.is_empty() {
        pts.push((1.0, 1.0));
    }
    let ymin = all.iter().cloned().fold(f64::INFINITY, f64::min).max(1e-12) * 0.8;
    let ymax = all.iter().cloned().fold(0.0, f64::max).max(ymin * 10.0) * 1.25;
    let xmax = pts.iter().chain(&val).map(|p| p.0).fold(10.0, f64::max) * 1.1;
    let mut ch = Frame { y_label_area: 70, ..FIGURE }
        .on(&root, title)
        .build_cartesian_2d((1f64..xmax).log_scale(), (ymin..ymax).log_scale())
        .map_err(err(path))?;
    ch.configure_mesh()
        .x_desc("training step")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc("MSE (normalized targets)")
        .y_label_formatter(&|y| if *y >= 0.01 { format!("{y:.2}") } else { format!("{y:.0e}") })
        .y_labels(8)
        .draw()
        .map_err(err(path))?;
    ch.draw_series(LineSeries::new(pts.iter().copied(), RGBColor(180, 180, 220).stroke_width(1)))
        .map_err(err(path))?
        .label("train loss (per step)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RGBColor(180, 180, 220)));
    ch.draw_series(LineSeries::new(smooth, SCORE.stroke_width(2)))
        .map_err(err(path))?
        .label("train loss (running mean)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], SCORE.stroke_width(2)));
    ch.draw_series(LineSeries::new(val.iter().copied(), RED.stroke_width(2)))
        .map_err(err(path))?
        .label("validation loss")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    ch.draw_series(val.iter().map(|&p| Circle::new(p, 3, RED.filled()))).map_err(err(path))?;
    if m.baseline_val_loss > 0.0 && m.baseline_val_loss.is_finite() {
        let b = m.baseline_val_loss;
        ch.draw_series(LineSeries::new(vec![(1.0, b), (xmax, b)], BLACK.stroke_width(1)))
            .map_err(err(path))?
            .label("baseline: predict no change")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    }
    legend(&mut ch, SeriesLabelPosition::UpperRight).draw().map_err(err(path))?;
    root.present().map_err(err(path))?;
    Ok(())
}

/// One panel per head: the self-excluded normalized score (points, ±1
/// standard error over queries when `series` has a stored spread) with all
/// fitted forms (lines) and the best form's bootstrap band; the
/// self-inclusive score as a thin line. (The AUROC has its own figure,
/// [`auroc_figure`]: its chance level is 0.5, the score's 0.)
pub fn scores_figure(
    path: &Path,
    a: &Analysis,
    series: &str,
    fits: &[Option<SeriesFit>],
    title: &str,
) -> Result<(), ReportError> {
    // Drawn beside the target and renamed over it: never a truncated PNG.
    headlab_store::with_atomic_path(path, |tmp| scores_figure_at(tmp, a, series, fits, title))
}

fn scores_figure_at(
    path: &Path,
    a: &Analysis,
    series: &str,
    fits: &[Option<SeriesFit>],
    title: &str,
) -> Result<(), ReportError> {
    let (nl, nh) = (a.n_layers, a.n_heads);
    let root = BitMapBackend::new(path, ((360 * nh) as u32 + 20, (300 * nl) as u32 + 90)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let (top, rest) = root.split_vertically(40);
    top.titled(title, ("sans-serif", 22)).map_err(err(path))?;
    let (grid, legend) = rest.split_vertically((300 * nl) as u32);
    let panels = grid.split_evenly((nl, nh));
    let xmax = a.steps.last().copied().unwrap_or(1) as f64 * 1.2 + 2.0;
    let t: Vec<f64> = a.steps.iter().map(|&s| s as f64).collect();
    let incl_name = series.replace("_excl", "");
    for l in 0..nl {
        for h in 0..nh {
            let area = &panels[l * nh + h];
            let y = a.head_series(series, l, h).unwrap_or_default();
            let s = Series::new(&t, &y);
            let incl = a.head_series(&incl_name, l, h).unwrap_or_default();
            let se: Vec<f64> = match series.parse::<SeriesKey>() {
                Ok(k) => (0..a.steps.len()).map(|st| score_se(a, k, st, l, h)).collect(),
                Err(_) => vec![f64::NAN; a.steps.len()],
            };
            let fit = fits.get(l * nh + h).and_then(|f| f.as_ref());
            let cap = match fit.and_then(|f| f.best().map(|b| (f, b))) {
                Some((f, b)) => {
                    format!("L{l}.H{h}  best: {} (margin {:.1}), {}", b.model.name(), f.margin(), f.verdict.words())
                }
                None => format!("L{l}.H{h}"),
            };
            let ymin = y.iter().chain(&incl).filter(|v| v.is_finite()).cloned().fold(0.0, f64::min).max(-1.0) - 0.05;
            let mut ch = HEAD_PANEL
                .on(area, &cap)
                .build_cartesian_2d((1f64..xmax).log_scale(), ymin..1.05f64)
                .map_err(err(path))?;
            ch.configure_mesh()
                .step_axis("step")
                .y_desc("score")
                .x_labels(5)
                .y_labels(6)
                .light_line_style(WHITE.mix(0.0))
                .draw()
                .map_err(err(path))?;
            if let Some(f) = fit {
                if let (Some(lo), Some(hi), Some(_)) = (f.band_lo.first(), f.band_hi.first(), f.best()) {
                    let mut poly: Vec<(f64, f64)> = f
                        .band_t
                        .iter()
                        .zip(lo)
                        .filter(|(_, v)| v.is_finite())
                        .map(|(&t, &v)| (t + 1.0, v.max(ymin)))
                        .collect();
                    let back: Vec<(f64, f64)> = f
                        .band_t
                        .iter()
                        .zip(hi)
                        .filter(|(_, v)| v.is_finite())
                        .map(|(&t, &v)| (t + 1.0, v.min(1.05)))
                        .rev()
                        .collect();
                    poly.extend(back);
                    let c = model_color(f.fits[0].model);
                    ch.draw_series(std::iter::once(Polygon::new(poly, c.mix(0.18)))).map_err(err(path))?;
                }
                for (k, mf) in f.fits.iter().enumerate().rev() {
                    if mf.is_degenerate() {
                        continue;
                    }
                    let c = model_color(mf.model);
                    let best = k == 0;
                    let pts: Vec<(f64, f64)> = f
                        .band_t
                        .iter()
                        .map(|&t| (t + 1.0, mf.predict(t)))
                        .filter(|p| p.1.is_finite() && p.1 > ymin - 1.0 && p.1 < 2.0)
                        .collect();
                    ch.draw_series(LineSeries::new(pts, c.stroke_width(if best { 3 } else { 1 })))
                        .map_err(err(path))?;
                }
            }
            ch.draw_series(LineSeries::new(
                t.iter().zip(&incl).filter(|p| p.1.is_finite()).map(|(&t, &v)| (t + 1.0, v)),
                RGBColor(150, 150, 150).stroke_width(1),
            ))
            .map_err(err(path))?;
            ch.draw_series(
                t.iter()
                    .zip(y.iter().zip(&se))
                    .filter(|(_, (v, e))| v.is_finite() && e.is_finite())
                    .map(|(&t, (&v, &e))| PathElement::new(vec![(t + 1.0, v - e), (t + 1.0, v + e)], SCORE.mix(0.6))),
            )
            .map_err(err(path))?;
            ch.draw_series(s.t.iter().zip(&s.y).map(|(&t, &v)| Circle::new((t + 1.0, v), 2, SCORE.filled())))
                .map_err(err(path))?;
        }
    }
    // Shared legend.
    let mut items: Vec<(String, RGBColor, bool)> = vec![
        ("self-excluded normalized score (data, ±1 SE over queries)".into(), SCORE, true),
        ("self-inclusive normalized score".into(), RGBColor(150, 150, 150), false),
    ];
    for m in FitModel::ALL {
        items.push((format!("{}: {}", m.name(), m.formula()), model_color(m), false));
    }
    let cols = 3;
    let w = legend.dim_in_pixel().0 as i32 / cols;
    for (k, (label, c, dot)) in items.iter().enumerate() {
        let (x, y) = ((k as i32 % cols) * w + 12, (k as i32 / cols) * 16 + 4);
        if *dot {
            legend.draw(&Circle::new((x + 10, y + 6), 3, c.filled())).map_err(err(path))?;
        } else {
            legend.draw(&PathElement::new(vec![(x, y + 6), (x + 22, y + 6)], c.stroke_width(2))).map_err(err(path))?;
        }
        legend.draw(&Text::new(label.clone(), (x + 28, y), ("sans-serif", 13))).map_err(err(path))?;
    }
    root.present().map_err(err(path))?;
    Ok(())
}

/// Diverging color for log2 g in [-2, 2]: blue (avoids) – white – red (prefers).
fn g_color(g: f64) -> RGBColor {
    if !g.is_finite() {
        return RGBColor(230, 230, 230);
    }
    let v = (g.max(1e-6).log2() / 2.0).clamp(-1.0, 1.0);
    let mix = |a: u8, b: u8, t: f64| (a as f64 + (b as f64 - a as f64) * t).round() as u8;
    if v >= 0.0 {
        RGBColor(mix(255, 178, v), mix(255, 24, v), mix(255, 43, v))
    } else {
        RGBColor(mix(255, 33, -v), mix(255, 102, -v), mix(255, 172, -v))
    }
}

/// One panel per head: g_h(r) as a heatmap over (checkpoint step, distance).
pub fn g_heatmap(path: &Path, a: &Analysis, excl: bool, title: &str) -> Result<(), ReportError> {
    // Drawn beside the target and renamed over it: never a truncated PNG.
    headlab_store::with_atomic_path(path, |tmp| g_heatmap_at(tmp, a, excl, title))
}

fn g_heatmap_at(path: &Path, a: &Analysis, excl: bool, title: &str) -> Result<(), ReportError> {
    let (nl, nh) = (a.n_layers, a.n_heads);
    let root = BitMapBackend::new(path, ((340 * nh) as u32 + 20, (280 * nl) as u32 + 110)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let (top, rest) = root.split_vertically(40);
    top.titled(title, ("sans-serif", 22)).map_err(err(path))?;
    let (grid, legend) = rest.split_vertically((280 * nl) as u32);
    let panels = grid.split_evenly((nl, nh));
    let rmax = 3.0f64;
    let ns = a.steps.len();
    // Column edges in log(step+1): midpoints between checkpoints.
    let xs: Vec<f64> = a.steps.iter().map(|&s| s as f64 + 1.0).collect();
    let mut xe = Vec::with_capacity(ns + 1);
    if ns > 0 {
        xe.push(if ns > 1 { (xs[0].ln() - 0.5 * (xs[1].ln() - xs[0].ln())).exp() } else { xs[0] / 1.5 });
        for k in 0..ns.saturating_sub(1) {
            xe.push(((xs[k].ln() + xs[k + 1].ln()) / 2.0).exp());
        }
        xe.push(if ns > 1 { (xs[ns - 1].ln() + 0.5 * (xs[ns - 1].ln() - xs[ns - 2].ln())).exp() } else { xs[0] * 1.5 });
    }
    let xlo = xe.first().copied().unwrap_or(1.0).max(0.5);
    let xhi = xe.last().copied().unwrap_or(10.0).max(xlo * 2.0);
    for l in 0..nl {
        for h in 0..nh {
            let mut ch = HEAD_PANEL
                .on(&panels[l * nh + h], &format!("L{l}.H{h}"))
                .build_cartesian_2d((xlo..xhi).log_scale(), 0f64..rmax)
                .map_err(err(path))?;
            let mut rects = Vec::new();
            for s in 0..ns {
                let m = merged_g(a, excl, s, l, h);
                for (b, &v) in m.g.iter().enumerate() {
                    // Only the part of a merged bin that holds pairs is
                    // painted with its value; below it, grey (no pairs).
                    let (r0, r1) = (m.lo[b] as f64, (m.edges[b + 1] as f64).min(rmax));
                    if (m.edges[b] as f64) < r0 {
                        rects.push(Rectangle::new(
                            [(xe[s], m.edges[b] as f64), (xe[s + 1], r0.min(rmax))],
                            g_color(f64::NAN).filled(),
                        ));
                    }
                    if r0 >= rmax {
                        continue;
                    }
                    rects.push(Rectangle::new([(xe[s], r0), (xe[s + 1], r1)], g_color(v).filled()));
                }
            }
            ch.draw_series(rects).map_err(err(path))?;
            ch.draw_series(LineSeries::new(vec![(xlo, 1.0), (xhi, 1.0)], BLACK.stroke_width(1))).map_err(err(path))?;
            ch.configure_mesh()
                .disable_mesh()
                .step_axis("step")
                .y_desc("distance / contact distance")
                .x_labels(5)
                .y_labels(7)
                .draw()
                .map_err(err(path))?;
        }
    }
    // Color bar.
    let (w, _) = legend.dim_in_pixel();
    let x0 = (w as i32 - 400) / 2;
    for k in 0..200 {
        let v = (k as f64 / 199.0) * 4.0 - 2.0;
        legend
            .draw(&Rectangle::new([(x0 + 2 * k, 8), (x0 + 2 * k + 2, 24)], g_color(2f64.powf(v)).filled()))
            .map_err(err(path))?;
    }
    for (v, lab) in [(-2.0, "¼"), (-1.0, "½"), (0.0, "1 (no preference)"), (1.0, "2"), (2.0, "4")] {
        let x = x0 + ((v + 2.0) / 4.0 * 400.0) as i32;
        legend.draw(&Text::new(lab.to_string(), (x - 4, 27), ("sans-serif", 13))).map_err(err(path))?;
    }
    let lab = if excl {
        format!("g(r): self-excluded attention at distance r relative to uniform (bins merged to ≥ {G_MIN_PAIRS} pairs); black line: contact (r = 1); grey: no pairs")
    } else {
        format!("g(r): mean of N × attention, self included (1 = uniform; bins merged to ≥ {G_MIN_PAIRS} pairs); black line: contact; grey: no pairs")
    };
    legend.draw(&Text::new(lab, (x0 - 200, 48), ("sans-serif", 13))).map_err(err(path))?;
    root.present().map_err(err(path))?;
    Ok(())
}

/// g_h(r) profiles of every head at an early, a middle and the last checkpoint.
pub fn g_profiles(path: &Path, a: &Analysis, excl: bool, title: &str) -> Result<(), ReportError> {
    // Drawn beside the target and renamed over it: never a truncated PNG.
    headlab_store::with_atomic_path(path, |tmp| g_profiles_at(tmp, a, excl, title))
}

fn g_profiles_at(path: &Path, a: &Analysis, excl: bool, title: &str) -> Result<(), ReportError> {
    let (nl, nh) = (a.n_layers, a.n_heads);
    let root = BitMapBackend::new(path, ((340 * nh) as u32 + 20, (270 * nl) as u32 + 50)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let (top, grid) = root.split_vertically(40);
    top.titled(title, ("sans-serif", 22)).map_err(err(path))?;
    let panels = grid.split_evenly((nl, nh));
    let ns = a.steps.len();
    if ns == 0 {
        root.present().map_err(err(path))?;
        return Ok(());
    }
    let picks = [ns / 10, ns / 2, ns - 1];
    let colors = [RGBColor(158, 202, 225), RGBColor(66, 146, 198), RGBColor(8, 48, 107)];
    // Each merged bin is drawn at the middle of the part that holds pairs.
    let centers = |m: &MergedG| -> Vec<f64> {
        m.lo.iter()
            .zip(&m.edges[1..])
            .map(|(&a, &b)| if b > 100.0 { a as f64 * 1.25 } else { 0.5 * (a + b) as f64 })
            .collect()
    };
    // Values below this floor (g → 0: the head avoids those distances) are
    // marked with a hollow triangle on the floor, not drawn as data.
    const G_FLOOR: f64 = 0.02;
    for l in 0..nl {
        for h in 0..nh {
            let ms: Vec<MergedG> = picks.iter().map(|&s| merged_g(a, excl, s, l, h)).collect();
            let gmax = ms.iter().flat_map(|m| m.g.iter().copied()).filter(|v| v.is_finite()).fold(2.0, f64::max) * 1.1;
            let gmin = ms
                .iter()
                .flat_map(|m| m.g.iter().copied())
                .filter(|v| v.is_finite() && *v >= G_FLOOR)
                .fold(0.5, f64::min)
                * 0.8;
            let mut ch = HEAD_PANEL
                .on(&panels[l * nh + h], &format!("L{l}.H{h}"))
                .build_cartesian_2d(0f64..3.0, (gmin..gmax).log_scale())
                .map_err(err(path))?;
            ch.configure_mesh()
                .x_desc("distance / contact distance")
                .y_desc("g(r)")
                .x_labels(7)
                .y_labels(5)
                .draw()
                .map_err(err(path))?;
            ch.draw_series(LineSeries::new(vec![(0.0, 1.0), (3.0, 1.0)], BLACK.mix(0.4))).map_err(err(path))?;
            ch.draw_series(LineSeries::new(vec![(1.0, gmin), (1.0, gmax)], BLACK.mix(0.4))).map_err(err(path))?;
            for (k, &s) in picks.iter().enumerate() {
                let m = &ms[k];
                let cs = centers(m);
                let pts: Vec<(f64, f64)> = cs
                    .iter()
                    .zip(&m.g)
                    .filter(|(c, v)| v.is_finite() && **v >= G_FLOOR && **c <= 3.0)
                    .map(|(&c, &v)| (c, v))
                    .collect();
                let low: Vec<(f64, f64)> = cs
                    .iter()
                    .zip(&m.g)
                    .filter(|(c, v)| v.is_finite() && **v < G_FLOOR && **c <= 3.0)
                    .map(|(&c, _)| (c, gmin))
                    .collect();
                ch.draw_series(low.iter().map(|&p| TriangleMarker::new(p, 5, colors[k].stroke_width(1))))
                    .map_err(err(path))?;
                let series =
                    ch.draw_series(LineSeries::new(pts.clone(), colors[k].stroke_width(2))).map_err(err(path))?;
                if l == 0 && h == 0 {
                    series
                        .label(format!("step {}", a.steps[s]))
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colors[k].stroke_width(2)));
                }
                ch.draw_series(pts.iter().map(|&p| Circle::new(p, 2, colors[k].filled()))).map_err(err(path))?;
            }
            if l == 0 && h == 0 {
                legend(&mut ch, SeriesLabelPosition::UpperRight).draw().map_err(err(path))?;
            }
        }
    }
    root.present().map_err(err(path))?;
    Ok(())
}

/// Mean attention entropy per head against step.
pub fn entropy_figure(path: &Path, a: &Analysis, title: &str) -> Result<(), ReportError> {
    // Drawn beside the target and renamed over it: never a truncated PNG.
    headlab_store::with_atomic_path(path, |tmp| entropy_figure_at(tmp, a, title))
}

fn entropy_figure_at(path: &Path, a: &Analysis, title: &str) -> Result<(), ReportError> {
    let root = BitMapBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let xmax = a.steps.last().copied().unwrap_or(1) as f64 * 1.2 + 2.0;
    let ymax = (a.n_particles.max(2) as f64).ln() * 1.05;
    let mut ch = FIGURE.on(&root, title).build_cartesian_2d((1f64..xmax).log_scale(), 0f64..ymax).map_err(err(path))?;
    ch.configure_mesh().step_axis("step").y_desc("mean attention entropy (nats)").draw().map_err(err(path))?;
    ch.draw_series(LineSeries::new(vec![(1.0, ymax / 1.05), (xmax, ymax / 1.05)], BLACK.mix(0.4)))
        .map_err(err(path))?
        .label("ln N (uniform)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.mix(0.4)));
    for l in 0..a.n_layers {
        for h in 0..a.n_heads {
            let c = Palette99::pick(l * a.n_heads + h).to_rgba();
            let e = a.head_series(SeriesKey::Entropy, l, h).unwrap_or_default();
            let pts: Vec<(f64, f64)> =
                a.steps.iter().zip(&e).filter(|p| p.1.is_finite()).map(|(&s, &v)| (s as f64 + 1.0, v)).collect();
            ch.draw_series(LineSeries::new(pts, c.stroke_width(2)))
                .map_err(err(path))?
                .label(format!("L{l}.H{h}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        }
    }
    legend(&mut ch, SeriesLabelPosition::LowerLeft).draw().map_err(err(path))?;
    root.present().map_err(err(path))?;
    Ok(())
}

/// Collision-head series of several seeds, each with its own best
/// non-degenerate tail fit (seeds are fitted separately, never pooled).
pub fn seeds_figure(
    path: &Path,
    series: &[(String, Series, Option<SeriesFit>)],
    xdesc: &str,
    title: &str,
) -> Result<(), ReportError> {
    // Drawn beside the target and renamed over it: never a truncated PNG.
    headlab_store::with_atomic_path(path, |tmp| seeds_figure_at(tmp, series, xdesc, title))
}

fn seeds_figure_at(
    path: &Path,
    series: &[(String, Series, Option<SeriesFit>)],
    xdesc: &str,
    title: &str,
) -> Result<(), ReportError> {
    let root = BitMapBackend::new(path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let xmax = series.iter().flat_map(|(_, s, _)| s.t.iter().copied()).fold(1.0, f64::max) * 1.2 + 2.0;
    let ymin = series.iter().flat_map(|(_, s, _)| s.y.iter().copied()).fold(0.0, f64::min).max(-1.0) - 0.05;
    let mut ch =
        FIGURE.on(&root, title).build_cartesian_2d((1f64..xmax).log_scale(), ymin..1.05f64).map_err(err(path))?;
    ch.configure_mesh().step_axis(xdesc).y_desc("self-excluded normalized score").draw().map_err(err(path))?;
    for (k, (name, s, tail)) in series.iter().enumerate() {
        let c = Palette99::pick(k).to_rgba();
        let label = match tail.as_ref().and_then(|f| f.best().map(|b| (f, b))) {
            Some((f, b)) => format!("{name}: tail {} ({}, weight {:.2})", f.verdict.words(), b.model.name(), b.weight),
            None => format!("{name}: no usable tail fit"),
        };
        ch.draw_series(s.t.iter().zip(&s.y).map(move |(&t, &y)| Circle::new((t + 1.0, y), 2, c.filled())))
            .map_err(err(path))?
            .label(label)
            .legend(move |(x, y)| Circle::new((x + 9, y), 3, c.filled()));
        if let Some(b) = tail.as_ref().and_then(|f| f.best().map(|b| (f, b))) {
            let (f, b) = b;
            let pts: Vec<(f64, f64)> = f
                .band_t
                .iter()
                .map(|&t| (t + 1.0, b.predict(t)))
                .filter(|p| p.1.is_finite() && p.1 > ymin - 1.0 && p.1 < 2.0)
                .collect();
            ch.draw_series(LineSeries::new(pts, c.stroke_width(2))).map_err(err(path))?;
        }
    }
    legend(&mut ch, SeriesLabelPosition::UpperLeft).draw().map_err(err(path))?;
    root.present().map_err(err(path))?;
    Ok(())
}

/// One head's series with every fitted form: whole curve (left) and tail
/// after onset (right). Non-degenerate forms as solid lines (thick: best)
/// labelled with ΔAICc and Akaike weight; degenerate forms dashed grey and
/// labelled "degenerate".
pub fn forms_figure(
    path: &Path,
    s: &Series,
    whole: Option<&SeriesFit>,
    tail: Option<&SeriesFit>,
    xdesc: &str,
    title: &str,
) -> Result<(), ReportError> {
    // Drawn beside the target and renamed over it: never a truncated PNG.
    headlab_store::with_atomic_path(path, |tmp| forms_figure_at(tmp, s, whole, tail, xdesc, title))
}

fn forms_figure_at(
    path: &Path,
    s: &Series,
    whole: Option<&SeriesFit>,
    tail: Option<&SeriesFit>,
    xdesc: &str,
    title: &str,
) -> Result<(), ReportError> {
    let root = BitMapBackend::new(path, (1300, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let (top, rest) = root.split_vertically(40);
    top.titled(title, ("sans-serif", 22)).map_err(err(path))?;
    let (left, right) = rest.split_horizontally(650);
    for (area, fit, what) in [(&left, whole, "whole curve"), (&right, tail, "tail after onset")] {
        let (x0, x1) = match fit {
            Some(f) => (f.t_from, f.t_to),
            None => (s.t.first().copied().unwrap_or(0.0), s.t.last().copied().unwrap_or(1.0)),
        };
        let pts: Vec<(f64, f64)> =
            s.t.iter().zip(&s.y).filter(|(t, _)| **t >= x0 && **t <= x1).map(|(&t, &y)| (t + 1.0, y)).collect();
        let ylo = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let yhi = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        let (ylo, yhi) = if ylo.is_finite() && yhi > ylo {
            (ylo - 0.08 * (yhi - ylo), yhi + 0.08 * (yhi - ylo))
        } else {
            (-0.05, 1.05)
        };
        let cap = match fit {
            Some(f) => {
                format!("{what}: {} (ΔAICc families {:.1}, n_eff {:.0})", f.verdict.words(), f.family_delta, f.n_eff)
            }
            None => format!("{what}: too few points"),
        };
        let mut ch = ChartBuilder::on(area)
            .caption(cap, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(((x0 + 1.0).max(1.0)..(x1 + 1.0) * 1.05).log_scale(), ylo..yhi)
            .map_err(err(path))?;
        ch.configure_mesh().step_axis(xdesc).y_desc("score").draw().map_err(err(path))?;
        ch.draw_series(pts.iter().map(|&p| Circle::new(p, 3, SCORE.filled())))
            .map_err(err(path))?
            .label("data")
            .legend(|(x, y)| Circle::new((x + 9, y), 3, SCORE.filled()));
        if let Some(f) = fit {
            for (k, mf) in f.fits.iter().enumerate() {
                let curve: Vec<(f64, f64)> = f
                    .band_t
                    .iter()
                    .map(|&t| (t + 1.0, mf.predict(t)))
                    .filter(|p| p.1.is_finite() && p.1 > ylo - 1.0 && p.1 < yhi + 1.0)
                    .collect();
                if mf.is_degenerate() {
                    let grey = RGBColor(160, 160, 160);
                    ch.draw_series(DashedLineSeries::new(curve, 6, 4, grey.stroke_width(1)))
                        .map_err(err(path))?
                        .label(format!("{}: degenerate", mf.model.name()))
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], grey.stroke_width(1)));
                } else {
                    let c = model_color(mf.model);
                    ch.draw_series(LineSeries::new(curve, c.stroke_width(if k == 0 { 3 } else { 1 })))
                        .map_err(err(path))?
                        .label(format!(
                            "{} ({}): ΔAICc {:.1}, weight {:.2}",
                            mf.model.name(),
                            mf.model.family().name(),
                            mf.delta,
                            mf.weight
                        ))
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
                }
            }
        }
        legend(&mut ch, SeriesLabelPosition::LowerRight).label_font(("sans-serif", 12)).draw().map_err(err(path))?;
    }
    root.present().map_err(err(path))?;
    Ok(())
}

/// Per head: the collision score (left axis) beside the head's
/// weight-refined LLC with ±2 SE (right axis), and the whole-model LLC in
/// the first panel's title row, over training steps (log x).
pub fn llc_figure(
    path: &Path,
    a: &Analysis,
    series: &str,
    llc: &headlab_store::llc::LlcSeries,
    title: &str,
) -> Result<(), ReportError> {
    // Drawn beside the target and renamed over it: never a truncated PNG.
    headlab_store::with_atomic_path(path, |tmp| llc_figure_at(tmp, a, series, llc, title))
}

fn llc_figure_at(
    path: &Path,
    a: &Analysis,
    series: &str,
    llc: &headlab_store::llc::LlcSeries,
    title: &str,
) -> Result<(), ReportError> {
    let (rows, cols) = (a.n_layers.max(1), a.n_heads.max(1));
    let root = BitMapBackend::new(path, (360 * cols as u32 + 40, 300 * rows as u32 + 120)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let (top, body) = root.split_vertically(50);
    top.draw(&Text::new(title.to_string(), (20, 15), ("sans-serif", 22))).map_err(err(path))?;
    let (body, legend) = body.split_vertically(300 * rows as u32 + 30);
    let panels = body.split_evenly((rows, cols));
    let xmax = a.steps.last().copied().unwrap_or(1).max(llc.steps.last().copied().unwrap_or(1)) as f64 * 1.2 + 2.0;
    const LLC: RGBColor = RGBColor(214, 39, 40);
    let whole = llc.model_column("llc");
    let whole_se = llc.model_column("se");
    for (k, panel) in panels.iter().enumerate() {
        let (l, h) = (k / cols, k % cols);
        if l >= a.n_layers {
            continue;
        }
        let sc = a.head_series(series, l, h).unwrap_or_default();
        let score: Vec<(f64, f64)> =
            a.steps.iter().zip(&sc).filter(|p| p.1.is_finite()).map(|(&s, &v)| (s as f64 + 1.0, v)).collect();
        // Per-head LLC when present, else the whole model's.
        let (lv, ls, fl, which) = match (llc.head_column("llc", l, h), llc.head_column("se", l, h)) {
            (Some(v), Some(s)) if llc.per_head => (v, s, llc.head_flags(l, h), "head LLC"),
            _ => (
                whole.map(|v| v.to_vec()).unwrap_or_default(),
                whole_se.map(|v| v.to_vec()).unwrap_or_default(),
                llc.model.flags.clone(),
                "whole-model LLC",
            ),
        };
        // Flagged estimates (no step-size plateau, negative, ...) are drawn hollow and grey.
        let flagged: Vec<bool> = (0..llc.steps.len()).map(|i| fl.get(i).copied().unwrap_or(0) != 0).collect();
        let all: Vec<(f64, f64, f64, bool)> = llc
            .steps
            .iter()
            .zip(lv.iter().zip(ls.iter().chain(std::iter::repeat(&0.0))))
            .zip(&flagged)
            .filter(|((_, (v, _)), _)| v.is_finite())
            .map(|((&s, (&v, &e)), &f)| (s as f64 + 1.0, v, if e.is_finite() { e } else { 0.0 }, f))
            .collect();
        let pts: Vec<(f64, f64, f64)> = all.iter().filter(|p| !p.3).map(|p| (p.0, p.1, p.2)).collect();
        let bad: Vec<(f64, f64, f64)> = all.iter().filter(|p| p.3).map(|p| (p.0, p.1, p.2)).collect();
        let (mut lo, mut hi) = all
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.1 - 2.0 * p.2), hi.max(p.1 + 2.0 * p.2)));
        if !lo.is_finite() || !hi.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        let pad = (hi - lo).abs().max(1e-9) * 0.08;
        let mut ch = LLC_PANEL
            .on(panel, &format!("L{l}.H{h}"))
            .right_y_label_area_size(55)
            .build_cartesian_2d((1f64..xmax).log_scale(), -0.05f64..1.05)
            .map_err(err(path))?
            .set_secondary_coord((1f64..xmax).log_scale(), (lo - pad)..(hi + pad));
        ch.configure_mesh().step_axis("step").y_desc("collision score").max_light_lines(2).draw().map_err(err(path))?;
        ch.configure_secondary_axes().y_desc(which).draw().map_err(err(path))?;
        ch.draw_series(score.iter().map(|&p| Circle::new(p, 3, SCORE.filled()))).map_err(err(path))?;
        ch.draw_secondary_series(
            pts.iter().map(|&(x, v, e)| PathElement::new(vec![(x, v - 2.0 * e), (x, v + 2.0 * e)], LLC.mix(0.5))),
        )
        .map_err(err(path))?;
        ch.draw_secondary_series(LineSeries::new(pts.iter().map(|&(x, v, _)| (x, v)), LLC.stroke_width(2)))
            .map_err(err(path))?;
        const GREY: RGBColor = RGBColor(120, 120, 120);
        ch.draw_secondary_series(
            bad.iter().map(|&(x, v, e)| PathElement::new(vec![(x, v - 2.0 * e), (x, v + 2.0 * e)], GREY.mix(0.5))),
        )
        .map_err(err(path))?;
        ch.draw_secondary_series(bad.iter().map(|&(x, v, _)| Circle::new((x, v), 5, GREY.stroke_width(2))))
            .map_err(err(path))?;
    }
    let lg = legend.margin(5, 5, 30, 5);
    lg.draw(&Circle::new((10, 10), 4, SCORE.filled())).map_err(err(path))?;
    lg.draw(&Text::new(format!("collision score ({series}), left axis"), (22, 3), ("sans-serif", 15)))
        .map_err(err(path))?;
    lg.draw(&PathElement::new(vec![(380, 10), (405, 10)], LLC.stroke_width(2))).map_err(err(path))?;
    lg.draw(&Text::new(
        "LLC (SGLD, ±2 SE over chains), right axis; hollow grey: flagged, unreliable",
        (412, 3),
        ("sans-serif", 15),
    ))
    .map_err(err(path))?;
    root.present().map_err(err(path))?;
    Ok(())
}

/// Gradient noise measured during training (`[grad_noise] every > 0`): the
/// Hill tail index of minibatch-gradient-noise norms and of single
/// coordinates, each with ±1 SE, against the index of an equally sized
/// Gaussian sample (lower = heavier tail), over training steps.
pub fn noise_figure(path: &Path, m: &Metrics, title: &str) -> Result<(), ReportError> {
    // Drawn beside the target and renamed over it: never a truncated PNG.
    headlab_store::with_atomic_path(path, |tmp| noise_figure_at(tmp, m, title))
}

fn noise_figure_at(path: &Path, m: &Metrics, title: &str) -> Result<(), ReportError> {
    let root = BitMapBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let rec = &m.noise;
    let xmax = rec.iter().map(|r| r.step).max().unwrap_or(1) as f64 * 1.2 + 2.0;
    let vals = rec.iter().flat_map(|r| {
        [
            r.norm_hill_alpha + r.norm_hill_se,
            r.coord_hill_alpha + r.coord_hill_se,
            r.norm_gaussian_hill_alpha,
            r.coord_gaussian_hill_alpha,
        ]
    });
    let ymax = vals.filter(|v| v.is_finite()).fold(1.0f64, f64::max) * 1.1;
    let mut ch = FIGURE.on(&root, title).build_cartesian_2d((1f64..xmax).log_scale(), 0f64..ymax).map_err(err(path))?;
    ch.configure_mesh()
        .step_axis("step")
        .y_desc("Hill tail index α (lower = heavier tail)")
        .draw()
        .map_err(err(path))?;
    #[allow(clippy::type_complexity)]
    let series: [(&str, fn(&headlab_store::metrics::NoiseRecord) -> (f64, f64), RGBColor); 4] = [
        ("noise norm", |r| (r.norm_hill_alpha, r.norm_hill_se), RGBColor(214, 39, 40)),
        ("noise norm, Gaussian reference", |r| (r.norm_gaussian_hill_alpha, 0.0), RGBColor(255, 152, 150)),
        ("single coordinates", |r| (r.coord_hill_alpha, r.coord_hill_se), SCORE),
        ("single coordinates, Gaussian reference", |r| (r.coord_gaussian_hill_alpha, 0.0), RGBColor(174, 199, 232)),
    ];
    for (label, get, c) in series {
        let pts: Vec<(f64, f64, f64)> =
            rec.iter().map(|r| (r.step as f64 + 1.0, get(r).0, get(r).1)).filter(|p| p.1.is_finite()).collect();
        ch.draw_series(
            pts.iter()
                .filter(|p| p.2 > 0.0)
                .map(|&(x, v, e)| PathElement::new(vec![(x, (v - e).max(0.0)), (x, v + e)], c.mix(0.6))),
        )
        .map_err(err(path))?;
        ch.draw_series(LineSeries::new(pts.iter().map(|&(x, v, _)| (x, v)), c.stroke_width(2)).point_size(3))
            .map_err(err(path))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
    }
    legend(&mut ch, SeriesLabelPosition::UpperRight).draw().map_err(err(path))?;
    root.present().map_err(err(path))?;
    Ok(())
}

const AUROC_C: RGBColor = RGBColor(23, 190, 207);
const MATCHED_C: RGBColor = RGBColor(214, 39, 40);
const APPROACH_C: RGBColor = RGBColor(148, 103, 189);

/// One panel per head, on an AUROC axis (chance 0.5): the AUROC of a_ij for
/// contact (all pairs), the distance-matched AUROC (±1 SE) and the approach
/// selectivity over training, against the distance baseline's AUROC, the
/// floor (distance, matched) and the ceiling (ballistics, matched), and the
/// bar's matched-AUROC threshold.
pub fn auroc_figure(path: &Path, a: &Analysis, v: &RunVerdict, title: &str) -> Result<(), ReportError> {
    headlab_store::with_atomic_path(path, |tmp| auroc_figure_at(tmp, a, v, title))
}

fn auroc_figure_at(path: &Path, a: &Analysis, v: &RunVerdict, title: &str) -> Result<(), ReportError> {
    let (nl, nh) = (a.n_layers, a.n_heads);
    let root = BitMapBackend::new(path, ((360 * nh) as u32 + 20, (300 * nl) as u32 + 110)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let (top, rest) = root.split_vertically(40);
    top.titled(title, ("sans-serif", 22)).map_err(err(path))?;
    let (grid, legend) = rest.split_vertically((300 * nl) as u32);
    let panels = grid.split_evenly((nl, nh));
    let xmax = a.steps.last().copied().unwrap_or(1) as f64 * 1.2 + 2.0;
    let dist_all = v.baseline(Baseline::Distance).map_or(f64::NAN, |b| b.auroc);
    let (floor, ceiling) = v.floor_ceiling;
    let hlines: Vec<(f64, RGBColor, &str)> = vec![
        (dist_all, RGBColor(120, 120, 120), "distance baseline, all pairs"),
        (floor, RGBColor(120, 120, 120), "distance baseline, matched (floor)"),
        (ceiling, RGBColor(44, 160, 44), "ballistic, matched (ceiling)"),
        (bar::MATCHED_AUROC_MIN, RGBColor(255, 127, 14), "bar: matched AUROC"),
    ];
    for l in 0..nl {
        for h in 0..nh {
            let get = |k: SeriesKey| a.head_series(k, l, h).unwrap_or_default();
            let (au, m, mse, ap) = (
                get(SeriesKey::AurocInterval),
                get(SeriesKey::AurocMatched),
                get(SeriesKey::AurocMatchedSe),
                get(SeriesKey::ApproachSelectivity),
            );
            let mut ch = HEAD_PANEL
                .on(&panels[l * nh + h], &format!("L{l}.H{h}"))
                .build_cartesian_2d((1f64..xmax).log_scale(), 0.3f64..1.02)
                .map_err(err(path))?;
            ch.configure_mesh()
                .step_axis("step")
                .y_desc("AUROC")
                .x_labels(5)
                .y_labels(8)
                .light_line_style(WHITE.mix(0.0))
                .draw()
                .map_err(err(path))?;
            ch.draw_series(LineSeries::new(vec![(1.0, 0.5), (xmax, 0.5)], BLACK.mix(0.5))).map_err(err(path))?;
            for (y, c, _) in &hlines {
                if y.is_finite() {
                    ch.draw_series(DashedLineSeries::new(vec![(1.0, *y), (xmax, *y)], 6, 4, c.stroke_width(1)))
                        .map_err(err(path))?;
                }
            }
            let pts = |y: &[f64]| -> Vec<(f64, f64)> {
                a.steps.iter().zip(y).filter(|p| p.1.is_finite()).map(|(&s, &v)| (s as f64 + 1.0, v)).collect()
            };
            ch.draw_series(LineSeries::new(pts(&au), AUROC_C.stroke_width(2))).map_err(err(path))?;
            ch.draw_series(LineSeries::new(pts(&ap), APPROACH_C.stroke_width(1))).map_err(err(path))?;
            ch.draw_series(
                a.steps.iter().zip(m.iter().zip(&mse)).filter(|(_, (v, e))| v.is_finite() && e.is_finite()).map(
                    |(&s, (&v, &e))| {
                        PathElement::new(vec![(s as f64 + 1.0, v - e), (s as f64 + 1.0, v + e)], MATCHED_C.mix(0.6))
                    },
                ),
            )
            .map_err(err(path))?;
            ch.draw_series(pts(&m).into_iter().map(|p| Circle::new(p, 2, MATCHED_C.filled()))).map_err(err(path))?;
        }
    }
    let items: Vec<(String, RGBColor, u8)> = vec![
        ("AUROC of a_ij, contact during the interval, all pairs".into(), AUROC_C, 0),
        ("distance-matched AUROC of a'_ij (±1 SE)".into(), MATCHED_C, 1),
        ("approach selectivity at matched distance".into(), APPROACH_C, 0),
        ("chance (0.5)".into(), RGBColor(128, 128, 128), 0),
    ]
    .into_iter()
    .chain(hlines.iter().filter(|x| x.0.is_finite()).map(|(y, c, lab)| (format!("{lab}: {y:.3}"), *c, 2)))
    .collect();
    let cols = 3;
    let w = legend.dim_in_pixel().0 as i32 / cols;
    for (k, (label, c, kind)) in items.iter().enumerate() {
        let (x, y) = ((k as i32 % cols) * w + 12, (k as i32 / cols) * 19 + 6);
        match kind {
            1 => legend.draw(&Circle::new((x + 10, y + 6), 3, c.filled())).map_err(err(path))?,
            2 => {
                legend
                    .draw(&PathElement::new(vec![(x, y + 6), (x + 8, y + 6)], c.stroke_width(1)))
                    .map_err(err(path))?;
                legend
                    .draw(&PathElement::new(vec![(x + 13, y + 6), (x + 22, y + 6)], c.stroke_width(1)))
                    .map_err(err(path))?
            }
            _ => legend
                .draw(&PathElement::new(vec![(x, y + 6), (x + 22, y + 6)], c.stroke_width(2)))
                .map_err(err(path))?,
        }
        legend.draw(&Text::new(label.clone(), (x + 28, y), ("sans-serif", 13))).map_err(err(path))?;
    }
    root.present().map_err(err(path))?;
    Ok(())
}

/// Heads beside the non-learned baselines at one step. Left: AUROC for
/// contact (all pairs, new contacts, at matched distance ±1 SE) of every
/// baseline and head. Right: self-excluded score against distance-matched
/// AUROC of every head and of every baseline's softmax "attention", with the
/// region that meets the collision-head bar shaded.
pub fn baselines_figure(path: &Path, v: &RunVerdict, title: &str) -> Result<(), ReportError> {
    headlab_store::with_atomic_path(path, |tmp| baselines_figure_at(tmp, v, title))
}

fn baselines_figure_at(path: &Path, v: &RunVerdict, title: &str) -> Result<(), ReportError> {
    let root = BitMapBackend::new(path, (1300, 660)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let (top, rest) = root.split_vertically(40);
    top.titled(title, ("sans-serif", 22)).map_err(err(path))?;
    let (body, strip) = rest.split_vertically(570);
    let (left, right) = body.split_horizontally(700);
    // Left: one row per predictor.
    let mut rows: Vec<(String, f64, f64, f64, f64, bool)> = v
        .baselines
        .iter()
        .map(|b| (b.baseline.label().to_string(), b.auroc, b.auroc_new, b.matched, b.matched_se, false))
        .collect();
    for hs in &v.heads {
        rows.push((format!("head {}", hs.name()), hs.auroc, hs.auroc_new, hs.matched, hs.matched_se, true));
    }
    let n = rows.len().max(1);
    let mut ch = ChartBuilder::on(&left)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(150)
        .build_cartesian_2d(0.3f64..1.02, -0.5f64..(n as f64 - 0.5))
        .map_err(err(path))?;
    let names: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    ch.configure_mesh()
        .x_desc("AUROC for contact during the predicted interval (0.5 = chance)")
        .y_labels(n)
        .y_label_formatter(&|y| {
            let k = y.round();
            if (y - k).abs() < 1e-6 && k >= 0.0 && (k as usize) < names.len() {
                names[names.len() - 1 - k as usize].clone()
            } else {
                String::new()
            }
        })
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err(path))?;
    ch.draw_series(LineSeries::new(vec![(0.5, -0.5), (0.5, n as f64 - 0.5)], BLACK.mix(0.5))).map_err(err(path))?;
    ch.draw_series(DashedLineSeries::new(
        vec![(bar::MATCHED_AUROC_MIN, -0.5), (bar::MATCHED_AUROC_MIN, n as f64 - 0.5)],
        6,
        4,
        RGBColor(255, 127, 14).stroke_width(1),
    ))
    .map_err(err(path))?;
    for (k, r) in rows.iter().enumerate() {
        let y = (n - 1 - k) as f64;
        if r.1.is_finite() {
            ch.draw_series(std::iter::once(Circle::new((r.1, y + 0.2), 5, AUROC_C.filled()))).map_err(err(path))?;
        }
        if r.2.is_finite() {
            ch.draw_series(std::iter::once(TriangleMarker::new((r.2, y), 6, SCORE.filled()))).map_err(err(path))?;
        }
        if r.3.is_finite() {
            let e = if r.4.is_finite() { r.4 } else { 0.0 };
            ch.draw_series(std::iter::once(PathElement::new(
                vec![(r.3 - e, y - 0.2), (r.3 + e, y - 0.2)],
                MATCHED_C.stroke_width(2),
            )))
            .map_err(err(path))?;
            ch.draw_series(std::iter::once(Cross::new((r.3, y - 0.2), 5, MATCHED_C.stroke_width(2))))
                .map_err(err(path))?;
        }
        if r.5 && k == v.baselines.len() {
            ch.draw_series(std::iter::once(PathElement::new(vec![(0.3, y + 0.5), (1.02, y + 0.5)], BLACK.mix(0.3))))
                .map_err(err(path))?;
        }
    }
    // Right: score vs matched AUROC with the bar region.
    let mut ch2 = ChartBuilder::on(&right)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.3f64..1.02, -0.2f64..1.05)
        .map_err(err(path))?;
    ch2.configure_mesh()
        .x_desc("distance-matched AUROC (0.5: nothing beyond distance)")
        .y_desc("self-excluded normalized score")
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err(path))?;
    ch2.draw_series(std::iter::once(Rectangle::new(
        [(bar::MATCHED_AUROC_MIN, bar::SCORE_MIN), (1.02, 1.05)],
        RGBColor(255, 127, 14).mix(0.15).filled(),
    )))
    .map_err(err(path))?;
    ch2.draw_series(std::iter::once(Text::new(
        "meets the bar",
        (bar::MATCHED_AUROC_MIN + 0.01, 1.0),
        ("sans-serif", 14),
    )))
    .map_err(err(path))?;
    for b in &v.baselines {
        if b.softmax_score.is_finite() && b.softmax_matched.is_finite() {
            let p = (b.softmax_matched, b.softmax_score);
            ch2.draw_series(std::iter::once(Rectangle::new(
                [(p.0 - 0.008, p.1 - 0.02), (p.0 + 0.008, p.1 + 0.02)],
                RGBColor(90, 90, 90).filled(),
            )))
            .map_err(err(path))?;
            let label = format!("softmax of {}", b.baseline.name().replace('_', " "));
            // Labels of points near the right edge go to their left.
            let x = if p.0 > 0.8 { p.0 - 0.012 - 0.0047 * label.chars().count() as f64 } else { p.0 + 0.012 };
            ch2.draw_series(std::iter::once(Text::new(label, (x, p.1 - 0.015), ("sans-serif", 12))))
                .map_err(err(path))?;
        }
    }
    for (k, hs) in v.heads.iter().enumerate() {
        if hs.score.is_finite() && hs.matched.is_finite() {
            let c = if hs.meets_bar { MATCHED_C } else { SCORE };
            let (e1, e2) = (
                if hs.matched_se.is_finite() { hs.matched_se } else { 0.0 },
                if hs.score_se.is_finite() { hs.score_se } else { 0.0 },
            );
            ch2.draw_series(std::iter::once(PathElement::new(
                vec![(hs.matched - e1, hs.score), (hs.matched + e1, hs.score)],
                c.mix(0.7),
            )))
            .map_err(err(path))?;
            ch2.draw_series(std::iter::once(PathElement::new(
                vec![(hs.matched, hs.score - e2), (hs.matched, hs.score + e2)],
                c.mix(0.7),
            )))
            .map_err(err(path))?;
            ch2.draw_series(std::iter::once(Circle::new((hs.matched, hs.score), 4, c.filled()))).map_err(err(path))?;
            // Staggered labels: heads often sit on top of each other.
            let dy = 0.012 + 0.035 * (k % 3) as f64;
            ch2.draw_series(std::iter::once(PathElement::new(
                vec![(hs.matched, hs.score), (hs.matched + 0.015, hs.score + dy)],
                BLACK.mix(0.3),
            )))
            .map_err(err(path))?;
            ch2.draw_series(std::iter::once(Text::new(
                hs.name(),
                (hs.matched + 0.017, hs.score + dy + 0.012),
                ("sans-serif", 12),
            )))
            .map_err(err(path))?;
        }
    }
    // Legend strip.
    let x0 = 20;
    strip.draw(&Circle::new((x0, 12), 5, AUROC_C.filled())).map_err(err(path))?;
    strip.draw(&Text::new("AUROC, all pairs", (x0 + 10, 5), ("sans-serif", 13))).map_err(err(path))?;
    strip.draw(&TriangleMarker::new((x0 + 150, 12), 6, SCORE.filled())).map_err(err(path))?;
    strip.draw(&Text::new("AUROC, new contacts only", (x0 + 160, 5), ("sans-serif", 13))).map_err(err(path))?;
    strip.draw(&Cross::new((x0 + 345, 12), 5, MATCHED_C.stroke_width(2))).map_err(err(path))?;
    strip.draw(&Text::new("distance-matched AUROC ±1 SE", (x0 + 355, 5), ("sans-serif", 13))).map_err(err(path))?;
    strip
        .draw(&PathElement::new(vec![(x0 + 570, 12), (x0 + 592, 12)], RGBColor(255, 127, 14).stroke_width(1)))
        .map_err(err(path))?;
    strip
        .draw(&Text::new(
            format!("bar: matched AUROC ≥ {}, score ≥ {} (right: shaded)", bar::MATCHED_AUROC_MIN, bar::SCORE_MIN),
            (x0 + 598, 5),
            ("sans-serif", 13),
        ))
        .map_err(err(path))?;
    strip.draw(&Rectangle::new([(x0 - 5, 29), (x0 + 5, 39)], RGBColor(90, 90, 90).filled())).map_err(err(path))?;
    strip
        .draw(&Text::new(
            "right: softmax of a baseline (fitted temperature) as attention; dots: heads ±1 SE (red: meets the bar)",
            (x0 + 10, 27),
            ("sans-serif", 13),
        ))
        .map_err(err(path))?;
    root.present().map_err(err(path))?;
    Ok(())
}
