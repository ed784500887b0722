//! headlab-report: the HTML report of one or several probed runs — loss
//! curves, collision scores per head with fitted emergence curves and
//! confidence bands, g_h(r) heatmaps and profiles, attention entropy, a table
//! of heads and a plain-language summary of what emerged and which fitted
//! form the data supports. Self-contained folder: `index.html` plus PNGs.

mod causal;
pub mod llc;
pub mod plots;
pub mod predict;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use headlab_analysis::baselines::{Baseline, BINNING, LOGISTIC};
use headlab_analysis::fit::text::{fmt_est as fmt_estimate, seeds_text, table_rows, verdict_sentence};
use headlab_analysis::fit::{fit_report, fit_seeds, FitModel, FitOptions, FitReport, Series, SeriesFit};
use headlab_analysis::fitrun::{
    axis_times, collision_heads, collision_series, fit_analysis, head_series_on, stored_fits, RunFits, TimeAxis,
    DEFAULT_SERIES,
};
use headlab_analysis::heads::{analysis_path, bar, bar_text, encodes, run_verdict, RunVerdict};
use headlab_analysis::lens_physics;
use headlab_analysis::metrics::{merge_sparse_bins, G_MIN_PAIRS};
use headlab_analysis::series::SeriesKey;
use headlab_store::analysis::{read_analysis, Analysis};
use headlab_store::html::{escape as esc, Page};
use serde::{Deserialize, Serialize};

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A figure cannot be drawn.
    #[error("{path}: cannot draw figure: {msg}")]
    Plot {
        /// The file or folder concerned.
        path: PathBuf,
        /// What is wrong, and what to do.
        msg: String,
    },
    /// A run folder or file does not hold what the report needs.
    #[error("{path}: {msg}")]
    Input {
        /// The file or folder concerned.
        path: PathBuf,
        /// What is wrong, and what to do.
        msg: String,
    },
    /// A file or folder cannot be written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Passed through from `headlab_store::StoreError`.
    #[error(transparent)]
    Store(#[from] headlab_store::StoreError),
    /// Passed through from `headlab_analysis::AnalysisError`.
    #[error(transparent)]
    Analysis(#[from] headlab_analysis::AnalysisError),
}

/// Results of this crate.
pub type Result<T, E = ReportError> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
/// What to show and fit (`headlab report` options).
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
    /// Further sections (HTML, already escaped) placed after "Across seeds",
    /// e.g. the study's prediction of the emergence step.
    #[serde(skip)]
    pub extra_sections: Vec<String>,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self {
            series: DEFAULT_SERIES.name().into(),
            fit: FitOptions::default(),
            refit: false,
            lr_axis: true,
            extra_sections: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
/// What the report found in one run.
pub struct RunReport {
    /// The run folder.
    pub run: PathBuf,
    /// The verdict at the last probed step (collision heads, bar, baselines).
    pub verdict: Option<RunVerdict>,
    /// One-paragraph plain-language summary.
    pub summary: String,
}

#[derive(Debug, Clone)]
/// What `report` wrote and found.
pub struct ReportSummary {
    /// The report's `index.html`.
    pub index: PathBuf,
    /// One entry per run, in the order given.
    pub runs: Vec<RunReport>,
    /// One honest line: did a collision-detecting head emerge?
    pub headline: String,
    /// The LLC around emergence over seeds in words, when runs have llc.h5.
    pub llc_words: Option<String>,
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
            return Err(ReportError::Input {
                path: ap,
                msg: "not found; probe the run first (headlab probe RUN)".into(),
            });
        }
        let a = read_analysis(&ap, false)?;
        if a.steps.is_empty() {
            return Err(ReportError::Input { path: ap, msg: "holds no probed checkpoints".into() });
        }
        let fits = run_fits(run, &a, opts, TimeAxis::Step)?
            .ok_or_else(|| ReportError::Input { path: ap.clone(), msg: "no fits on the step axis".into() })?;
        let lr_fits = if opts.lr_axis { run_fits(run, &a, opts, TimeAxis::Lr)? } else { None };
        let name = run_name(run);
        let prefix = if multi { format!("r{ri}_") } else { String::new() };
        let verdict = run_verdict(&a, None);
        let (section, summary) =
            run_section(run, &name, &prefix, &out, &a, &fits, lr_fits.as_ref(), verdict.as_ref(), opts)?;
        body.push_str(&section);
        // Each run's collision heads (the top score and every head tied with
        // it), averaged into one series per run: seeds stay the unit of
        // replication.
        let ch = collision_heads(&a, &opts.series);
        let names: Vec<String> = ch.iter().map(|(l, h)| format!("L{l}.H{h}")).collect();
        for f in std::iter::once(&fits).chain(lr_fits.as_ref()) {
            let times = axis_times(run, &a, f.axis)?;
            if let Some(s) = collision_series(&a, &opts.series, &ch, &times) {
                let rep = fit_report(&s, &opts.fit);
                collision.push((f.axis, format!("{name} {}", names.join("+")), s, rep));
            }
        }
        run_reports.push(RunReport { run: run.clone(), verdict, summary });
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
        let fig_series: Vec<(String, Series, Option<SeriesFit>)> =
            sel.iter().map(|c| (c.1.clone(), c.2.clone(), c.3.tail.clone())).collect();
        plots::seeds_figure(
            &out.join(&fig),
            &fig_series,
            axis.name(),
            &format!("Collision head of each seed against {}, each with its own best tail fit", axis.label()),
        )?;
        seeds_html.push_str(&seeds_section(&summary, &sel, axis, &fig));
        if axis == TimeAxis::Step {
            seed_verdict = Some(summary.tail.clone());
        }
    }
    let mut headline = headline(&run_reports);
    if let Some(v) = seed_verdict {
        let _ = write!(headline, " Over seeds: {} ({}).", v.verdict.words(), v.reason);
    }
    let title = if multi {
        format!("headlab report: {} runs", runs.len())
    } else {
        format!("headlab report: {}", run_name(&runs[0]))
    };
    let mut page = Page::new(&title).style(STYLE);
    page.raw(&format!("<p class=\"headline\">{}</p>\n", esc(&headline)));
    let llc_section = if multi { llc::seeds_section(runs, &out, &opts.series, opts.fit.level)? } else { None };
    if multi {
        page.raw("<h2>Across seeds</h2>\n");
        page.raw(&seeds_html);
        if let Some((h, _)) = &llc_section {
            page.raw(h);
        }
    }
    for s in &opts.extra_sections {
        page.raw(s);
    }
    page.raw(&body);
    page.raw(&format!("<hr><p class=\"small\">Series: <code>{}</code>. Fits: least squares (Levenberg–Marquardt, several starts) after merging checkpoints closer than {:.0} %; degenerate fits (a parameter on its bound or diverging, a curve collapsed onto a simpler form) are flagged and excluded; forms compared by an AICc adjusted for the residuals' lag-1 autocorrelation (effective sample size n(1−ρ)/(1+ρ)); {:.0} % intervals: profile likelihood for exponents, {}-replicate moving-block bootstrap for the other parameters and the emergence step (all over the checkpoints of one run); over seeds, Student-t intervals of per-seed values. Written by headlab {}.</p>\n", esc(&opts.series), opts.fit.merge_rel * 100.0, opts.fit.level * 100.0, opts.fit.bootstrap, env!("CARGO_PKG_VERSION")));
    let index = out.join("index.html");
    page.write(&index)?;
    Ok(ReportSummary { index, runs: run_reports, headline, llc_words: llc_section.map(|x| x.1) })
}

fn headline(runs: &[RunReport]) -> String {
    if runs.len() == 1 {
        match &runs[0].verdict {
            Some(v) => v.line(),
            None => "No head could be scored (no contacts in the evaluation frames?).".into(),
        }
    } else {
        let met = runs.iter().filter(|r| r.verdict.as_ref().is_some_and(|v| !v.passing().is_empty())).count();
        if met == 0 {
            format!("No head meets the collision-head bar ({}) in any of the {} runs.", bar_text(), runs.len())
        } else {
            format!("Collision head(s) meeting the bar in {met} of {} runs ({}).", runs.len(), bar_text())
        }
    }
}

fn num(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "–".into()
    }
}

fn pm(v: f64, e: f64, digits: usize) -> String {
    if !v.is_finite() {
        "–".into()
    } else if e.is_finite() {
        format!("{v:.digits$} ± {e:.digits$}")
    } else {
        format!("{v:.digits$}")
    }
}

/// Sentences that say what the verdict supports, and no more.
fn verdict_text(v: &RunVerdict, a: &Analysis) -> String {
    let mut s = String::new();
    let top = v.top_heads();
    if top.is_empty() {
        return "No head could be scored: the evaluation frames may hold no contacts.".into();
    }
    let names: Vec<String> = top.iter().map(|h| h.name()).collect();
    if top.len() == 1 {
        let _ = write!(s, "At step {} the highest self-excluded score is {}'s ({}); no other head lies within one standard error of it. ", v.step, names[0], pm(top[0].score, top[0].score_se, 3));
    } else {
        let _ = write!(
            s,
            "At step {} heads {} tie: their self-excluded scores ({}) lie within one standard error of each other, so none is called the best. ",
            v.step,
            names.join(", "),
            top.iter().map(|h| pm(h.score, h.score_se, 3)).collect::<Vec<_>>().join("; ")
        );
    }
    if let (Some(d), Some(b)) = (v.baseline(Baseline::Distance), v.baseline(Baseline::Ballistic)) {
        let best_auc = top.iter().map(|h| h.auroc).fold(f64::NAN, f64::max);
        if best_auc <= d.auroc.max(b.auroc) {
            let _ = write!(
                s,
                "Their AUROC for contact during the predicted interval (at most {}) is matched or beaten by plain distance ({}) or ballistic extrapolation ({}): over all pairs, contact is mostly a matter of proximity. ",
                num(best_auc, 3),
                num(d.auroc, 3),
                num(b.auroc, 3)
            );
        } else {
            let _ = write!(s, "Their AUROC for contact during the predicted interval (up to {}) exceeds that of distance ({}) and of ballistic extrapolation ({}). ", num(best_auc, 3), num(d.auroc, 3), num(b.auroc, 3));
        }
        let _ = write!(
            s,
            "At matched distance, where distance alone scores {} (floor) and ballistics {} (ceiling), they reach a matched AUROC of {} and prefer approaching over receding pairs with selectivity {} (0.5 = none); on the floor-to-ceiling scale they sit at {}. ",
            num(d.matched, 3),
            num(b.matched, 3),
            top.iter().map(|h| pm(h.matched, h.matched_se, 3)).collect::<Vec<_>>().join(", "),
            top.iter().map(|h| num(h.approach, 2)).collect::<Vec<_>>().join(", "),
            top.iter().map(|h| num(h.position, 2)).collect::<Vec<_>>().join(", ")
        );
        if d.softmax_score.is_finite() {
            let _ = write!(
                s,
                "Softmax attention built from distance alone reaches a self-excluded score of {} ({} the old bar of {} without knowing anything beyond distance), which is why the bar also asks for a matched AUROC ≥ {}. ",
                num(d.softmax_score, 2),
                if d.softmax_score >= bar::SCORE_MIN { "passing" } else { "below" },
                bar::SCORE_MIN,
                bar::MATCHED_AUROC_MIN
            );
        }
    }
    let incr: Vec<String> = top
        .iter()
        .filter(|h| h.incr.0.is_finite())
        .map(|h| format!("{} {} [{}, {}]", h.name(), num(h.incr.0, 4), num(h.incr.1, 4), num(h.incr.2, 4)))
        .collect();
    if !incr.is_empty() {
        let base_auc = a.baselines.get(LOGISTIC).and_then(|r| r.get("auroc_base")).copied().unwrap_or(f64::NAN);
        let _ = write!(
            s,
            "Added to a logistic regression on the geometric features (distance, closing speed, time to contact, ballistic closest approach; held-out AUROC {}), log a'_ij changes the held-out log-likelihood per contact by {} nats (95 % bootstrap interval over held-out frames). ",
            num(base_auc, 3),
            incr.join("; ")
        );
    }
    let pass = v.passing();
    if pass.is_empty() {
        let _ = write!(s, "No head meets the collision-head bar ({}). ", bar_text());
        let close = v.close_to_bar();
        if !close.is_empty() {
            let _ = write!(
                s,
                "For {} the matched AUROC lies within one standard error below the threshold, so the evaluation set cannot settle it (more evaluation frames shrink the error: headlab probe --eval-frames). ",
                close.iter().map(|h| h.name()).collect::<Vec<_>>().join(", ")
            );
        }
    } else {
        let _ = write!(
            s,
            "{} meet(s) the collision-head bar ({}). ",
            pass.iter().map(|h| h.name()).collect::<Vec<_>>().join(", "),
            bar_text()
        );
    }
    let mut enc: Vec<&str> = top.iter().map(|h| h.encodes.text()).collect();
    enc.dedup();
    let _ = write!(
        s,
        "In baseline terms they encode {} (approach selectivity ≥ {} or matched AUROC ≥ {} counts as approach; ≥ {} of the way to the ballistic ceiling as ballistic-level).",
        enc.join(" / "),
        encodes::APPROACH_MIN,
        encodes::BEYOND_DISTANCE_MIN,
        encodes::BALLISTIC_MIN
    );
    s
}

#[allow(clippy::too_many_arguments)]
fn run_section(
    run: &Path,
    name: &str,
    prefix: &str,
    out: &Path,
    a: &Analysis,
    fits: &RunFits,
    lr_fits: Option<&RunFits>,
    verdict_: Option<&RunVerdict>,
    opts: &ReportOptions,
) -> Result<(String, String)> {
    let mut h = String::new();
    let _ = writeln!(h, "<h2>Run <code>{}</code></h2>", esc(name));
    let last = a.steps.len() - 1;
    // Summary paragraph.
    let mut summary = String::new();
    if let Some(v) = verdict_ {
        summary.push_str(&verdict_text(v, a));
        summary.push(' ');
        let top = v.top_heads();
        if let Some(t) = top.first() {
            let get = |n: SeriesKey| a.value(n, last, t.layer, t.head);
            let _ = write!(
                summary,
                "{} keeps {:.0} % of its attention on the query itself on average, moving {:.1} % of its mass to other particles for queries in contact against {:.1} % for queries not in contact; its self-inclusive normalized score is {:.2}. ",
                t.name(),
                100.0 * get(SeriesKey::SelfAttn),
                100.0 * get(SeriesKey::GateContactOverlap),
                100.0 * get(SeriesKey::GateFreeOverlap),
                get(SeriesKey::ScoreNormOverlap)
            );
            match t.g_peak {
                Some(g) => {
                    let _ = write!(summary, "Its self-excluded g(r) peaks at r in [{:.2}, {:.2}) contact distances (g = {:.1}, {} pairs; bins hold ≥ {G_MIN_PAIRS} pairs). ", g.lo, g.hi, g.g, g.count);
                }
                None => {
                    let _ = write!(summary, "No g(r) bin holds {G_MIN_PAIRS} pairs, so no peak is reported. ");
                }
            }
            if let Some(hf) = fits.head(t.layer, t.head) {
                if let Some(e) = hf.report.emergence {
                    let _ = write!(summary, "Its score first reaches half its final value at step {} ({:.0} % moving-block bootstrap interval over the checkpoints of this run). ", fmt_est(e.value, e.lo, e.hi, 0), opts.fit.level * 100.0);
                }
                let _ = write!(
                    summary,
                    "Against training step: {} {} ",
                    verdict(hf.report.whole.as_ref(), "whole curve"),
                    verdict(hf.report.tail.as_ref(), "tail after onset")
                );
            }
            if let Some(lf) = lr_fits.and_then(|f| f.head(t.layer, t.head)) {
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
    if let Some(b) = verdict_.and_then(|v| v.top_heads().first().copied()) {
        for rf in std::iter::once(fits).chain(lr_fits) {
            let Some(hf) = rf.head(b.layer, b.head) else { continue };
            for (what, sf) in [("whole curve", hf.report.whole.as_ref()), ("tail after onset", hf.report.tail.as_ref())]
            {
                if let Some(sf) = sf {
                    forms_html.push_str(&forms_table(
                        sf,
                        &format!(
                            "L{}.H{}, {what}, against {}: {}",
                            b.layer,
                            b.head,
                            rf.axis.label(),
                            verdict(Some(sf), what)
                        ),
                    ));
                }
            }
            let times = axis_times(run, a, rf.axis)?;
            if let Some(s) = head_series_on(a, &opts.series, b.layer, b.head, &times) {
                let f = format!("{prefix}forms_{}.png", rf.axis.name());
                plots::forms_figure(
                    &out.join(&f),
                    &s,
                    hf.report.whole.as_ref(),
                    hf.report.tail.as_ref(),
                    rf.axis.name(),
                    &format!("{name} L{}.H{}: every fitted form against {}", b.layer, b.head, rf.axis.label()),
                )?;
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
    let fit_list: Vec<Option<SeriesFit>> = (0..a.n_layers)
        .flat_map(|l| (0..a.n_heads).map(move |hh| (l, hh)))
        .map(|(l, hh)| fits.head(l, hh).and_then(|f| f.report.whole.clone()))
        .collect();
    let f = format!("{prefix}scores.png");
    plots::scores_figure(
        &out.join(&f),
        a,
        &opts.series,
        &fit_list,
        &format!("{name}: collision score per head (whole-curve fits; band: 95 % bootstrap of the best form)"),
    )?;
    figs.push((f, "Per head: the self-excluded normalized collision score (dots, ±1 standard error over queries) against training step on a log axis, every fitted form (thick: AICc winner, with its bootstrap band) and the self-inclusive normalized score (grey). 0 = uniform attention, 1 = all off-self attention on contact partners. The AUROCs have their own figure (chance 0.5).".into()));
    if let Some(v) = verdict_ {
        let f = format!("{prefix}auroc.png");
        plots::auroc_figure(
            &out.join(&f),
            a,
            v,
            &format!("{name}: AUROC for contact per head, against the baselines"),
        )?;
        figs.push((f, "Per head, on an AUROC axis (chance 0.5): AUROC of a_ij for contact during the predicted interval over all pairs (cyan), distance-matched AUROC of the self-excluded a'_ij (red dots, ±1 SE) and approach selectivity at matched distance (purple). Dashed: the distance baseline over all pairs and at matched distance (the floor), the ballistic predictor at matched distance (the ceiling) and the bar's matched-AUROC threshold (orange).".into()));
        if !v.baselines.is_empty() {
            let f = format!("{prefix}baselines.png");
            plots::baselines_figure(
                &out.join(&f),
                v,
                &format!("{name}: heads beside non-learned baselines at step {}", v.step),
            )?;
            figs.push((f, "Left: AUROC for contact during the predicted interval of every non-learned baseline and every head at the last checkpoint — over all pairs, over new contacts only (pairs not touching at the input frame), and at matched distance (±1 SE). Right: self-excluded score against distance-matched AUROC for every head (±1 SE) and for softmax attention built from each baseline (temperature fitted to maximize the score); the shaded region meets the collision-head bar. Distance-built attention scores high but sits at 0.5 on the matched axis: the score alone cannot tell a collision detector from a proximity detector.".into()));
        }
    }
    let f = format!("{prefix}g_heatmap.png");
    plots::g_heatmap(
        &out.join(&f),
        a,
        true,
        &format!("{name}: self-excluded attention–distance correlation g(r) over training"),
    )?;
    figs.push((f, format!("Per head: self-excluded g(r) (mean (N−1)·a'_ij over pairs at distance r, in contact distances; a'_ij = a_ij/(1−a_ii)) for every checkpoint (x, log) and distance bin (y). Bins are merged until each holds ≥ {G_MIN_PAIRS} pairs. Red: the head attends to pairs at that distance more than uniformly; blue: less.")));
    let f = format!("{prefix}g_profiles.png");
    plots::g_profiles(&out.join(&f), a, true, &format!("{name}: self-excluded g(r) early, middle, late"))?;
    figs.push((f, format!("Self-excluded g(r) of every head at an early, a middle and the last checkpoint (log y; bins merged to ≥ {G_MIN_PAIRS} pairs). Vertical line: contact distance; horizontal: no preference. Hollow triangles on the lower edge mark bins whose g is below 0.02 (not drawn as data).")));
    let f = format!("{prefix}g_heatmap_incl.png");
    plots::g_heatmap(&out.join(&f), a, false, &format!("{name}: g(r) with self-attention included"))?;
    figs.push((f, "The same heatmap with self-attention included (mean N·a_ij): heads that park most of their attention on the query look blue everywhere here although their self-excluded preference for contact can be strong; shown for comparison only.".into()));
    let f = format!("{prefix}entropy.png");
    plots::entropy_figure(&out.join(&f), a, &format!("{name}: attention entropy"))?;
    figs.push((f, "Mean attention entropy per query for each head; ln N is uniform attention.".into()));
    // LLC beside the collision score, when `headlab llc` has run.
    let llc_file = headlab_store::llc::llc_path(run);
    if llc_file.exists() {
        match headlab_store::llc::read_llc(&llc_file) {
            Ok(llc) if !llc.steps.is_empty() => {
                let f = format!("{prefix}llc.png");
                plots::llc_figure(
                    &out.join(&f),
                    a,
                    &opts.series,
                    &llc,
                    &format!("{name}: local learning coefficient beside the collision score"),
                )?;
                figs.push((f, "Per head: the collision score (dots, left axis) and the local learning coefficient estimated by SGLD at each checkpoint (red, right axis; per head when `headlab llc --per-head` ran, else the whole model's), with ±2 standard errors over chains; flagged estimates (no step-size plateau, diverged chains, negative, checkpoint not a minimum, unsettled or disagreeing chains) are hollow grey, off the line, and not results. See RUN/llc.png for chain traces and `headlab llc` for the flags.".into()));
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
                let names = lens_physics::plot::head_figures(out, prefix, a, &opts.series, &lp, &fc).map_err(|e| {
                    ReportError::Plot { path: out.join(format!("{prefix}lens_*.png")), msg: e.to_string() }
                })?;
                for (k, f) in names.into_iter().enumerate() {
                    let (l, hh) = (k / a.n_heads, k % a.n_heads);
                    let snap = lp
                        .snap_step(l, hh)
                        .map(|s| format!("snaps at step {s}"))
                        .unwrap_or_else(|| "never freezes".into());
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
            Ok(_) => {
                tracing::warn!("{}: empty or of another model shape; skipping the lens figures", lens_file.display())
            }
            Err(e) => tracing::warn!("{}: skipping the lens figures: {e}", lens_file.display()),
        }
    }

    // Table of heads, sorted by final score; the tied top heads marked.
    let lh = a.n_layers * a.n_heads;
    let sc = a.series.get(&opts.series).cloned().unwrap_or_else(|| vec![f64::NAN; a.steps.len() * lh]);
    let mut order: Vec<usize> = (0..lh).collect();
    order.sort_by(|&x, &y| {
        let (u, v) = (sc[last * lh + x], sc[last * lh + y]);
        v.partial_cmp(&u).unwrap_or_else(|| u.is_nan().cmp(&v.is_nan()))
    });
    let _ = writeln!(h, "<table><tr><th>head</th><th>final score ± SE</th><th>AUROC all / new</th><th>matched AUROC ± SE</th><th>approach selectivity</th><th>floor→ceiling</th><th>info gain (nats/contact) [95 %]</th><th>meets bar</th><th>encodes</th><th>self-incl. score</th><th>off-self mass: contact / free</th><th>emergence step [{lv:.0} % interval over checkpoints]</th><th>whole curve: verdict (best form)</th><th>tail: verdict (best form)</th><th>tail α from onset [{lv:.0} % profile]</th><th>tail α, free origin [{lv:.0} % profile]</th><th>tail verdict against Σ lr</th><th>g(r) peak (self-excl.): g, pairs</th></tr>", lv = opts.fit.level * 100.0);
    for k in order {
        let (l, hh) = (k / a.n_heads, k % a.n_heads);
        let get = |n: SeriesKey| a.value(n, last, l, hh);
        let hf = fits.head(l, hh);
        let win = |f: Option<&SeriesFit>| {
            f.map(|f| {
                format!("{} ({})", f.verdict.words(), f.best().map(|b| b.model.name()).unwrap_or("no usable fit"))
            })
            .unwrap_or_else(|| "–".into())
        };
        let alpha = |f: Option<&SeriesFit>, m: FitModel| match f.and_then(|f| f.get(m)) {
            Some(p) if p.is_degenerate() => "degenerate".to_string(),
            Some(p) => p.exponent().map(|e| fmt_estimate(&e, 2)).unwrap_or_else(|| "–".into()),
            None => "–".into(),
        };
        let whole = hf.and_then(|f| f.report.whole.as_ref());
        let tail = hf.and_then(|f| f.report.tail.as_ref());
        let lr_tail = lr_fits.and_then(|f| f.head(l, hh)).and_then(|f| f.report.tail.as_ref());
        let em =
            hf.and_then(|f| f.report.emergence).map(|e| fmt_est(e.value, e.lo, e.hi, 0)).unwrap_or_else(|| "–".into());
        let hs = verdict_.and_then(|v| v.heads.iter().find(|x| x.layer == l && x.head == hh));
        let top = verdict_.is_some_and(|v| v.top_heads().iter().any(|x| x.layer == l && x.head == hh));
        let peak = hs
            .and_then(|x| x.g_peak)
            .map(|g| format!("[{:.2}, {:.2}): {:.1}, {}", g.lo, g.hi, g.g, g.count))
            .unwrap_or_else(|| "–".into());
        let cls = if top { " class=\"best\"" } else { "" };
        let mark = if top { " (top)" } else { "" };
        let _ = writeln!(
            h,
            "<tr{cls}><td>L{l}.H{hh}{mark}</td><td>{}</td><td>{} / {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3} / {:.3}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&pm(sc[last * lh + k], hs.map_or(f64::NAN, |x| x.score_se), 3)),
            num(get(SeriesKey::AurocInterval), 3),
            num(get(SeriesKey::AurocNew), 3),
            esc(&pm(get(SeriesKey::AurocMatched), get(SeriesKey::AurocMatchedSe), 3)),
            num(get(SeriesKey::ApproachSelectivity), 3),
            num(get(SeriesKey::GeometryPosition), 2),
            esc(&fmt_est(get(SeriesKey::IncrGain), get(SeriesKey::IncrGainLo), get(SeriesKey::IncrGainHi), 4)),
            if hs.is_some_and(|x| x.meets_bar) { "yes" } else { "no" },
            esc(hs.map_or("–", |x| x.encodes.text())),
            num(get(SeriesKey::ScoreNormOverlap), 3),
            get(SeriesKey::GateContactOverlap),
            get(SeriesKey::GateFreeOverlap),
            esc(&em),
            esc(&win(whole)),
            esc(&win(tail)),
            esc(&alpha(tail, FitModel::PowerOnset)),
            esc(&alpha(tail, FitModel::Power)),
            esc(&win(lr_tail)),
            esc(&peak)
        );
    }
    let _ = writeln!(
        h,
        "</table>\n<p class=\"small\">Final values at the last checkpoint. Score: self-excluded normalized collision score with partners overlapping at the input frame, ± its standard error over queries; (top): the highest score and every head within one standard error of it (a tie, not a ranking). AUROC: a_ij (i ≠ j) as a predictor of contact at any sub-step of the predicted interval, over all pairs / over pairs not touching at the input frame. Matched AUROC: the same within distance bins (0.5 = nothing beyond distance). Floor→ceiling: matched AUROC rescaled so that the distance baseline is 0 and ballistic extrapolation 1. Info gain: held-out log-likelihood gain per contact from adding log a'_ij to a logistic regression on geometric features. Bar: {}. g(r) peak over bins with ≥ {G_MIN_PAIRS} pairs. Verdict: power-like (power, power_onset, onset, loglogistic) against exponential-like (exp, logistic) relaxation, decided when the best of one family beats the best of the other by at least 4 units of autocorrelation-adjusted AICc, else undecided; degenerate fits take no part. α: exponent of the power law on the tail, measured from the onset (power_onset) or with a free time origin (power), with its profile-likelihood interval (– on a side the data do not bound).</p>",
        esc(&bar_text())
    );
    if let Some(v) = verdict_ {
        if !v.baselines.is_empty() {
            h.push_str(&baselines_table(v, a));
        }
    }
    // Each g(r) bin's support (the counts depend only on geometry: the same
    // for every head and checkpoint).
    let b = a.n_bins();
    if let Some(count) = a.g_count.get(last * lh * b..last * lh * b + b) {
        let m = merge_sparse_bins(&a.g_edges, a.head_g(true, last, 0, 0), count, G_MIN_PAIRS);
        let cells: Vec<String> = (0..m.count.len())
            .map(|k| format!("[{:.2}, {:.2}): {}", m.lo[k], m.edges[k + 1].min(1e4), m.count[k]))
            .collect();
        let _ = writeln!(
            h,
            "<p class=\"small\">g(r) bins after merging neighbours until each holds ≥ {G_MIN_PAIRS} ordered pairs (range holding pairs: pair count): {}.</p>",
            esc(&cells.join("; "))
        );
    }
    for (f, cap) in figs {
        let _ = writeln!(
            h,
            "<figure><img src=\"{}\" alt=\"{}\"><figcaption>{}</figcaption></figure>",
            esc(&f),
            esc(&f),
            esc(&cap)
        );
    }
    // Causal evidence, when `headlab ablate` has run.
    let abl_file = headlab_analysis::ablation::ablation_path(run);
    if abl_file.exists() {
        match headlab_analysis::ablation::read_ablation(&abl_file) {
            Ok(ab) if !ab.steps.is_empty() && (ab.n_layers, ab.n_heads) == (a.n_layers, a.n_heads) => {
                let (html, line) = causal::section(out, prefix, a, &opts.series, &ab)?;
                h.push_str(&html);
                if !line.is_empty() {
                    summary.push(' ');
                    summary.push_str(&line);
                }
            }
            Ok(_) => {
                tracing::warn!("{}: empty or of another model shape; skipping the causal evidence", abl_file.display())
            }
            Err(e) => tracing::warn!("{}: skipping the causal evidence: {e}", abl_file.display()),
        }
    }
    Ok((h, summary))
}

/// The non-learned baselines beside the heads, and how the distance bins were
/// chosen.
fn baselines_table(v: &RunVerdict, a: &Analysis) -> String {
    let mut h = String::new();
    h.push_str("<h3>Non-learned baselines on the same evaluation frames</h3>\n<table><tr><th>predictor</th><th>AUROC all pairs</th><th>AUROC new contacts</th><th>matched AUROC ± SE</th><th>as softmax attention: score</th><th>as softmax: matched AUROC</th><th>softmax meets bar</th></tr>\n");
    for b in &v.baselines {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(b.baseline.label()),
            num(b.auroc, 3),
            num(b.auroc_new, 3),
            esc(&pm(b.matched, b.matched_se, 3)),
            num(b.softmax_score, 3),
            num(b.softmax_matched, 3),
            if b.softmax_meets_bar { "yes" } else { "no" }
        );
    }
    h.push_str("</table>\n");
    let bin = |k: &str| a.baselines.get(BINNING).and_then(|r| r.get(k)).copied().unwrap_or(f64::NAN);
    let _ = writeln!(
        h,
        "<p class=\"small\">Baselines: minus distance in units of r_i + r_j; minus ballistic time to contact (straight lines from positions and velocities; gravity cancels in the relative motion of two particles that fall alike, so the prediction with and without gravity is the same); closing speed; minus the ballistic closest approach within the interval (the ceiling). Softmax attention: a_ij ∝ exp(β·baseline) over j ≠ i with β fitted to maximize the self-excluded score. Matched AUROC: pairs not touching at the input frame, binned by distance in bins of width {} from r = 1 to r = {}; a bin counts when it holds ≥ {} unordered pairs of each class ({} of {} bins, {:.0} unordered pairs per bin on average, {} contacts); bins are weighted by their contacts; SE: Hanley–McNeil per bin. Evaluation set: {} frames, {} contacts in all ({} new).</p>",
        num(bin("bin_width"), 3),
        num(bin("r_max"), 3),
        num(bin("min_per_class"), 0),
        num(bin("bins_used"), 0),
        num(bin("bins"), 0),
        bin("unordered_pairs_per_bin"),
        num(bin("positives_used"), 0),
        num(bin("eval_frames"), 0),
        num(bin("positives"), 0),
        num(bin("new_positives"), 0)
    );
    h
}

fn seeds_section(
    sum: &headlab_analysis::fit::SeedSummary,
    sel: &[&(TimeAxis, String, Series, FitReport)],
    axis: TimeAxis,
    fig: &str,
) -> String {
    let mut h = String::new();
    let _ = writeln!(h, "<h3>Against {}</h3>", esc(axis.label()));
    let _ = writeln!(
        h,
        "<p>Each run is one seed; its collision heads (the head with the highest final score and every head within one standard error of it, averaged) are fitted on their own, and seeds are the unit of replication: checkpoints of different seeds are never pooled as independent points. Intervals below marked \"over seeds\" are Student-t intervals of the per-seed values; those in the per-seed rows are over the checkpoints of that seed.</p>"
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
        format!(
            "{:.d$} [{:.d$}, {:.d$}] over {} seeds (geometric mean; s.d. factor {:.2})",
            s.mean, s.lo, s.hi, s.n, s.sd
        )
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
