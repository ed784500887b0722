#!/usr/bin/env python3
"""Vectorized NumPy reference of headlab's DEM simulator (crates/sim/src/physics.rs).

Same physics: disks/spheres in a box, gravity along the last axis, linear
spring-dashpot normal contacts (pairs and walls, c = 2*zeta*sqrt(k*m_eff)),
velocity-Verlet with the predicted full-step velocity in the dashpot, and the
same impulse correction for contacts that switch on or off inside a sub-step.
Neighbour search: a Verlet list with a skin (rebuilt from all pairs when any
particle has moved more than half the skin), the usual fast approach in NumPy.

Usage: numpy_sim.py CASE.toml [CASE.toml ...]   (case files from
`cargo run -p headlab-sim --example bench`). For each case it replays the
initial state, checks the state after `check_steps` sub-steps against Rust's,
and times sub-steps; prints particle-sub-steps per second and the ratio.
"""
import sys
import time

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib
import numpy as np


class Sim:
    def __init__(self, c):
        self.D = c["dim"]
        self.N = c["n"]
        self.box = np.array(c["box"], dtype=float)
        self.g = c["gravity"]
        self.k = c["spring_k"]
        self.zeta = c["zeta"]
        self.dt = c["dt"]
        self.r = np.array(c["r"], dtype=float)
        self.m = np.array(c["m"], dtype=float)
        self.x = np.array(c["x0"], dtype=float).reshape(self.N, self.D)
        self.v = np.array(c["v0"], dtype=float).reshape(self.N, self.D)
        self.sqrt_m = np.sqrt(self.m)
        self.skin = 0.5 * self.r.max()
        self.wall_c = 2.0 * self.zeta * np.sqrt(self.k) * self.sqrt_m  # (N,)
        # Wall contact state (N, D) for low and high faces.
        z = np.zeros((self.N, self.D))
        self.w_prev = {"lo": (z > 1), "hi": (z > 1)}
        self.w_store = {s: (z.copy(), z.copy(), z.copy()) for s in ("lo", "hi")}  # delta, fs, fd
        self.I = np.zeros(0, dtype=np.int64)
        self.J = np.zeros(0, dtype=np.int64)
        self.p_prev = np.zeros(0, dtype=bool)
        self.p_store = (np.zeros(0), np.zeros(0), np.zeros(0), np.zeros((0, self.D)))
        self.rebuild()
        self.ve = self.v.copy()
        self.f = self.forces(first=True)

    def rebuild(self):
        iu, ju = np.triu_indices(self.N, 1)
        d = self.x[iu] - self.x[ju]
        reach = self.r[iu] + self.r[ju] + self.skin
        keep = np.einsum("ij,ij->i", d, d) < reach * reach
        I, J = iu[keep], ju[keep]
        # Carry contact state over to the new list (contacts are always inside it).
        old_keys = self.I * self.N + self.J
        new_keys = I * self.N + J
        prev = np.zeros(len(I), dtype=bool)
        store = [np.zeros(len(I)), np.zeros(len(I)), np.zeros(len(I)), np.zeros((len(I), self.D))]
        if len(old_keys) and self.p_prev.any():
            pos = np.searchsorted(new_keys, old_keys[self.p_prev])
            prev[pos] = True
            for a, b in zip(store, self.p_store):
                a[pos] = b[self.p_prev]
        self.I, self.J, self.p_prev, self.p_store = I, J, prev, tuple(store)
        self.x_ref = self.x.copy()
        mf = self.m[I] * self.m[J] / (self.m[I] + self.m[J])
        self.pair_c = 2.0 * self.zeta * np.sqrt(self.k * mf)

    def forces(self, first=False):
        N, D, k = self.N, self.D, self.k
        F = np.zeros((N, D))
        F[:, D - 1] = -self.m * self.g
        lo = self.r[:, None] - self.x
        hi = self.x + self.r[:, None] - self.box
        cw = self.wall_c[:, None]
        w_lo, w_hi = lo > 0, hi > 0
        fs_lo, fd_lo = k * lo, -cw * self.ve
        fs_hi, fd_hi = k * hi, cw * self.ve
        F += np.where(w_lo, fs_lo + fd_lo, 0.0) - np.where(w_hi, fs_hi + fd_hi, 0.0)
        d = self.x[self.I] - self.x[self.J]
        dist = np.sqrt(np.einsum("ij,ij->i", d, d))
        delta = self.r[self.I] + self.r[self.J] - dist
        on = delta > 0
        idx = np.nonzero(on)[0]
        n = d[idx] / dist[idx, None]
        vn = np.einsum("ij,ij->i", self.ve[self.I[idx]] - self.ve[self.J[idx]], n)
        fs = k * delta[idx]
        fd = -self.pair_c[idx] * vn
        fv = (fs + fd)[:, None] * n
        for a in range(D):
            F[:, a] += np.bincount(self.I[idx], fv[:, a], N) - np.bincount(self.J[idx], fv[:, a], N)
        self.cur = dict(on=on, idx=idx, delta=delta, fs=fs, fd=fd, n=n,
                        w_on={"lo": w_lo, "hi": w_hi}, w_delta={"lo": lo, "hi": hi},
                        w_fs={"lo": fs_lo, "hi": fs_hi}, w_fd={"lo": fd_lo, "hi": fd_hi})
        if first:
            self.commit_contacts()
        return F

    def commit_contacts(self):
        c = self.cur
        self.p_prev = c["on"].copy()
        delta = np.zeros(len(self.I)); fs = np.zeros(len(self.I)); fd = np.zeros(len(self.I))
        n = np.zeros((len(self.I), self.D))
        delta[c["idx"]] = c["delta"][c["idx"]]; fs[c["idx"]] = c["fs"]; fd[c["idx"]] = c["fd"]; n[c["idx"]] = c["n"]
        self.p_store = (delta, fs, fd, n)
        for s in ("lo", "hi"):
            self.w_prev[s] = c["w_on"][s].copy()
            self.w_store[s] = (c["w_delta"][s], c["w_fs"][s], c["w_fd"][s])

    def corrections(self):
        """Impulse corrections (force over a half kick) for contacts that
        started or ended in this sub-step; v is v_half here."""
        N, D, dt, c = self.N, self.D, self.dt, self.cur
        corr = np.zeros((N, D))
        on, prev = c["on"], self.p_prev
        started = np.nonzero(on & ~prev)[0]
        ended = np.nonzero(prev & ~on)[0]
        if len(started):
            pos = np.searchsorted(c["idx"], started)
            n = c["n"][pos]
            I, J = self.I[started], self.J[started]
            dprev_vec = (self.x[I] - dt * self.v[I]) - (self.x[J] - dt * self.v[J])
            d_prev = self.r[I] + self.r[J] - np.sqrt(np.einsum("ij,ij->i", dprev_vec, dprev_vec))
            d_now = c["delta"][started]
            theta = np.where(d_prev < 0, np.clip(d_prev / np.where(d_prev < 0, d_prev - d_now, 1.0), 0, 1), 0.0)
            mag = -theta * c["fs"][pos] + (1 - 2 * theta) * c["fd"][pos]
            fv = mag[:, None] * n
            for a in range(D):
                corr[:, a] += np.bincount(I, fv[:, a], N) - np.bincount(J, fv[:, a], N)
        if len(ended):
            d0, fs0, fd0, n0 = (s[ended] for s in self.p_store)
            d_now = c["delta"][ended]
            theta = np.where(d_now < 0, np.clip(d0 / np.where(d_now < 0, d0 - d_now, 1.0), 0, 1), 1.0)
            mag = (theta - 1) * fs0 + (2 * theta - 1) * fd0
            fv = mag[:, None] * n0
            I, J = self.I[ended], self.J[ended]
            for a in range(D):
                corr[:, a] += np.bincount(I, fv[:, a], N) - np.bincount(J, fv[:, a], N)
        for s, sign in (("lo", 1.0), ("hi", -1.0)):
            now, was = c["w_on"][s], self.w_prev[s]
            st, en = now & ~was, was & ~now
            if st.any():
                d_now = c["w_delta"][s]
                # Overlap one sub-step earlier: positions x - dt*v.
                xp = self.x - dt * self.v
                d_prev = (self.r[:, None] - xp) if s == "lo" else (xp + self.r[:, None] - self.box)
                theta = np.where(d_prev < 0, np.clip(d_prev / np.where(d_prev < 0, d_prev - d_now, 1.0), 0, 1), 0.0)
                mag = -theta * c["w_fs"][s] + (1 - 2 * theta) * c["w_fd"][s]
                corr += np.where(st, sign * mag, 0.0)
            if en.any():
                d0, fs0, fd0 = self.w_store[s]
                d_now = c["w_delta"][s]
                theta = np.where(d_now < 0, np.clip(d0 / np.where(d_now < 0, d0 - d_now, 1.0), 0, 1), 1.0)
                mag = (theta - 1) * fs0 + (2 * theta - 1) * fd0
                corr += np.where(en, sign * mag, 0.0)
        return corr

    def step(self):
        h = 0.5 * self.dt
        acc = self.f / self.m[:, None]
        self.v += h * acc
        self.x += self.dt * self.v
        self.ve = self.v + h * acc
        moved = np.max(np.sum((self.x - self.x_ref) ** 2, axis=1))
        if moved > (0.5 * self.skin) ** 2:
            self.rebuild()
        self.f = self.forces()
        corr = self.corrections()
        self.v += h * (self.f + corr) / self.m[:, None]
        self.commit_contacts()


def run_case(path, work):
    with open(path, "rb") as fh:
        c = tomllib.load(fh)
    s = Sim(c)
    for _ in range(c["check_steps"]):
        s.step()
    xr = np.array(c["x_check"]).reshape(s.N, s.D)
    err = float(np.max(np.abs(s.x - xr)))
    s = Sim(c)
    for _ in range(20):
        s.step()
    steps = max(100, int(work / s.N))
    # Thread CPU time, like the Rust side: fair on a busy shared machine.
    t0 = time.thread_time()
    for _ in range(steps):
        s.step()
    secs = time.thread_time() - t0
    return c, s.N * steps / secs, err


def main():
    np.seterr(divide="ignore", invalid="ignore")
    work = 2e5
    import re
    files = [a for a in sys.argv[1:] if a.endswith(".toml")]
    # Order by (dimension, N) when the names follow case_<D>d_<N>.toml.
    key = lambda f: tuple(int(x) for x in re.findall(r"case_(\d+)d_(\d+)", f)[0]) if re.search(r"case_\d+d_\d+", f) else (0, 0)
    files.sort(key=key)
    if not files:
        sys.exit(__doc__)
    print(f"{'dim':>4} {'N':>6} {'rust p-steps/s':>15} {'numpy p-steps/s':>16} {'rust/numpy':>11} {'rust ns/p-step':>15} {'parity |dx|':>12}")
    ok = True
    for f in files:
        c, rate, err = run_case(f, work)
        ratio = c["rust_rate"] / rate
        print(f"{c['dim']:>4} {c['n']:>6} {c['rust_rate']:>15.3e} {rate:>16.3e} {ratio:>11.1f} {1e9 / c['rust_rate']:>15.1f} {err:>12.1e}")
        # Same physics: after check_steps sub-steps the states agree to round-off
        # (amplified only by the few collisions in between).
        if not err < 1e-8:
            ok = False
    if not ok:
        sys.exit("parity check failed: NumPy and Rust trajectories differ")


if __name__ == "__main__":
    main()
