//! The DEM integrator: disks/spheres in a box, gravity, damped linear-spring
//! normal contacts (particle–particle and particle–wall), velocity-Verlet,
//! neighbour search (a Verlet list with a skin, rebuilt from a cell list when
//! any particle has moved half the skin: cost linear in N), and contact events
//! detected on every sub-step.
//!
//! Contact law for a pair with overlap δ = r_i + r_j − |x_i − x_j| > 0 and
//! normal n = (x_i − x_j)/|x_i − x_j|: the force on i is (k·δ − c·v_n)·n with
//! v_n = (v_i − v_j)·n, and −that on j. A wall is a body of infinite mass at a
//! box face, so its effective mass is m_i. The force is the plain linear
//! spring–dashpot (it may become slightly attractive at the end of a damped
//! contact), which is what the analytic contact time and restitution describe.
//!
//! Time stepping (one sub-step of length dt):
//! 1. v ← v + ½dt·F/m;  x ← x + dt·v   (half kick, drift)
//! 2. F ← F(x, ṽ), with ṽ = v + ½dt·F_old/m the predicted full-step velocity
//!    used by the dashpot (second-order accurate; without damping this is
//!    exactly velocity-Verlet, which is symplectic)
//! 3. v ← v + ½dt·F/m  (second half kick)
//!
//! A pair or wall is "in contact" at sub-step s when δ > 0 for the positions
//! after sub-step s; a change between s−1 and s is an event at step s.

use crate::dataset::{Event, EventKind};
use crate::scene::Damping;

/// Physical parameters of a world.
#[derive(Debug, Clone, PartialEq)]
pub struct Params<const D: usize> {
    /// Box extent per axis; the box is [0, L] on each axis.
    pub box_size: [f64; D],
    /// Gravity magnitude along the last axis, downwards.
    pub gravity: f64,
    /// Spring constant of the normal contact.
    pub spring_k: f64,
    /// Dashpot of the normal contact.
    pub damping: Damping,
    /// Integrator sub-step (time units).
    pub dt: f64,
}

/// Uniform grid over the box with cells at least as wide as the largest
/// contact distance; particles outside the box are clamped into edge cells.
#[derive(Debug, Clone)]
struct Cells<const D: usize> {
    n: [usize; D],
    inv_size: [f64; D],
    /// start[c]..start[c+1] indexes `order` for cell c.
    start: Vec<u32>,
    order: Vec<u32>,
    cell_of: Vec<u32>,
    /// For cell c, nbr[nbr_start[c]..nbr_start[c+1]] are the neighbouring
    /// cells of its half stencil (each neighbouring pair of cells once).
    nbr_start: Vec<u32>,
    nbr: Vec<u32>,
    fill: Vec<u32>,
}

impl<const D: usize> Cells<D> {
    fn new(box_size: [f64; D], min_cell: f64, n_particles: usize) -> Self {
        let mut n = [1usize; D];
        let mut size = [0.0; D];
        let mut scale = 1.0;
        loop {
            let mut total = 1usize;
            for a in 0..D {
                n[a] = ((box_size[a] / (min_cell * scale)).floor() as usize).max(1);
                size[a] = box_size[a] / n[a] as f64;
                total = total.saturating_mul(n[a]);
            }
            // Keep the grid O(N): a sparse box must not cost more than its particles.
            if total <= 4 * n_particles + 64 {
                break;
            }
            scale *= 1.25;
        }
        let mut inv_size = [0.0; D];
        for a in 0..D {
            inv_size[a] = 1.0 / size[a];
        }
        // Offsets in {-1,0,1}^D whose last non-zero component is +1: each
        // neighbouring cell pair is visited once.
        let mut stencil = Vec::new();
        let total = 3usize.pow(D as u32);
        for code in 0..total {
            let mut off = [0isize; D];
            let mut c = code;
            for o in off.iter_mut() {
                *o = (c % 3) as isize - 1;
                c /= 3;
            }
            if let Some(last) = off.iter().rev().find(|&&o| o != 0) {
                if *last > 0 {
                    stencil.push(off);
                }
            }
        }
        let n_cells: usize = n.iter().product();
        let mut nbr_start = vec![0u32];
        let mut nbr = Vec::new();
        for c in 0..n_cells {
            let mut cc = [0usize; D];
            let mut rem = c;
            for a in 0..D {
                cc[a] = rem % n[a];
                rem /= n[a];
            }
            'off: for off in &stencil {
                let mut flat = 0usize;
                for a in (0..D).rev() {
                    let v = cc[a] as isize + off[a];
                    if v < 0 || v >= n[a] as isize {
                        continue 'off;
                    }
                    flat = flat * n[a] + v as usize;
                }
                nbr.push(flat as u32);
            }
            nbr_start.push(nbr.len() as u32);
        }
        Cells {
            n,
            inv_size,
            start: vec![0; n_cells + 1],
            order: vec![0; n_particles],
            cell_of: vec![0; n_particles],
            nbr_start,
            nbr,
            fill: vec![0; n_cells],
        }
    }

    #[inline]
    fn coord(&self, x: &[f64; D]) -> [usize; D] {
        let mut c = [0usize; D];
        for a in 0..D {
            // Truncation equals floor for v >= 0 (and avoids a libm call);
            // negative or NaN goes to cell 0, `as` saturates large values.
            let v = x[a] * self.inv_size[a];
            c[a] = if v >= 0.0 { (v as usize).min(self.n[a] - 1) } else { 0 };
        }
        c
    }

    #[inline]
    fn flat(&self, c: &[usize; D]) -> usize {
        let mut idx = 0;
        for a in (0..D).rev() {
            idx = idx * self.n[a] + c[a];
        }
        idx
    }

    fn build(&mut self, x: &[[f64; D]]) {
        self.start.iter_mut().for_each(|s| *s = 0);
        for (p, xp) in x.iter().enumerate() {
            let c = self.flat(&self.coord(xp));
            self.cell_of[p] = c as u32;
            self.start[c + 1] += 1;
        }
        for c in 0..self.start.len() - 1 {
            self.start[c + 1] += self.start[c];
        }
        // Fill in particle order (stable: ascending index within a cell).
        let n_cells = self.fill.len();
        self.fill.copy_from_slice(&self.start[..n_cells]);
        for p in 0..x.len() {
            let c = self.cell_of[p] as usize;
            self.order[self.fill[c] as usize] = p as u32;
            self.fill[c] += 1;
        }
    }
}

/// One active contact: key (i, j) with i < j for pairs, (i, -(1+wall)) for
/// walls; overlap δ, spring part k·δ and dashpot part −c·v_n of the force
/// magnitude, and the unit normal (the force on i is (fs + fd)·n).
#[derive(Debug, Clone, Copy)]
struct Contact<const D: usize> {
    key: (i32, i32),
    delta: f64,
    fs: f64,
    fd: f64,
    n: [f64; D],
}

/// The state of one trajectory.
#[derive(Debug, Clone)]
pub struct World<const D: usize> {
    /// Physical parameters.
    pub params: Params<D>,
    /// Positions.
    pub x: Vec<[f64; D]>,
    /// Velocities.
    pub v: Vec<[f64; D]>,
    /// Force from the last evaluation (at the current positions).
    pub f: Vec<[f64; D]>,
    /// Radii.
    pub r: Vec<f64>,
    /// Masses.
    pub m: Vec<f64>,
    inv_m: Vec<f64>,
    sqrt_m: Vec<f64>,
    sqrt_k: f64,
    /// Predicted velocities used by the dashpot.
    ve: Vec<[f64; D]>,
    cells: Cells<D>,
    /// Contacts at the current step, sorted: (i, j) with i < j, or (i, -(1+wall)).
    contacts: Vec<Contact<D>>,
    new_contacts: Vec<Contact<D>>,
    /// Sorted (packed key, index into contacts / new_contacts).
    keys_old: Vec<(u64, u32)>,
    keys_new: Vec<(u64, u32)>,
    corrections: Vec<(usize, [f64; D])>,
    key_count: Vec<u32>,
    /// Verlet neighbour list: candidate pairs within r_i + r_j + skin at the
    /// last rebuild (from the cell list); rebuilt when any particle has moved
    /// more than skin/2 since, so no contact can be missed.
    pairs: Vec<(u32, u32)>,
    x_ref: Vec<[f64; D]>,
    skin: f64,
    /// Sub-steps taken so far.
    pub step: u64,
}

impl<const D: usize> World<D> {
    /// A world at positions `x`, velocities `v`, radii `r`, masses `m` (forces evaluated at `x`).
    pub fn new(params: Params<D>, x: Vec<[f64; D]>, v: Vec<[f64; D]>, r: Vec<f64>, m: Vec<f64>) -> Self {
        let sqrt_k = params.spring_k.sqrt();
        let n = x.len();
        assert!(v.len() == n && r.len() == n && m.len() == n, "state arrays must have one entry per particle");
        let r_max = r.iter().cloned().fold(0.0, f64::max);
        let skin = 0.5 * r_max;
        let cells = Cells::new(params.box_size, 2.0 * r_max + skin, n);
        let inv_m = m.iter().map(|m| 1.0 / m).collect();
        let sqrt_m = m.iter().map(|m| m.sqrt()).collect();
        let mut w = World {
            params,
            ve: v.clone(),
            x,
            v,
            f: vec![[0.0; D]; n],
            r,
            m,
            inv_m,
            sqrt_m,
            sqrt_k,
            cells,
            contacts: Vec::new(),
            new_contacts: Vec::new(),
            keys_old: Vec::new(),
            keys_new: Vec::new(),
            corrections: Vec::new(),
            key_count: Vec::new(),
            pairs: Vec::new(),
            x_ref: Vec::new(),
            skin,
            step: 0,
        };
        w.compute_forces();
        std::mem::swap(&mut w.contacts, &mut w.new_contacts);
        std::mem::swap(&mut w.keys_old, &mut w.keys_new);
        w
    }

    /// Number of particles.
    pub fn n(&self) -> usize {
        self.x.len()
    }

    /// Current contacts, sorted: (i, j) with i < j for pairs, (i, -(1+wall)) for walls.
    pub fn contacts(&self) -> Vec<(i32, i32)> {
        self.keys_old.iter().map(|&(_, k)| self.contacts[k as usize].key).collect()
    }

    /// Dashpot constant for a pair (or a wall when `j` is None).
    #[inline]
    fn dashpot(&self, i: usize, j: Option<usize>) -> f64 {
        match self.params.damping {
            Damping::Coefficient(c) => c,
            Damping::Ratio(z) => {
                if z == 0.0 {
                    return 0.0;
                }
                // sqrt(m_eff) = sqrt(m_i m_j / (m_i + m_j))
                let sm = match j {
                    Some(j) => self.sqrt_m[i] * self.sqrt_m[j] / (self.m[i] + self.m[j]).sqrt(),
                    None => self.sqrt_m[i],
                };
                2.0 * z * self.sqrt_k * sm
            }
        }
    }

    /// Forces at the current positions using the predicted velocities `ve`;
    /// fills `new_contacts` (sorted).
    fn compute_forces(&mut self) {
        let n = self.n();
        let k = self.params.spring_k;
        let g = self.params.gravity;
        for p in 0..n {
            self.f[p] = [0.0; D];
            self.f[p][D - 1] = -self.m[p] * g;
        }
        self.new_contacts.clear();
        // Walls.
        for p in 0..n {
            let r = self.r[p];
            for a in 0..D {
                let lo = r - self.x[p][a];
                if lo > 0.0 {
                    let c = self.dashpot(p, None);
                    let (fs, fd) = (k * lo, -c * self.ve[p][a]);
                    self.f[p][a] += fs + fd;
                    let mut n = [0.0; D];
                    n[a] = 1.0;
                    self.new_contacts.push(Contact { key: (p as i32, -(1 + 2 * a as i32)), delta: lo, fs, fd, n });
                }
                let hi = self.x[p][a] + r - self.params.box_size[a];
                if hi > 0.0 {
                    let c = self.dashpot(p, None);
                    let (fs, fd) = (k * hi, c * self.ve[p][a]);
                    self.f[p][a] -= fs + fd;
                    let mut n = [0.0; D];
                    n[a] = -1.0;
                    self.new_contacts.push(Contact { key: (p as i32, -(2 + 2 * a as i32)), delta: hi, fs, fd, n });
                }
            }
        }
        // Pairs, via the neighbour list.
        if self.needs_rebuild() {
            self.rebuild_pairs();
        }
        for k in 0..self.pairs.len() {
            let (i, j) = self.pairs[k];
            self.pair(i as usize, j as usize);
        }
        // Sort (key, index) records: a counting sort by particle i (linear),
        // then an insertion sort of each particle's few partners by j.
        let n = self.n();
        self.key_count.clear();
        self.key_count.resize(n + 1, 0);
        for c in &self.new_contacts {
            self.key_count[c.key.0 as usize + 1] += 1;
        }
        for p in 0..n {
            self.key_count[p + 1] += self.key_count[p];
        }
        self.keys_new.clear();
        self.keys_new.resize(self.new_contacts.len(), (0, 0));
        for (k, c) in self.new_contacts.iter().enumerate() {
            let slot = &mut self.key_count[c.key.0 as usize];
            self.keys_new[*slot as usize] = (pack(c.key), k as u32);
            *slot += 1;
        }
        // key_count[p] now ends particle p's segment; segments start at key_count[p-1].
        let mut lo = 0usize;
        for p in 0..n {
            let hi = self.key_count[p] as usize;
            let seg = &mut self.keys_new[lo..hi];
            for a in 1..seg.len() {
                let mut b = a;
                while b > 0 && seg[b - 1].0 > seg[b].0 {
                    seg.swap(b - 1, b);
                    b -= 1;
                }
            }
            lo = hi;
        }
    }

    fn needs_rebuild(&self) -> bool {
        if self.x_ref.len() != self.x.len() {
            return true;
        }
        let lim = 0.25 * self.skin * self.skin;
        self.x.iter().zip(&self.x_ref).any(|(x, r)| {
            let mut d2 = 0.0;
            for a in 0..D {
                d2 += (x[a] - r[a]) * (x[a] - r[a]);
            }
            d2 > lim
        })
    }

    fn rebuild_pairs(&mut self) {
        self.cells.build(&self.x);
        let mut pairs = std::mem::take(&mut self.pairs);
        pairs.clear();
        let (x, r, skin) = (&self.x, &self.r, self.skin);
        self.for_each_candidate_pair(|i, j| {
            let mut d2 = 0.0;
            for a in 0..D {
                d2 += (x[i][a] - x[j][a]) * (x[i][a] - x[j][a]);
            }
            let reach = r[i] + r[j] + skin;
            if d2 < reach * reach {
                pairs.push((i as u32, j as u32));
            }
        });
        self.pairs = pairs;
        self.x_ref.clear();
        self.x_ref.extend_from_slice(&self.x);
    }

    #[inline(always)]
    fn pair(&mut self, i: usize, j: usize) {
        let (xi, xj) = (self.x[i], self.x[j]);
        let mut d = [0.0; D];
        let mut d2 = 0.0;
        for a in 0..D {
            d[a] = xi[a] - xj[a];
            d2 += d[a] * d[a];
        }
        let rs = self.r[i] + self.r[j];
        if d2 >= rs * rs {
            return;
        }
        let dist = d2.sqrt();
        if dist == 0.0 {
            // Coincident centres: no defined normal; cannot happen from a valid
            // placement with finite speeds, and is reported as unstable later.
            return;
        }
        let inv = 1.0 / dist;
        let delta = rs - dist;
        let mut vn = 0.0;
        for a in 0..D {
            d[a] *= inv;
            vn += (self.ve[i][a] - self.ve[j][a]) * d[a];
        }
        let c = self.dashpot(i, Some(j));
        let (fs, fd) = (self.params.spring_k * delta, -c * vn);
        let fmag = fs + fd;
        for a in 0..D {
            let fa = fmag * d[a];
            self.f[i][a] += fa;
            self.f[j][a] -= fa;
        }
        // Store with i < j and the normal pointing from j to i.
        if i < j {
            self.new_contacts.push(Contact { key: (i as i32, j as i32), delta, fs, fd, n: d });
        } else {
            let mut nn = d;
            for a in 0..D {
                nn[a] = -nn[a];
            }
            self.new_contacts.push(Contact { key: (j as i32, i as i32), delta, fs, fd, n: nn });
        }
    }

    /// Advance one sub-step; push contact start/end events (with `traj`) to `events`.
    pub fn step(&mut self, traj: u32, events: &mut Vec<Event>) {
        let dt = self.params.dt;
        let h = 0.5 * dt;
        for p in 0..self.n() {
            let im = self.inv_m[p];
            for a in 0..D {
                let acc = self.f[p][a] * im;
                self.v[p][a] += h * acc;
                self.x[p][a] += dt * self.v[p][a];
                self.ve[p][a] = self.v[p][a] + h * acc;
            }
        }
        self.compute_forces();
        self.step += 1;
        self.contact_changes(traj, events);
        for p in 0..self.n() {
            let im = self.inv_m[p];
            for a in 0..D {
                self.v[p][a] += h * self.f[p][a] * im;
            }
        }
        for &(p, corr) in &self.corrections {
            let im = self.inv_m[p];
            for a in 0..D {
                self.v[p][a] += h * corr[a] * im;
            }
        }
        std::mem::swap(&mut self.contacts, &mut self.new_contacts);
        std::mem::swap(&mut self.keys_old, &mut self.keys_new);
    }

    /// Overlap of a contact key at the current positions (≤ 0: apart).
    fn overlap(&self, key: (i32, i32)) -> f64 {
        self.overlap_shifted(key, 0.0)
    }

    /// Overlap at positions x + s·v (s = −dt and v = v_half: the previous sub-step).
    fn overlap_shifted(&self, key: (i32, i32), s: f64) -> f64 {
        let i = key.0 as usize;
        let xi = |a: usize| self.x[i][a] + s * self.v[i][a];
        if key.1 >= 0 {
            let j = key.1 as usize;
            let mut d2 = 0.0;
            for a in 0..D {
                let d = xi(a) - (self.x[j][a] + s * self.v[j][a]);
                d2 += d * d;
            }
            self.r[i] + self.r[j] - d2.sqrt()
        } else {
            let wall = (-key.1 - 1) as usize;
            let a = wall / 2;
            if wall.is_multiple_of(2) {
                self.r[i] - xi(a)
            } else {
                xi(a) + self.r[i] - self.params.box_size[a]
            }
        }
    }

    /// Events for contacts that started or ended in this sub-step, and the
    /// velocity corrections for those contacts. Velocity-Verlet integrates the
    /// force over a sub-step by the trapezoid rule, which is wrong to first
    /// order when a contact switches on or off inside the sub-step (the force
    /// has a kink, and the dashpot a jump, at δ = 0). With the fraction θ of
    /// the sub-step spent apart (from linear interpolation of δ), the spring
    /// part (linear in time from 0) integrates to (1−θ)·dt·F/2 and the dashpot
    /// part (about constant) to (1−θ)·dt·F; the difference to the trapezoid is
    /// added to the second half-kick. Pairwise equal and opposite, so momentum
    /// is still conserved exactly.
    fn contact_changes(&mut self, traj: u32, events: &mut Vec<Event>) {
        self.corrections.clear();
        let dt = self.params.dt;
        let (mut a, mut b) = (0, 0);
        let (na, nb) = (self.keys_old.len(), self.keys_new.len());
        while a < na || b < nb {
            let started = if b == nb || (a < na && self.keys_old[a].0 < self.keys_new[b].0) {
                false
            } else if a == na || self.keys_new[b].0 < self.keys_old[a].0 {
                true
            } else {
                a += 1;
                b += 1;
                continue;
            };
            // Correction force (to be applied over a half-kick) along the normal.
            let (key, mag, n) = if started {
                let c = self.new_contacts[self.keys_new[b].1 as usize];
                b += 1;
                // Overlap one sub-step earlier: the drift moved x by dt·v_half.
                let d_prev = self.overlap_shifted(c.key, -dt);
                let theta = if d_prev < 0.0 { (d_prev / (d_prev - c.delta)).clamp(0.0, 1.0) } else { 0.0 };
                (c.key, -theta * c.fs + (1.0 - 2.0 * theta) * c.fd, c.n)
            } else {
                let c = self.contacts[self.keys_old[a].1 as usize];
                a += 1;
                let d_now = self.overlap(c.key);
                let theta = if d_now < 0.0 { (c.delta / (c.delta - d_now)).clamp(0.0, 1.0) } else { 1.0 };
                (c.key, (theta - 1.0) * c.fs + (2.0 * theta - 1.0) * c.fd, c.n)
            };
            let kind = match (key.1 < 0, started) {
                (false, true) => EventKind::ContactStart,
                (false, false) => EventKind::ContactEnd,
                (true, true) => EventKind::WallStart,
                (true, false) => EventKind::WallEnd,
            };
            events.push(Event { traj, step: self.step, i: key.0, j: key.1, kind });
            let mut fi = [0.0; D];
            for a in 0..D {
                fi[a] = mag * n[a];
            }
            self.corrections.push((key.0 as usize, fi));
            if key.1 >= 0 {
                for v in fi.iter_mut() {
                    *v = -*v;
                }
                self.corrections.push((key.1 as usize, fi));
            }
        }
    }

    /// Kinetic energy Σ ½ m v².
    pub fn kinetic_energy(&self) -> f64 {
        kinetic(&self.v, &self.m)
    }

    /// Gravitational (m g h, h = height above the floor) plus spring potential
    /// (½ k δ² per overlap with particles and walls).
    pub fn potential_energy(&mut self) -> f64 {
        let mut e = 0.0;
        let g = self.params.gravity;
        let k = self.params.spring_k;
        for p in 0..self.n() {
            e += self.m[p] * g * self.x[p][D - 1];
            for a in 0..D {
                let lo = self.r[p] - self.x[p][a];
                if lo > 0.0 {
                    e += 0.5 * k * lo * lo;
                }
                let hi = self.x[p][a] + self.r[p] - self.params.box_size[a];
                if hi > 0.0 {
                    e += 0.5 * k * hi * hi;
                }
            }
        }
        self.cells.build(&self.x);
        let mut pairs = Vec::new();
        self.for_each_candidate_pair(|i, j| pairs.push((i, j)));
        for (i, j) in pairs {
            let mut d2 = 0.0;
            for a in 0..D {
                let d = self.x[i][a] - self.x[j][a];
                d2 += d * d;
            }
            let rs = self.r[i] + self.r[j];
            if d2 < rs * rs {
                let delta = rs - d2.sqrt();
                e += 0.5 * k * delta * delta;
            }
        }
        e
    }

    /// Total energy (kinetic + gravitational + spring).
    pub fn total_energy(&mut self) -> f64 {
        self.kinetic_energy() + self.potential_energy()
    }

    /// Total momentum Σ m v.
    pub fn momentum(&self) -> [f64; D] {
        let mut p = [0.0; D];
        for (v, m) in self.v.iter().zip(&self.m) {
            for a in 0..D {
                p[a] += m * v[a];
            }
        }
        p
    }

    fn for_each_candidate_pair(&self, mut f: impl FnMut(usize, usize)) {
        let cells = &self.cells;
        let n_cells = cells.start.len() - 1;
        for c in 0..n_cells {
            let (s0, s1) = (cells.start[c] as usize, cells.start[c + 1] as usize);
            for ii in s0..s1 {
                for jj in ii + 1..s1 {
                    f(cells.order[ii] as usize, cells.order[jj] as usize);
                }
                for k in cells.nbr_start[c] as usize..cells.nbr_start[c + 1] as usize {
                    let nf = cells.nbr[k] as usize;
                    for jj in cells.start[nf] as usize..cells.start[nf + 1] as usize {
                        f(cells.order[ii] as usize, cells.order[jj] as usize);
                    }
                }
            }
        }
    }
}

/// Order-preserving packing of a contact key (i, j) into one integer.
#[inline]
fn pack(key: (i32, i32)) -> u64 {
    ((key.0 as u32 as u64) << 32) | ((key.1 as i64 + (1i64 << 31)) as u64 & 0xffff_ffff)
}

pub(crate) fn kinetic<const D: usize>(v: &[[f64; D]], m: &[f64]) -> f64 {
    let mut e = 0.0;
    for (v, m) in v.iter().zip(m) {
        let mut s = 0.0;
        for a in 0..D {
            s += v[a] * v[a];
        }
        e += 0.5 * m * s;
    }
    e
}

/// Events between two sorted contact lists (old at step-1, new at `step`).
pub fn diff_contacts(old: &[(i32, i32)], new: &[(i32, i32)], traj: u32, step: u64, events: &mut Vec<Event>) {
    let (mut a, mut b) = (0, 0);
    let ev = |(i, j): (i32, i32), start: bool| Event {
        traj,
        step,
        i,
        j,
        kind: match (j < 0, start) {
            (false, true) => EventKind::ContactStart,
            (false, false) => EventKind::ContactEnd,
            (true, true) => EventKind::WallStart,
            (true, false) => EventKind::WallEnd,
        },
    };
    while a < old.len() || b < new.len() {
        if b == new.len() || (a < old.len() && old[a] < new[b]) {
            events.push(ev(old[a], false));
            a += 1;
        } else if a == old.len() || new[b] < old[a] {
            events.push(ev(new[b], true));
            b += 1;
        } else {
            a += 1;
            b += 1;
        }
    }
}
