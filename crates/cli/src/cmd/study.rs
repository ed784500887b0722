//! `headlab study`: the emergence claim tested over seeds — N seeds of one
//! experiment through the sweep machinery, probed, fitted one by one, and
//! summarized with seeds as the unit of replication in one report.
use std::path::PathBuf;

use anyhow::Context;

use super::sweep::Backend;

/// Does emergence follow a power law, reproducibly? Train N seeds of the
/// same experiment (default 5) through the sweep machinery (local processes
/// by default, Slurm with --backend slurm), probe every checkpoint of each,
/// fit every seed's collision head on its own (step and cumulative-learning-
/// rate axes; see `headlab fit --help`), and write one report:
///   - per seed: emergence step and tail exponent with intervals over that
///     seed's checkpoints, and its verdict power-like / exponential-like /
///     undecided;
///   - over seeds: mean, between-seed s.d. and Student-t interval of the
///     emergence step and exponent (seeds are the unit of replication:
///     checkpoints of different seeds are never pooled as independent);
///   - the verdict "power law supported / not supported / undecided" with
///     its evidence (per-seed verdicts and the summed AICc difference).
///
/// Then the local learning coefficient around emergence (unless --no-llc):
/// for every seed, the step t½ at which its collision score covers half its
/// rise is found, and the whole-model LLC (per head too with
/// --llc-per-head) is estimated at --llc-checkpoints checkpoints log-spaced
/// from t½/4 to 4·t½, each with its step size chosen on a ladder and its
/// diagnostics (see `headlab llc --help`); the report shows LLC against step
/// beside the collision score with flagged estimates marked, and the change
/// of the LLC across emergence over seeds with a Student-t interval.
///
/// Training uses a constant learning rate after warm-up unless
/// --keep-schedule is given, so that a decaying schedule cannot shape the
/// tail; fits against Σ lr are reported beside fits against steps either way.
///
/// Output: OUT/runs/NAME/ (one run per seed), OUT/report/index.html,
/// OUT/study.txt (the verdict and figures in words), OUT/study_sweep.toml
/// (the study as a sweep file).
///
/// Example:
///   headlab simulate --scene scenes/demo.toml --out data/demo.h5
///   headlab study --data data/demo.h5                       # 5 seeds, here
///   headlab study --data data/demo.h5 --seeds 10 --backend slurm
///   headlab study --preset gas64_2d --out checkpoints/gas64   # a recipe from presets/
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Dataset every seed trains on.
    #[arg(long, required_unless_present_any = ["scene", "preset"])]
    pub data: Option<PathBuf>,
    /// Or: a scene to simulate once for all seeds.
    #[arg(long, conflicts_with = "data")]
    pub scene: Option<PathBuf>,
    /// Or: a preset, presets/NAME.toml (scene, training, probe and seed
    /// settings measured to make heads form; see the file's comment for what
    /// it produces and its cost), or the path of a preset file.
    #[arg(long, conflicts_with_all = ["data", "scene", "config"])]
    pub preset: Option<String>,
    /// `headlab simulate` arguments of the scene (set by --preset).
    #[arg(skip)]
    pub simulate_args: Vec<String>,
    /// Number of seeds (0..N) [default: the preset's, else 5].
    #[arg(long)]
    pub seeds: Option<u32>,
    /// Training config every seed starts from (TOML, see `headlab train --help`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Keep the config's learning-rate schedule (default: constant after warm-up).
    #[arg(long)]
    pub keep_schedule: bool,
    /// Training steps of every seed.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Study folder.
    #[arg(long, default_value = "checkpoints/study")]
    pub out: PathBuf,
    /// Where the runs execute.
    #[arg(long, value_enum, default_value = "local")]
    pub backend: Backend,
    /// Local backend: runs at the same time (default: CPU cores / threads per run).
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// Moving-block bootstrap replicates of the fits.
    #[arg(long, default_value_t = 200)]
    pub bootstrap: usize,
    /// Confidence level of every interval.
    #[arg(long, default_value_t = 0.95)]
    pub level: f64,
    /// Evaluation frames of each seed's probe [default: the probe's].
    #[arg(long)]
    pub eval_frames: Option<usize>,
    /// The headlab binary the runs call (default: this one).
    #[arg(long)]
    pub headlab: Option<PathBuf>,
    /// Skip the LLC around emergence.
    #[arg(long)]
    pub no_llc: bool,
    /// Checkpoints per seed for the LLC (log-spaced from t½/4 to 4·t½).
    #[arg(long, default_value_t = 4)]
    pub llc_checkpoints: usize,
    /// Also each head's weight-refined LLC (n_layers × n_heads times the cost).
    #[arg(long)]
    pub llc_per_head: bool,
    /// Draws per chain of each full LLC estimate (4 chains).
    #[arg(long, default_value_t = 200)]
    pub llc_draws: usize,
    /// Draws per chain of each rung of the step-size ladder (4 chains).
    #[arg(long, default_value_t = 50)]
    pub llc_ladder_draws: usize,
    /// Predict instead of fit: use only the checkpoints and training metrics
    /// at steps ≤ STEP of every run, print each predictor's emergence step
    /// (where the score crosses half its final value) and store them in
    /// OUT/predict_from_STEP.toml (and .txt), to be checked later against
    /// the full runs; a finished run's actual step is printed beside them.
    /// The clocks and the mean baselines are calibrated on --predict-with.
    /// Training is not cut short: runs not yet trained are trained and
    /// probed to their end first, as in a plain study (on an existing study
    /// nothing is rerun); only the analysis stops at STEP.
    #[arg(long, value_name = "STEP")]
    pub predict_from: Option<u64>,
    /// Finished studies (or run folders) whose runs calibrate the
    /// predictors of --predict-from, and join the report's evaluation of the
    /// predictors as further settings (e.g. another learning rate).
    #[arg(long, value_name = "DIR")]
    pub predict_with: Vec<PathBuf>,
}

/// The LLC of one seed around its emergence step; a failure is reported
/// and the study goes on.
fn llc_around_emergence(args: &Args, run: &std::path::Path) -> anyhow::Result<String> {
    use headlab_analysis::llc_diag::{emergence_checkpoints, half_rise_step};
    let a = headlab_store::analysis::read_analysis(&headlab_analysis::heads::analysis_path(run), false)?;
    let series = headlab_analysis::fitrun::DEFAULT_SERIES.to_string();
    let heads = headlab_analysis::fitrun::collision_heads(&a, &series);
    let times: Vec<f64> = a.steps.iter().map(|&s| s as f64).collect();
    let score = headlab_analysis::fitrun::collision_series(&a, &series, &heads, &times)
        .context("no collision score to place the LLC around")?;
    let score_steps: Vec<u64> = score.t.iter().map(|&t| t as u64).collect();
    let te = half_rise_step(&score_steps, &score.y).context("the collision score never rises: no emergence step")?;
    let ckpts: Vec<u64> =
        headlab_store::checkpoint::list_checkpoints(run)?.into_iter().map(|(s, _)| s).collect::<Vec<_>>();
    let chosen = emergence_checkpoints(&ckpts, te, args.llc_checkpoints);
    let data = super::run_data(run, None)?;
    let ds = headlab_store::dataset::read_dataset(&data)?;
    super::check_run_dataset(run, &ds, &data, false)?;
    let _lock = super::lock_run(run, "headlab study (llc)")?;
    let ladder = headlab_probe::llc::select::LadderConfig { draws: args.llc_ladder_draws, ..Default::default() };
    let opts = headlab_probe::llc::run::LlcRunOptions {
        checkpoint: headlab_probe::llc::model::CheckpointLlcOptions {
            llc: headlab_probe::llc::LlcConfig { draws: args.llc_draws, ..Default::default() },
            per_head: args.llc_per_head,
            ladder: Some(ladder),
            loss: Default::default(),
        },
        steps: chosen.clone(),
        max_checkpoints: 0,
        recompute: false,
        fresh: false,
        device: headlab_model::DeviceSpec::Cpu.resolve()?,
    };
    let summary = headlab_probe::llc::run::llc_run(run, &ds, &opts, None)?;
    let series = headlab_store::llc::read_llc(&summary.path)?;
    Ok(format!(
        "{}: collision score half-way at step {te}; LLC at steps {chosen:?}\n{}",
        run.display(),
        super::llc::llc_table(&series)
    ))
}

/// The study's training config: the user's (or the defaults) with a
/// constant learning rate after warm-up unless the schedule is kept.
fn study_config(args: &Args) -> anyhow::Result<toml::Table> {
    let mut base = match &args.config {
        Some(c) => {
            let text =
                std::fs::read_to_string(c).with_context(|| format!("{}: cannot read the config", c.display()))?;
            toml::from_str::<toml::Table>(&text).with_context(|| format!("{}: not valid TOML", c.display()))?
        }
        None => toml::Table::new(),
    };
    if !args.keep_schedule {
        let sched = base.entry("schedule").or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match sched {
            toml::Value::Table(t) => {
                t.insert("kind".into(), toml::Value::String("constant".into()));
            }
            other => anyhow::bail!(
                "{}: `schedule` = {other} must be a table such as [schedule]",
                args.config.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
            ),
        }
    }
    Ok(base)
}

fn write_text(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    headlab_store::fsutil::write_atomic(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// Run the study.
pub fn run(mut args: Args) -> anyhow::Result<()> {
    let t0 = std::time::Instant::now();
    crate::preset::apply_to_study(&mut args)?;
    let n_seeds = args.seeds.unwrap_or(5);
    if n_seeds < 2 {
        anyhow::bail!(
            "--seeds {}: a study needs at least 2 seeds (seeds are the unit of replication; 5 is the default)",
            n_seeds
        );
    }
    if !(args.level > 0.0 && args.level < 1.0) {
        anyhow::bail!("--level {} must lie strictly between 0 and 1 (e.g. 0.95)", args.level);
    }
    if let Some(step) = args.predict_from {
        let planned = args.steps.or_else(|| study_config(&args).ok()?.get("steps")?.as_integer().map(|s| s as u64));
        super::study_predict::check_step(step, planned.unwrap_or(headlab_train::TrainConfig::default().steps))?;
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    // The study is a sweep over seeds: its sweep file records everything.
    let abs = |p: &PathBuf| std::path::absolute(p).with_context(|| format!("{}: cannot resolve the path", p.display()));
    let mut run = headlab_sweep::spec::RunConfig { report: false, ..Default::default() };
    if let Some(n) = args.eval_frames {
        run.probe_args = vec!["--eval-frames".into(), n.to_string()];
    }
    let file = headlab_sweep::spec::SweepFile {
        data: args.data.as_ref().map(abs).transpose()?,
        scene: args.scene.as_ref().map(abs).transpose()?,
        base: study_config(&args)?,
        simulate_args: args.simulate_args.clone(),
        n_seeds: Some(n_seeds),
        run,
        ..Default::default()
    };
    let sweep_path = args.out.join("study_sweep.toml");
    let text = format!(
        "# The study as a seed sweep (written by headlab study; `headlab sweep` runs it too).\n{}",
        toml::to_string_pretty(&file).context("the study's sweep file cannot be written as TOML")?
    );
    headlab_store::fsutil::write_atomic_if_changed(&sweep_path, text.as_bytes())
        .with_context(|| format!("writing {}", sweep_path.display()))?;
    let sweep_args = || super::sweep::Args {
        file: Some(sweep_path.clone()),
        backend: args.backend,
        jobs: args.jobs,
        out: Some(args.out.clone()),
        dry_run: false,
        retry_failed: false,
        status: false,
        no_wait: false,
        no_report: true,
        seeds: None,
        config: None,
        data: None,
        scene: None,
        steps: args.steps,
        headlab: args.headlab.clone(),
    };
    eprintln!(
        "[1/{}] train and probe {} seeds → {}",
        if args.no_llc { 3 } else { 4 },
        n_seeds,
        args.out.join("runs").display()
    );
    super::sweep::run(sweep_args())?;
    let (sweep, _) = super::sweep::build(&sweep_args())?;
    let runs: Vec<PathBuf> = sweep.runs.iter().map(|r| sweep.run_dir(r)).collect();
    if let Some(step) = args.predict_from {
        eprintln!("[2/2] predict the emergence step from steps ≤ {step}");
        return super::study_predict::predict_from(&runs, &args.predict_with, step, &args.out, args.level);
    }

    eprintln!("[2/{}] fit every seed", if args.no_llc { 3 } else { 4 });
    let fits = super::fit::run(super::fit::Args {
        runs: runs.clone(),
        series: headlab_analysis::fitrun::DEFAULT_SERIES.to_string(),
        axis: "both".into(),
        bootstrap: args.bootstrap,
        level: args.level,
        seed: 0,
        all_heads: false,
    })?;

    let mut llc_words = String::new();
    if !args.no_llc {
        eprintln!("[3/4] LLC around emergence ({} checkpoints per seed)", args.llc_checkpoints);
        for run in &runs {
            match llc_around_emergence(&args, run) {
                Ok(t) => {
                    eprint!("{t}");
                    llc_words.push_str(&t);
                }
                Err(e) => {
                    let msg = format!("{}: no LLC: {e:#}\n", run.display());
                    eprint!("warning: {msg}");
                    llc_words.push_str(&msg);
                }
            }
        }
    }
    eprintln!("[{}] predict the emergence step from early training; report", if args.no_llc { "3/3" } else { "4/4" });
    let section = super::study_predict::study_section(&runs, &args.predict_with, &args.out, args.level)?;
    let opts = headlab_report::ReportOptions {
        fit: headlab_analysis::fit::FitOptions { bootstrap: args.bootstrap, level: args.level, ..Default::default() },
        extra_sections: vec![section],
        ..Default::default()
    };
    let report = {
        // The report may store fits in each run's analysis.h5: one writer per run.
        let _locks =
            runs.iter().map(|r| super::lock_run(r, "headlab study (report)")).collect::<anyhow::Result<Vec<_>>>()?;
        headlab_report::write_report(&runs, Some(&args.out.join("report")), &opts)?
    };
    let mut words = format!("headlab study: {} seeds in {}\n", n_seeds, args.out.display());
    for (axis, sum) in &fits.seeds {
        words.push_str(&format!("\nAgainst {}:\n{}", axis.label(), headlab_analysis::fit::text::seeds_text(sum)));
    }
    if !llc_words.is_empty() {
        words.push_str(&format!("\nLocal learning coefficient around emergence:\n{llc_words}"));
    }
    if let Some(t) = &report.llc_words {
        words.push_str(&format!("\n{t}\n"));
    }
    write_text(&args.out.join("study.txt"), &words)?;
    println!();
    println!("study finished in {:.0} s", t0.elapsed().as_secs_f64());
    println!("{}", report.headline);
    for (axis, sum) in &fits.seeds {
        println!("against {}: {} — {}", axis.label(), sum.tail.verdict.words(), sum.tail.reason);
    }
    if let Some(t) = &report.llc_words {
        println!("{t}");
    }
    println!("report: {}", report.index.display());
    Ok(())
}
