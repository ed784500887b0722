//! `headlab eval`: one-step and rollout evaluation of a trained run.
use std::path::PathBuf;

use anyhow::Context;
use headlab_analysis::ablation::{head_name, parse_head, Kind, Target, ALL_KINDS};
use headlab_train::eval::{evaluate, EvalOptions};

/// Evaluate a run: one-step MSE on the validation trajectories against the
/// baseline that predicts no change (both in the normalized units of the
/// training loss), and rollouts — the model iterated as a simulator from
/// frame 0 of validation trajectories — with position error over the horizon
/// and the drift of total energy. Rollouts are written as a dataset
/// (RUN/eval/rollout_step_XXXXXXXX.h5) that `headlab inspect` and the viewer open.
///
/// With --ablate L.H[:KIND] (or L for a whole layer) the same rollouts are
/// also made with that head ablated (KIND: zero, mean, resample, off-self,
/// geo-distance, geo-approach; default off-self; see `headlab ablate --help`),
/// their position error printed beside the intact one and written to
/// RUN/eval/ablated_step_XXXXXXXX_L1.H1_off-self.h5; `headlab view` that
/// file to watch it beside the ground truth.
///
/// Example:
///   headlab eval checkpoints/demo
///   headlab eval checkpoints/demo --step 800 --rollouts 8 --horizon 50
///   headlab eval checkpoints/demo --ablate L1.H1:off-self
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
    /// Also roll out with a head (L1.H1) or layer (L1) ablated, optionally
    /// with a kind after a colon (default off-self), e.g. L1.H1:zero.
    #[arg(long)]
    pub ablate: Option<String>,
}

/// Parse `L1.H1[:kind]` or `L1[:kind]` for a model of `nl` × `nh` heads.
fn parse_ablate(s: &str, nl: usize, nh: usize) -> anyhow::Result<(Target, Kind)> {
    let (what, kind) = match s.split_once(':') {
        Some((w, k)) => (
            w,
            Kind::parse(k).ok_or_else(|| {
                anyhow::anyhow!(
                    "--ablate {s}: unknown kind `{k}`; the kinds are {}",
                    ALL_KINDS.iter().filter(|k| **k != Kind::Oracle).map(|k| k.name()).collect::<Vec<_>>().join(", ")
                )
            })?,
        ),
        None => (s, Kind::OffSelf),
    };
    anyhow::ensure!(
        kind != Kind::Oracle,
        "--ablate {s}: the oracle pattern needs the true contact partners, which a rollout does not have"
    );
    let layer_only = what.trim().trim_start_matches(['L', 'l']).parse::<usize>().ok();
    let target = match layer_only {
        Some(l) => {
            anyhow::ensure!(l < nl, "--ablate {s}: the model has {nl} layers (L0 … L{})", nl.saturating_sub(1));
            Target { name: format!("L{l}"), heads: (0..nh).map(|h| (l, h)).collect() }
        }
        None => {
            let (l, h) = parse_head(what, nl, nh).map_err(|e| anyhow::anyhow!("--ablate {s}: {e}"))?;
            Target { name: head_name(l, h), heads: vec![(l, h)] }
        }
    };
    Ok((target, kind))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let _lock = super::lock_run(&args.run, "headlab eval")?;
    if let Some(out) = &args.out {
        super::guard_out(out, super::OutKind::Rollout, args.force)?;
    }
    let data = super::run_data(&args.run, args.data.as_ref())?;
    let ds = headlab_store::dataset::read_dataset(&data)
        .with_context(|| format!("reading the dataset {}", data.display()))?;
    super::check_run_dataset(&args.run, &ds, &data, args.allow_other_data)?;
    // Check --ablate before the evaluation (the model size is in the run's config).
    let ablate = match &args.ablate {
        Some(s) => {
            let cp = args.run.join("config.toml");
            let text = std::fs::read_to_string(&cp).with_context(|| format!("reading {}", cp.display()))?;
            let mc = headlab_model::model_config_from_run_toml(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", cp.display()))?;
            Some(parse_ablate(s, mc.n_layers, mc.n_heads)?)
        }
        None => None,
    };
    let rep = evaluate(
        &args.run,
        &ds,
        &EvalOptions { step: args.step, rollout_trajs: args.rollouts, horizon: args.horizon, device: args.device },
    )?;
    println!("{} (step {})", rep.checkpoint.display(), rep.step);
    println!(
        "one-step validation MSE {:.6}  no-change baseline {:.6}  ratio {:.1}x  ({} validation trajectories)",
        rep.one_step_mse,
        rep.baseline_mse,
        rep.improvement(),
        rep.val_trajs.len()
    );
    let d = ds.dim();
    let names: Vec<String> =
        (0..2 * d).map(|i| format!("{}{}", if i < d { "dpos_" } else { "dvel_" }, ["x", "y", "z"][i % d])).collect();
    for (i, n) in names.iter().enumerate() {
        println!("  {n:8} model {:.6}  baseline {:.6}", rep.component_mse[i], rep.component_baseline_mse[i]);
    }
    let h = rep.rollout_position_mse.len() - 1;
    println!("rollout of {} trajectories over {h} frames:", rep.rollout_trajs.len());
    let mut marks: Vec<usize> = [1, 2, 5, 10, 20, 50, 100, 200, 500].into_iter().filter(|&f| f < h).collect();
    marks.push(h);
    for f in marks {
        println!(
            "  frame {f:5}: position MSE {:.3e}   energy drift model {:+.4}  truth {:+.4}",
            rep.rollout_position_mse[f], rep.rollout_energy_drift[f], rep.true_energy_drift[f]
        );
    }
    let out = args.out.unwrap_or_else(|| args.run.join("eval").join(format!("rollout_step_{:08}.h5", rep.step)));
    let src: Vec<u32> = rep.rollout_trajs.iter().map(|&t| t as u32).collect();
    headlab_store::dataset::write_rollout(
        &out,
        &rep.rollout,
        &std::fs::canonicalize(&data).unwrap_or_else(|_| data.clone()),
        &src,
    )?;
    println!("rollouts written to {}", out.display());
    if let Some((target, kind)) = ablate {
        let (pos, vel, mse) = headlab_probe::ablate::ablated_rollout(
            &args.run,
            rep.step,
            &ds,
            &rep.rollout_trajs,
            h,
            &target,
            kind,
            args.device,
        )?;
        println!("the same rollouts with {} ablated ({}):", target.name, kind.name());
        let mut marks: Vec<usize> = [1, 2, 5, 10, 20, 50, 100, 200, 500].into_iter().filter(|&f| f < h).collect();
        marks.push(h);
        for f in marks {
            println!(
                "  frame {f:5}: position MSE {:.3e} ablated, {:.3e} intact ({:.2}×)",
                mse[f],
                rep.rollout_position_mse[f],
                mse[f] / rep.rollout_position_mse[f]
            );
        }
        let mut ro = rep.rollout.clone();
        ro.positions = pos;
        ro.velocities = vel;
        ro.meta.scene_toml =
            format!("# {} ablated ({}) in this rollout\n{}", target.name, kind.name(), ro.meta.scene_toml);
        let aout =
            args.run.join("eval").join(format!("ablated_step_{:08}_{}_{}.h5", rep.step, target.name, kind.name()));
        headlab_store::dataset::write_rollout(
            &aout,
            &ro,
            &std::fs::canonicalize(&data).unwrap_or_else(|_| data.clone()),
            &src,
        )?;
        println!("ablated rollouts written to {}  (watch: headlab view {})", aout.display(), aout.display());
    }
    Ok(())
}
