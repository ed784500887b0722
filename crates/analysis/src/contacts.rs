//! Contact partners "within the predicted interval" as [`ContactSet`]s, and
//! frame-overlap events for toy data.
//!
//! The definition itself (a closed interval of sub-steps from the input
//! frame to the predicted frame) lives in one place,
//! [`headlab_sim::Dataset::interval_contacts`], which the viewer calls
//! directly; this module only converts its pairs (walls left out) into the
//! masks the metrics use.

use headlab_sim::{Dataset, EventKind};

use crate::metrics::ContactSet;

/// Particle–particle contact sets of trajectory `traj` for each of `frames`
/// (any order), by [`Dataset::interval_contacts`].
pub fn interval_contacts(ds: &Dataset, traj: usize, frames: &[usize]) -> Vec<ContactSet> {
    let n = ds.n_particles;
    ds.interval_contacts(traj, frames, false)
        .into_iter()
        .map(|pairs| {
            let mut cs = ContactSet::empty(n);
            for (i, j) in pairs {
                if i >= 0 && j >= 0 {
                    cs.insert(i as usize, j as usize);
                }
            }
            cs
        })
        .collect()
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
            let cs =
                crate::metrics::overlap_contacts(&ds.positions[i0..i0 + n * d], &ds.radii[t * n..(t + 1) * n], d, 1.0);
            for i in 0..n {
                for j in i + 1..n {
                    let now = cs.contains(i, j);
                    if now != prev[i * n + j] {
                        let kind = if now { EventKind::ContactStart } else { EventKind::ContactEnd };
                        events.push(headlab_sim::Event {
                            traj: t as u32,
                            step: f as u64 * stride,
                            i: i as i32,
                            j: j as i32,
                            kind,
                        });
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

#[cfg(test)]
mod tests {
    use super::*;
    use headlab_sim::Event;

    /// The conversion keeps particle pairs and drops walls; a contact that
    /// ends exactly on a frame boundary is in the interval before it only.
    #[test]
    fn contact_sets_follow_the_dataset_definition() {
        let ev = |step, i, j, kind| Event { traj: 0, step, i, j, kind };
        let ds = Dataset::at_rest_2d(
            1,
            5,
            3,
            vec![
                ev(3, 0, 2, EventKind::ContactStart),
                ev(4, 1, -1, EventKind::WallStart),
                ev(20, 0, 2, EventKind::ContactEnd),
            ],
        );
        let cs = interval_contacts(&ds, 0, &[2, 0, 1]);
        assert_eq!(cs[1].pairs(), vec![(0, 2)]);
        assert_eq!(cs[2].pairs(), vec![(0, 2)], "in contact at sub-step 19, the end of interval 1");
        assert_eq!(cs[0].pairs(), vec![], "ended exactly at sub-step 20, the start of interval 2");
    }
}
