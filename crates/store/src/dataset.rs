//! Simulation datasets on disk (`headlab simulate` writes them; training,
//! probing and the viewer read them).
//!
//! Layout (root group of a `kind = "dataset"` file):
//!
//! | key            | type / shape                         |
//! |----------------|--------------------------------------|
//! | `/positions`   | f32 [traj, frames, particles, dim]   |
//! | `/velocities`  | f32 [traj, frames, particles, dim]   |
//! | `/radii`       | f32 [traj, particles]                |
//! | `/masses`      | f32 [traj, particles]                |
//! | `/events`      | compound [n_events] {traj u32, step u64, i i32, j i32, kind u8} |
//!
//! `/events` is sorted by (traj, step, i, j, kind) and carries the attributes
//! `kind_names` (comma-separated names of kinds 0, 1, 2, 3: contact-start,
//! contact-end, wall-start, wall-end) and `doc` (the encoding: `step` is the
//! sub-step, interval f covers steps (f·stride, (f+1)·stride]; for walls
//! `j = −(1 + 2·axis + side)`, side 0 low / 1 high).
//!
//! Root attributes: `kind`, `format_version`, `dt`, `stride`, `frame_dt`,
//! `dimension`, `box` [dim], `gravity`, `spring_k`, `damping` (dashpot of a
//! typical pair), `restitution` (NaN when damping was given directly),
//! `contact_time`, `seed`, `scene` and `config` (the resolved scene TOML).
//!
//! A model rollout (`headlab eval`) is a dataset file with two more root
//! attributes: `source_dataset` (path of the ground truth) and `source_traj`
//! (u32 [traj], the ground-truth trajectory each rollout starts from).
//!
//! In Python: `h5py.File(p)["positions"][...]`, `f["events"]["kind"]`, `f.attrs["dt"]`.

use std::path::Path;

use headlab_sim::dataset::{Dataset, DatasetMeta, Event, EventKind};

use crate::h5util::{
    atomic_write, get_attr, get_str_attr, get_vec_attr, open_kind, read_array, set_attr, set_str_attr, set_vec_attr,
    write_array, Ctx, FileKind, StoreError,
};

/// One row of the `/events` table (stored packed: no padding bytes on disk,
/// so files are byte-for-byte reproducible).
#[derive(hdf5::H5Type, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct EventRow {
    /// Trajectory index.
    pub traj: u32,
    /// Sub-step from the start of the trajectory.
    pub step: u64,
    /// First particle.
    pub i: i32,
    /// Second particle (i < j), or -(1 + wall) for a wall.
    pub j: i32,
    /// Event kind code (see [`EVENT_KIND_NAMES`]).
    pub kind: u8,
}

/// The event kind codes 0, 1, 2, 3 by name, as stored in the file.
pub const EVENT_KIND_NAMES: &str = "contact-start,contact-end,wall-start,wall-end";
const EVENTS_DOC: &str = "step = integrator sub-step from the start of the trajectory; frame f is sub-step f*stride, \
interval f covers sub-steps (f*stride, (f+1)*stride]; pairs have i < j; walls have j = -(1 + 2*axis + side), \
side 0 = low face, 1 = high face; a contact open at the last sub-step has no end event";

/// Sizes and physical parameters of a dataset file, read without the arrays.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetInfo {
    /// Number of trajectories.
    pub n_traj: usize,
    /// Frames per trajectory.
    pub n_frames: usize,
    /// Particles per trajectory.
    pub n_particles: usize,
    /// Rows of the event table.
    pub n_events: usize,
    /// Physical parameters.
    pub meta: DatasetMeta,
}

/// Write `ds` to `path` atomically (see the module docs for the layout).
pub fn write_dataset(path: &Path, ds: &Dataset) -> Result<(), StoreError> {
    write_dataset_with(path, ds, None)
}

/// Write a model rollout: a dataset file that also records where it came
/// from, in the root attributes `source_dataset` (path of the ground truth)
/// and `source_traj` (u32 [traj]: the ground-truth trajectory each rollout
/// trajectory starts from). The viewer shows the two side by side.
pub fn write_rollout(path: &Path, ds: &Dataset, source_dataset: &Path, source_traj: &[u32]) -> Result<(), StoreError> {
    if source_traj.len() != ds.n_traj {
        return Err(Ctx(path).invalid(
            "source_traj",
            format!("{} values", source_traj.len()),
            format!("{} (trajectories)", ds.n_traj),
        ));
    }
    write_dataset_with(path, ds, Some((source_dataset, source_traj)))
}

/// The source of a rollout file (`source_dataset`, `source_traj`), or `None`
/// for a plain dataset.
pub fn read_rollout_source(path: &Path) -> Result<Option<(std::path::PathBuf, Vec<u32>)>, StoreError> {
    let (file, _) = open_kind(path, Some(FileKind::Dataset))?;
    if file.attr("source_dataset").is_err() {
        return Ok(None);
    }
    let src = get_str_attr(&file, path, "source_dataset")?;
    let trajs: Vec<u32> = get_vec_attr(&file, path, "source_traj")?;
    let info = info_from(&file, path)?;
    if trajs.len() != info.n_traj {
        return Err(Ctx(path).invalid(
            "source_traj",
            format!("{} values", trajs.len()),
            format!("{} (trajectories)", info.n_traj),
        ));
    }
    Ok(Some((src.into(), trajs)))
}

fn write_dataset_with(path: &Path, ds: &Dataset, source: Option<(&Path, &[u32])>) -> Result<(), StoreError> {
    let ctx = Ctx(path);
    let (t, f, n, d) = (ds.n_traj, ds.n_frames, ds.n_particles, ds.meta.dimension);
    if ds.meta.box_size.len() != d {
        return Err(ctx.invalid("box", format!("{} values", ds.meta.box_size.len()), format!("{d} (dimension)")));
    }
    atomic_write(path, FileKind::Dataset, |file| {
        write_array(file, path, "positions", &ds.positions, &[t, f, n, d])?;
        write_array(file, path, "velocities", &ds.velocities, &[t, f, n, d])?;
        write_array(file, path, "radii", &ds.radii, &[t, n])?;
        write_array(file, path, "masses", &ds.masses, &[t, n])?;
        let rows: Vec<EventRow> = ds
            .events
            .iter()
            .map(|e| EventRow { traj: e.traj, step: e.step, i: e.i, j: e.j, kind: e.kind as u8 })
            .collect();
        let ev = ctx.h5("events", file.new_dataset::<EventRow>().packed(true).shape([rows.len()]).create("events"))?;
        if !rows.is_empty() {
            ctx.h5("events", ev.write_raw(&rows))?;
        }
        set_str_attr(&ev, path, "kind_names", EVENT_KIND_NAMES)?;
        set_str_attr(&ev, path, "doc", EVENTS_DOC)?;
        let m = &ds.meta;
        set_attr(file, path, "dt", m.dt)?;
        set_attr(file, path, "stride", m.stride)?;
        set_attr(file, path, "frame_dt", m.dt * m.stride as f64)?;
        set_attr(file, path, "dimension", m.dimension as u32)?;
        set_vec_attr(file, path, "box", &m.box_size)?;
        set_attr(file, path, "gravity", m.gravity)?;
        set_attr(file, path, "spring_k", m.spring_k)?;
        set_attr(file, path, "damping", m.damping)?;
        set_attr(file, path, "restitution", m.restitution)?;
        set_attr(file, path, "contact_time", m.contact_time)?;
        set_attr(file, path, "seed", m.seed)?;
        set_str_attr(file, path, "scene", &m.scene_toml)?;
        set_str_attr(file, path, "config", &m.scene_toml)?;
        if let Some((src, trajs)) = source {
            set_str_attr(file, path, "source_dataset", &src.display().to_string())?;
            set_vec_attr(file, path, "source_traj", trajs)?;
        }
        Ok(())
    })
}

fn read_meta(file: &hdf5::File, path: &Path) -> Result<DatasetMeta, StoreError> {
    let ctx = Ctx(path);
    let need = |key: &str| -> Result<(), StoreError> {
        if file.attr(key).is_err() {
            Err(ctx.missing(&format!("{key} (attribute)"), FileKind::Dataset))
        } else {
            Ok(())
        }
    };
    for key in [
        "dt",
        "stride",
        "dimension",
        "box",
        "gravity",
        "spring_k",
        "damping",
        "restitution",
        "contact_time",
        "seed",
        "scene",
    ] {
        need(key)?;
    }
    let dimension: u32 = get_attr(file, path, "dimension")?;
    if dimension != 2 && dimension != 3 {
        return Err(ctx.invalid("dimension", dimension, "2 or 3"));
    }
    let box_size: Vec<f64> = get_vec_attr(file, path, "box")?;
    if box_size.len() != dimension as usize || box_size.iter().any(|l| !(l.is_finite() && *l > 0.0)) {
        return Err(ctx.invalid("box", format!("{box_size:?}"), format!("{dimension} positive lengths")));
    }
    let dt: f64 = get_attr(file, path, "dt")?;
    if !(dt.is_finite() && dt > 0.0) {
        return Err(ctx.invalid("dt", dt, "a positive time step"));
    }
    let stride: u64 = get_attr(file, path, "stride")?;
    if stride == 0 {
        return Err(ctx.invalid("stride", stride, ">= 1"));
    }
    Ok(DatasetMeta {
        dt,
        stride,
        dimension: dimension as usize,
        box_size,
        gravity: get_attr(file, path, "gravity")?,
        spring_k: get_attr(file, path, "spring_k")?,
        damping: get_attr(file, path, "damping")?,
        restitution: get_attr(file, path, "restitution")?,
        contact_time: get_attr(file, path, "contact_time")?,
        seed: get_attr(file, path, "seed")?,
        scene_toml: get_str_attr(file, path, "scene")?,
    })
}

fn shape_of(file: &hdf5::File, path: &Path, key: &str) -> Result<Vec<usize>, StoreError> {
    file.dataset(key).map(|d| d.shape()).map_err(|_| Ctx(path).missing(key, FileKind::Dataset))
}

fn info_from(file: &hdf5::File, path: &Path) -> Result<DatasetInfo, StoreError> {
    let ctx = Ctx(path);
    let meta = read_meta(file, path)?;
    let pos = shape_of(file, path, "positions")?;
    if pos.len() != 4 || pos[3] != meta.dimension {
        return Err(ctx.invalid(
            "positions",
            format!("shape {pos:?}"),
            format!("[traj, frames, particles, {}]", meta.dimension),
        ));
    }
    let (t, f, n) = (pos[0], pos[1], pos[2]);
    let vel = shape_of(file, path, "velocities")?;
    if vel != pos {
        return Err(ctx.invalid("velocities", format!("shape {vel:?}"), format!("the shape of positions {pos:?}")));
    }
    for key in ["radii", "masses"] {
        let s = shape_of(file, path, key)?;
        if s != [t, n] {
            return Err(ctx.invalid(key, format!("shape {s:?}"), format!("[{t}, {n}] (trajectories, particles)")));
        }
    }
    let ev = shape_of(file, path, "events")?;
    if ev.len() != 1 {
        return Err(ctx.invalid("events", format!("shape {ev:?}"), "a 1-D table"));
    }
    Ok(DatasetInfo { n_traj: t, n_frames: f, n_particles: n, n_events: ev[0], meta })
}

/// The first value of `data` (shape `shape`, row-major) that fails `ok`, as
/// an error naming the file, the array, the index and the value.
fn check_values(
    path: &Path,
    name: &str,
    data: &[f32],
    shape: &[usize],
    ok: impl Fn(f32) -> bool,
    expected: &str,
) -> Result<(), StoreError> {
    // A cheap pass first (every value), the index only for the rare bad one.
    if data.iter().all(|&v| ok(v)) {
        return Ok(());
    }
    let k = data.iter().position(|&v| !ok(v)).unwrap_or(0);
    let mut rest = k;
    let mut idx = vec![0usize; shape.len()];
    for a in (0..shape.len()).rev() {
        let s = shape[a].max(1);
        idx[a] = rest % s;
        rest /= s;
    }
    let idx: Vec<String> = idx.iter().map(|i| i.to_string()).collect();
    Err(Ctx(path).invalid(&format!("{name}[{}]", idx.join(", ")), data[k], expected))
}

/// Sizes and attributes only (cheap: no array is read).
pub fn read_dataset_meta(path: &Path) -> Result<DatasetInfo, StoreError> {
    let (file, _) = open_kind(path, Some(FileKind::Dataset))?;
    info_from(&file, path)
}

/// Read a whole dataset, checking shapes and the events table.
pub fn read_dataset(path: &Path) -> Result<Dataset, StoreError> {
    let ctx = Ctx(path);
    let (file, _) = open_kind(path, Some(FileKind::Dataset))?;
    let info = info_from(&file, path)?;
    let (positions, _) = read_array::<f32>(&file, path, "positions", Some(4))?;
    let (velocities, _) = read_array::<f32>(&file, path, "velocities", Some(4))?;
    let (radii, _) = read_array::<f32>(&file, path, "radii", Some(2))?;
    let (masses, _) = read_array::<f32>(&file, path, "masses", Some(2))?;
    // Values, not just shapes: a NaN position or a zero mass would train to
    // NaN (or be blamed on the model much later).
    let (t, f, n, d) = (info.n_traj, info.n_frames, info.n_particles, info.meta.dimension);
    check_values(path, "positions", &positions, &[t, f, n, d], |v| v.is_finite(), "a finite number")?;
    check_values(path, "velocities", &velocities, &[t, f, n, d], |v| v.is_finite(), "a finite number")?;
    check_values(path, "radii", &radii, &[t, n], |v| v.is_finite() && v > 0.0, "a finite radius > 0")?;
    check_values(path, "masses", &masses, &[t, n], |v| v.is_finite() && v > 0.0, "a finite mass > 0")?;
    let ev = ctx.h5("events", file.dataset("events"))?;
    let rows: Vec<EventRow> = if info.n_events == 0 { Vec::new() } else { ctx.h5("events", ev.read_raw())? };
    let n = info.n_particles as i32;
    let mut events = Vec::with_capacity(rows.len());
    for (k, r) in rows.iter().enumerate() {
        let kind = EventKind::from_u8(r.kind)
            .ok_or_else(|| ctx.invalid(&format!("events[{k}].kind"), r.kind, "0..=3 (see the kind_names attribute)"))?;
        let wall = matches!(kind, EventKind::WallStart | EventKind::WallEnd);
        let j_ok = if wall { r.j < 0 && r.j >= -(2 * info.meta.dimension as i32) } else { r.j > r.i && r.j < n };
        if (r.traj as usize) >= info.n_traj || r.i < 0 || r.i >= n || !j_ok {
            return Err(ctx.invalid(
                &format!("events[{k}]"),
                format!("{r:?}"),
                format!("traj < {}, 0 <= i < j < {n} (or j a wall code for wall events)", info.n_traj),
            ));
        }
        events.push(Event { traj: r.traj, step: r.step, i: r.i, j: r.j, kind });
    }
    if events.windows(2).any(|w| w[0] > w[1]) {
        return Err(ctx.invalid("events", "unsorted rows", "rows sorted by (traj, step, i, j, kind)"));
    }
    Ok(Dataset {
        n_traj: info.n_traj,
        n_frames: info.n_frames,
        n_particles: info.n_particles,
        meta: info.meta,
        positions,
        velocities,
        radii,
        masses,
        events,
    })
}
