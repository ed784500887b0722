//! SGLD draws per second of `headlab llc` on a checkpoint: whole model, a
//! head of the first layer (head0.0) and one of the last layer
//! (headL.0), at the given thread counts, on the CPU or a CUDA device. A
//! head's passes start at the cached stream entering its block and compute
//! only that head there (the other heads' z cached at w*); each head row is
//! followed by "-allheads", the same estimate computing every head of the
//! block (the path before the z cache), with caches of its own (streams
//! empty at the start, as for the head row; losses at w* as warm), and
//! both again with their caches filled ("-warm"). Also
//! writes the training frames (features, targets) to an HDF5 file for
//! tools/bench_llc.py.
//!
//!   bench_llc CKPT DATA.h5 EXPORT.h5 CHAINS DRAWS BATCH "1 2" [DEVICE]
// A benchmark/demo program: failing fast with a panic is its error handling.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::path::Path;
use std::time::Instant;

use headlab_probe::llc::model::{head_mask, load_checkpoint, CheckpointProblem, LossConvention};
use headlab_probe::llc::{estimate, LlcConfig, Movable};
use tch::Kind;

/// CPU seconds used by this process so far (all threads; /proc/self/stat
/// utime + stime in clock ticks of 1/100 s). Under a loaded machine, rates
/// per CPU second are steadier than rates per wall second.
fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses).
    let rest = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
    // utime and stime are fields 14 and 15 of the line: 11 and 12 after ")".
    (tick(11) + tick(12)) / 100.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 8 {
        eprintln!("usage: bench_llc CKPT DATA.h5 EXPORT.h5 CHAINS DRAWS BATCH \"1 2\" [cpu|cuda|cuda:N]");
        std::process::exit(2);
    }
    let device = headlab_model::parse_device(a.get(8).map(String::as_str).unwrap_or("cpu"))?;
    let (chains, draws, batch): (usize, usize, usize) = (a[4].parse()?, a[5].parse()?, a[6].parse()?);
    let threads: Vec<usize> = a[7].split_whitespace().map(|t| t.parse()).collect::<Result<_, _>>()?;
    let ds = headlab_store::dataset::read_dataset(Path::new(&a[2]))?;
    let (_, model, data) = load_checkpoint(Path::new(&a[1]), &ds, device)?;
    // Export the frames for the PyTorch loop.
    let (x, y) = data.tensors();
    let shape = |t: &tch::Tensor| t.size().iter().map(|&d| d as usize).collect::<Vec<_>>();
    let xv: Vec<f32> = Vec::try_from(&x.to_kind(Kind::Float).to_device(tch::Device::Cpu).reshape([-1]))?;
    let yv: Vec<f32> = Vec::try_from(&y.to_kind(Kind::Float).to_device(tch::Device::Cpu).reshape([-1]))?;
    let out = Path::new(&a[3]);
    headlab_store::atomic_write(out, headlab_store::FileKind::Lens, |f| {
        headlab_store::h5util::write_array(f, out, "x", &xv, &shape(x))?;
        headlab_store::h5util::write_array(f, out, "y", &yv, &shape(y))
    })?;
    let w_star = [model.flat_params().detach().copy()];
    let last = model.config.n_layers - 1;
    let last_head = format!("head{last}.0");
    println!(
        "n = {} frames, {} parameters, batch {batch}, {chains} chains x {draws} draws, device {}",
        data.n,
        model.num_params(),
        headlab_model::device_name(device)
    );
    for &t in &threads {
        let cfg = LlcConfig {
            epsilon: 1e-5,
            gamma: 1000.0,
            chains,
            draws,
            batch_size: batch,
            threads: t,
            ..LlcConfig::default()
        };
        let run =
            |mode: &str, problem: &CheckpointProblem<'_>, movable: Movable| -> Result<(), Box<dyn std::error::Error>> {
                let (start, cpu0) = (Instant::now(), cpu_seconds());
                let est = estimate(problem, &w_star, &[movable], &cfg, None)?;
                let (dt, cpu) = (start.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
                let n = (chains * draws) as f64;
                println!(
                    "rust {mode:10} threads {t}: {:8.1} draws/s  {:8.1} draws/cpu-s  (llc {:.3})",
                    n / dt,
                    n / cpu,
                    est.llc
                );
                Ok(())
            };
        // As `headlab llc --per-head` does: the head shares the whole model's
        // cache of L_B(w*) (the losses at the checkpoint, computed once per batch).
        // "whole" starts with an empty cache; "whole-warm" repeats it with the
        // cache filled, the steady state of a ladder's later rungs.
        let whole_problem = CheckpointProblem::new(&model, &data, batch, 0, LossConvention::Mse)?;
        run("whole", &whole_problem, Movable::All)?;
        run("whole-warm", &whole_problem, Movable::All)?;
        // The "-allheads" rows' caches: losses at w* warmed by the same
        // whole-model estimate (untimed), streams empty.
        let whole_b = CheckpointProblem::new(&model, &data, batch, 0, LossConvention::Mse)?;
        estimate(&whole_b, &w_star, &[Movable::All], &cfg, None)?;
        for (layer, name) in [(0, "head0.0"), (last, last_head.as_str())] {
            let (problem, mask) =
                CheckpointProblem::new(&model, &data, batch, 0, LossConvention::Mse)?.for_head(&model, layer, 0)?;
            let problem = problem.sharing_star_cache(&whole_problem);
            let (_, names) = head_mask(&model, layer, 0)?;
            let all = CheckpointProblem::new(&model, &data, batch, 0, LossConvention::Mse)?
                .with_grad_params(&model, &names)?
                .sharing_star_cache(&whole_b);
            // Cold (streams and z filled on the way), then again with them
            // filled: the steady state of the other heads of the layer
            // (which share them) and of a ladder's later rungs.
            run(name, &problem, Movable::Mask(mask.copy()))?;
            run(&format!("{name}-allheads"), &all, Movable::Mask(mask.copy()))?;
            run(&format!("{name}-warm"), &problem, Movable::Mask(mask.copy()))?;
            run(&format!("{name}-allheads-warm"), &all, Movable::Mask(mask))?;
        }
    }
    Ok(())
}
