//! The LLC across seeds in the report: each seed's whole-model LLC against
//! step beside its collision score (flagged estimates drawn hollow, never as
//! plain results), the emergence step t½ marked, and the change of the LLC
//! across emergence summarized over seeds (seeds are the unit of
//! replication; Student-t interval of the per-seed differences).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use headlab_analysis::fitrun::{collision_heads, collision_series};
use headlab_analysis::heads::analysis_path;
use headlab_analysis::llc_diag::{emergence_change, flag_codes, half_rise_step, EmergenceChange, SeedSeries};
use headlab_analysis::plot::StepAxis;
use headlab_store::analysis::read_analysis;
use headlab_store::html::escape as esc;
use headlab_store::llc::{llc_path, read_llc};
use plotters::prelude::*;

use crate::plots::LLC_PANEL;
use crate::{ReportError, Result};

/// One seed's LLC and collision score.
#[derive(Debug, Clone)]
pub struct SeedLlc {
    /// The run's name.
    pub name: String,
    /// Steps of the LLC estimates.
    pub steps: Vec<u64>,
    /// Whole-model LLC.
    pub llc: Vec<f64>,
    /// Its standard error over chains.
    pub se: Vec<f64>,
    /// Reliability flags (0: none).
    pub flags: Vec<u32>,
    /// Step size used per estimate.
    pub epsilon: Vec<f64>,
    /// The collision score (mean over the run's tied top heads): (step, value).
    pub score: Vec<(u64, f64)>,
    /// Step at which the score covers half its rise (None: no rise).
    pub t_half: Option<u64>,
}

/// The seeds with an `llc.h5` holding estimates (others are left out).
pub fn load_seeds(runs: &[PathBuf], series: &str) -> Result<Vec<SeedLlc>> {
    let mut out = Vec::new();
    for run in runs {
        let p = llc_path(run);
        if !p.exists() {
            continue;
        }
        let l = read_llc(&p)?;
        if l.steps.is_empty() {
            continue;
        }
        let a = read_analysis(&analysis_path(run), false)?;
        let heads = collision_heads(&a, series);
        let times: Vec<f64> = a.steps.iter().map(|&s| s as f64).collect();
        let score: Vec<(u64, f64)> = collision_series(&a, series, &heads, &times)
            .map(|s| s.t.iter().zip(&s.y).map(|(&t, &y)| (t as u64, y)).collect())
            .unwrap_or_default();
        let (st, sv): (Vec<u64>, Vec<f64>) = score.iter().copied().unzip();
        let col = |n: &str| l.model_column(n).map(|v| v.to_vec()).unwrap_or_else(|| vec![f64::NAN; l.steps.len()]);
        out.push(SeedLlc {
            name: run.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default(),
            steps: l.steps.clone(),
            llc: col("llc"),
            se: col("se"),
            flags: l.model.flags.clone(),
            epsilon: l.model_diag("epsilon").map(|v| v.to_vec()).unwrap_or_else(|| vec![f64::NAN; l.steps.len()]),
            t_half: half_rise_step(&st, &sv),
            score,
        });
    }
    Ok(out)
}

/// The change of the LLC across emergence over seeds, and what it supports in words.
pub fn summarize(seeds: &[SeedLlc], level: f64) -> (EmergenceChange, String) {
    struct Owned {
        t: Vec<f64>,
        ok: Vec<bool>,
        te: f64,
    }
    let data: Vec<(Owned, &SeedLlc)> = seeds
        .iter()
        .filter_map(|s| {
            let te = s.t_half? as f64;
            let o = Owned {
                t: s.steps.iter().map(|&x| x as f64).collect(),
                ok: s.flags.iter().map(|&f| f == 0).collect(),
                te,
            };
            Some((o, s))
        })
        .collect();
    let refs: Vec<SeedSeries<'_>> =
        data.iter().map(|(o, s)| (o.t.as_slice(), s.llc.as_slice(), o.ok.as_slice(), o.te)).collect();
    let mut c = emergence_change(&refs, level);
    // Per seed in the order of `seeds` (NaN where a seed has no emergence step).
    let mut it = c.per_seed.clone().into_iter();
    c.per_seed =
        seeds.iter().map(|s| if s.t_half.is_some() { it.next().unwrap_or(f64::NAN) } else { f64::NAN }).collect();
    let total: usize = seeds.iter().map(|s| s.steps.len()).sum();
    let flagged: usize = seeds.iter().map(|s| s.flags.iter().filter(|&&f| f != 0).count()).sum();
    let mut words = format!(
        "LLC around emergence: {total} whole-model estimates over {} seeds, {flagged} flagged (not used). ",
        seeds.len()
    );
    if c.n_seeds < 2 {
        let _ = write!(
            words,
            "Only {} seed(s) have reliable estimates both before and after their emergence step: no statement over \
             seeds is possible.",
            c.n_seeds
        );
    } else {
        let (lo, hi) = c.interval;
        let _ = write!(
            words,
            "Change of the LLC from before to after the emergence step (mean of reliable estimates on each side, per \
             seed): {:.3} on average over {} seeds, {:.0} % interval [{:.3}, {:.3}] (Student-t over seeds). ",
            c.mean,
            c.n_seeds,
            100.0 * level,
            lo,
            hi
        );
        words.push_str(if lo > 0.0 {
            "The LLC rises across emergence in these seeds."
        } else if hi < 0.0 {
            "The LLC falls across emergence in these seeds."
        } else {
            "The interval includes 0: no change across emergence is detected (which is not evidence of no change)."
        });
    }
    (c, words)
}

/// The report section (HTML) and its figure `seeds_llc.png` in `out`, when
/// at least one run has LLC estimates; also the summary in words.
pub fn seeds_section(runs: &[PathBuf], out: &Path, series: &str, level: f64) -> Result<Option<(String, String)>> {
    let seeds = load_seeds(runs, series)?;
    if seeds.is_empty() {
        return Ok(None);
    }
    let fig = "seeds_llc.png";
    let path = out.join(fig);
    headlab_store::with_atomic_path(&path, |tmp| figure(tmp, &seeds, series))?;
    let (c, words) = summarize(&seeds, level);
    let mut h = String::from("<h3>Local learning coefficient around emergence</h3>\n");
    let _ = writeln!(h, "<p>{}</p>", esc(&words));
    let _ = writeln!(
        h,
        "<img src=\"{fig}\" alt=\"LLC against step per seed\"><p class=\"small\">Per seed: the collision score (blue dots, left axis) and the whole-model LLC estimated by SGLD at checkpoints around the step t½ where the score covers half its rise (dashed line), ±2 standard errors over chains (right axis). Filled red: reliable; hollow grey: flagged (no step-size plateau, diverged chains, negative, checkpoint not a minimum, chains not settled or disagreeing), never counted. The per-sample loss is the frame NLL ½Σ(y−f)² over the normalized outputs (see <code>headlab llc --help</code>).</p>"
    );
    h.push_str("<table><tr><th>seed</th><th>t½</th><th>step</th><th>LLC ± s.e.</th><th>ε</th><th>flags</th></tr>\n");
    for (k, s) in seeds.iter().enumerate() {
        for i in 0..s.steps.len() {
            let v = if s.flags[i] == 0 {
                format!("{:.3} ± {:.3}", s.llc[i], s.se[i])
            } else {
                format!("[{:.3} ± {:.3}] unreliable", s.llc[i], s.se[i])
            };
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1e}</td><td>{}</td></tr>",
                esc(&s.name),
                s.t_half.map_or("–".into(), |t| t.to_string()),
                s.steps[i],
                esc(&v),
                s.epsilon[i],
                esc(&flag_codes(s.flags[i]))
            );
        }
        if let Some(d) = c.per_seed.get(k).filter(|d| d.is_finite()) {
            let _ = writeln!(
                h,
                "<tr><td colspan=\"6\" class=\"small\">{}: after − before = {d:.3}</td></tr>",
                esc(&s.name)
            );
        }
    }
    h.push_str("</table>\n");
    Ok(Some((h, words)))
}

fn figure(path: &Path, seeds: &[SeedLlc], series: &str) -> Result<()> {
    let e = |m: String| ReportError::Plot { path: path.to_path_buf(), msg: m };
    let n = seeds.len().max(1);
    let root = BitMapBackend::new(path, (420 * n as u32 + 40, 380)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(format!("{x:?}")))?;
    let panels = root.split_evenly((1, n));
    const LLC: RGBColor = RGBColor(214, 39, 40);
    const SCORE: RGBColor = RGBColor(31, 119, 180);
    for (s, panel) in seeds.iter().zip(panels.iter()) {
        let xmax = s.steps.iter().chain(s.score.iter().map(|p| &p.0)).copied().max().unwrap_or(1) as f64 * 1.3 + 2.0;
        let pts: Vec<(f64, f64, f64, bool)> = (0..s.steps.len())
            .filter(|&i| s.llc[i].is_finite())
            .map(|i| {
                (s.steps[i] as f64 + 1.0, s.llc[i], if s.se[i].is_finite() { s.se[i] } else { 0.0 }, s.flags[i] == 0)
            })
            .collect();
        let (mut lo, mut hi) = pts
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.1 - 2.0 * p.2), hi.max(p.1 + 2.0 * p.2)));
        if !(lo.is_finite() && hi.is_finite()) {
            (lo, hi) = (0.0, 1.0);
        }
        let pad = (hi - lo).abs().max(1e-9) * 0.08;
        let mut ch = LLC_PANEL
            .on(panel, &s.name)
            .right_y_label_area_size(60)
            .build_cartesian_2d((1f64..xmax).log_scale(), -0.05f64..1.05)
            .map_err(|x| e(format!("{x:?}")))?
            .set_secondary_coord((1f64..xmax).log_scale(), (lo - pad)..(hi + pad));
        ch.configure_mesh()
            .step_axis("step")
            .y_desc(format!("collision score ({series})"))
            .max_light_lines(2)
            .draw()
            .map_err(|x| e(format!("{x:?}")))?;
        ch.configure_secondary_axes().y_desc("whole-model LLC").draw().map_err(|x| e(format!("{x:?}")))?;
        ch.draw_series(s.score.iter().map(|&(t, v)| Circle::new((t as f64 + 1.0, v), 2, SCORE.filled())))
            .map_err(|x| e(format!("{x:?}")))?;
        if let Some(t) = s.t_half {
            let x = t as f64 + 1.0;
            ch.draw_series(DashedLineSeries::new(vec![(x, -0.05), (x, 1.05)], 6, 4, BLACK.stroke_width(1)))
                .map_err(|x| e(format!("{x:?}")))?;
        }
        ch.draw_secondary_series(pts.iter().map(|&(x, v, se, ok)| {
            PathElement::new(
                vec![(x, v - 2.0 * se), (x, v + 2.0 * se)],
                if ok { LLC.mix(0.6) } else { RGBColor(150, 150, 150).mix(0.6) },
            )
        }))
        .map_err(|x| e(format!("{x:?}")))?;
        let good: Vec<(f64, f64)> = pts.iter().filter(|p| p.3).map(|p| (p.0, p.1)).collect();
        ch.draw_secondary_series(LineSeries::new(good.iter().copied(), LLC.stroke_width(2)))
            .map_err(|x| e(format!("{x:?}")))?;
        ch.draw_secondary_series(pts.iter().map(|&(x, v, _, ok)| {
            if ok {
                Circle::new((x, v), 5, LLC.filled())
            } else {
                Circle::new((x, v), 5, RGBColor(120, 120, 120).stroke_width(2))
            }
        }))
        .map_err(|x| e(format!("{x:?}")))?;
    }
    root.present().map_err(|x| e(format!("{x:?}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(name: &str, llc: [f64; 4], flags: [u32; 4]) -> SeedLlc {
        SeedLlc {
            name: name.into(),
            steps: vec![100, 200, 400, 800],
            llc: llc.to_vec(),
            se: vec![1.0; 4],
            flags: flags.to_vec(),
            epsilon: vec![1e-7; 4],
            score: (1..30).map(|k| (k * 30, if k * 30 >= 300 { 0.8 } else { 0.1 })).collect(),
            t_half: Some(300),
        }
    }

    #[test]
    fn summary_counts_only_reliable_estimates_and_draws() {
        let seeds = vec![
            seed("s0", [10.0, 11.0, 20.0, 21.0], [0; 4]),
            seed("s1", [9.0, 12.0, 22.0, 20.0], [0, 0, 0, 1]),
            seed("s2", [10.0, 10.0, 19.0, 24.0], [0; 4]),
        ];
        let (c, words) = summarize(&seeds, 0.95);
        assert_eq!(c.n_seeds, 3);
        assert!((c.per_seed[1] - 11.5).abs() < 1e-12, "the flagged 20.0 is left out: {:?}", c.per_seed);
        assert!(words.contains("rises"), "{words}");
        assert!(words.contains("1 flagged"), "{words}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.png");
        figure(&p, &seeds, "score").unwrap();
        assert!(std::fs::metadata(&p).unwrap().len() > 1000);
        // All flagged on one side: no statement.
        let seeds = vec![seed("s0", [10.0, 11.0, 20.0, 21.0], [1, 1, 0, 0]), seed("s1", [1.0; 4], [0; 4])];
        let (c, words) = summarize(&seeds, 0.95);
        assert_eq!(c.n_seeds, 1);
        assert!(words.contains("no statement"), "{words}");
    }
}
