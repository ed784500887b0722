//! `headlab study`'s prediction of the emergence step (issue 19): the
//! evaluation of every predictor over the study's runs (and the runs of
//! other finished studies, as further settings) for the report, and
//! `--predict-from STEP`, which predicts from the checkpoints ≤ STEP only
//! and stores the predictions so that they can be checked later.
use std::path::{Path, PathBuf};

use anyhow::Context;
use headlab_analysis::fit::predict::{evaluate, Case, Evaluation, EARLY_FRACTION, MIN_EARLY_POINTS};
use headlab_analysis::predictrun::{load_run, RunData};

/// The run folders of `dirs`: a study (or sweep) folder gives every
/// probed run under its `runs/`; a probed run folder gives itself.
pub fn resolve_runs(dirs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for d in dirs {
        let probed = |p: &Path| headlab_analysis::heads::analysis_path(p).exists();
        if probed(d) {
            out.push(d.clone());
            continue;
        }
        let runs = d.join("runs");
        anyhow::ensure!(
            runs.is_dir(),
            "--predict-with {}: neither a probed run (no analysis.h5) nor a study folder (no runs/)",
            d.display()
        );
        let mut found: Vec<PathBuf> = std::fs::read_dir(&runs)
            .with_context(|| format!("reading {}", runs.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| probed(p))
            .collect();
        anyhow::ensure!(!found.is_empty(), "--predict-with {}: no probed run under {}", d.display(), runs.display());
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

fn load_all(runs: &[PathBuf]) -> anyhow::Result<Vec<RunData>> {
    runs.iter().map(|r| load_run(r).with_context(|| format!("reading {} for the predictors", r.display()))).collect()
}

fn write_eval(out: &Path, stem: &str, ev: &Evaluation, extra: &str) -> anyhow::Result<PathBuf> {
    let toml_path = out.join(format!("{stem}.toml"));
    let text = toml::to_string(ev).context("the predictions cannot be written as TOML")?;
    headlab_store::fsutil::write_atomic(&toml_path, text.as_bytes())
        .with_context(|| format!("writing {}", toml_path.display()))?;
    let txt = out.join(format!("{stem}.txt"));
    let words = format!("{}{extra}", ev.text());
    headlab_store::fsutil::write_atomic(&txt, words.as_bytes())
        .with_context(|| format!("writing {}", txt.display()))?;
    Ok(toml_path)
}

/// Evaluate every predictor over the study's runs and the runs of `with`
/// (leave one out), store it in OUT/prediction.toml and .txt, and return
/// the report's section (drawn into OUT/report). A run without an
/// emergence (or unfinished) is left out with its reason.
pub fn study_section(runs: &[PathBuf], with: &[PathBuf], out: &Path, level: f64) -> anyhow::Result<String> {
    let mut all = runs.to_vec();
    all.extend(resolve_runs(with)?);
    let data = load_all(&all)?;
    let mut cases: Vec<Case> = Vec::new();
    let mut left_out = String::new();
    for d in &data {
        match d.evaluation_case() {
            Ok(c) => cases.push(c),
            Err(e) => left_out.push_str(&format!("left out: {}: {e}\n", d.run.display())),
        }
    }
    let report = out.join("report");
    std::fs::create_dir_all(&report).with_context(|| format!("creating {}", report.display()))?;
    if cases.len() < 2 {
        let why = format!(
            "<h2>Predicting the emergence step</h2><p>Not evaluated: {} of {} runs have an emergence to predict (at least 2 are needed, one to predict and one to calibrate on).</p><pre>{}</pre>\n",
            cases.len(),
            data.len(),
            headlab_store::html::escape(&left_out)
        );
        eprint!("{left_out}");
        return Ok(why);
    }
    let ev = evaluate(&cases, &[], true, level);
    let path = write_eval(out, "prediction", &ev, &left_out)?;
    eprintln!("      predictions of the emergence step → {}", path.display());
    let mut html = headlab_report::predict::prediction_section(&ev, &report, "prediction.png")?;
    if !left_out.is_empty() {
        html.push_str(&format!("<pre>{}</pre>\n", headlab_store::html::escape(&left_out)));
    }
    Ok(html)
}

/// Refuse a `--predict-from` value before anything runs: 0, or not before
/// the planned last step.
pub fn check_step(step: u64, planned: u64) -> anyhow::Result<()> {
    anyhow::ensure!(
        step > 0,
        "--predict-from 0: the predictors need training to have started; give a step after the first checkpoints (e.g. --predict-from 100)"
    );
    anyhow::ensure!(
        step < planned,
        "--predict-from {step}: not before the end of training ({planned} steps): nothing is left to predict; give a step < {planned}"
    );
    Ok(())
}

/// `--predict-from STEP`: predict every run's emergence step from its
/// checkpoints and training metrics ≤ STEP, calibrated on the finished runs
/// of `with` only; print and store (OUT/predict_from_STEP.toml and .txt);
/// when a run is finished, print its actual step beside the predictions.
pub fn predict_from(runs: &[PathBuf], with: &[PathBuf], step: u64, out: &Path, level: f64) -> anyhow::Result<()> {
    let data = load_all(runs)?;
    let refs = load_all(&resolve_runs(with)?)?;
    let mut targets = Vec::new();
    let mut notes = String::new();
    for d in &data {
        anyhow::ensure!(
            (step as f64) < d.t_end,
            "--predict-from {step}: not before the end of {} ({} steps): nothing is left to predict",
            d.run.display(),
            d.t_end
        );
        let seen = d.analysis.steps.iter().filter(|&&s| s <= step).count();
        anyhow::ensure!(
            seen >= 2,
            "--predict-from {step}: {} has {seen} probed checkpoint(s) at or before step {step}; the predictors need at least 2 (the extrapolation {MIN_EARLY_POINTS}): choose a later step",
            d.run.display()
        );
        let (case, lm) = d.case_from(step as f64)?;
        if let Some(lm) = lm {
            if lm.cutoff < step as f64 {
                notes.push_str(&format!(
                    "note: {}: by step {step} its score had passed {:.0} % of its final value (from step {:.0} on): this is not an early prediction\n",
                    d.name,
                    EARLY_FRACTION * 100.0,
                    lm.t_early_end
                ));
            }
        }
        targets.push(case);
    }
    let mut references = Vec::new();
    for r in &refs {
        match r.evaluation_case() {
            Ok(c) => references.push(c),
            Err(e) => notes.push_str(&format!("reference left out: {}: {e}\n", r.run.display())),
        }
    }
    if references.is_empty() {
        notes.push_str(
            "no finished reference runs (--predict-with STUDY): the clocks and the mean baselines cannot be calibrated, only the extrapolations predict\n",
        );
    }
    let ev = evaluate(&targets, &references, false, level);
    let path = write_eval(out, &format!("predict_from_{step}"), &ev, &notes)?;
    println!();
    print!("{}", ev.text());
    print!("{notes}");
    if ev.cases.iter().all(|c| !c.actual.is_finite()) {
        println!("the runs are not finished: check these predictions later with the same command once they are");
    }
    println!("predictions: {}", path.display());
    Ok(())
}
