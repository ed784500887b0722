//! Contact partners "within the predicted interval", derived from a dataset's
//! event table.
//!
//! Frame `f` of a trajectory is the state at sub-step `f·stride`; the model
//! predicts frame `f+1`, at sub-step `(f+1)·stride`. A pair counts as in
//! contact within that interval when it is in contact at any sub-step `s`
//! with `f·stride ≤ s ≤ (f+1)·stride` — pairs already touching at the input
//! frame included. A `ContactStart` event at sub-step `s` means the pair is in
//! contact at `s`; a `ContactEnd` at `s` means it no longer is at `s`.

use headlab_sim::{Dataset, EventKind};

use crate::metrics::ContactSet;

/// Contact sets of trajectory `traj` for each of `frames` (any order).
pub fn interval_contacts(ds: &Dataset, traj: usize, frames: &[usize]) -> Vec<ContactSet> {
    let n = ds.n_particles;
    let stride = ds.meta.stride;
    // Pair events of this trajectory, sorted by sub-step (stable: the table is
    // sorted, but do not rely on it).
    let mut ev: Vec<(u64, usize, usize, bool)> = ds
        .events
        .iter()
        .filter(|e| e.traj as usize == traj && e.i >= 0 && e.j >= 0)
        .filter_map(|e| match e.kind {
            EventKind::ContactStart => Some((e.step, e.i as usize, e.j as usize, true)),
            EventKind::ContactEnd => Some((e.step, e.i as usize, e.j as usize, false)),
            _ => None,
        })
        .filter(|&(_, i, j, _)| i < n && j < n && i != j)
        .collect();
    // At equal steps, apply ends before starts so a pair that ends and
    // restarts on the same sub-step is active afterwards.
    ev.sort_by_key(|&(s, i, j, start)| (s, start, i.min(j), i.max(j)));

    let mut order: Vec<usize> = (0..frames.len()).collect();
    order.sort_by_key(|&k| frames[k]);
    let mut out = vec![ContactSet::empty(n); frames.len()];
    let mut active = ContactSet::empty(n);
    let mut cursor = 0; // events with step <= current start already applied
    for k in order {
        let s0 = frames[k] as u64 * stride;
        let s1 = s0 + stride;
        // Rewind is never needed: frames are visited in increasing order.
        while cursor < ev.len() && ev[cursor].0 <= s0 {
            let (_, i, j, start) = ev[cursor];
            set_pair(&mut active, i, j, start);
            cursor += 1;
        }
        let mut cs = active.clone();
        let mut c = cursor;
        while c < ev.len() && ev[c].0 <= s1 {
            let (_, i, j, start) = ev[c];
            if start {
                cs.insert(i, j);
            }
            c += 1;
        }
        out[k] = cs;
    }
    out
}

fn set_pair(s: &mut ContactSet, i: usize, j: usize, on: bool) {
    if on {
        s.insert(i, j);
    } else {
        s.remove(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use headlab_sim::{DatasetMeta, Event};

    fn ds(events: Vec<Event>) -> Dataset {
        Dataset {
            n_traj: 2,
            n_frames: 10,
            n_particles: 4,
            meta: DatasetMeta {
                dt: 0.001,
                stride: 10,
                dimension: 2,
                box_size: vec![1.0, 1.0],
                gravity: 0.0,
                spring_k: 1.0,
                damping: 0.0,
                restitution: f64::NAN,
                contact_time: 0.01,
                seed: 0,
                scene_toml: String::new(),
            },
            positions: vec![0.0; 2 * 10 * 4 * 2],
            velocities: vec![0.0; 2 * 10 * 4 * 2],
            radii: vec![0.1; 8],
            masses: vec![1.0; 8],
            events,
        }
    }

    fn ev(traj: u32, step: u64, i: i32, j: i32, kind: EventKind) -> Event {
        Event { traj, step, i, j, kind }
    }

    #[test]
    fn interval_contacts_follow_events() {
        use EventKind::*;
        let d = ds(vec![
            ev(0, 5, 0, 1, ContactStart),  // frame 0 interval (0,10]
            ev(0, 25, 0, 1, ContactEnd),   // still in contact at start of frame 2 (s=20)
            ev(0, 31, 2, 3, ContactStart), // starts and ends inside frame 3's interval
            ev(0, 35, 2, 3, ContactEnd),
            ev(0, 40, 1, 2, ContactStart), // exactly at frame 4's start: in contact there
            ev(0, 50, 1, 2, ContactEnd),   // ends exactly at frame 5's start: not in frame 5
            ev(0, 60, 0, -1, WallStart),   // walls are ignored
            ev(1, 5, 2, 3, ContactStart),  // other trajectory
        ]);
        let frames: Vec<usize> = (0..9).rev().collect(); // any order
        let cs = interval_contacts(&d, 0, &frames);
        let get = |f: usize| cs[frames.iter().position(|&x| x == f).unwrap()].pairs();
        assert_eq!(get(0), vec![(0, 1)]);
        assert_eq!(get(1), vec![(0, 1)]);
        assert_eq!(get(2), vec![(0, 1)]);
        assert_eq!(get(3), vec![(1, 2), (2, 3)]); // (1,2) starts at s=40 = end of interval 3
        assert_eq!(get(4), vec![(1, 2)]);
        assert_eq!(get(5), vec![]);
        assert_eq!(get(6), vec![]);
        let cs1 = interval_contacts(&d, 1, &[0, 3]);
        assert_eq!(cs1[0].pairs(), vec![(2, 3)]);
        assert_eq!(cs1[1].pairs(), vec![(2, 3)], "no end event: still in contact");
    }
}

/// Replace a dataset's events by contact starts and ends derived from
/// overlaps at the recorded frames (a pair starts at the first frame where
/// it overlaps and ends at the first where it no longer does). For data
/// without sub-step events, such as `headlab_testkit::toy_dataset`.
pub fn with_frame_overlap_events(mut ds: Dataset) -> Dataset {
    let (n, d, stride) = (ds.n_particles, ds.dim(), ds.meta.stride);
    let mut events = Vec::new();
    for t in 0..ds.n_traj {
        let mut prev = vec![false; n * n];
        for f in 0..ds.n_frames {
            let i0 = ds.idx(t, f, 0);
            let cs = crate::metrics::overlap_contacts(&ds.positions[i0..i0 + n * d], &ds.radii[t * n..(t + 1) * n], d, 1.0);
            for i in 0..n {
                for j in i + 1..n {
                    let now = cs.contains(i, j);
                    if now != prev[i * n + j] {
                        let kind = if now { EventKind::ContactStart } else { EventKind::ContactEnd };
                        events.push(headlab_sim::Event { traj: t as u32, step: f as u64 * stride, i: i as i32, j: j as i32, kind });
                    }
                    prev[i * n + j] = now;
                }
            }
        }
    }
    events.sort();
    ds.events = events;
    ds
}
