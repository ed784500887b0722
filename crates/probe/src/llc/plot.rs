//! The PNG of `RUN/llc.h5`: the LLC over checkpoints (whole model and each
//! head), the chains' traces at the last checkpoint, and the calibration
//! sweep when there is one.

use std::path::Path;

use headlab_analysis::plot::{fmt_tick, legend, Frame};
use headlab_store::llc::{LlcCalibration, LlcSeries};
use plotters::prelude::*;

use super::{LlcError, Result};

type DResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// Every panel of the figure.
const PANEL: Frame = Frame { caption: 18, margin: 10, x_label_area: 35, y_label_area: 55 };

/// Draw `RUN/llc.h5` as a PNG: the LLC over checkpoints (whole model with
/// ±2 se, and each head), the chains' traces at the last checkpoint, and the
/// calibration sweep when there is one.
pub fn plot_llc(series: &LlcSeries, out: &Path) -> Result<()> {
    // Drawn beside the target and renamed over it: never a truncated PNG.
    let tmp = headlab_store::fsutil::partial_path(out);
    if let Err(e) = draw(series, &tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(LlcError::Problem(format!("{}: cannot draw the plot: {e}", out.display())));
    }
    headlab_store::fsutil::commit_partial(out).map_err(|e| LlcError::Problem(format!("cannot write the plot: {e}")))
}

fn draw(s: &LlcSeries, out: &Path) -> DResult {
    let series_panels = if s.steps.is_empty() { 0 } else { 2 };
    let panels = series_panels + s.calibration.is_some() as usize;
    let root = BitMapBackend::new(out, (520 * panels.max(1) as u32, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((1, panels.max(1)));
    if series_panels > 0 {
        draw_series(s, &areas[0], &areas[1])?;
    }
    if let Some(cal) = &s.calibration {
        draw_calibration(cal, &areas[series_panels])?;
    }
    root.present()?;
    Ok(())
}

/// Head (l, h)'s LLC over steps; a per-head series without that column is
/// an error (never an empty line).
fn head_llc(s: &LlcSeries, l: usize, h: usize) -> std::result::Result<Vec<f64>, String> {
    s.head_column("llc", l, h).ok_or_else(|| {
        format!("the series is per head but has no `llc` column for head {l}.{h}; run `headlab llc` again")
    })
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

fn draw_series(s: &LlcSeries, a0: &Area, a1: &Area) -> DResult {
    // 1. LLC over training steps.
    {
        let a = a0;
        let llc = s.model_column("llc").unwrap_or(&[]);
        let se = s.model_column("se").unwrap_or(&[]);
        let xs: Vec<f64> = s.steps.iter().map(|&x| (x.max(1)) as f64).collect();
        let mut ymax =
            llc.iter().zip(se).map(|(v, e)| v + 2.0 * e.max(0.0)).filter(|v| v.is_finite()).fold(0.0, f64::max);
        let mut ymin = llc.iter().cloned().filter(|v| v.is_finite()).fold(0.0, f64::min);
        if s.per_head {
            for l in 0..s.n_layers {
                for h in 0..s.n_heads {
                    for v in head_llc(s, l, h)? {
                        if v.is_finite() {
                            ymax = ymax.max(v);
                            ymin = ymin.min(v);
                        }
                    }
                }
            }
        }
        // One checkpoint (or all at one step): centred, not on the axis.
        let (first, last) = (xs.first().cloned().unwrap_or(1.0), xs.last().cloned().unwrap_or(10.0));
        let (x0, x1) = if last > first { (first, last) } else { (first / 1.5, first * 1.5) };
        let pad = 0.05 * (ymax - ymin).max(1e-6);
        let (y0, y1) = (ymin - pad, ymax + 2.0 * pad);
        let mut chart = PANEL.on(a, "LLC over training").build_cartesian_2d((x0..x1).log_scale(), y0..y1)?;
        chart
            .configure_mesh()
            .x_desc("training step")
            .y_desc("LLC (nβ·E[ΔL])")
            .y_label_formatter(&|v| fmt_tick(*v, false, y1 - y0))
            .draw()?;
        if s.per_head {
            for l in 0..s.n_layers {
                for h in 0..s.n_heads {
                    let c = Palette99::pick(1 + l * s.n_heads + h).to_rgba();
                    // Flagged estimates hollow and off the line, as the whole model's.
                    let lh = s.n_layers * s.n_heads;
                    let flagged = |i: usize| s.heads.flags.get(i * lh + l * s.n_heads + h).copied().unwrap_or(0) != 0;
                    let all: Vec<((f64, f64), bool)> = xs
                        .iter()
                        .cloned()
                        .zip(head_llc(s, l, h)?)
                        .enumerate()
                        .filter(|(_, p)| p.1.is_finite())
                        .map(|(i, p)| (p, flagged(i)))
                        .collect();
                    // Markers too: a line through one checkpoint draws nothing.
                    chart.draw_series(
                        all.iter().map(|&(p, bad)| Circle::new(p, 3, if bad { c.stroke_width(1) } else { c.filled() })),
                    )?;
                    let pts: Vec<(f64, f64)> = all.iter().filter(|p| !p.1).map(|p| p.0).collect();
                    chart
                        .draw_series(LineSeries::new(pts, c.stroke_width(1)))?
                        .label(format!("head {l}.{h}"))
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], c));
                }
            }
        }
        // Flagged estimates (no step-size plateau, negative, not a minimum, ...)
        // are drawn as hollow red rings, not as results.
        let flagged = |i: usize| s.model.flags.get(i).copied().unwrap_or(0) != 0;
        let all: Vec<(f64, f64, f64, bool)> = xs
            .iter()
            .zip(llc)
            .zip(se)
            .enumerate()
            .filter(|(_, ((_, v), _))| v.is_finite())
            .map(|(i, ((&x, &v), &e))| (x, v, if e.is_finite() { 2.0 * e } else { 0.0 }, flagged(i)))
            .collect();
        let pts: Vec<(f64, f64, f64)> = all.iter().filter(|p| !p.3).map(|p| (p.0, p.1, p.2)).collect();
        let bad: Vec<(f64, f64, f64)> = all.iter().filter(|p| p.3).map(|p| (p.0, p.1, p.2)).collect();
        chart
            .draw_series(bad.iter().map(|&(x, v, _)| Circle::new((x, v), 5, RED.stroke_width(2))))?
            .label(if s.per_head { "flagged (unreliable; heads: hollow)" } else { "flagged (unreliable)" })
            .legend(|(x, y)| Circle::new((x + 7, y), 4, RED.stroke_width(2)));
        chart.draw_series(
            bad.iter().map(|&(x, v, e)| PathElement::new(vec![(x, v - e), (x, v + e)], RED.mix(0.5).stroke_width(1))),
        )?;
        chart.draw_series(
            pts.iter().map(|&(x, v, e)| PathElement::new(vec![(x, v - e), (x, v + e)], BLACK.stroke_width(1))),
        )?;
        chart
            .draw_series(pts.iter().map(|&(x, v, _)| Circle::new((x, v), 3, BLACK.filled())))?
            .label("whole model ± 2 se")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLACK));
        chart.draw_series(LineSeries::new(pts.iter().map(|&(x, v, _)| (x, v)), BLACK.stroke_width(2)))?;
        legend(&mut chart, SeriesLabelPosition::UpperLeft).background_style(WHITE.mix(0.8)).draw()?;
    }
    // 2. Traces of the last checkpoint.
    {
        let a = a1;
        let (c, t) = (s.chains, s.trace_len);
        let last = s.steps.len().saturating_sub(1);
        let tr: Vec<f32> = if s.steps.is_empty() || t == 0 {
            vec![]
        } else {
            s.model.delta_trace[last * c * t..(last + 1) * c * t].to_vec()
        };
        let fin = tr.iter().cloned().filter(|v| v.is_finite());
        let (lo, hi) = fin.fold((0f32, 0f32), |(a, b), v| (a.min(v), b.max(v)));
        let xmax = (t * s.trace_block.max(1)) as f64;
        let title = match s.steps.get(last) {
            Some(st) => format!("chains at step {st}: nβ·ΔL per draw"),
            None => "chains".into(),
        };
        let (y0, y1) = (lo as f64 * 1.1 - 1e-6, hi as f64 * 1.1 + 1e-6);
        let mut chart = PANEL.on(a, &title).build_cartesian_2d(0.0..xmax.max(1.0), y0..y1)?;
        chart
            .configure_mesh()
            .x_desc("SGLD draw")
            .y_desc("nβ·(L_B(w) − L_B(w*))")
            .y_label_formatter(&|v| fmt_tick(*v, false, y1 - y0))
            .draw()?;
        for ch in 0..c {
            let col = Palette99::pick(ch).to_rgba();
            let pts: Vec<(f64, f64)> = (0..t)
                .map(|i| {
                    (((i + 1) * s.trace_block.max(1)) as f64, tr.get(ch * t + i).copied().unwrap_or(f32::NAN) as f64)
                })
                .filter(|p| p.1.is_finite())
                .collect();
            chart
                .draw_series(LineSeries::new(pts, col.stroke_width(1)))?
                .label(format!("chain {ch}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], col));
        }
        if let Some(&v) = s.model_column("llc").and_then(|v| v.get(last)) {
            if v.is_finite() {
                chart
                    .draw_series(LineSeries::new(vec![(0.0, v), (xmax, v)], BLACK.stroke_width(2)))?
                    .label("estimate")
                    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLACK));
            }
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight).background_style(WHITE.mix(0.8)).draw()?;
    }
    Ok(())
}

fn draw_calibration(cal: &LlcCalibration, a: &Area) -> DResult {
    {
        let e = cal.epsilon.len();
        let fin: Vec<f64> =
            cal.llc.iter().zip(&cal.se).map(|(v, s)| v + 2.0 * s.max(0.0)).filter(|v| v.is_finite()).collect();
        let hi = fin.iter().cloned().fold(1e-6, f64::max);
        let lo = cal.llc.iter().cloned().filter(|v| v.is_finite()).fold(0.0, f64::min);
        let (x0, x1) =
            (cal.epsilon.first().cloned().unwrap_or(1e-6) / 1.5, cal.epsilon.last().cloned().unwrap_or(1e-3) * 1.5);
        let mut chart = PANEL
            .on(a, &format!("calibration at step {}", cal.step))
            .build_cartesian_2d((x0..x1).log_scale(), lo * 1.1..hi * 1.1)?;
        chart
            .configure_mesh()
            .x_desc("step size ε")
            .y_desc("LLC estimate")
            .x_label_formatter(&|x| format!("{x:.0e}"))
            .draw()?;
        for (gi, g) in cal.gamma.iter().enumerate() {
            let col = Palette99::pick(gi).to_rgba();
            let row: Vec<(f64, f64, f64, u32)> = (0..e)
                .map(|i| (cal.epsilon[i], cal.llc[gi * e + i], cal.se[gi * e + i], cal.n_failed[gi * e + i]))
                .collect();
            chart
                .draw_series(LineSeries::new(
                    row.iter().filter(|r| r.1.is_finite()).map(|r| (r.0, r.1)),
                    col.stroke_width(2),
                ))?
                .label(format!("γ = {g}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], col));
            chart.draw_series(row.iter().filter(|r| r.1.is_finite()).map(|r| {
                let e2 = if r.2.is_finite() { 2.0 * r.2 } else { 0.0 };
                PathElement::new(vec![(r.0, r.1 - e2), (r.0, r.1 + e2)], col.stroke_width(1))
            }))?;
            chart.draw_series(
                row.iter().filter(|r| r.1.is_finite()).map(|r| Circle::new((r.0, r.1), 3, col.filled())),
            )?;
            // Failed points: red crosses at the bottom.
            chart.draw_series(
                row.iter()
                    .filter(|r| r.3 > 0)
                    .map(|r| Cross::new((r.0, lo * 1.1 + (hi - lo) * 0.03), 6, RED.stroke_width(2))),
            )?;
        }
        if let Some((re, _)) = cal.recommended {
            chart
                .draw_series(LineSeries::new(vec![(re, lo * 1.1), (re, hi * 1.1)], BLUE.stroke_width(2)))?
                .label("recommended ε")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLUE));
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft).background_style(WHITE.mix(0.8)).draw()?;
    }
    Ok(())
}
