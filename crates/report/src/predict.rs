//! The study report's "Predicting the emergence step" section: per run,
//! every predictor's step beside the actual one, each predictor's errors
//! against the mean baselines, and the figure of predicted against actual
//! step with the diagonal ([`headlab_analysis::fit::predict`]).

use std::fmt::Write as _;
use std::path::Path;

use headlab_analysis::fit::predict::{Evaluation, Predictor, EARLY_FRACTION, TARGET_FRACTION};
use headlab_analysis::plot::{legend, Frame};
use headlab_store::html::escape as esc;
use plotters::prelude::*;

use crate::plots::FIGURE;
use crate::ReportError;

fn err<E: std::fmt::Debug>(path: &Path) -> impl Fn(E) -> ReportError + '_ {
    move |e| ReportError::Plot { path: path.to_path_buf(), msg: format!("{e:?}") }
}

fn color(p: Predictor) -> RGBColor {
    match p {
        Predictor::Extrapolate => RGBColor(140, 86, 75),
        Predictor::ExtrapolateAny => RGBColor(227, 119, 194),
        Predictor::LossClock => RGBColor(31, 119, 180),
        Predictor::QkClock => RGBColor(44, 160, 44),
        Predictor::MeanAll => RGBColor(127, 127, 127),
        Predictor::MeanSetting => RGBColor(0, 0, 0),
    }
}

/// Predicted against actual emergence step, one marker per run and
/// predictor (color: predictor; shape: setting), log–log, with the diagonal
/// and the ×2 band.
pub fn prediction_figure(path: &Path, ev: &Evaluation) -> Result<(), ReportError> {
    headlab_store::with_atomic_path(path, |tmp| prediction_figure_at(tmp, ev))
}

fn prediction_figure_at(path: &Path, ev: &Evaluation) -> Result<(), ReportError> {
    let root = BitMapBackend::new(path, (900, 780)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let mut pts: Vec<(Predictor, usize, f64, f64)> = Vec::new();
    for c in &ev.cases {
        if !(c.actual > 0.0) {
            continue;
        }
        let si = ev.settings.iter().position(|s| *s == c.setting).unwrap_or(0);
        for p in &c.predictions {
            if p.made() && p.step > 0.0 {
                pts.push((p.predictor, si, c.actual, p.step));
            }
        }
    }
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    for &(_, _, a, p) in &pts {
        lo = lo.min(a).min(p);
        hi = hi.max(a).max(p);
    }
    if !(lo.is_finite() && hi > 0.0) {
        lo = 10.0;
        hi = 1000.0;
    }
    let (lo, hi) = (lo / 1.5, hi * 1.5);
    let mut ch = Frame { caption: 20, ..FIGURE }
        .on(&root, "Emergence step: predicted against actual, one marker per run")
        .build_cartesian_2d((lo..hi).log_scale(), (lo..hi).log_scale())
        .map_err(err(path))?;
    ch.configure_mesh()
        .light_line_style(WHITE)
        .x_desc("actual step (smoothed score crosses half its final value); dashed: a factor 2 off")
        .y_desc("predicted step")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(err(path))?;
    ch.draw_series(LineSeries::new(vec![(lo, lo), (hi, hi)], BLACK.stroke_width(1)))
        .map_err(err(path))?
        .label("predicted = actual")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK));
    let band = BLACK.mix(0.3);
    for f in [2.0, 0.5] {
        ch.draw_series(DashedLineSeries::new(vec![(lo, lo * f), (hi, hi * f)], 4, 4, band.stroke_width(1)))
            .map_err(err(path))?;
    }
    for p in Predictor::ALL {
        let c = color(p);
        let n_made = pts.iter().filter(|x| x.0 == p).count();
        let n_all = ev.cases.iter().filter(|c| c.actual > 0.0).count();
        let mine: Vec<(usize, f64, f64)> = pts.iter().filter(|x| x.0 == p).map(|x| (x.1, x.2, x.3)).collect();
        let style = if p.is_baseline() { c.mix(0.8).stroke_width(2) } else { c.filled() };
        ch.draw_series(mine.iter().map(move |&(si, a, y)| -> DynElement<BitMapBackend, (f64, f64)> {
            match si % 3 {
                0 => Circle::new((a, y), 5, style).into_dyn(),
                1 => TriangleMarker::new((a, y), 7, style).into_dyn(),
                _ => Cross::new((a, y), 5, style).into_dyn(),
            }
        }))
        .map_err(err(path))?
        .label(format!("{} ({n_made} of {n_all} runs)", p.name()))
        .legend(move |(x, y)| Circle::new((x + 9, y), 4, c.filled()));
    }
    // The settings' shapes, as legend entries in black.
    for (k, name) in ev.settings.iter().enumerate() {
        let shape = k % 3;
        ch.draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
            .map_err(err(path))?
            .label(format!("setting {name}"))
            .legend(move |(x, y)| -> DynElement<BitMapBackend, (i32, i32)> {
                match shape {
                    0 => Circle::new((x + 9, y), 4, BLACK.stroke_width(1)).into_dyn(),
                    1 => TriangleMarker::new((x + 9, y), 6, BLACK.stroke_width(1)).into_dyn(),
                    _ => Cross::new((x + 9, y), 4, BLACK.stroke_width(1)).into_dyn(),
                }
            });
    }
    legend(&mut ch, SeriesLabelPosition::UpperLeft).draw().map_err(err(path))?;
    root.present().map_err(err(path))?;
    Ok(())
}

fn step(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.0}")
    } else {
        "–".into()
    }
}

/// The section's HTML; draws `fig` (a file name) into `out`.
pub fn prediction_section(ev: &Evaluation, out: &Path, fig: &str) -> Result<String, ReportError> {
    prediction_figure(&out.join(fig), ev)?;
    let mut h = String::new();
    let _ = writeln!(h, "<h2>Predicting the emergence step</h2>");
    let _ = writeln!(
        h,
        "<p>Can the emergence step be told before it happens? For each run, the predictors see only the checkpoints and training metrics up to the <b>cutoff</b>, the last checkpoint before the run's collision-head score (smoothed: running median of 3 checkpoints) first reaches {:.0} % of its final value (the mean of its last checkpoints); they predict where the smoothed score crosses {:.0} % of its final value (<b>actual</b>). The clocks' ratios and the baselines' means are calibrated on {}: a run never calibrates its own prediction. Errors are ln(predicted/actual); runs are the unit (intervals are Student-t over runs).</p>",
        EARLY_FRACTION * 100.0,
        TARGET_FRACTION * 100.0,
        esc(&ev.calibration)
    );
    let _ = writeln!(h, "<ul>");
    for p in Predictor::ALL {
        let _ = writeln!(h, "<li><code>{}</code>: {}</li>", p.name(), esc(p.describe()));
    }
    let _ = writeln!(h, "</ul>");
    // Summary table.
    let lv = ev.level * 100.0;
    let _ = write!(
        h,
        "<table><tr><th>predictor</th><th>runs predicted</th><th>mean |ln(pred/actual)|</th><th>median |rel. error|</th><th>max |rel. error|</th><th>median |error| (steps)</th><th>closer than mean_all</th><th>|ln err| − mean_all's [{lv:.0} % over runs]</th><th>|ln err| − mean_setting's [{lv:.0} %]</th>"
    );
    for s in &ev.settings {
        let _ = write!(h, "<th>mean |ln err|, {}</th>", esc(s));
    }
    let _ = writeln!(h, "</tr>");
    let iv = |d: &[f64; 3]| {
        if d[0].is_finite() && d[1].is_finite() {
            format!("{:+.2} [{:+.2}, {:+.2}]", d[0], d[1], d[2])
        } else if d[0].is_finite() {
            format!("{:+.2}", d[0])
        } else {
            "–".into()
        }
    };
    let f2 = |v: f64| if v.is_finite() { format!("{v:.2}") } else { "–".into() };
    let pc = |v: f64| if v.is_finite() { format!("{:.0} %", v * 100.0) } else { "–".into() };
    for s in &ev.summary {
        let _ = write!(
            h,
            "<tr><td><code>{}</code></td><td>{} of {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
            s.predictor.name(),
            s.n_predicted,
            s.n_runs,
            f2(s.mean_abs_log_error),
            pc(s.median_abs_rel_error),
            pc(s.max_abs_rel_error),
            step(s.median_abs_error),
            if s.predictor == Predictor::MeanAll { "–".into() } else { format!("{} of {}", s.wins_vs_mean_all, s.paired_vs_mean_all) },
            if s.predictor == Predictor::MeanAll { "–".into() } else { iv(&s.diff_vs_mean_all) },
            if s.predictor == Predictor::MeanSetting { "–".into() } else { iv(&s.diff_vs_mean_setting) },
        );
        for v in &s.per_setting {
            let _ = write!(h, "<td>{}</td>", f2(*v));
        }
        let _ = writeln!(h, "</tr>");
    }
    let _ = writeln!(h, "</table>");
    let _ = writeln!(h, "<p>");
    for s in &ev.summary {
        if s.n_runs > 0 {
            let _ = writeln!(h, "{}<br>", esc(&s.sentence()));
        }
    }
    let _ = writeln!(h, "</p>");
    // Per-run table.
    let _ = write!(h, "<table><tr><th>run</th><th>setting</th><th>cutoff</th><th>actual</th><th>loss landmark</th><th>QK landmark</th>");
    for p in Predictor::ALL {
        let _ = write!(h, "<th>{}</th>", p.name());
    }
    let _ = writeln!(h, "</tr>");
    for c in &ev.cases {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
            esc(&c.name),
            esc(&c.setting),
            step(c.cutoff),
            step(c.actual),
            step(c.loss_landmark),
            step(c.qk_landmark)
        );
        for p in &c.predictions {
            let cell = if p.made() {
                match c.actual {
                    a if a > 0.0 => format!("{} ({:+.0} %)", step(p.step), (p.step / a - 1.0) * 100.0),
                    _ => step(p.step),
                }
            } else {
                "none".into()
            };
            let _ = write!(h, "<td title=\"{}\">{}</td>", esc(&p.note), esc(&cell));
        }
        let _ = writeln!(h, "</tr>");
    }
    let _ = writeln!(h, "</table>");
    let _ = writeln!(h, "<p class=\"small\">Hover a cell for how the prediction was made or why there is none. No prediction counts as a failure in \"runs predicted\" and is left out of the error columns.</p>");
    let _ = writeln!(
        h,
        "<figure><img src=\"{f}\" alt=\"{f}\"><figcaption>Predicted against actual emergence step for every run (color: predictor; shape: setting); on the solid diagonal the prediction is exact, between the dashed lines it is within a factor 2. Predictors that made no prediction for a run have no marker there.</figcaption></figure>",
        f = esc(fig)
    );
    Ok(h)
}
