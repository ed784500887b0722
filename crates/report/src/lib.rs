//! headlab-report: the HTML report of one or several probed runs — loss
//! curves, collision scores per head with fitted emergence curves and
//! confidence bands, g_h(r) heatmaps and profiles, attention entropy, a table
//! of heads and a plain-language summary of what emerged and which fitted
//! form the data supports. Self-contained folder: `index.html` plus PNGs.

pub mod plots;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use headlab_analysis::fit::text::{fmt_est as fmt_estimate, seeds_text, table_rows, verdict_sentence};
use headlab_analysis::fit::{fit_seeds, FitModel, FitOptions, FitReport, Series, SeriesFit};
use headlab_analysis::fitrun::{axis_times, collision_head, fit_analysis, head_series_on, stored_fits, RunFits, TimeAxis, DEFAULT_SERIES};
use headlab_analysis::heads::{analysis_path, best_head, BestHead};
use headlab_analysis::lens_physics;
use headlab_store::analysis::{read_analysis, Analysis};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: cannot draw figure: {msg}")]
    Plot { path: PathBuf, msg: String },
    #[error("{path}: {msg}")]
    Input { path: PathBuf, msg: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] headlab_store::StoreError),
    #[error(transparent)]
    Analysis(#[from] headlab_analysis::AnalysisError),
}

pub type Result<T, E = ReportError> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportOptions {
    /// The score series shown and fitted (a name in analysis.h5 /series).
    pub series: String,
    /// Used when a run has no stored fits for `series` (or `refit`).
    pub fit: FitOptions,
    /// Fit again even when analysis.h5 holds fits.
    pub refit: bool,
    /// Also show fits against the cumulative learning rate (when the run
    /// has metrics.h5).
    pub lr_axis: bool,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self { series: DEFAULT_SERIES.into(), fit: FitOptions::default(), refit: false, lr_axis: true }
    }
}

#[derive(Debug, Clone)]
pub struct RunReport {
    pub run: PathBuf,
    pub best: Option<BestHead>,
    /// One-paragraph plain-language summary.
    pub summary: String,
}

#[derive(Debug, Clone)]
pub struct ReportSummary {
    pub index: PathBuf,
    pub runs: Vec<RunReport>,
    /// One honest line: did a collision-detecting head emerge?
    pub headline: String,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn fmt_est(v: f64, lo: f64, hi: f64, digits: usize) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    if lo.is_finite() && hi.is_finite() {
        format!("{v:.digits$} [{lo:.digits$}, {hi:.digits$}]")
    } else {
        format!("{v:.digits$}")
    }
}

fn run_name(run: &Path) -> String {
    run.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| run.display().to_string())
}

/// A sentence on the test that matters for one fit (shared with the CLI).
fn verdict(f: Option<&SeriesFit>, what: &str) -> String {
    verdict_sentence(f, what)
}

/// Every form of one fit as an HTML table: family, ΔAICc, Akaike weight,
/// parameters with intervals, or why the fit is degenerate.
fn forms_table(f: &SeriesFit, caption: &str) -> String {
    let mut h = String::new();
    let _ = writeln!(h, "<p class=\"small\"><b>{}</b></p>", esc(caption));
    let _ = writeln!(
        h,
        "<table><tr><th>form</th><th>formula</th><th>family</th><th>ΔAICc (autocorr.-adjusted)</th><th>Akaike weight</th><th>parameters [{:.0} % interval over checkpoints of this run] or why degenerate</th><th>notes</th></tr>",
        f.level * 100.0
    );
    for (r, m) in table_rows(f).into_iter().zip(&f.fits) {
        let cls = if m.is_degenerate() { " class=\"degenerate\"" } else { "" };
        let _ = writeln!(
            h,
            "<tr{cls}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r[0]),
            esc(m.model.formula()),
            esc(&r[1]),
            esc(&r[2]),
            esc(&r[3]),
            esc(&r[4]),
            esc(&r[5])
        );
    }
    h.push_str("</table>\n");
    if !f.notes.is_empty() {
        let _ = writeln!(h, "<p class=\"small\">Nested or equivalent here: {}.</p>", esc(&f.notes.join("; ")));
    }
    h
}

fn run_fits(run: &Path, a: &Analysis, opts: &ReportOptions, axis: TimeAxis) -> Result<Option<RunFits>> {
    if !opts.refit {
        match stored_fits(a, &opts.series, axis, &analysis_path(run)) {
            Some(Ok(f)) => return Ok(Some(f)),
            // Fits stored by an older headlab: fit again rather than fail.
            Some(Err(e)) => tracing::warn!("{e}; fitting again"),
            None => {}
        }
    }
    if axis == TimeAxis::Lr && !run.join("metrics.h5").exists() {
        return Ok(None);
    }
    tracing::info!("{}: fitting {} on the {} axis (no stored fits)", run.display(), opts.series, axis.name());
    let times = axis_times(run, a, axis)?;
    Ok(Some(fit_analysis(a, &opts.series, axis, &times, &opts.fit)?))
}

/// Write the report of `runs` into `out_dir` (default: `RUN/report` for one
/// run, `<parent of the first run>/report` for several).
pub fn write_report(runs: &[PathBuf], out_dir: Option<&Path>, opts: &ReportOptions) -> Result<ReportSummary> {
    if runs.is_empty() {
        return Err(ReportError::Input { path: PathBuf::from("."), msg: "no runs given".into() });
    }
    let out = match out_dir {
        Some(p) => p.to_path_buf(),
        None if runs.len() == 1 => runs[0].join("report"),
        None => runs[0].parent().map(|p| p.join("report")).unwrap_or_else(|| PathBuf::from("report")),
    };
    std::fs::create_dir_all(&out).map_err(|source| ReportError::Io { path: out.clone(), source })?;
    let mut body = String::new();
    let mut run_reports = Vec::new();
    // Per axis: each run's collision head, its series on that axis and its fits.
    let mut collision: Vec<(TimeAxis, String, Series, FitReport)> = Vec::new();
    let multi = runs.len() > 1;
    for (ri, run) in runs.iter().enumerate() {
        let ap = analysis_path(run);
        if !ap.exists() {
            return Err(ReportError::Input { path: ap, msg: "not found; probe the run first (headlab probe RUN)".into() });
        }
        let a = read_analysis(&ap, false)?;
        if a.steps.is_empty() {
            return Err(ReportError::Input { path: ap, msg: "holds no probed checkpoints".into() });
        }
        let fits = run_fits(run, &a, opts, TimeAxis::Step)?.ok_or_else(|| ReportError::Input { path: ap.clone(), msg: "no fits on the step axis".into() })?;
        let lr_fits = if opts.lr_axis { run_fits(run, &a, opts, TimeAxis::Lr)? } else { None };
        let name = run_name(run);
        let prefix = if multi { format!("r{ri}_") } else { String::new() };
        let best = best_head(&a);
        let (section, summary) = run_section(run, &name, &prefix, &out, &a, &fits, lr_fits.as_ref(), best.as_ref(), opts)?;
        body.push_str(&section);
        if let Some((l, h)) = collision_head(&a, &opts.series) {
            for f in std::iter::once(&fits).chain(lr_fits.as_ref()) {
                let times = axis_times(run, &a, f.axis)?;
                if let (Some(s), Some(hf)) = (head_series_on(&a, &opts.series, l, h, &times), f.head(l, h)) {
                    collision.push((f.axis, format!("{name} L{l}.H{h}"), s, hf.report.clone()));
                }
            }
        }
        run_reports.push(RunReport { run: run.clone(), best, summary });
    }
    let mut seeds_html = String::new();
    let mut seed_verdict = None;
    for axis in TimeAxis::ALL {
        let sel: Vec<&(TimeAxis, String, Series, FitReport)> = collision.iter().filter(|c| c.0 == axis).collect();
        if sel.len() < 2 {
            continue;
        }
        let summary = fit_seeds(sel.iter().map(|c| c.3.clone()).collect(), opts.fit.level);
        let fig = format!("seeds_{}.png", axis.name());
        let fig_series: Vec<(String, Series, Option<SeriesFit>)> = sel.iter().map(|c| (c.1.clone(), c.2.clone(), c.3.tail.clone())).collect();
        plots::seeds_figure(&out.join(&fig), &fig_series, axis.name(), &format!("Collision head of each seed against {}, each with its own best tail fit", axis.label()))?;
        seeds_html.push_str(&seeds_section(&summary, &sel, axis, &fig));
        if axis == TimeAxis::Step {
            seed_verdict = Some(summary.tail.clone());
        }
    }
    let mut headline = headline(&run_reports);
    if let Some(v) = seed_verdict {
        let _ = write!(headline, " Over seeds: {} ({}).", v.verdict.words(), v.reason);
    }
    let mut html = String::new();
    let title = if multi { format!("headlab report: {} runs", runs.len()) } else { format!("headlab report: {}", run_name(&runs[0])) };
    let _ = write!(
        html,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style></head><body><h1>{t}</h1>\n<p class=\"headline\">{h}</p>\n",
        t = esc(&title),
        h = esc(&headline)
    );
    if multi {
        html.push_str("<h2>Across seeds</h2>\n");
        html.push_str(&seeds_html);
    }
    html.push_str(&body);
    let _ = write!(html, "<hr><p class=\"small\">Series: <code>{}</code>. Fits: least squares (Levenberg–Marquardt, several starts) after merging checkpoints closer than {:.0} %; degenerate fits (a parameter on its bound or diverging, a curve collapsed onto a simpler form) are flagged and excluded; forms compared by an AICc adjusted for the residuals' lag-1 autocorrelation (effective sample size n(1−ρ)/(1+ρ)); {:.0} % intervals: profile likelihood for exponents, {}-replicate moving-block bootstrap for the other parameters and the emergence step (all over the checkpoints of one run); over seeds, Student-t intervals of per-seed values. Written by headlab {}.</p></body></html>\n", esc(&opts.series), opts.fit.merge_rel * 100.0, opts.fit.level * 100.0, opts.fit.bootstrap, env!("CARGO_PKG_VERSION"));
    let index = out.join("index.html");
    std::fs::write(&index, html).map_err(|source| ReportError::Io { path: index.clone(), source })?;
    Ok(ReportSummary { index, runs: run_reports, headline })
}

fn headline(runs: &[RunReport]) -> String {
    let met: Vec<&RunReport> = runs.iter().filter(|r| r.best.as_ref().is_some_and(|b| b.meets_bar)).collect();
    let describe = |b: &BestHead| format!("L{}.H{} (self-excluded score {:.2}, AUROC {:.3}, g(r) peaks at r in [{:.2}, {:.2}))", b.layer, b.head, b.score, b.auroc, b.g_peak.0, b.g_peak.1);
    if runs.len() == 1 {
        match &runs[0].best {
            Some(b) if b.meets_bar => format!("A collision-detecting head emerged: {}.", describe(b)),
            Some(b) => format!(
                "No head meets the collision-head bar (self-excluded score ≥ 0.5, AUROC ≥ 0.95, g(r) peak at or inside contact); the best is {}.",
                describe(b)
            ),
            None => "No head could be scored (no contacts in the evaluation frames?).".into(),
        }
    } else {
        if met.is_empty() {
            format!("No head meets the collision-head bar (self-excluded score ≥ 0.5, AUROC ≥ 0.95, g(r) peak at or inside contact) in any of the {} runs.", runs.len())
        } else {
            format!("A collision-detecting head emerged in {} of {} runs (self-excluded score ≥ 0.5, AUROC ≥ 0.95, g(r) peak at or inside contact).", met.len(), runs.len())
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn run_section(run: &Path, name: &str, prefix: &str, out: &Path, a: &Analysis, fits: &RunFits, lr_fits: Option<&RunFits>, best: Option<&BestHead>, opts: &ReportOptions) -> Result<(String, String)> {
    let mut h = String::new();
    let _ = writeln!(h, "<h2>Run <code>{}</code></h2>", esc(name));
    let last = a.steps.len() - 1;
    // Summary paragraph.
    let mut summary = String::new();
    if let Some(b) = best {
        let hf = fits.head(b.layer, b.head);
        let _ = write!(
            summary,
            "The strongest collision head is L{}.H{}: at step {} its self-excluded normalized score is {:.2} and the AUROC of its attention for contact within the next interval is {:.3}; its g(r) peaks at r in [{:.2}, {:.2}) contact distances. ",
            b.layer, b.head, b.step, b.score, b.auroc, b.g_peak.0, b.g_peak.1
        );
        let lh = a.n_layers * a.n_heads;
        let k = b.layer * a.n_heads + b.head;
        let get = |n: &str| a.series.get(n).map(|v| v[last * lh + k]).unwrap_or(f64::NAN);
        let _ = write!(
            summary,
            "It keeps {:.0} % of its attention on the query itself on average, moving {:.1} % of its mass to other particles for queries in contact against {:.1} % for queries not in contact; its self-inclusive normalized score is {:.2}. ",
            100.0 * get("self_attn"),
            100.0 * get("gate_contact_overlap"),
            100.0 * get("gate_free_overlap"),
            get("score_norm_overlap")
        );
        let _ = write!(
            summary,
            "{} ",
            if b.meets_bar { "It meets the collision-head bar (score ≥ 0.5, AUROC ≥ 0.95, g(r) peak at or inside contact)." } else { "It does not meet the collision-head bar (score ≥ 0.5, AUROC ≥ 0.95, g(r) peak at or inside contact)." }
        );
        if let Some(hf) = hf {
            if let Some(e) = hf.report.emergence {
                let _ = write!(summary, "Its score first reaches half its final value at step {} ({:.0} % moving-block bootstrap interval over the checkpoints of this run). ", fmt_est(e.value, e.lo, e.hi, 0), opts.fit.level * 100.0);
            }
            let _ = write!(summary, "Against training step: {} {} ", verdict(hf.report.whole.as_ref(), "whole curve"), verdict(hf.report.tail.as_ref(), "tail after onset"));
            if let Some(lf) = lr_fits.and_then(|f| f.head(b.layer, b.head)) {
                let _ = write!(summary, "Against cumulative learning rate (Σ lr / peak lr, so that the schedule cannot pass for a law): {} ", verdict(lf.report.tail.as_ref(), "tail after onset"));
            }
            summary.push_str("One run's checkpoints are not replicates: whether this reproduces is a question for several seeds (headlab study).");
        }
    } else {
        summary.push_str("No head could be scored: the evaluation frames may hold no contacts.");
    }
    let _ = writeln!(h, "<p>{}</p>", esc(&summary));
    // Every form for the strongest head, on both axes.
    let mut forms_html = String::new();
    if let Some(b) = best {
        for rf in std::iter::once(fits).chain(lr_fits) {
            let Some(hf) = rf.head(b.layer, b.head) else { continue };
            for (what, sf) in [("whole curve", hf.report.whole.as_ref()), ("tail after onset", hf.report.tail.as_ref())] {
                if let Some(sf) = sf {
                    forms_html.push_str(&forms_table(sf, &format!("L{}.H{}, {what}, against {}: {}", b.layer, b.head, rf.axis.label(), verdict(Some(sf), what))));
                }
            }
            let times = axis_times(run, a, rf.axis)?;
            if let Some(s) = head_series_on(a, &opts.series, b.layer, b.head, &times) {
                let f = format!("{prefix}forms_{}.png", rf.axis.name());
                plots::forms_figure(&out.join(&f), &s, hf.report.whole.as_ref(), hf.report.tail.as_ref(), rf.axis.name(), &format!("{name} L{}.H{}: every fitted form against {}", b.layer, b.head, rf.axis.label()))?;
                let _ = writeln!(forms_html, "<figure><img src=\"{}\" alt=\"{}\"><figcaption>L{}.H{}: the score (dots) against {} with every fitted form, whole curve (left) and tail after onset (right). Solid: non-degenerate forms with their autocorrelation-adjusted ΔAICc and Akaike weight (thick: best); dashed grey: degenerate fits, which are not estimates.</figcaption></figure>", esc(&f), esc(&f), b.layer, b.head, esc(rf.axis.label()));
            }
        }
    }
    h.push_str(&forms_html);

    // Figures.
    let metrics = run.join("metrics.h5");
    let mut figs: Vec<(String, String)> = Vec::new();
    if metrics.exists() {
        match headlab_store::metrics::read_metrics(&metrics) {
            Ok(m) => {
                let f = format!("{prefix}loss.png");
                plots::loss_figure(&out.join(&f), &m, &format!("{name}: loss"))?;
                figs.push((f, "Training loss (light: per step; dark: running mean) and validation loss against step, log–log. The black line is the loss of predicting no change.".into()));
                if !m.noise.is_empty() {
                    let f = format!("{prefix}grad_noise.png");
                    plots::noise_figure(&out.join(&f), &m, &format!("{name}: gradient noise tail index"))?;
                    figs.push((f, "Gradient noise measured during training ([grad_noise] every > 0): Hill tail index of the norms of minibatch gradient minus reference gradient, and of single standardized coordinates, ±1 SE, against the index of a Gaussian sample of the same size. An index well below its Gaussian reference means heavy-tailed noise (Ahn et al. 2023).".into()));
                }
            }
            Err(e) => tracing::warn!("{}: skipping loss curves: {e}", metrics.display()),
        }
    }
    let fit_list: Vec<Option<SeriesFit>> = (0..a.n_layers).flat_map(|l| (0..a.n_heads).map(move |hh| (l, hh))).map(|(l, hh)| fits.head(l, hh).and_then(|f| f.report.whole.clone())).collect();
    let f = format!("{prefix}scores.png");
    plots::scores_figure(&out.join(&f), a, &opts.series, &fit_list, &format!("{name}: collision score per head (whole-curve fits; band: 95 % bootstrap of the best form)"))?;
    figs.push((f, "Per head: the self-excluded normalized collision score (dots) against training step on a log axis, every fitted form (thick: AICc winner, with its bootstrap band), the self-inclusive normalized score (grey) and the AUROC of a_ij for contact within the interval (cyan). 0 = uniform attention, 1 = all off-self attention on contact partners.".into()));
    let f = format!("{prefix}g_heatmap.png");
    plots::g_heatmap(&out.join(&f), a, false, &format!("{name}: attention–distance correlation g(r) over training"))?;
    figs.push((f, "Per head: g(r) (mean N·a_ij over pairs at distance r, in contact distances) for every checkpoint (x, log) and distance bin (y). Red: the head attends to pairs at that distance more than uniformly; blue: less.".into()));
    let f = format!("{prefix}g_profiles.png");
    plots::g_profiles(&out.join(&f), a, false, &format!("{name}: g(r) early, middle, late"))?;
    figs.push((f, "g(r) of every head at an early, a middle and the last checkpoint (log y). Vertical line: contact distance; horizontal: no preference.".into()));
    let f = format!("{prefix}entropy.png");
    plots::entropy_figure(&out.join(&f), a, &format!("{name}: attention entropy"))?;
    figs.push((f, "Mean attention entropy per query for each head; ln N is uniform attention.".into()));
    // LLC beside the collision score, when `headlab llc` has run.
    let llc_file = headlab_store::llc::llc_path(run);
    if llc_file.exists() {
        match headlab_store::llc::read_llc(&llc_file) {
            Ok(llc) if !llc.steps.is_empty() => {
                let f = format!("{prefix}llc.png");
                plots::llc_figure(&out.join(&f), a, &opts.series, &llc, &format!("{name}: local learning coefficient beside the collision score"))?;
                figs.push((f, "Per head: the collision score (dots, left axis) and the local learning coefficient estimated by SGLD at each checkpoint (red, right axis; per head when `headlab llc --per-head` ran, else the whole model's), with ±2 standard errors over chains. See RUN/llc.png for chain traces.".into()));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("{}: skipping the LLC figure: {e}", llc_file.display()),
        }
    }

    // Scan-and-snap and max-margin per head, when `headlab lens physics` has run.
    let lens_file = lens_physics::lens_physics_path(run);
    if lens_file.exists() {
        match lens_physics::read_lens_physics(&lens_file) {
            Ok(lp) if !lp.steps.is_empty() && (lp.n_layers, lp.n_heads) == (a.n_layers, a.n_heads) => {
                let fc = lp.freeze_config();
                let names = lens_physics::plot::head_figures(out, prefix, a, &opts.series, &lp, &fc).map_err(|e| ReportError::Plot { path: out.join(format!("{prefix}lens_*.png")), msg: e.to_string() })?;
                for (k, f) in names.into_iter().enumerate() {
                    let (l, hh) = (k / a.n_heads, k % a.n_heads);
                    let snap = lp.snap_step(l, hh).map(|s| format!("snaps at step {s}")).unwrap_or_else(|| "never freezes".into());
                    let cos = lp.head_series("svm_cosine", l, hh).and_then(|v| v.last().copied()).unwrap_or(f64::NAN);
                    figs.push((
                        f.display().to_string(),
                        format!(
                            "L{l}.H{hh}: collision score; attention entropy; change of its row-centred attention logits over the {} steps before each checkpoint ({:?} scale; the head {snap}: every window starting there or later changes by less than {}, orange line); cosine of [W_Q; b_Q]·W_Kᵀ with the att-SVM that makes every sampled query prefer its contact partner (restricted to the span the constraints live in: {cos:.2} at the end; grey: full space), its margin ratio (1 = max-margin direction, < 0 = some partner not preferred) and the share of constraints it meets (purple). From RUN/lens_physics.h5 (headlab lens physics).",
                            fc.window, fc.scale, fc.threshold
                        ),
                    ));
                }
            }
            Ok(_) => tracing::warn!("{}: empty or of another model shape; skipping the lens figures", lens_file.display()),
            Err(e) => tracing::warn!("{}: skipping the lens figures: {e}", lens_file.display()),
        }
    }

    // Table of heads, sorted by final score.
    let lh = a.n_layers * a.n_heads;
    let sc = a.series.get(&opts.series).cloned().unwrap_or_else(|| vec![f64::NAN; a.steps.len() * lh]);
    let mut order: Vec<usize> = (0..lh).collect();
    order.sort_by(|&x, &y| {
        let (u, v) = (sc[last * lh + x], sc[last * lh + y]);
        v.partial_cmp(&u).unwrap_or_else(|| u.is_nan().cmp(&v.is_nan()))
    });
    let _ = writeln!(h, "<table><tr><th>head</th><th>final score</th><th>AUROC</th><th>self-incl. score</th><th>off-self mass: contact / free</th><th>emergence step [{lv:.0} % interval over checkpoints]</th><th>whole curve: verdict (best form)</th><th>tail: verdict (best form)</th><th>tail α from onset [{lv:.0} % profile]</th><th>tail α, free origin [{lv:.0} % profile]</th><th>tail verdict against Σ lr</th><th>g(r) peak</th></tr>", lv = opts.fit.level * 100.0);
    for k in order {
        let (l, hh) = (k / a.n_heads, k % a.n_heads);
        let get = |n: &str| a.series.get(n).map(|v| v[last * lh + k]).unwrap_or(f64::NAN);
        let hf = fits.head(l, hh);
        let win = |f: Option<&SeriesFit>| f.map(|f| format!("{} ({})", f.verdict.words(), f.best().map(|b| b.model.name()).unwrap_or("no usable fit"))).unwrap_or_else(|| "–".into());
        let alpha = |f: Option<&SeriesFit>, m: FitModel| match f.and_then(|f| f.get(m)) {
            Some(p) if p.is_degenerate() => "degenerate".to_string(),
            Some(p) => p.exponent().map(|e| fmt_estimate(&e, 2)).unwrap_or_else(|| "–".into()),
            None => "–".into(),
        };
        let whole = hf.and_then(|f| f.report.whole.as_ref());
        let tail = hf.and_then(|f| f.report.tail.as_ref());
        let lr_tail = lr_fits.and_then(|f| f.head(l, hh)).and_then(|f| f.report.tail.as_ref());
        let em = hf.and_then(|f| f.report.emergence).map(|e| fmt_est(e.value, e.lo, e.hi, 0)).unwrap_or_else(|| "–".into());
        let g = a.head_g(false, last, l, hh);
        let peak = (0..g.len()).filter(|&b| g[b].is_finite()).max_by(|&x, &y| g[x].total_cmp(&g[y])).map(|b| format!("[{:.2}, {:.2}): {:.1}", a.g_edges[b], a.g_edges[b + 1], g[b])).unwrap_or_else(|| "–".into());
        let cls = if best.is_some_and(|b| b.layer == l && b.head == hh) { " class=\"best\"" } else { "" };
        let _ = writeln!(
            h,
            "<tr{cls}><td>L{l}.H{hh}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3} / {:.3}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            sc[last * lh + k],
            get("auroc_interval"),
            get("score_norm_overlap"),
            get("gate_contact_overlap"),
            get("gate_free_overlap"),
            esc(&em),
            esc(&win(whole)),
            esc(&win(tail)),
            esc(&alpha(tail, FitModel::PowerOnset)),
            esc(&alpha(tail, FitModel::Power)),
            esc(&win(lr_tail)),
            esc(&peak)
        );
    }
    h.push_str("</table>\n<p class=\"small\">Final values at the last checkpoint. Score: self-excluded normalized collision score with partners overlapping at the input frame. AUROC: a_ij (i ≠ j) as a predictor of contact at any sub-step of the predicted interval. Verdict: power-like (power, power_onset, onset, loglogistic) against exponential-like (exp, logistic) relaxation, decided when the best of one family beats the best of the other by at least 4 units of autocorrelation-adjusted AICc, else undecided; degenerate fits take no part. α: exponent of the power law on the tail, measured from the onset (power_onset) or with a free time origin (power), with its profile-likelihood interval (– on a side the data do not bound).</p>\n");
    for (f, cap) in figs {
        let _ = writeln!(h, "<figure><img src=\"{}\" alt=\"{}\"><figcaption>{}</figcaption></figure>", esc(&f), esc(&f), esc(&cap));
    }
    Ok((h, summary))
}

fn seeds_section(sum: &headlab_analysis::fit::SeedSummary, sel: &[&(TimeAxis, String, Series, FitReport)], axis: TimeAxis, fig: &str) -> String {
    let mut h = String::new();
    let _ = writeln!(h, "<h3>Against {}</h3>", esc(axis.label()));
    let _ = writeln!(
        h,
        "<p>Each run is one seed; its collision head (the head with the highest final score) is fitted on its own, and seeds are the unit of replication: checkpoints of different seeds are never pooled as independent points. Intervals below marked \"over seeds\" are Student-t intervals of the per-seed values; those in the per-seed rows are over the checkpoints of that seed.</p>"
    );
    let _ = writeln!(h, "<p>{}</p>", seeds_text(sum).lines().map(esc).collect::<Vec<_>>().join("<br>"));
    let lv = sum.level * 100.0;
    let _ = writeln!(h, "<table><tr><th>seed (collision head)</th><th>emergence [{lv:.0} % over checkpoints]</th><th>tail verdict</th><th>ΔAICc exp-like − power-like (tail)</th><th>whole-curve verdict</th><th>tail α from onset [{lv:.0} % profile, over checkpoints]</th><th>tail α free origin</th><th>merged checkpoints</th></tr>");
    for (k, c) in sel.iter().enumerate() {
        let r = &c.3;
        let alpha = |m: FitModel| match r.tail.as_ref().and_then(|t| t.get(m)) {
            Some(p) if p.is_degenerate() => "degenerate".to_string(),
            Some(p) => p.exponent().map(|e| fmt_estimate(&e, 2)).unwrap_or_else(|| "–".into()),
            None => "–".into(),
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.1),
            r.emergence.map(|e| fmt_estimate(&e, 0)).unwrap_or_else(|| "–".into()),
            sum.tail.verdicts[k].words(),
            sum.tail.deltas[k],
            sum.whole.verdicts[k].words(),
            esc(&alpha(FitModel::PowerOnset)),
            esc(&alpha(FitModel::Power)),
            r.merged
        );
    }
    let _ = writeln!(
        h,
        "<tr><td><b>over seeds</b></td><td>{}</td><td colspan=\"2\">{} (summed ΔAICc {:.1})</td><td>{}</td><td>{}</td><td>{}</td><td></td></tr></table>",
        esc(&seed_stat_log(&sum.emergence)),
        sum.tail.verdict.words(),
        sum.tail.evidence,
        sum.whole.verdict.words(),
        esc(&seed_stat_log(&sum.alpha_onset)),
        esc(&seed_stat_log(&sum.alpha_free))
    );
    let _ = writeln!(h, "<figure><img src=\"{f}\" alt=\"{f}\"><figcaption>The collision head's score in every seed (dots) against {} with that seed's best non-degenerate tail fit.</figcaption></figure>", esc(axis.label()), f = esc(fig));
    h
}

fn seed_stat_log(s: &headlab_analysis::fit::SeedStat) -> String {
    if s.n == 0 {
        "–".into()
    } else if s.lo.is_finite() {
        let d = if s.mean >= 100.0 { 0 } else { 2 };
        format!("{:.d$} [{:.d$}, {:.d$}] over {} seeds (geometric mean; s.d. factor {:.2})", s.mean, s.lo, s.hi, s.n, s.sd)
    } else {
        format!("{:.2} (one seed)", s.mean)
    }
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1500px;margin:2em auto;padding:0 1em;color:#222}\
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ccc}\
.headline{font-size:1.15em;background:#f4f4f4;padding:.7em;border-left:4px solid #1f77b4}\
table{border-collapse:collapse;font-size:.9em;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}\
tr.best{background:#fff3d6}tr.degenerate{color:#999}figure{margin:1.5em 0}img{max-width:100%;border:1px solid #eee}\
figcaption{font-size:.9em;color:#444;max-width:1000px}.small{font-size:.85em;color:#555}code{background:#f4f4f4}";
