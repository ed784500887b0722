//! `headlab demo`: the whole pipeline on built-in defaults, in minutes on a
//! laptop CPU: simulate → train → probe → fit → report.
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;

/// The built-in demo scene (the same text as scenes/demo.toml), so that the
/// demo works from any folder.
const DEMO_SCENE: &str = include_str!("../../../../scenes/demo.toml");

/// Run the whole pipeline on built-in defaults and say whether any head
/// meets the collision-head bar: self-excluded score >= 0.5 and, at matched
/// distance, an AUROC for contact >= 0.75 (distance alone scores 0.5 there),
/// naming heads tied within one standard error together and giving their
/// margin over the best non-learned baseline (distance, time to contact).
///
/// Steps, each also a subcommand of its own:
///   1. simulate  the demo scene (16 disks in a dense 2D box, a contact in
///                about a third of particle-intervals)  → OUT/data.h5
///   2. train     a 2-layer, 4-head transformer        → OUT/run/ckpt/*.h5
///   3. probe     every checkpoint × layer × head       → OUT/run/analysis.h5
///   4. fit       emergence curves: power-like vs exponential/logistic
///                relaxation, per seed and over seeds (see `headlab fit`)
///   5. lens physics  per head: does attention scan then snap (freeze
///                detector), does W_Q·W_Kᵀ align with the att-SVM that picks
///                the contact partner                  → OUT/run/lens_physics.h5
///   6. ablate    causal tests: each head, layer and the collision heads
///                ablated (zero, mean, resample, off-self, geometry-only and
///                oracle patterns), activation patching → OUT/run/ablation.h5
///   7. report    plots and summary                    → OUT/run/report/index.html
///
/// Steps 2–3 run for every seed (--seeds, default 3: seed 0 in OUT/run,
/// the others in OUT/seedK), so that the last word is about reproducibility
/// over seeds, not one run's checkpoints. For the full study with 5 seeds
/// and a constant learning rate, see `headlab study`.
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
    /// Seeds trained and probed (the unit of replication of the fits).
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
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

    eprintln!("[1/7] simulate → {}", data.display());
    if data.exists()
        && headlab_store::dataset::read_dataset_meta(&data).is_ok()
        && args.trajectories.is_none()
        && args.frames.is_none()
    {
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
            force: false,
        })?;
    }

    if args.seeds == 0 {
        anyhow::bail!("--seeds 0: train at least one seed (3 is the default)");
    }
    // Seed 0 in OUT/run (the run the lens and the viewer look at), the others in OUT/seedK.
    let runs: Vec<PathBuf> =
        (0..args.seeds).map(|k| if k == 0 { run_dir.clone() } else { args.out.join(format!("seed{k}")) }).collect();
    for (k, run) in runs.iter().enumerate() {
        let seed = args.seed + k as u64;
        eprintln!("[2/7] train seed {seed} ({} of {}) → {}", k + 1, runs.len(), run.display());
        let resume = headlab_store::checkpoint::list_checkpoints(run).map(|c| !c.is_empty()).unwrap_or(false);
        super::train::run(super::train::Args {
            data: Some(data.clone()),
            out: run.clone(),
            config: None,
            resume,
            device: Some(args.device),
            seed: Some(seed),
            steps: args.steps,
            lr: None,
            batch_size: None,
            threads: args.threads,
            quiet: false,
            allow_other_data: false,
        })?;

        eprintln!("[3/7] probe seed {seed} → {}", run.join("analysis.h5").display());
        super::probe::run(super::probe::Args {
            run: run.clone(),
            data: Some(data.clone()),
            config: None,
            eval_frames: args.eval_frames,
            contact_factor: None,
            cache_frames: None,
            device: args.device,
            batch: 64,
            fresh: false,
            allow_other_data: false,
        })?;
    }

    eprintln!("[4/7] fit");
    let fits = super::fit::run(super::fit::Args {
        runs: runs.clone(),
        series: headlab_analysis::fitrun::DEFAULT_SERIES.to_string(),
        axis: "both".into(),
        bootstrap: args.bootstrap,
        level: 0.95,
        seed: args.seed,
        all_heads: false,
    })?;

    eprintln!("[5/7] lens physics → {}", run_dir.join("lens_physics.h5").display());
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
        allow_other_data: false,
    })?;

    eprintln!("[6/7] ablate → {}", run_dir.join("ablation.h5").display());
    super::ablate::run(super::ablate::Args {
        run: run_dir.clone(),
        data: Some(data.clone()),
        kinds: None,
        group: None,
        steps: None,
        n_steps: 12,
        train_frames: None,
        bootstrap: None,
        rollouts: None,
        patch_pairs: None,
        seed: Some(args.seed),
        device: args.device,
        fresh: false,
    })?;

    eprintln!("[7/7] report");
    // The report judges the collision heads (the top score and every head
    // tied with it within one SE) against the collision-head bar, beside the
    // non-learned baselines; its headline is the demo's last word.
    let opts = headlab_report::ReportOptions {
        fit: headlab_analysis::fit::FitOptions { bootstrap: args.bootstrap, ..Default::default() },
        ..Default::default()
    };
    let report = {
        let _locks =
            runs.iter().map(|r| super::lock_run(r, "headlab demo (report)")).collect::<anyhow::Result<Vec<_>>>()?;
        headlab_report::write_report(&runs, Some(&run_dir.join("report")), &opts)?
    };
    println!();
    println!("demo finished in {:.0} s", t0.elapsed().as_secs_f64());
    println!("{}", report.headline);
    // The causal test of the collision heads (headlab ablate), as the report words it.
    if let Some(i) = report.runs.first().and_then(|r| r.summary.find("Causal test")) {
        println!("{}", &report.runs[0].summary[i..]);
    }
    for (axis, sum) in &fits.seeds {
        println!(
            "over {} seeds, against {}: {} — {}",
            sum.n_seeds,
            axis.label(),
            sum.tail.verdict.words(),
            sum.tail.reason
        );
    }
    if args.seeds < 5 {
        println!("for 5 seeds: headlab demo --seeds 5 --out {}   (or the full study at constant learning rate: headlab study --data {})", args.out.display(), data.display());
    }
    println!("report: {}", report.index.display());
    println!("watch it: headlab view {}   (tools/headlab view … from a checkout)", run_dir.display());
    Ok(())
}
