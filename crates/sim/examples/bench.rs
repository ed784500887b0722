//! Simulator benchmark (run by tools/bench-sim, which compares it with the
//! NumPy reference tools/numpy_sim.py in the same invocation).
//!
//! For each dimension and N it builds the dense scene scaled to N particles
//! (2D: the demo box, 16 disks in 0.75², 3D: 64 spheres in 1³, box grown to
//! keep the packing fraction), times single-threaded sub-steps (thread CPU time), and writes a
//! case file (TOML: parameters, initial state, the state after `--check-steps`
//! sub-steps, and the measured rate) for the NumPy reference to replay.
//!
//! cargo run -p headlab-sim --example bench -- --out-dir DIR [--n 16,64,256,1024] [--dims 2,3] [--work 4e6]
// A benchmark/demo program: failing fast with a panic is its error handling.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::time::Instant;

use headlab_sim::physics::World;
use headlab_sim::scene::{Damping, Scene};
use headlab_sim::simulate::{initial_state, make_world};

fn scene_for(dim: usize, n: usize) -> Scene {
    let (l0, n0, radius, k) =
        if dim == 2 { (0.75, 16.0, "[0.04, 0.07]", 300.0) } else { (1.0, 64.0, "[0.05, 0.08]", 50.0) };
    let l = l0 * (n as f64 / n0).powf(1.0 / dim as f64);
    let text = format!(
        "dimension = {dim}\nbox_size = {l}\nn_particles = {n}\nradius = {radius}\ngravity = 1.0\nspring_k = {k}\n\
         restitution = 0.8\n[speed]\ndistribution = \"normal\"\nmean = 1.5\nsd = 0.25\n"
    );
    Scene::from_toml_str(&text, "bench").expect("bench scene")
}

/// CPU time of this thread in seconds (Linux schedstat, ns resolution), so
/// that a busy shared machine does not distort the rate; wall-clock otherwise.
fn cpu_seconds(t0: Instant) -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse::<f64>().ok()))
        .map(|ns| ns * 1e-9)
        .unwrap_or_else(|| t0.elapsed().as_secs_f64())
}

fn list(v: impl Iterator<Item = f64>) -> String {
    let items: Vec<String> = v.map(|x| format!("{x:e}")).collect();
    format!("[{}]", items.join(", "))
}

fn run<const D: usize>(n: usize, work: f64, check_steps: u64, out_dir: &str) -> f64 {
    let sc = scene_for(D, n);
    let res = sc.resolve("bench").unwrap();
    let init = initial_state(&sc, &res, 0, 0).unwrap();
    let mut w: World<D> = make_world(&sc, &res, &init);
    let mut events = Vec::new();
    for _ in 0..check_steps {
        w.step(0, &mut events);
    }
    let after = w.clone();
    // Timing: a fresh world from the same state, after a short warm-up.
    let steps = ((work / n as f64) as u64).max(200);
    let mut w: World<D> = make_world(&sc, &res, &init);
    for _ in 0..50 {
        w.step(0, &mut events);
    }
    events.clear();
    let t_wall = Instant::now();
    let c0 = cpu_seconds(t_wall);
    for _ in 0..steps {
        w.step(0, &mut events);
        if events.len() > 1 << 20 {
            events.clear();
        }
    }
    let secs = cpu_seconds(t_wall) - c0;
    let rate = (steps as f64 * n as f64) / secs;
    let zeta = match res.damping {
        Damping::Ratio(z) => z,
        Damping::Coefficient(_) => unreachable!(),
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "dim = {D}\nn = {n}\nbox = {}\ngravity = {:e}\nspring_k = {:e}\nzeta = {zeta:e}\ndt = {:e}",
        list(res.box_size.iter().cloned()),
        sc.gravity,
        sc.spring_k,
        res.dt
    );
    let _ =
        writeln!(s, "check_steps = {check_steps}\nrust_rate = {rate:e}\nrust_steps = {steps}\nrust_secs = {secs:e}");
    let _ = writeln!(s, "r = {}\nm = {}", list(init.r.iter().cloned()), list(init.m.iter().cloned()));
    let flat = |v: &Vec<Vec<f64>>| list(v.iter().flatten().cloned());
    let flat_a = |v: &Vec<[f64; D]>| list(v.iter().flatten().cloned());
    let _ = writeln!(s, "x0 = {}\nv0 = {}", flat(&init.x), flat(&init.v));
    let _ = writeln!(s, "x_check = {}\nv_check = {}", flat_a(&after.x), flat_a(&after.v));
    std::fs::write(format!("{out_dir}/case_{D}d_{n}.toml"), s).unwrap();
    rate
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str, default: &str| -> String {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| default.to_string())
    };
    let out_dir = get("--out-dir", "target/bench-sim");
    std::fs::create_dir_all(&out_dir).unwrap();
    let ns: Vec<usize> = get("--n", "16,64,256,1024").split(',').map(|x| x.parse().unwrap()).collect();
    let dims: Vec<usize> = get("--dims", "2,3").split(',').map(|x| x.parse().unwrap()).collect();
    let work: f64 = get("--work", "4e6").parse().unwrap();
    let check: u64 = get("--check-steps", "300").parse().unwrap();
    println!("{:>4} {:>6} {:>16}", "dim", "N", "rust p-steps/s");
    for &d in &dims {
        for &n in &ns {
            let rate = if d == 2 { run::<2>(n, work, check, &out_dir) } else { run::<3>(n, work, check, &out_dir) };
            println!("{d:>4} {n:>6} {rate:>16.3e}");
        }
    }
}
