//! The probe's evaluation set: which (trajectory, frame) pairs are probed,
//! and the geometry and contact partners of each (tch-free; the probe driver
//! in headlab-probe runs the model on them, the lenses reuse them).

use std::collections::BTreeMap;

use headlab_sim::Dataset;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::baselines::{FrameKin, PairTable};
use crate::contacts::interval_contacts;
use crate::metrics::FrameGeom;

/// The evaluation frames: `n` distinct (trajectory, frame) pairs from `trajs`,
/// frames with a successor, drawn with `seed`, sorted.
pub fn choose_eval_frames(ds: &Dataset, trajs: &[usize], n: usize, seed: u64) -> Vec<(usize, usize)> {
    let mut all: Vec<(usize, usize)> =
        trajs.iter().flat_map(|&t| (0..ds.n_frames.saturating_sub(1)).map(move |f| (t, f))).collect();
    all.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(headlab_sim::seed::derive_seed(
        seed,
        headlab_sim::seed::Stream::EvalSet,
    )));
    all.truncate(n);
    all.sort();
    all
}

/// Geometry and contact partners of each evaluation frame.
pub fn frame_geoms(ds: &Dataset, frames: &[(usize, usize)], factor: f32) -> Vec<FrameGeom> {
    let n = ds.n_particles;
    let d = ds.dim();
    let mut by_traj: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (k, &(t, _)) in frames.iter().enumerate() {
        by_traj.entry(t).or_default().push(k);
    }
    let mut out: Vec<(usize, FrameGeom)> = Vec::with_capacity(frames.len());
    for (t, ks) in by_traj {
        let fs: Vec<usize> = ks.iter().map(|&k| frames[k].1).collect();
        let cs = interval_contacts(ds, t, &fs);
        for (&k, c) in ks.iter().zip(cs) {
            let f = frames[k].1;
            let i = ds.idx(t, f, 0);
            out.push((k, FrameGeom::new(&ds.positions[i..i + n * d], &ds.radii[t * n..(t + 1) * n], d, factor, c)));
        }
    }
    // Back to the order of `frames` (each k appears once).
    out.sort_by_key(|(k, _)| *k);
    out.into_iter().map(|(_, g)| g).collect()
}

/// The pair table of the evaluation frames ([`PairTable`]): distances,
/// labels and ballistic features from the dataset's positions and velocities.
pub fn pair_table(ds: &Dataset, frames: &[(usize, usize)], geoms: &[FrameGeom]) -> PairTable {
    let (n, d) = (ds.n_particles, ds.dim());
    let kin: Vec<FrameKin<'_>> = frames
        .iter()
        .map(|&(t, f)| {
            let i = ds.idx(t, f, 0);
            FrameKin {
                positions: &ds.positions[i..i + n * d],
                velocities: &ds.velocities[i..i + n * d],
                radii: &ds.radii[t * n..(t + 1) * n],
                dim: d,
                frame_dt: ds.frame_dt(),
            }
        })
        .collect();
    PairTable::new(&kin, geoms)
}
