//! One figure per head: collision score, attention entropy with the snap
//! step, the logit change the snap is detected on, and the att-SVM cosine.

use std::path::{Path, PathBuf};

use headlab_store::analysis::Analysis;
use headlab_store::series::SeriesKey;
use plotters::prelude::*;

use super::LensPhysics;
use crate::freeze::FreezeConfig;
use crate::plot::{legend, StepAxis, PANEL};

/// Series of analysis.h5 plotted as "the collision score" by default.
pub const SCORE_SERIES: SeriesKey = crate::fitrun::DEFAULT_SERIES;

fn perr(path: &Path) -> impl Fn(String) -> crate::AnalysisError + '_ {
    move |msg| crate::AnalysisError::Run { path: path.to_path_buf(), msg: format!("cannot draw plot: {msg}") }
}

fn pts(steps: &[u64], v: &[f64]) -> Vec<(f64, f64)> {
    steps.iter().zip(v).filter(|p| p.1.is_finite()).map(|(&s, &y)| (s as f64 + 1.0, y)).collect()
}

/// Draw the figure of head (layer, head) into `path` (PNG, 900×1100).
pub fn head_figure(
    path: &Path,
    an: &Analysis,
    score_series: &str,
    lp: &LensPhysics,
    freeze: &FreezeConfig,
    layer: usize,
    head: usize,
) -> crate::Result<()> {
    // Drawn beside the target and renamed over it: never a truncated PNG.
    headlab_store::with_atomic_path(path, |tmp| head_figure_at(tmp, an, score_series, lp, freeze, layer, head))
}

fn head_figure_at(
    path: &Path,
    an: &Analysis,
    score_series: &str,
    lp: &LensPhysics,
    freeze: &FreezeConfig,
    layer: usize,
    head: usize,
) -> crate::Result<()> {
    let e = perr(path);
    let root = BitMapBackend::new(path, (900, 1100)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let root = root
        .titled(&format!("L{layer}.H{head}: scan, snap and max margin"), ("sans-serif", 24))
        .map_err(|x| e(x.to_string()))?;
    let panels = root.split_evenly((4, 1));
    let last = an.steps.last().copied().unwrap_or(1).max(lp.steps.last().copied().unwrap_or(1));
    let xmax = last as f64 * 1.3 + 2.0;
    let snap = lp.snap_step(layer, head);
    let red = RGBColor(214, 39, 40);
    let blue = RGBColor(31, 119, 180);
    let green = RGBColor(44, 160, 44);
    let grey = RGBColor(120, 120, 120);

    // Per panel: label, y range, curves (name, points, colour), horizontal reference lines, log y.
    type Curves = Vec<(String, Vec<(f64, f64)>, RGBColor)>;
    type PanelSpec = (String, (f64, f64), Curves, Vec<(String, f64)>, bool);
    let score = an.head_series(score_series, layer, head).unwrap_or_default();
    let ent = an.head_series(SeriesKey::Entropy, layer, head).unwrap_or_default();
    let ch = lp.head_series("freeze_change", layer, head).unwrap_or_default();
    let cos = lp.head_series("svm_cosine", layer, head).unwrap_or_default();
    let cosf = lp.head_series("svm_cosine_full", layer, head).unwrap_or_default();
    let mr = lp.head_series("svm_margin_ratio", layer, head).unwrap_or_default();
    let sat = lp.head_series("svm_satisfied", layer, head).unwrap_or_default();
    let lnn = (an.n_particles.max(2) as f64).ln();
    let ch_pos: Vec<f64> = ch.iter().map(|&v| if v > 0.0 { v } else { f64::NAN }).collect();
    let chmax = ch_pos.iter().copied().filter(|v| v.is_finite()).fold(freeze.threshold as f64 * 2.0, f64::max) * 1.5;
    let chmin = ch_pos.iter().copied().filter(|v| v.is_finite()).fold(freeze.threshold as f64 / 2.0, f64::min) / 1.5;
    let panels_spec: Vec<PanelSpec> = vec![
        (
            format!("collision score ({score_series})"),
            (-0.1, 1.05),
            vec![("score".into(), pts(&an.steps, &score), red)],
            vec![],
            false,
        ),
        (
            "attention entropy (nats)".into(),
            (0.0, lnn * 1.05),
            vec![("entropy".into(), pts(&an.steps, &ent), blue)],
            vec![("ln N (uniform)".into(), lnn)],
            false,
        ),
        (
            format!("logit change, preceding {} steps ({:?})", freeze.window, freeze.scale).to_lowercase(),
            (chmin, chmax),
            vec![("change".into(), pts(&lp.steps, &ch_pos), blue)],
            vec![(format!("threshold {}", freeze.threshold), freeze.threshold as f64)],
            true,
        ),
        (
            "W_Q·W_Kᵀ vs att-SVM".into(),
            (-1.05, 1.05),
            vec![
                ("restricted cosine".into(), pts(&lp.steps, &cos), green),
                ("full-space cosine".into(), pts(&lp.steps, &cosf), grey),
                (
                    "margin ratio (clipped at -1)".into(),
                    pts(&lp.steps, &mr.iter().map(|v| v.max(-1.0)).collect::<Vec<_>>()),
                    red,
                ),
                ("share of constraints met".into(), pts(&lp.steps, &sat), RGBColor(148, 103, 189)),
            ],
            vec![("0".into(), 0.0)],
            false,
        ),
    ];
    for (area, (label, (y0, y1), curves, refs, logy)) in panels.iter().zip(panels_spec) {
        macro_rules! draw {
            ($ch:expr) => {{
                let mut c = $ch;
                c.configure_mesh()
                    .step_axis("step")
                    .y_labels(8)
                    .y_label_formatter(&|y| format!("{y:.2}"))
                    .y_desc(label.as_str())
                    .draw()
                    .map_err(|x| e(x.to_string()))?;
                for (name, y) in &refs {
                    c.draw_series(LineSeries::new(vec![(1.0, *y), (xmax, *y)], BLACK.mix(0.35)))
                        .map_err(|x| e(x.to_string()))?
                        .label(name.clone())
                        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.mix(0.35)));
                }
                if let Some(s) = snap {
                    let xs = s as f64 + 1.0;
                    c.draw_series(LineSeries::new(vec![(xs, y0), (xs, y1)], RGBColor(255, 127, 14).stroke_width(2)))
                        .map_err(|x| e(x.to_string()))?
                        .label(format!("snap step {s}"))
                        .legend(|(x, y)| {
                            PathElement::new(vec![(x, y), (x + 18, y)], RGBColor(255, 127, 14).stroke_width(2))
                        });
                }
                for (name, p, col) in curves {
                    c.draw_series(LineSeries::new(p.clone(), col.stroke_width(2)))
                        .map_err(|x| e(x.to_string()))?
                        .label(name)
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(2)));
                    c.draw_series(p.iter().map(|&q| Circle::new(q, 2, col.filled()))).map_err(|x| e(x.to_string()))?;
                }
                legend(&mut c, SeriesLabelPosition::UpperLeft).draw().map_err(|x| e(x.to_string()))?;
            }};
        }
        let mut b = PANEL.on(area, "");
        if logy {
            draw!(b
                .build_cartesian_2d((1f64..xmax).log_scale(), (y0..y1).log_scale())
                .map_err(|x| e(x.to_string()))?);
        } else {
            draw!(b.build_cartesian_2d((1f64..xmax).log_scale(), y0..y1).map_err(|x| e(x.to_string()))?);
        }
    }
    root.present().map_err(|x| e(x.to_string()))?;
    Ok(())
}

/// All heads' figures into `dir` as `{prefix}lens_L{l}H{h}.png`; returns the file names.
pub fn head_figures(
    dir: &Path,
    prefix: &str,
    an: &Analysis,
    score_series: &str,
    lp: &LensPhysics,
    freeze: &FreezeConfig,
) -> crate::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for l in 0..lp.n_layers {
        for h in 0..lp.n_heads {
            let name = PathBuf::from(format!("{prefix}lens_L{l}H{h}.png"));
            head_figure(&dir.join(&name), an, score_series, lp, freeze, l, h)?;
            out.push(name);
        }
    }
    Ok(out)
}
