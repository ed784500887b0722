//! headlab-report: the HTML report of one or several probed runs — loss
//! curves, collision scores per head with fitted emergence curves and
//! confidence bands, g_h(r) heatmaps and profiles, attention entropy, a table
//! of heads and a plain-language summary of what emerged and which fitted
//! form the data supports. Self-contained folder: `index.html` plus PNGs.

pub mod plots;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use headlab_analysis::fit::{FitModel, FitOptions, PooledFit, Series, SeriesFit};
use headlab_analysis::fitrun::{collision_head, fit_analysis, head_series, stored_fits, RunFits, DEFAULT_SERIES};
use headlab_analysis::heads::{analysis_path, best_head, BestHead};
use headlab_analysis::lens_physics;
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
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self { series: DEFAULT_SERIES.into(), fit: FitOptions::default(), refit: false }
    }
}

#[derive(Debug, Clone)]
/// What the report found in one run.
pub struct RunReport {
    /// The run folder.
    pub run: PathBuf,
    /// The collision head (best-scoring head) at the last checkpoint, if any head was scored.
    pub best: Option<BestHead>,
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

/// A sentence on which fitted form wins a fit.
fn verdict(f: Option<&SeriesFit>, what: &str) -> String {
    let Some(f) = f else { return format!("The {what} has too few checkpoints to fit.") };
    let Some(best) = f.best() else { return format!("No form could be fitted to the {what}.") };
    let margin = f.margin();
    let strength = if margin >= 10.0 {
        "decisively"
    } else if margin >= 4.0 {
        "clearly"
    } else if margin >= 2.0 {
        "weakly"
    } else {
        "not distinguishably"
    };
    let mut s = format!(
        "On the {what} ({} checkpoints from step {:.0}), the {} form wins {strength} (ΔAICc to the runner-up {}: {:.1})",
        f.n,
        f.t_from,
        best.model.name(),
        f.fits.get(1).map(|r| r.model.name()).unwrap_or("–"),
        margin
    );
    if best.model != FitModel::Power {
        if let Some(p) = f.get(FitModel::Power) {
            let _ = write!(s, "; the power law is {:.1} AICc units behind", p.delta_aicc);
        }
    } else if let Some(a) = best.param("alpha") {
        let _ = write!(s, "; exponent α = {}", fmt_est(a.value, a.lo, a.hi, 2));
    }
    s.push('.');
    s
}

fn run_fits(run: &Path, a: &Analysis, opts: &ReportOptions) -> Result<RunFits> {
    if !opts.refit {
        if let Some(f) = stored_fits(a, &opts.series, &analysis_path(run)) {
            return Ok(f?);
        }
    }
    tracing::info!("{}: fitting {} (no stored fits)", run.display(), opts.series);
    Ok(fit_analysis(a, &opts.series, &opts.fit)?)
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
    let mut collision: Vec<(String, Series)> = Vec::new();
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
        let fits = run_fits(run, &a, opts)?;
        let name = run_name(run);
        let prefix = if multi { format!("r{ri}_") } else { String::new() };
        let best = best_head(&a);
        let (section, summary) = run_section(run, &name, &prefix, &out, &a, &fits, best.as_ref(), opts)?;
        body.push_str(&section);
        if let Some((l, h)) = collision_head(&a, &opts.series) {
            if let Some(s) = head_series(&a, &opts.series, l, h) {
                collision.push((format!("{name} L{l}.H{h}"), s));
            }
        }
        run_reports.push(RunReport { run: run.clone(), best, summary });
    }
    let mut pooled_html = String::new();
    if collision.len() >= 2 {
        let series: Vec<Series> = collision.iter().map(|c| c.1.clone()).collect();
        let pooled = headlab_analysis::fit::fit_pooled(&series, &opts.fit);
        let fig = out.join("pooled.png");
        plots::pooled_figure(&fig, &collision, pooled.whole.as_ref(), "Collision head of each seed, with fits pooled over seeds")?;
        pooled_html = pooled_section(&pooled, collision.len());
    }
    let headline = headline(&run_reports);
    let title = if multi { format!("headlab report: {} runs", runs.len()) } else { format!("headlab report: {}", run_name(&runs[0])) };
    let mut page = Page::new(&title).style(STYLE);
    page.raw(&format!("<p class=\"headline\">{}</p>\n", esc(&headline)));
    if multi {
        page.raw("<h2>Across seeds</h2>\n");
        page.raw(&pooled_html);
    }
    page.raw(&body);
    page.raw(&format!("<hr><p class=\"small\">Series: <code>{}</code>. Fits: least squares (Levenberg–Marquardt, several starts), model choice by AICc, {}-replicate residual bootstrap for {:.0} % intervals. Written by headlab {}.</p>\n", esc(&opts.series), opts.fit.bootstrap, opts.fit.level * 100.0, env!("CARGO_PKG_VERSION")));
    let index = out.join("index.html");
    page.write(&index)?;
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
        format!("{} of {} runs have a head meeting the collision-head bar (self-excluded score ≥ 0.5, AUROC ≥ 0.95, g(r) peak at or inside contact).", met.len(), runs.len())
    }
}

#[allow(clippy::too_many_arguments)]
fn run_section(run: &Path, name: &str, prefix: &str, out: &Path, a: &Analysis, fits: &RunFits, best: Option<&BestHead>, opts: &ReportOptions) -> Result<(String, String)> {
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
                let _ = write!(summary, "Its score first reaches half its final value at step {}. ", fmt_est(e.value, e.lo, e.hi, 0));
            }
            let _ = write!(summary, "{} {}", verdict(hf.report.whole.as_ref(), "whole curve"), verdict(hf.report.tail.as_ref(), "tail after onset"));
        }
    } else {
        summary.push_str("No head could be scored: the evaluation frames may hold no contacts.");
    }
    let _ = writeln!(h, "<p>{}</p>", esc(&summary));

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
    h.push_str("<table><tr><th>head</th><th>final score</th><th>AUROC</th><th>self-incl. score</th><th>off-self mass: contact / free</th><th>emergence step [95 % CI]</th><th>whole curve: winner (ΔAICc)</th><th>tail: winner (ΔAICc)</th><th>power-law α whole</th><th>power-law α tail</th><th>g(r) peak</th></tr>\n");
    for k in order {
        let (l, hh) = (k / a.n_heads, k % a.n_heads);
        let get = |n: &str| a.series.get(n).map(|v| v[last * lh + k]).unwrap_or(f64::NAN);
        let hf = fits.head(l, hh);
        let win = |f: Option<&SeriesFit>| f.and_then(|f| f.best().map(|b| format!("{} ({:.1})", b.model.name(), f.margin()))).unwrap_or_else(|| "–".into());
        let alpha = |f: Option<&SeriesFit>| f.and_then(|f| f.get(FitModel::Power)).and_then(|p| p.param("alpha")).map(|e| fmt_est(e.value, e.lo, e.hi, 2)).unwrap_or_else(|| "–".into());
        let whole = hf.and_then(|f| f.report.whole.as_ref());
        let tail = hf.and_then(|f| f.report.tail.as_ref());
        let em = hf.and_then(|f| f.report.emergence).map(|e| fmt_est(e.value, e.lo, e.hi, 0)).unwrap_or_else(|| "–".into());
        let g = a.head_g(false, last, l, hh);
        let peak = (0..g.len()).filter(|&b| g[b].is_finite()).max_by(|&x, &y| g[x].total_cmp(&g[y])).map(|b| format!("[{:.2}, {:.2}): {:.1}", a.g_edges[b], a.g_edges[b + 1], g[b])).unwrap_or_else(|| "–".into());
        let cls = if best.is_some_and(|b| b.layer == l && b.head == hh) { " class=\"best\"" } else { "" };
        let _ = writeln!(
            h,
            "<tr{cls}><td>L{l}.H{hh}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3} / {:.3}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            sc[last * lh + k],
            get("auroc_interval"),
            get("score_norm_overlap"),
            get("gate_contact_overlap"),
            get("gate_free_overlap"),
            esc(&em),
            esc(&win(whole)),
            esc(&win(tail)),
            esc(&alpha(whole)),
            esc(&alpha(tail)),
            esc(&peak)
        );
    }
    h.push_str("</table>\n<p class=\"small\">Final values at the last checkpoint. Score: self-excluded normalized collision score with partners overlapping at the input frame. AUROC: a_ij (i ≠ j) as a predictor of contact at any sub-step of the predicted interval. ΔAICc: margin of the winner over the runner-up (≥ 10 decisive, 4–10 clear, 2–4 weak, &lt; 2 indistinguishable).</p>\n");
    for (f, cap) in figs {
        let _ = writeln!(h, "<figure><img src=\"{}\" alt=\"{}\"><figcaption>{}</figcaption></figure>", esc(&f), esc(&f), esc(&cap));
    }
    Ok((h, summary))
}

fn pooled_section(p: &PooledFit, n: usize) -> String {
    let mut h = String::new();
    let wins = |w: &[(FitModel, usize)]| w.iter().filter(|x| x.1 > 0).map(|(m, c)| format!("{} {}", m.name(), c)).collect::<Vec<_>>().join(", ");
    let _ = writeln!(
        h,
        "<p>The collision head of each of the {n} runs (the head with the highest final score), pooled. Per-seed AICc winners — whole curve: {}; tail: {}. Emergence step over seeds: {:.0} ± {:.0} (mean ± s.d.).</p>",
        esc(&wins(&p.wins_whole)),
        esc(&wins(&p.wins_tail)),
        p.emergence_mean,
        p.emergence_std
    );
    let _ = writeln!(h, "<p>{} {}</p>", esc(&verdict(p.whole.as_ref(), "pooled whole curve")), esc(&verdict(p.tail.as_ref(), "pooled tails")));
    h.push_str("<table><tr><th>form</th><th>parameters, pooled [95 % CI, resampling seeds]</th><th>between seeds (mean ± s.d.)</th><th>ΔAICc pooled whole</th><th>ΔAICc pooled tail</th></tr>\n");
    for m in FitModel::ALL {
        let pw = p.whole.as_ref().and_then(|f| f.get(m));
        let pt = p.tail.as_ref().and_then(|f| f.get(m));
        let params = pw.map(|f| m.param_names().iter().zip(&f.params).map(|(n, e)| format!("{n} = {}", fmt_est(e.value, e.lo, e.hi, 3))).collect::<Vec<_>>().join("; ")).unwrap_or_else(|| "–".into());
        let spread = p.between_seeds.iter().find(|s| s.model == m).map(|s| m.param_names().iter().zip(s.mean.iter().zip(&s.std)).map(|(n, (a, b))| format!("{n} = {a:.3} ± {b:.3}")).collect::<Vec<_>>().join("; ")).unwrap_or_default();
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(m.name()),
            esc(&params),
            esc(&spread),
            pw.map(|f| format!("{:.1}", f.delta_aicc)).unwrap_or_else(|| "–".into()),
            pt.map(|f| format!("{:.1}", f.delta_aicc)).unwrap_or_else(|| "–".into())
        );
    }
    h.push_str("</table>\n<figure><img src=\"pooled.png\" alt=\"pooled\"><figcaption>The collision head's self-excluded score in every run (dots) and the forms fitted to all runs' points together (thick: AICc winner).</figcaption></figure>\n");
    h
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1500px;margin:2em auto;padding:0 1em;color:#222}\
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ccc}\
.headline{font-size:1.15em;background:#f4f4f4;padding:.7em;border-left:4px solid #1f77b4}\
table{border-collapse:collapse;font-size:.9em;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}\
tr.best{background:#fff3d6}figure{margin:1.5em 0}img{max-width:100%;border:1px solid #eee}\
figcaption{font-size:.9em;color:#444;max-width:1000px}.small{font-size:.85em;color:#555}code{background:#f4f4f4}";
