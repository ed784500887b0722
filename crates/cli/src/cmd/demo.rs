//! `headlab demo`: the whole pipeline on built-in defaults, in minutes on a
//! laptop CPU: simulate → train → probe → fit → report.
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;

/// The built-in demo scene (the same text as scenes/demo.toml), so that the
/// demo works from any folder.
const DEMO_SCENE: &str = include_str!("../../../../scenes/demo.toml");

/// Run the whole pipeline on built-in defaults and say whether a
/// collision-detecting head emerged.
///
/// Steps, each also a subcommand of its own:
///   1. simulate  the demo scene (16 disks in a dense 2D box, a contact in
///                about a third of particle-intervals)  → OUT/data.h5
///   2. train     a 2-layer, 4-head transformer        → OUT/run/ckpt/*.h5
///   3. probe     every checkpoint × layer × head       → OUT/run/analysis.h5
///   4. fit       emergence curves (power law vs rivals, by AIC)
///   5. lens physics  per head: does attention scan then snap (freeze
///                detector), does W_Q·W_Kᵀ align with the att-SVM that picks
///                the contact partner                  → OUT/run/lens_physics.h5
///   6. report    plots and summary                    → OUT/run/report/index.html
///
/// Running it again resumes: an existing dataset is reused, training
/// continues from its last checkpoint, probing skips probed checkpoints.
///
/// Example:
///   headlab demo
///   headlab demo --out checkpoints/demo2 --seed 1
// The doc is `--help` text, laid out verbatim (aligned columns, not markdown).
#[allow(clippy::doc_overindented_list_items)]
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Folder for the dataset, the run and the report.
    #[arg(long, default_value = "checkpoints/demo")]
    pub out: PathBuf,
    /// Seed for the simulation and for training.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Trajectories to simulate [default: the scene's].
    #[arg(long)]
    pub trajectories: Option<usize>,
    /// Frames per trajectory [default: the scene's].
    #[arg(long)]
    pub frames: Option<usize>,
    /// Training steps [default: the training config's].
    #[arg(long)]
    pub steps: Option<u64>,
    /// Evaluation frames for the probes [default: the probe's].
    #[arg(long)]
    pub eval_frames: Option<usize>,
    /// Bootstrap resamples for the fits' confidence intervals.
    #[arg(long, default_value_t = 200)]
    pub bootstrap: usize,
    /// libtorch threads on the CPU [default: what is fastest here].
    #[arg(long)]
    pub threads: Option<usize>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: headlab_model::DeviceSpec,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let t0 = Instant::now();
    // Check the device before minutes of simulation.
    args.device.resolve()?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let scene_path = args.out.join("scene.toml");
    std::fs::write(&scene_path, DEMO_SCENE).with_context(|| format!("writing {}", scene_path.display()))?;
    let data = args.out.join("data.h5");
    let run_dir = args.out.join("run");

    eprintln!("[1/6] simulate → {}", data.display());
    if data.exists() && headlab_store::dataset::read_dataset_meta(&data).is_ok() && args.trajectories.is_none() && args.frames.is_none() {
        eprintln!("      reusing the existing dataset");
    } else {
        super::simulate::run(super::simulate::Args {
            scene: scene_path,
            trajectories: args.trajectories,
            frames: args.frames,
            out: data.clone(),
            seed: Some(args.seed),
            threads: 0,
            quiet: false,
        })?;
    }

    eprintln!("[2/6] train → {}", run_dir.display());
    let resume = headlab_store::checkpoint::list_checkpoints(&run_dir).map(|c| !c.is_empty()).unwrap_or(false);
    super::train::run(super::train::Args {
        data: Some(data.clone()),
        out: run_dir.clone(),
        config: None,
        resume,
        device: Some(args.device),
        seed: Some(args.seed),
        steps: args.steps,
        lr: None,
        batch_size: None,
        threads: args.threads,
        quiet: false,
    })?;

    eprintln!("[3/6] probe → {}", run_dir.join("analysis.h5").display());
    super::probe::run(super::probe::Args {
        run: run_dir.clone(),
        data: Some(data.clone()),
        config: None,
        eval_frames: args.eval_frames,
        contact_factor: None,
        cache_frames: None,
        device: args.device,
        batch: 64,
        fresh: false,
    })?;

    eprintln!("[4/6] fit");
    super::fit::run(super::fit::Args {
        runs: vec![run_dir.clone()],
        series: headlab_analysis::fitrun::DEFAULT_SERIES.to_string(),
        bootstrap: args.bootstrap,
        seed: args.seed,
    })?;

    eprintln!("[5/6] lens physics → {}", run_dir.join("lens_physics.h5").display());
    super::lens::run_physics(super::lens::PhysicsArgs {
        run: run_dir.clone(),
        data: Some(data.clone()),
        freeze_frames: 16,
        svm_queries: 24,
        seed: args.seed,
        contact: "interval".into(),
        freeze_window: 100,
        freeze_threshold: 0.15,
        freeze_scale: "norm".into(),
        fresh: false,
        device: args.device,
        threads: args.threads.unwrap_or(1),
        quiet: false,
    })?;

    eprintln!("[6/6] report");
    // The report judges the best head against the collision-head bar; its
    // headline is the demo's last word.
    let opts = headlab_report::ReportOptions {
        fit: headlab_analysis::fit::FitOptions { bootstrap: args.bootstrap, ..Default::default() },
        ..Default::default()
    };
    let report = headlab_report::write_report(std::slice::from_ref(&run_dir), None, &opts)?;
    println!();
    println!("demo finished in {:.0} s", t0.elapsed().as_secs_f64());
    println!("{}", report.headline);
    println!("report: {}", report.index.display());
    println!("watch it: headlab view {}   (tools/headlab view … from a checkout)", run_dir.display());
    Ok(())
}
