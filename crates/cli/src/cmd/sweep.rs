//! `headlab sweep`: many seeds and configurations of train -> probe (-> llc),
//! locally in parallel processes or as Slurm job arrays, then one pooled report.
use anyhow::Context;
use headlab_sweep::{local, slurm, spec::SweepFile, status::State, Sweep};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// Child processes on this machine, --jobs at a time.
    Local,
    /// One sbatch job array (per chunk of MaxArraySize runs), followed with squeue.
    Slurm,
}

/// Repeat an experiment over seeds and configurations, locally or on Slurm.
///
/// Each run gets a folder SWEEP/runs/NAME (NAME from its parameters, e.g.
/// `lr=0.001,n_layers=2,seed=3`) holding its full config.toml, a task.sh
/// that runs `headlab train`, `headlab probe` (and `llc`/`fit` if asked),
/// and status.json (state, step, exit code, log). When every run is done,
/// `headlab report` compares them in one report in SWEEP/report/, with the
/// collision heads summarized over seeds (for the emergence claim itself,
/// see `headlab study`).
///
/// Running the same command again skips finished runs, resumes interrupted
/// ones from their last checkpoint, and leaves failed ones alone unless
/// --retry-failed is given.
///
/// Quick seed sweep on this machine (no sweep file):
///   headlab sweep --seeds 5 --data data/demo.h5 --config my.toml --jobs 2
/// A sweep file on a cluster (see crates/sweep/README.md for the format):
///   headlab sweep sweeps/lr.toml --backend slurm --dry-run
///   headlab sweep sweeps/lr.toml --backend slurm
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Sweep file (TOML): data or scene, [base] config, [grid], seeds, [run], [slurm].
    /// Without it, a seed sweep is built from --seeds, --data/--scene and --config.
    pub file: Option<PathBuf>,
    /// Where the runs execute.
    #[arg(long, value_enum, default_value = "local")]
    pub backend: Backend,
    /// Local backend: runs at the same time (default: CPU cores / threads per run).
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// Sweep folder (default: the file's `out`, else checkpoints/sweeps/<file name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the runs (and, for Slurm, the sbatch scripts) without running anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Also rerun the runs that failed before.
    #[arg(long)]
    pub retry_failed: bool,
    /// Print each run's state (done, failed with exit code and log, ...) and exit.
    #[arg(long)]
    pub status: bool,
    /// Slurm: submit and return without following the jobs (run the same
    /// command later to follow them, or --status to look).
    #[arg(long)]
    pub no_wait: bool,
    /// Do not run `headlab report` on the sweep when all runs are done.
    #[arg(long)]
    pub no_report: bool,
    /// Seeds per configuration: 0..N (overrides the file's seeds; default 5 without a file).
    #[arg(long)]
    pub seeds: Option<u32>,
    /// Without a sweep file: the training config every run starts from.
    #[arg(long, conflicts_with = "file")]
    pub config: Option<PathBuf>,
    /// Without a sweep file: an existing dataset.
    #[arg(long, conflicts_with = "file")]
    pub data: Option<PathBuf>,
    /// Without a sweep file: a scene to simulate once for all runs.
    #[arg(long, conflicts_with_all = ["file", "data"])]
    pub scene: Option<PathBuf>,
    /// Training steps of every run (sets `steps` in the config).
    #[arg(long)]
    pub steps: Option<u64>,
    /// The headlab binary the runs call (default: this one).
    #[arg(long)]
    pub headlab: Option<PathBuf>,
}

/// The sweep `args` describe (also used by `headlab study`).
pub(crate) fn build(args: &Args) -> anyhow::Result<(Sweep, PathBuf)> {
    let me = std::env::current_exe().context("cannot find the path of the running headlab binary; pass --headlab")?;
    let default_headlab = args.headlab.clone().unwrap_or(me);
    let (mut file, origin, name) = match &args.file {
        Some(p) => (
            SweepFile::load(p)?,
            p.clone(),
            p.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "sweep".into()),
        ),
        None => {
            if args.data.is_none() && args.scene.is_none() {
                anyhow::bail!("give a sweep file, or --data FILE.h5 (or --scene FILE.toml) for a seed sweep; see `headlab sweep --help`");
            }
            let base = match &args.config {
                Some(c) => {
                    let text = std::fs::read_to_string(c)
                        .with_context(|| format!("{}: cannot read the config", c.display()))?;
                    toml::from_str::<toml::Table>(&text).with_context(|| format!("{}: not valid TOML", c.display()))?
                }
                None => toml::Table::new(),
            };
            let f = SweepFile {
                data: args.data.clone(),
                scene: args.scene.clone(),
                base,
                n_seeds: Some(5),
                ..Default::default()
            };
            (f, PathBuf::from("command line"), "seeds".to_string())
        }
    };
    if let Some(n) = args.seeds {
        file.seeds = None;
        file.n_seeds = Some(n);
    }
    if let Some(s) = args.steps {
        file.base.insert("steps".into(), toml::Value::Integer(s as i64));
    }
    if let Some(h) = &args.headlab {
        file.run.headlab = Some(h.clone());
    }
    let sweep = Sweep::new(file, args.out.clone(), &name, default_headlab, &origin)?;
    sweep.check_configs(&origin, |text| {
        headlab_train::config::TrainConfig::from_toml(text, "run config").map(|_| ()).map_err(|e| e.to_string())
    })?;
    Ok((sweep, origin))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (sweep, _origin) = build(&args)?;
    if args.status {
        let states = slurm::reconcile(&sweep);
        print!("{}", headlab_sweep::describe_runs(&sweep, &states, args.retry_failed));
        print!("{}", headlab_sweep::Summary::from_states(&states).render());
        return Ok(());
    }
    let summary = match args.backend {
        Backend::Local => {
            let threads = sweep
                .file
                .base
                .get("threads")
                .and_then(|t| t.as_integer())
                .unwrap_or(sweep.file.slurm.cpus as i64)
                .max(1) as usize;
            let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
            let jobs = args.jobs.unwrap_or((cores / threads).max(1));
            if args.dry_run {
                print!("{}", headlab_sweep::describe_runs(&sweep, &sweep.states(), args.retry_failed));
                println!("local backend: {jobs} runs at a time; each run executes SWEEP/runs/NAME/task.sh");
                return Ok(());
            }
            eprintln!("sweep {}: {} runs, {jobs} at a time", sweep.dir.display(), sweep.runs.len());
            local::run(&sweep, &local::LocalOptions { jobs, retry_failed: args.retry_failed, progress: true })?
        }
        Backend::Slurm => {
            let opts = slurm::SlurmOptions { retry_failed: args.retry_failed, max_array_size: None };
            if args.dry_run {
                let max = match sweep.file.slurm.max_array_size {
                    Some(m) => m,
                    None => slurm::cluster_max_array_size().unwrap_or_else(|e| {
                        eprintln!("note: {e}; assuming MaxArraySize = 1001 (Slurm's default)");
                        1001
                    }),
                };
                print!("{}", slurm::dry_run(&sweep, &opts, max)?);
                return Ok(());
            }
            let subs = slurm::submit(&sweep, &opts)?;
            if subs.is_empty() {
                eprintln!("nothing to submit: every run is done, queued, running or failed (--retry-failed reruns failed ones)");
            }
            for s in &subs {
                eprintln!("submitted {} runs as Slurm job {} ({})", s.runs.len(), s.job_id, s.script.display());
            }
            if args.no_wait {
                eprintln!(
                    "not following; look with: headlab sweep {} --backend slurm --status",
                    args.file.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
                );
                return Ok(());
            }
            eprintln!("following the jobs with squeue (Ctrl-C stops following; the jobs go on)");
            let bar = indicatif::ProgressBar::new(sweep.runs.len() as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "slurm [{bar:30}] {pos}/{len} finished  {elapsed_precise}  {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            let poll = Duration::from_secs_f64(sweep.file.slurm.poll_seconds);
            let summary = slurm::follow(&sweep, poll, None, |states| {
                let count = |s: State| states.iter().filter(|r| r.state() == Some(s)).count();
                let finished = count(State::Done) + count(State::Failed) + count(State::Interrupted);
                bar.set_position(finished as u64);
                bar.set_message(format!(
                    "{} queued, {} running, {} failed",
                    count(State::Queued),
                    count(State::Running),
                    count(State::Failed)
                ));
            })?;
            bar.finish_and_clear();
            summary
        }
    };
    print!("{}", summary.render());
    if !summary.failed.is_empty() || !summary.interrupted.is_empty() {
        anyhow::bail!(
            "{} of {} runs did not finish; fix the cause and run the same command again (add --retry-failed to rerun failed runs)",
            summary.failed.len() + summary.interrupted.len(),
            sweep.runs.len()
        );
    }
    if summary.all_done() && sweep.file.run.report && !args.no_report {
        let index = sweep.report()?;
        println!("report: {}", index.display());
    }
    Ok(())
}
