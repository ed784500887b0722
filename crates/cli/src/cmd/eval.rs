//! `headlab eval`: one-step and rollout evaluation of a trained run.
use std::path::PathBuf;

use anyhow::Context;
use headlab_train::eval::{evaluate, EvalOptions};
use headlab_train::TrainConfig;

/// Evaluate a run: one-step MSE on the validation trajectories against the
/// baseline that predicts no change (both in the normalized units of the
/// training loss), and rollouts — the model iterated as a simulator from
/// frame 0 of validation trajectories — with position error over the horizon
/// and the drift of total energy. Rollouts are written as a dataset
/// (RUN/eval/rollout_step_XXXXXXXX.h5) that `headlab inspect` and the viewer open.
///
/// Example:
///   headlab eval checkpoints/demo
///   headlab eval checkpoints/demo --step 800 --rollouts 8 --horizon 50
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Run folder written by `headlab train`.
    pub run: PathBuf,
    /// Checkpoint step (default: the newest).
    #[arg(long)]
    pub step: Option<u64>,
    /// Dataset (default: the `data` of RUN/config.toml).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Number of validation trajectories to roll out.
    #[arg(long, default_value_t = 4)]
    pub rollouts: usize,
    /// Rollout length in frames (0 = whole trajectories).
    #[arg(long, default_value_t = 0)]
    pub horizon: usize,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: headlab_model::DeviceSpec,
    /// Where to write the rollouts (default RUN/eval/rollout_step_XXXXXXXX.h5).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace --out even when it is not a rollout (never inside a run's ckpt/).
    #[arg(long)]
    pub force: bool,
    /// Go on even when the dataset's content is not the one the run was
    /// trained on (its fingerprint in RUN/config.toml differs).
    #[arg(long)]
    pub allow_other_data: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let _lock = super::lock_run(&args.run, "headlab eval")?;
    if let Some(out) = &args.out {
        super::guard_out(out, super::OutKind::Rollout, args.force)?;
    }
    let data = match &args.data {
        Some(d) => d.clone(),
        None => {
            let cfg = TrainConfig::load(&args.run.join("config.toml"))?;
            anyhow::ensure!(!cfg.data.is_empty(), "{}: no `data` recorded; pass --data FILE.h5", args.run.join("config.toml").display());
            cfg.data_path(&args.run)
        }
    };
    let ds = headlab_store::dataset::read_dataset(&data).with_context(|| format!("reading the dataset {}", data.display()))?;
    super::check_run_dataset(&args.run, &ds, &data, args.allow_other_data)?;
    let rep = evaluate(&args.run, &ds, &EvalOptions { step: args.step, rollout_trajs: args.rollouts, horizon: args.horizon, device: args.device })?;
    println!("{} (step {})", rep.checkpoint.display(), rep.step);
    println!("one-step validation MSE {:.6}  no-change baseline {:.6}  ratio {:.1}x  ({} validation trajectories)", rep.one_step_mse, rep.baseline_mse, rep.improvement(), rep.val_trajs.len());
    let d = ds.dim();
    let names: Vec<String> = (0..2 * d).map(|i| format!("{}{}", if i < d { "dpos_" } else { "dvel_" }, ["x", "y", "z"][i % d])).collect();
    for (i, n) in names.iter().enumerate() {
        println!("  {n:8} model {:.6}  baseline {:.6}", rep.component_mse[i], rep.component_baseline_mse[i]);
    }
    let h = rep.rollout_position_mse.len() - 1;
    println!("rollout of {} trajectories over {h} frames:", rep.rollout_trajs.len());
    let mut marks: Vec<usize> = [1, 2, 5, 10, 20, 50, 100, 200, 500].into_iter().filter(|&f| f < h).collect();
    marks.push(h);
    for f in marks {
        println!("  frame {f:5}: position MSE {:.3e}   energy drift model {:+.4}  truth {:+.4}", rep.rollout_position_mse[f], rep.rollout_energy_drift[f], rep.true_energy_drift[f]);
    }
    let out = args.out.unwrap_or_else(|| args.run.join("eval").join(format!("rollout_step_{:08}.h5", rep.step)));
    let src: Vec<u32> = rep.rollout_trajs.iter().map(|&t| t as u32).collect();
    headlab_store::dataset::write_rollout(&out, &rep.rollout, &std::fs::canonicalize(&data).unwrap_or_else(|_| data.clone()), &src)?;
    println!("rollouts written to {}", out.display());
    Ok(())
}
