//! The report's figures (PNG, via plotters).

use std::path::Path;

use headlab_analysis::fit::{FitModel, Series, SeriesFit};
use headlab_store::analysis::Analysis;
use headlab_store::metrics::Metrics;
use plotters::prelude::*;

use crate::ReportError;

fn err<E: std::fmt::Debug>(path: &Path) -> impl Fn(E) -> ReportError + '_ {
    move |e| ReportError::Plot { path: path.to_path_buf(), msg: format!("{e:?}") }
}

/// The color of a fitted form in every figure.
pub fn model_color(m: FitModel) -> RGBColor {
    match m {
        FitModel::Power => RGBColor(214, 39, 40),
        FitModel::Onset => RGBColor(148, 103, 189),
        FitModel::Exp => RGBColor(44, 160, 44),
        FitModel::Logistic => RGBColor(255, 127, 14),
        FitModel::LogLogistic => RGBColor(140, 86, 75),
    }
}

const SCORE: RGBColor = RGBColor(31, 119, 180);

/// Training and validation loss against step (log–log).
pub fn loss_figure(path: &Path, m: &Metrics, title: &str) -> Result<(), ReportError> {
    let root = BitMapBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let mut pts: Vec<(f64, f64)> = m.step.iter().zip(&m.loss).filter(|(_, l)| l.is_finite() && **l > 0.0).map(|(&s, &l)| (s.max(1) as f64, l as f64)).collect();
    // Smooth the noisy training loss with a centred running mean over ~1 %
    // of the run, narrowed near the start (at most ±10 % of the step) so that
    // on the log axis early points are not averaged with much later ones.
    let w = (pts.len() / 100).max(1);
    let smooth: Vec<(f64, f64)> = (0..pts.len()).map(|i| {
        let w = w.min(i / 10);
        let lo = i.saturating_sub(w);
        let hi = (i + w + 1).min(pts.len());
        (pts[i].0, pts[lo..hi].iter().map(|p| p.1).sum::<f64>() / (hi - lo) as f64)
    }).collect();
    let val: Vec<(f64, f64)> = m.val_step.iter().zip(&m.val_loss).filter(|(_, l)| l.is_finite() && **l > 0.0).map(|(&s, &l)| (s.max(1) as f64, l as f64)).collect();
    let all: Vec<f64> = pts.iter().chain(&val).map(|p| p.1).chain(std::iter::once(m.baseline_val_loss).filter(|v| *v > 0.0 && v.is_finite())).collect();
    if all.is_empty() {
        pts.push((1.0, 1.0));
    }
    let ymin = all.iter().cloned().fold(f64::INFINITY, f64::min).max(1e-12) * 0.8;
    let ymax = all.iter().cloned().fold(0.0, f64::max).max(ymin * 10.0) * 1.25;
    let xmax = pts.iter().chain(&val).map(|p| p.0).fold(10.0, f64::max) * 1.1;
    let mut ch = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((1f64..xmax).log_scale(), (ymin..ymax).log_scale())
        .map_err(err(path))?;
    ch.configure_mesh().x_desc("training step").x_label_formatter(&|x| format!("{x:.0}")).y_desc("MSE (normalized targets)").y_label_formatter(&|y| if *y >= 0.01 { format!("{y:.2}") } else { format!("{y:.0e}") }).y_labels(8).draw().map_err(err(path))?;
    ch.draw_series(LineSeries::new(pts.iter().copied(), RGBColor(180, 180, 220).stroke_width(1))).map_err(err(path))?.label("train loss (per step)").legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RGBColor(180, 180, 220)));
    ch.draw_series(LineSeries::new(smooth, SCORE.stroke_width(2))).map_err(err(path))?.label("train loss (running mean)").legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], SCORE.stroke_width(2)));
    ch.draw_series(LineSeries::new(val.iter().copied(), RED.stroke_width(2))).map_err(err(path))?.label("validation loss").legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    ch.draw_series(val.iter().map(|&p| Circle::new(p, 3, RED.filled()))).map_err(err(path))?;
    if m.baseline_val_loss > 0.0 && m.baseline_val_loss.is_finite() {
        let b = m.baseline_val_loss;
        ch.draw_series(LineSeries::new(vec![(1.0, b), (xmax, b)], BLACK.stroke_width(1))).map_err(err(path))?.label("baseline: predict no change").legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    }
    ch.configure_series_labels().position(SeriesLabelPosition::UpperRight).background_style(WHITE.mix(0.85)).border_style(BLACK).draw().map_err(err(path))?;
    root.present().map_err(err(path))?;
    Ok(())
}

/// One panel per head: the self-excluded normalized score (points) with all
/// fitted forms (lines) and the best form's bootstrap band; the
/// self-inclusive score and the AUROC as thin lines.
pub fn scores_figure(path: &Path, a: &Analysis, series: &str, fits: &[Option<SeriesFit>], title: &str) -> Result<(), ReportError> {
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
            let au = a.head_series("auroc_interval", l, h).unwrap_or_default();
            let fit = fits.get(l * nh + h).and_then(|f| f.as_ref());
            let cap = match fit.and_then(|f| f.best().map(|b| (f, b))) {
                Some((f, b)) => format!("L{l}.H{h}  AICc winner: {} (margin {:.1})", b.model.name(), f.margin()),
                None => format!("L{l}.H{h}"),
            };
            let ymin = y.iter().chain(&incl).filter(|v| v.is_finite()).cloned().fold(0.0, f64::min).max(-1.0) - 0.05;
            let mut ch = ChartBuilder::on(area)
                .caption(cap, ("sans-serif", 15))
                .margin(6)
                .x_label_area_size(32)
                .y_label_area_size(42)
                .build_cartesian_2d((1f64..xmax).log_scale(), ymin..1.05f64)
                .map_err(err(path))?;
            ch.configure_mesh().x_desc("step + 1").y_desc("score").x_label_formatter(&|x| format!("{x:.0}")).x_labels(5).y_labels(6).light_line_style(WHITE.mix(0.0)).draw().map_err(err(path))?;
            if let Some(f) = fit {
                if let (Some(lo), Some(hi)) = (f.band_lo.first(), f.band_hi.first()) {
                    let mut poly: Vec<(f64, f64)> = f.band_t.iter().zip(lo).filter(|(_, v)| v.is_finite()).map(|(&t, &v)| (t + 1.0, v.max(ymin))).collect();
                    let back: Vec<(f64, f64)> = f.band_t.iter().zip(hi).filter(|(_, v)| v.is_finite()).map(|(&t, &v)| (t + 1.0, v.min(1.05))).rev().collect();
                    poly.extend(back);
                    let c = model_color(f.fits[0].model);
                    ch.draw_series(std::iter::once(Polygon::new(poly, c.mix(0.18)))).map_err(err(path))?;
                }
                for mf in f.fits.iter().rev() {
                    let c = model_color(mf.model);
                    let best = mf.delta_aicc == 0.0;
                    let pts: Vec<(f64, f64)> = f.band_t.iter().map(|&t| (t + 1.0, mf.predict(t))).filter(|p| p.1.is_finite() && p.1 > ymin - 1.0 && p.1 < 2.0).collect();
                    ch.draw_series(LineSeries::new(pts, c.stroke_width(if best { 3 } else { 1 }))).map_err(err(path))?;
                }
            }
            ch.draw_series(LineSeries::new(t.iter().zip(&incl).filter(|p| p.1.is_finite()).map(|(&t, &v)| (t + 1.0, v)), RGBColor(150, 150, 150).stroke_width(1))).map_err(err(path))?;
            ch.draw_series(LineSeries::new(t.iter().zip(&au).filter(|p| p.1.is_finite()).map(|(&t, &v)| (t + 1.0, v)), RGBColor(23, 190, 207).stroke_width(1))).map_err(err(path))?;
            ch.draw_series(s.t.iter().zip(&s.y).map(|(&t, &v)| Circle::new((t + 1.0, v), 2, SCORE.filled()))).map_err(err(path))?;
        }
    }
    // Shared legend.
    let mut items: Vec<(String, RGBColor, bool)> = vec![
        ("self-excluded normalized score (data)".into(), SCORE, true),
        ("self-inclusive normalized score".into(), RGBColor(150, 150, 150), false),
        ("AUROC (contact within interval)".into(), RGBColor(23, 190, 207), false),
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
            let mut ch = ChartBuilder::on(&panels[l * nh + h])
                .caption(format!("L{l}.H{h}"), ("sans-serif", 15))
                .margin(6)
                .x_label_area_size(32)
                .y_label_area_size(42)
                .build_cartesian_2d((xlo..xhi).log_scale(), 0f64..rmax)
                .map_err(err(path))?;
            let mut rects = Vec::new();
            for s in 0..ns {
                let g = a.head_g(excl, s, l, h);
                for (b, &v) in g.iter().enumerate() {
                    let (r0, r1) = (a.g_edges[b] as f64, (a.g_edges[b + 1] as f64).min(rmax));
                    if r0 >= rmax {
                        continue;
                    }
                    rects.push(Rectangle::new([(xe[s], r0), (xe[s + 1], r1)], g_color(v).filled()));
                }
            }
            ch.draw_series(rects).map_err(err(path))?;
            ch.draw_series(LineSeries::new(vec![(xlo, 1.0), (xhi, 1.0)], BLACK.stroke_width(1))).map_err(err(path))?;
            ch.configure_mesh().disable_mesh().x_desc("step + 1").x_label_formatter(&|x| format!("{x:.0}")).y_desc("distance / contact distance").x_labels(5).y_labels(7).draw().map_err(err(path))?;
        }
    }
    // Color bar.
    let (w, _) = legend.dim_in_pixel();
    let x0 = (w as i32 - 400) / 2;
    for k in 0..200 {
        let v = (k as f64 / 199.0) * 4.0 - 2.0;
        legend.draw(&Rectangle::new([(x0 + 2 * k, 8), (x0 + 2 * k + 2, 24)], g_color(2f64.powf(v)).filled())).map_err(err(path))?;
    }
    for (v, lab) in [(-2.0, "¼"), (-1.0, "½"), (0.0, "1 (no preference)"), (1.0, "2"), (2.0, "4")] {
        let x = x0 + ((v + 2.0) / 4.0 * 400.0) as i32;
        legend.draw(&Text::new(lab.to_string(), (x - 4, 27), ("sans-serif", 13))).map_err(err(path))?;
    }
    let lab = if excl { "g(r): self-excluded attention at distance r relative to uniform; black line: contact (r = 1); grey: no pairs" } else { "g(r): mean of N × attention over pairs at distance r (1 = uniform); black line: contact (r = 1); grey: no pairs" };
    legend.draw(&Text::new(lab, (x0 - 150, 48), ("sans-serif", 13))).map_err(err(path))?;
    root.present().map_err(err(path))?;
    Ok(())
}

/// g_h(r) profiles of every head at an early, a middle and the last checkpoint.
pub fn g_profiles(path: &Path, a: &Analysis, excl: bool, title: &str) -> Result<(), ReportError> {
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
    let centers: Vec<f64> = a.g_edges.windows(2).map(|w| if w[1] > 100.0 { w[0] as f64 * 1.25 } else { 0.5 * (w[0] + w[1]) as f64 }).collect();
    for l in 0..nl {
        for h in 0..nh {
            let gmax = picks.iter().flat_map(|&s| a.head_g(excl, s, l, h).iter().copied()).filter(|v| v.is_finite()).fold(2.0, f64::max) * 1.1;
            let gmin = picks.iter().flat_map(|&s| a.head_g(excl, s, l, h).iter().copied()).filter(|v| v.is_finite() && *v > 0.0).fold(0.5, f64::min).max(0.01) * 0.8;
            let mut ch = ChartBuilder::on(&panels[l * nh + h])
                .caption(format!("L{l}.H{h}"), ("sans-serif", 15))
                .margin(6)
                .x_label_area_size(32)
                .y_label_area_size(42)
                .build_cartesian_2d(0f64..3.0, (gmin..gmax).log_scale())
                .map_err(err(path))?;
            ch.configure_mesh().x_desc("distance / contact distance").y_desc("g(r)").x_labels(7).y_labels(5).draw().map_err(err(path))?;
            ch.draw_series(LineSeries::new(vec![(0.0, 1.0), (3.0, 1.0)], BLACK.mix(0.4))).map_err(err(path))?;
            ch.draw_series(LineSeries::new(vec![(1.0, gmin), (1.0, gmax)], BLACK.mix(0.4))).map_err(err(path))?;
            for (k, &s) in picks.iter().enumerate() {
                let g = a.head_g(excl, s, l, h);
                let pts: Vec<(f64, f64)> = centers.iter().zip(g).filter(|(c, v)| v.is_finite() && **v > 0.0 && **c <= 3.0).map(|(&c, &v)| (c, v.max(gmin))).collect();
                let series = ch.draw_series(LineSeries::new(pts.clone(), colors[k].stroke_width(2))).map_err(err(path))?;
                if l == 0 && h == 0 {
                    series.label(format!("step {}", a.steps[s])).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colors[k].stroke_width(2)));
                }
                ch.draw_series(pts.iter().map(|&p| Circle::new(p, 2, colors[k].filled()))).map_err(err(path))?;
            }
            if l == 0 && h == 0 {
                ch.configure_series_labels().position(SeriesLabelPosition::UpperRight).background_style(WHITE.mix(0.85)).border_style(BLACK).draw().map_err(err(path))?;
            }
        }
    }
    root.present().map_err(err(path))?;
    Ok(())
}

/// Mean attention entropy per head against step.
pub fn entropy_figure(path: &Path, a: &Analysis, title: &str) -> Result<(), ReportError> {
    let root = BitMapBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let xmax = a.steps.last().copied().unwrap_or(1) as f64 * 1.2 + 2.0;
    let ymax = (a.n_particles.max(2) as f64).ln() * 1.05;
    let mut ch = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((1f64..xmax).log_scale(), 0f64..ymax)
        .map_err(err(path))?;
    ch.configure_mesh().x_desc("step + 1").x_label_formatter(&|x| format!("{x:.0}")).y_desc("mean attention entropy (nats)").draw().map_err(err(path))?;
    ch.draw_series(LineSeries::new(vec![(1.0, ymax / 1.05), (xmax, ymax / 1.05)], BLACK.mix(0.4))).map_err(err(path))?.label("ln N (uniform)").legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.mix(0.4)));
    for l in 0..a.n_layers {
        for h in 0..a.n_heads {
            let c = Palette99::pick(l * a.n_heads + h).to_rgba();
            let e = a.head_series("entropy", l, h).unwrap_or_default();
            let pts: Vec<(f64, f64)> = a.steps.iter().zip(&e).filter(|p| p.1.is_finite()).map(|(&s, &v)| (s as f64 + 1.0, v)).collect();
            ch.draw_series(LineSeries::new(pts, c.stroke_width(2))).map_err(err(path))?.label(format!("L{l}.H{h}")).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        }
    }
    ch.configure_series_labels().position(SeriesLabelPosition::LowerLeft).background_style(WHITE.mix(0.85)).border_style(BLACK).draw().map_err(err(path))?;
    root.present().map_err(err(path))?;
    Ok(())
}

/// Collision-head series of several seeds with the pooled fits.
pub fn pooled_figure(path: &Path, series: &[(String, Series)], pooled: Option<&SeriesFit>, title: &str) -> Result<(), ReportError> {
    let root = BitMapBackend::new(path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let xmax = series.iter().flat_map(|(_, s)| s.t.iter().copied()).fold(1.0, f64::max) * 1.2 + 2.0;
    let ymin = series.iter().flat_map(|(_, s)| s.y.iter().copied()).fold(0.0, f64::min).max(-1.0) - 0.05;
    let mut ch = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((1f64..xmax).log_scale(), ymin..1.05f64)
        .map_err(err(path))?;
    ch.configure_mesh().x_desc("step + 1").x_label_formatter(&|x| format!("{x:.0}")).y_desc("self-excluded normalized score").draw().map_err(err(path))?;
    for (k, (name, s)) in series.iter().enumerate() {
        let c = Palette99::pick(k).to_rgba();
        ch.draw_series(s.t.iter().zip(&s.y).map(move |(&t, &y)| Circle::new((t + 1.0, y), 2, c.filled())))
            .map_err(err(path))?
            .label(name.clone())
            .legend(move |(x, y)| Circle::new((x + 9, y), 3, c.filled()));
    }
    if let Some(f) = pooled {
        for mf in &f.fits {
            let c = model_color(mf.model);
            let pts: Vec<(f64, f64)> = f.band_t.iter().map(|&t| (t + 1.0, mf.predict(t))).filter(|p| p.1.is_finite() && p.1 > ymin - 1.0 && p.1 < 2.0).collect();
            ch.draw_series(LineSeries::new(pts, c.stroke_width(if mf.delta_aicc == 0.0 { 3 } else { 1 })))
                .map_err(err(path))?
                .label(format!("pooled {} (ΔAICc {:.1})", mf.model.name(), mf.delta_aicc))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        }
    }
    ch.configure_series_labels().position(SeriesLabelPosition::UpperLeft).background_style(WHITE.mix(0.85)).border_style(BLACK).draw().map_err(err(path))?;
    root.present().map_err(err(path))?;
    Ok(())
}

/// Per head: the collision score (left axis) beside the head's
/// weight-refined LLC with ±2 SE (right axis), and the whole-model LLC in
/// the first panel's title row, over training steps (log x).
pub fn llc_figure(path: &Path, a: &Analysis, series: &str, llc: &headlab_store::llc::LlcSeries, title: &str) -> Result<(), ReportError> {
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
        let score: Vec<(f64, f64)> = a.steps.iter().zip(&sc).filter(|p| p.1.is_finite()).map(|(&s, &v)| (s as f64 + 1.0, v)).collect();
        // Per-head LLC when present, else the whole model's.
        let (lv, ls, which) = match (llc.head_column("llc", l, h), llc.head_column("se", l, h)) {
            (Some(v), Some(s)) if llc.per_head => (v, s, "head LLC"),
            _ => (whole.map(|v| v.to_vec()).unwrap_or_default(), whole_se.map(|v| v.to_vec()).unwrap_or_default(), "whole-model LLC"),
        };
        let pts: Vec<(f64, f64, f64)> = llc.steps.iter().zip(lv.iter().zip(ls.iter().chain(std::iter::repeat(&0.0)))).filter(|(_, (v, _))| v.is_finite()).map(|(&s, (&v, &e))| (s as f64 + 1.0, v, if e.is_finite() { e } else { 0.0 })).collect();
        let (mut lo, mut hi) = pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.1 - 2.0 * p.2), hi.max(p.1 + 2.0 * p.2)));
        if !lo.is_finite() || !hi.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        let pad = (hi - lo).abs().max(1e-9) * 0.08;
        let mut ch = ChartBuilder::on(panel)
            .caption(format!("L{l}.H{h}"), ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(35)
            .y_label_area_size(45)
            .right_y_label_area_size(55)
            .build_cartesian_2d((1f64..xmax).log_scale(), -0.05f64..1.05)
            .map_err(err(path))?
            .set_secondary_coord((1f64..xmax).log_scale(), (lo - pad)..(hi + pad));
        ch.configure_mesh().x_desc("step + 1").x_label_formatter(&|x| format!("{x:.0}")).y_desc("collision score").max_light_lines(2).draw().map_err(err(path))?;
        ch.configure_secondary_axes().y_desc(which).draw().map_err(err(path))?;
        ch.draw_series(score.iter().map(|&p| Circle::new(p, 3, SCORE.filled()))).map_err(err(path))?;
        ch.draw_secondary_series(pts.iter().map(|&(x, v, e)| PathElement::new(vec![(x, v - 2.0 * e), (x, v + 2.0 * e)], LLC.mix(0.5)))).map_err(err(path))?;
        ch.draw_secondary_series(LineSeries::new(pts.iter().map(|&(x, v, _)| (x, v)), LLC.stroke_width(2))).map_err(err(path))?;
    }
    let lg = legend.margin(5, 5, 30, 5);
    lg.draw(&Circle::new((10, 10), 4, SCORE.filled())).map_err(err(path))?;
    lg.draw(&Text::new(format!("collision score ({series}), left axis"), (22, 3), ("sans-serif", 15))).map_err(err(path))?;
    lg.draw(&PathElement::new(vec![(380, 10), (405, 10)], LLC.stroke_width(2))).map_err(err(path))?;
    lg.draw(&Text::new("LLC (SGLD, ±2 SE over chains), right axis", (412, 3), ("sans-serif", 15))).map_err(err(path))?;
    root.present().map_err(err(path))?;
    Ok(())
}

/// Gradient noise measured during training (`[grad_noise] every > 0`): the
/// Hill tail index of minibatch-gradient-noise norms and of single
/// coordinates, each with ±1 SE, against the index of an equally sized
/// Gaussian sample (lower = heavier tail), over training steps.
pub fn noise_figure(path: &Path, m: &Metrics, title: &str) -> Result<(), ReportError> {
    let root = BitMapBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let rec = &m.noise;
    let xmax = rec.iter().map(|r| r.step).max().unwrap_or(1) as f64 * 1.2 + 2.0;
    let vals = rec.iter().flat_map(|r| [r.norm_hill_alpha + r.norm_hill_se, r.coord_hill_alpha + r.coord_hill_se, r.norm_gaussian_hill_alpha, r.coord_gaussian_hill_alpha]);
    let ymax = vals.filter(|v| v.is_finite()).fold(1.0f64, f64::max) * 1.1;
    let mut ch = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((1f64..xmax).log_scale(), 0f64..ymax)
        .map_err(err(path))?;
    ch.configure_mesh().x_desc("step + 1").x_label_formatter(&|x| format!("{x:.0}")).y_desc("Hill tail index α (lower = heavier tail)").draw().map_err(err(path))?;
    #[allow(clippy::type_complexity)]
    let series: [(&str, fn(&headlab_store::metrics::NoiseRecord) -> (f64, f64), RGBColor); 4] = [
        ("noise norm", |r| (r.norm_hill_alpha, r.norm_hill_se), RGBColor(214, 39, 40)),
        ("noise norm, Gaussian reference", |r| (r.norm_gaussian_hill_alpha, 0.0), RGBColor(255, 152, 150)),
        ("single coordinates", |r| (r.coord_hill_alpha, r.coord_hill_se), SCORE),
        ("single coordinates, Gaussian reference", |r| (r.coord_gaussian_hill_alpha, 0.0), RGBColor(174, 199, 232)),
    ];
    for (label, get, c) in series {
        let pts: Vec<(f64, f64, f64)> = rec.iter().map(|r| (r.step as f64 + 1.0, get(r).0, get(r).1)).filter(|p| p.1.is_finite()).collect();
        ch.draw_series(pts.iter().filter(|p| p.2 > 0.0).map(|&(x, v, e)| PathElement::new(vec![(x, (v - e).max(0.0)), (x, v + e)], c.mix(0.6)))).map_err(err(path))?;
        ch.draw_series(LineSeries::new(pts.iter().map(|&(x, v, _)| (x, v)), c.stroke_width(2)).point_size(3)).map_err(err(path))?.label(label).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
    }
    ch.configure_series_labels().position(SeriesLabelPosition::UpperRight).background_style(WHITE.mix(0.85)).border_style(BLACK).draw().map_err(err(path))?;
    root.present().map_err(err(path))?;
    Ok(())
}
