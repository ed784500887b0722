//! Scene files: the TOML description of a simulation (box, particles, contact
//! law, initial speeds, time stepping), validated in one place
//! ([`Scene::validate`]) and resolved into the derived quantities the
//! integrator needs ([`Resolved`]: sub-step, stride, per-pair damping).
//!
//! Every bad value gives a [`SceneError`] that names the file, the key, the
//! value and the allowed range; unknown keys are rejected.

use std::f64::consts::PI;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Fewest integrator sub-steps a contact may last (accuracy and stability of
/// velocity-Verlet for the stiffest pair).
pub const MIN_SUBSTEPS_PER_CONTACT: u32 = 20;
/// Upper bounds that keep a typo from starting a week-long job.
pub const MAX_PARTICLES: usize = 1_000_000;
/// Most sub-steps between two recorded frames.
pub const MAX_STRIDE: u64 = 10_000_000;

/// A scene that cannot be read or used; `origin` names the file (or
/// `scene` for one built in code).
#[derive(Debug, thiserror::Error)]
pub enum SceneError {
    /// The file cannot be read.
    #[error("{origin}: cannot read the scene file: {source}")]
    Io {
        /// The scene file.
        origin: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The text is not a scene (TOML syntax, unknown key, wrong type).
    #[error("{origin}: not a valid scene: {message}")]
    Parse {
        /// The scene file.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A value out of its allowed range.
    #[error("{origin}: `{key}` = {value} is not allowed; allowed: {allowed}")]
    Invalid {
        /// The scene file.
        origin: String,
        /// The offending key.
        key: String,
        /// Its value.
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// The particles cannot be placed in the box.
    #[error("{origin}: {message}")]
    Placement {
        /// The scene file.
        origin: String,
        /// Why, and what to change.
        message: String,
    },
}

/// A number or a list of numbers in TOML (`box_size = 0.75` or `[0.75, 1.0]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct NumOrList(pub Vec<f64>);

impl<'de> Deserialize<'de> for NumOrList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = NumOrList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or a list of numbers")
            }
            fn visit_f64<E>(self, v: f64) -> Result<NumOrList, E> {
                Ok(NumOrList(vec![v]))
            }
            fn visit_i64<E>(self, v: i64) -> Result<NumOrList, E> {
                Ok(NumOrList(vec![v as f64]))
            }
            fn visit_u64<E>(self, v: u64) -> Result<NumOrList, E> {
                Ok(NumOrList(vec![v as f64]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<NumOrList, A::Error> {
                let mut out = Vec::new();
                while let Some(x) = s.next_element::<f64>()? {
                    out.push(x);
                }
                Ok(NumOrList(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// Distribution of initial speeds; directions are uniform on the circle/sphere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "distribution", rename_all = "lowercase", deny_unknown_fields)]
pub enum SpeedDist {
    /// Speed = |N(mean, sd)|.
    Normal {
        /// Mean of the normal distribution.
        mean: f64,
        /// Its standard deviation (0: every speed is `mean`).
        sd: f64,
    },
    /// Speed uniform in [min, max].
    Uniform {
        /// Smallest speed.
        min: f64,
        /// Largest speed.
        max: f64,
    },
}

impl Default for SpeedDist {
    fn default() -> Self {
        SpeedDist::Normal { mean: 1.0, sd: 0.0 }
    }
}

/// A scene file. See `scenes/*.toml` for commented examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scene {
    /// 2 (disks) or 3 (spheres).
    pub dimension: usize,
    /// Box extent: one number (square/cube) or one per axis. Box is [0, L] per axis.
    pub box_size: NumOrList,
    /// Particles per trajectory.
    pub n_particles: usize,
    /// Radius: one number (monodisperse) or [min, max] (uniform in between).
    pub radius: NumOrList,
    /// Mass = density × area (2D) or × volume (3D).
    #[serde(default = "one")]
    pub density: f64,
    /// Gravity magnitude, along -y (2D) / -z (3D).
    #[serde(default)]
    pub gravity: f64,
    /// Spring constant of the normal contact force k·δ.
    pub spring_k: f64,
    /// Coefficient of restitution in (0, 1]; converted per pair to a dashpot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restitution: Option<f64>,
    /// Direct dashpot constant c (force per unit normal velocity), same for all pairs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub damping: Option<f64>,
    /// Time between recorded frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_dt: Option<f64>,
    /// Time between recorded frames, in units of the typical contact time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_interval_contact_times: Option<f64>,
    /// The shortest contact lasts at least this many sub-steps (≥ 20).
    #[serde(default = "default_substeps")]
    pub substeps_per_contact: u32,
    /// Optional upper bound on the sub-step (the automatic one is used if smaller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_dt: Option<f64>,
    /// Initial speeds.
    #[serde(default)]
    pub speed: SpeedDist,
    /// Defaults for `headlab simulate` (overridable on the command line).
    #[serde(default = "default_traj")]
    pub trajectories: usize,
    /// Recorded frames per trajectory.
    #[serde(default = "default_frames")]
    pub frames: usize,
    /// Seed of the simulation.
    #[serde(default)]
    pub seed: u64,
}

fn one() -> f64 {
    1.0
}
fn default_substeps() -> u32 {
    MIN_SUBSTEPS_PER_CONTACT
}
fn default_traj() -> usize {
    64
}
fn default_frames() -> usize {
    100
}

/// How contacts are damped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Damping {
    /// Damping ratio ζ, the same for every pair: c_pair = 2ζ·sqrt(k·m_eff).
    Ratio(f64),
    /// Dashpot constant c, the same for every pair.
    Coefficient(f64),
}

/// Quantities derived from a valid scene.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// 2 or 3.
    pub dimension: usize,
    /// Box extent per axis.
    pub box_size: Vec<f64>,
    /// Smallest radius.
    pub r_min: f64,
    /// Largest radius.
    pub r_max: f64,
    /// The dashpot, resolved from `restitution` or `damping`.
    pub damping: Damping,
    /// Dashpot constant of a typical pair (two particles of mean radius).
    pub typical_c: f64,
    /// Restitution (NaN when damping was given directly).
    pub restitution: f64,
    /// Contact duration of a typical pair.
    pub contact_time: f64,
    /// Contact duration of the stiffest (lightest) pair.
    pub min_contact_time: f64,
    /// Integrator sub-step (time units).
    pub dt: f64,
    /// Sub-steps between recorded frames.
    pub stride: u64,
    /// Time between recorded frames (dt × stride).
    pub frame_dt: f64,
}

/// ζ for a coefficient of restitution e: ζ = -ln e / sqrt(π² + ln² e).
pub fn damping_ratio_from_restitution(e: f64) -> f64 {
    let l = e.ln();
    -l / (PI * PI + l * l).sqrt()
}

/// Restitution of the linear spring–dashpot with damping ratio ζ < 1.
pub fn restitution_from_damping_ratio(zeta: f64) -> f64 {
    (-PI * zeta / (1.0 - zeta * zeta).sqrt()).exp()
}

/// Contact duration π / (ω0·sqrt(1-ζ²)), ω0 = sqrt(k/m_eff), ζ = c/(2 sqrt(k m_eff)).
pub fn contact_duration(k: f64, m_eff: f64, c: f64) -> f64 {
    let w0 = (k / m_eff).sqrt();
    let zeta = c / (2.0 * (k * m_eff).sqrt());
    PI / (w0 * (1.0 - zeta * zeta).sqrt())
}

impl Scene {
    /// Read, parse and validate a scene file.
    pub fn from_file(path: &Path) -> Result<Scene, SceneError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SceneError::Io { origin: origin.clone(), source })?;
        Scene::from_toml_str(&text, &origin)
    }

    /// Parse and validate scene text; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Scene, SceneError> {
        let scene: Scene = toml::from_str(text).map_err(|e| SceneError::Parse {
            origin: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        scene.resolve(origin)?;
        Ok(scene)
    }

    /// The scene as TOML with every default written out.
    pub fn to_toml(&self) -> Result<String, SceneError> {
        toml::to_string(self).map_err(|e| SceneError::Parse {
            origin: "scene".into(),
            message: format!("cannot write the scene as TOML: {e}"),
        })
    }

    /// Mass of a particle of radius r.
    pub fn mass_of(&self, r: f64) -> f64 {
        particle_mass(self.dimension, self.density, r)
    }

    /// Check every key and compute the derived quantities. This is the one place
    /// where scene values are validated.
    pub fn resolve(&self, origin: &str) -> Result<Resolved, SceneError> {
        let bad = |key: &str, value: String, allowed: &str| SceneError::Invalid {
            origin: origin.to_string(),
            key: key.to_string(),
            value,
            allowed: allowed.to_string(),
        };
        let fin_pos = |key: &str, v: f64| -> Result<(), SceneError> {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(bad(key, fmt_f(v), "a finite number > 0"))
            }
        };
        if self.dimension != 2 && self.dimension != 3 {
            return Err(bad("dimension", self.dimension.to_string(), "2 (disks) or 3 (spheres)"));
        }
        let d = self.dimension;
        let box_size = match self.box_size.0.len() {
            1 => vec![self.box_size.0[0]; d],
            n if n == d => self.box_size.0.clone(),
            _ => {
                return Err(bad(
                    "box_size",
                    fmt_list(&self.box_size.0),
                    &format!("one number, or a list of {d} numbers (one per axis)"),
                ))
            }
        };
        for &l in &box_size {
            if !(l.is_finite() && l > 0.0) {
                return Err(bad("box_size", fmt_list(&self.box_size.0), "finite numbers > 0"));
            }
        }
        if self.n_particles < 1 || self.n_particles > MAX_PARTICLES {
            return Err(bad("n_particles", self.n_particles.to_string(), &format!("1 ..= {MAX_PARTICLES}")));
        }
        let (r_min, r_max) = match self.radius.0.as_slice() {
            [r] => (*r, *r),
            [a, b] => (*a, *b),
            _ => return Err(bad("radius", fmt_list(&self.radius.0), "one number, or [min, max]")),
        };
        if !(r_min.is_finite() && r_min > 0.0 && r_max.is_finite() && r_max >= r_min) {
            return Err(bad("radius", fmt_list(&self.radius.0), "radii > 0 with min <= max"));
        }
        let l_min = box_size.iter().cloned().fold(f64::INFINITY, f64::min);
        if 2.0 * r_max >= l_min {
            return Err(bad(
                "radius",
                fmt_list(&self.radius.0),
                &format!("a diameter smaller than the smallest box side ({})", fmt_f(l_min)),
            ));
        }
        fin_pos("density", self.density)?;
        if !(self.gravity.is_finite() && self.gravity >= 0.0) {
            return Err(bad(
                "gravity",
                fmt_f(self.gravity),
                "a finite number >= 0 (magnitude; it pulls along -y in 2D, -z in 3D)",
            ));
        }
        fin_pos("spring_k", self.spring_k)?;
        let k = self.spring_k;
        let r_mean = 0.5 * (r_min + r_max);
        let m_small = self.mass_of(r_min);
        let m_mean = self.mass_of(r_mean);
        // Lightest pair: two smallest particles (a wall has infinite mass, m_eff = m).
        // Masses are stored as f32: a density that makes them underflow to 0
        // (or overflow) would give a dataset that nothing can train on.
        let m_large = self.mass_of(r_max);
        for (what, m) in [("smallest", m_small), ("largest", m_large)] {
            let m32 = m as f32;
            if !(m32.is_finite() && m32 > 0.0 && m32.is_normal()) {
                return Err(bad(
                    "density",
                    fmt_f(self.density),
                    &format!("a density that gives masses representable as f32 (the {what} particle's mass would be {m:e}); scale density and spring_k together"),
                ));
            }
        }
        let m_eff_min = m_small / 2.0;
        let m_eff_typ = m_mean / 2.0;
        let (damping, restitution) = match (self.restitution, self.damping) {
            (Some(_), Some(damping)) => {
                return Err(bad("damping", fmt_f(damping), "give either `restitution` or `damping`, not both"))
            }
            (Some(e), None) => {
                if !(e > 0.0 && e <= 1.0) {
                    return Err(bad("restitution", fmt_f(e), "0 < restitution <= 1 (1 = elastic)"));
                }
                (Damping::Ratio(damping_ratio_from_restitution(e)), e)
            }
            (None, Some(c)) => {
                let c_max = 2.0 * (k * m_eff_min).sqrt();
                if !(c.is_finite() && c >= 0.0 && c < c_max) {
                    return Err(bad(
                        "damping",
                        fmt_f(c),
                        &format!(
                            "0 <= damping < {} (above it the lightest pair is over-damped and never bounces)",
                            fmt_f(c_max)
                        ),
                    ));
                }
                (Damping::Coefficient(c), f64::NAN)
            }
            (None, None) => (Damping::Ratio(0.0), 1.0),
        };
        let pair_c = |m_eff: f64| match damping {
            Damping::Ratio(z) => 2.0 * z * (k * m_eff).sqrt(),
            Damping::Coefficient(c) => c,
        };
        let typical_c = pair_c(m_eff_typ);
        let contact_time = contact_duration(k, m_eff_typ, typical_c);
        let min_contact_time = contact_duration(k, m_eff_min, pair_c(m_eff_min)).min(PI * (m_eff_min / k).sqrt());
        if self.substeps_per_contact < MIN_SUBSTEPS_PER_CONTACT || self.substeps_per_contact > 100_000 {
            return Err(bad(
                "substeps_per_contact",
                self.substeps_per_contact.to_string(),
                &format!(
                    "{MIN_SUBSTEPS_PER_CONTACT} ..= 100000 (fewer sub-steps per contact is inaccurate or unstable)"
                ),
            ));
        }
        let mut dt_max = min_contact_time / self.substeps_per_contact as f64;
        if let Some(m) = self.max_dt {
            fin_pos("max_dt", m)?;
            dt_max = dt_max.min(m);
        }
        let frame_dt = match (self.frame_dt, self.frame_interval_contact_times) {
            (Some(_), Some(interval)) => {
                return Err(bad(
                    "frame_interval_contact_times",
                    fmt_f(interval),
                    "give either `frame_dt` or `frame_interval_contact_times`, not both",
                ))
            }
            (Some(f), None) => {
                fin_pos("frame_dt", f)?;
                f
            }
            (None, Some(u)) => {
                fin_pos("frame_interval_contact_times", u)?;
                u * contact_time
            }
            (None, None) => contact_time,
        };
        let stride_f = (frame_dt / dt_max * (1.0 - 1e-12)).ceil().max(1.0);
        if stride_f > MAX_STRIDE as f64 {
            return Err(bad(
                if self.frame_dt.is_some() { "frame_dt" } else { "frame_interval_contact_times" },
                fmt_f(self.frame_dt.or(self.frame_interval_contact_times).unwrap_or(1.0)),
                &format!("a frame interval of at most {MAX_STRIDE} sub-steps (sub-step here: {})", fmt_f(dt_max)),
            ));
        }
        let stride = stride_f as u64;
        let dt = frame_dt / stride as f64;
        if let SpeedDist::Normal { mean, sd } = self.speed {
            if !(mean.is_finite() && mean >= 0.0) {
                return Err(bad("speed.mean", fmt_f(mean), "a finite number >= 0"));
            }
            if !(sd.is_finite() && sd >= 0.0) {
                return Err(bad("speed.sd", fmt_f(sd), "a finite number >= 0"));
            }
        }
        if let SpeedDist::Uniform { min, max } = self.speed {
            if !(min.is_finite() && min >= 0.0) {
                return Err(bad("speed.min", fmt_f(min), "a finite number >= 0"));
            }
            if !(max.is_finite() && max >= min) {
                return Err(bad("speed.max", fmt_f(max), &format!("a finite number >= speed.min ({})", fmt_f(min))));
            }
        }
        // A frame in which nothing moves measurably (in f32 positions) makes
        // a useless dataset: typically a spring so stiff that the frame
        // interval, tied to the contact time, is vanishingly short.
        let typical_speed = match self.speed {
            SpeedDist::Normal { mean, sd } => mean.abs().max(sd),
            SpeedDist::Uniform { max, .. } => max,
        };
        let move_per_frame = typical_speed * frame_dt + 0.5 * self.gravity * frame_dt * frame_dt;
        if move_per_frame < 1e-6 * l_min {
            let key = if self.frame_dt.is_some() { "frame_dt" } else { "spring_k" };
            let value = if self.frame_dt.is_some() { fmt_f(frame_dt) } else { fmt_f(self.spring_k) };
            return Err(bad(
                key,
                value,
                &format!(
                    "settings under which particles move measurably between frames: at typical speed {} and gravity {} they move {:e} per frame interval ({} time units), under a millionth of the box (positions are stored as f32); lower spring_k, raise the frame interval or give the particles speed",
                    fmt_f(typical_speed),
                    fmt_f(self.gravity),
                    move_per_frame,
                    fmt_f(frame_dt)
                ),
            ));
        }
        if self.trajectories < 1 || self.trajectories > 10_000_000 {
            return Err(bad("trajectories", self.trajectories.to_string(), "1 ..= 10000000"));
        }
        if self.frames < 2 || self.frames > 10_000_000 {
            return Err(bad("frames", self.frames.to_string(), "2 ..= 10000000 (at least one interval)"));
        }
        // Placement feasibility: a quick bound on the packing fraction of the
        // largest possible particles (random placement jams well below 1).
        let vol_box: f64 = box_size.iter().product();
        let vol_part = |r: f64| if d == 2 { PI * r * r } else { 4.0 / 3.0 * PI * r * r * r };
        let r3_mean = if r_max > r_min {
            (r_max.powi(d as i32 + 1) - r_min.powi(d as i32 + 1)) / ((d as f64 + 1.0) * (r_max - r_min))
        } else {
            r_min.powi(d as i32)
        };
        let phi = self.n_particles as f64 * vol_part(1.0) * r3_mean / vol_box;
        let phi_max = if d == 2 { 0.55 } else { 0.38 };
        if phi > phi_max {
            return Err(SceneError::Placement {
                origin: origin.to_string(),
                message: format!(
                    "the box is too full for random placement: n_particles = {} with radius {} fill {:.0}% of box_size {}, \
                     more than the {:.0}% random placement can reach in {d}D; use fewer or smaller particles or a bigger box",
                    self.n_particles,
                    fmt_list(&self.radius.0),
                    phi * 100.0,
                    fmt_list(&box_size),
                    phi_max * 100.0
                ),
            });
        }
        Ok(Resolved {
            dimension: d,
            box_size,
            r_min,
            r_max,
            damping,
            typical_c,
            restitution,
            contact_time,
            min_contact_time,
            dt,
            stride,
            frame_dt,
        })
    }
}

/// Mass of a particle of radius `r`: density × area (2D) or × volume (3D).
pub fn particle_mass(dimension: usize, density: f64, r: f64) -> f64 {
    if dimension == 2 {
        density * PI * r * r
    } else {
        density * 4.0 / 3.0 * PI * r * r * r
    }
}

fn fmt_f(v: f64) -> String {
    format!("{v}")
}
fn fmt_list(v: &[f64]) -> String {
    let items: Vec<String> = v.iter().map(|x| fmt_f(*x)).collect();
    format!("[{}]", items.join(", "))
}

/// A small dense 2D scene for tests in this and other crates (16 disks,
/// contacts every few frames).
macro_rules! test_dense2d_base {
    () => {
        r#"
dimension = 2
box_size = 0.75
n_particles = 16
radius = [0.04, 0.07]
gravity = 1.0
spring_k = 300.0
restitution = 0.8
"#
    };
}

/// The test scene's keys before its `[speed]` table (tests append keys to it) …
#[doc(hidden)]
pub const TEST_DENSE2D_BASE: &str = test_dense2d_base!();

/// … and the whole scene, with its initial speeds.
#[doc(hidden)]
pub const TEST_DENSE2D: &str = concat!(
    test_dense2d_base!(),
    r#"[speed]
distribution = "normal"
mean = 1.5
sd = 0.25
"#
);

#[cfg(test)]
mod tests {
    use super::*;

    /// The dense 2D test scene without its `[speed]` table, so that tests
    /// can append top-level keys.
    const BASE: &str = TEST_DENSE2D_BASE;

    fn with(extra: &str) -> Result<Scene, SceneError> {
        Scene::from_toml_str(&format!("{BASE}{extra}"), "test.toml")
    }
    fn replace(key: &str, line: &str) -> Result<Scene, SceneError> {
        let text: String = BASE
            .lines()
            .map(|l| if l.starts_with(&format!("{key} =")) { line.to_string() } else { l.to_string() })
            .collect::<Vec<_>>()
            .join("\n");
        Scene::from_toml_str(&text, "test.toml")
    }
    fn assert_invalid(r: Result<Scene, SceneError>, key: &str, value: &str) {
        let e = r.expect_err("should be rejected");
        let msg = e.to_string();
        match &e {
            SceneError::Invalid { key: k, value: v, .. } => {
                assert_eq!(k, key, "{msg}");
                assert_eq!(v, value, "{msg}");
            }
            other => panic!("expected Invalid for {key}, got {other:?}"),
        }
        assert!(msg.contains("test.toml") && msg.contains(key) && msg.contains("allowed"), "{msg}");
    }

    #[test]
    fn base_scene_is_valid_and_roundtrips() {
        let s = with("").unwrap();
        let r = s.resolve("x").unwrap();
        assert!(r.dt * MIN_SUBSTEPS_PER_CONTACT as f64 <= r.min_contact_time * (1.0 + 1e-12));
        assert!((r.stride as f64 * r.dt - r.frame_dt).abs() < 1e-12 * r.frame_dt);
        assert!((r.frame_dt - r.contact_time).abs() < 1e-12 * r.contact_time);
        let again = Scene::from_toml_str(&s.to_toml().unwrap(), "resolved").unwrap();
        assert_eq!(s, again);
    }
    #[test]
    fn restitution_conversion_matches_formula() {
        for e in [0.1, 0.5, 0.8, 0.99] {
            let z = damping_ratio_from_restitution(e);
            assert!((restitution_from_damping_ratio(z) - e).abs() < 1e-12);
        }
        assert_eq!(damping_ratio_from_restitution(1.0), 0.0);
    }
    #[test]
    fn unknown_key_rejected() {
        let e = with("colour = 3\n").unwrap_err().to_string();
        assert!(e.contains("test.toml") && e.contains("colour"), "{e}");
        let e =
            with("[speed]\ndistribution = \"normal\"\nmean = 1.0\nsd = 0.1\nvariance = 2\n").unwrap_err().to_string();
        assert!(e.contains("variance"), "{e}");
    }
    #[test]
    fn bad_dimension() {
        assert_invalid(replace("dimension", "dimension = 4"), "dimension", "4");
    }
    #[test]
    fn bad_box_size() {
        assert_invalid(replace("box_size", "box_size = -1.0"), "box_size", "[-1]");
        assert_invalid(replace("box_size", "box_size = [1.0, 1.0, 1.0]"), "box_size", "[1, 1, 1]");
    }
    #[test]
    fn bad_n_particles() {
        assert_invalid(replace("n_particles", "n_particles = 0"), "n_particles", "0");
    }
    #[test]
    fn negative_radius() {
        assert_invalid(replace("radius", "radius = -0.05"), "radius", "[-0.05]");
        assert_invalid(replace("radius", "radius = [0.07, 0.04]"), "radius", "[0.07, 0.04]");
        assert_invalid(replace("radius", "radius = [0.01, 0.02, 0.03]"), "radius", "[0.01, 0.02, 0.03]");
    }
    #[test]
    fn radius_larger_than_box() {
        assert_invalid(replace("radius", "radius = 0.5"), "radius", "[0.5]");
    }
    #[test]
    fn bad_density() {
        assert_invalid(with("density = 0.0\n"), "density", "0");
    }
    #[test]
    fn bad_gravity() {
        assert_invalid(replace("gravity", "gravity = -9.8"), "gravity", "-9.8");
    }
    #[test]
    fn bad_spring_k() {
        assert_invalid(replace("spring_k", "spring_k = 0"), "spring_k", "0");
    }
    #[test]
    fn bad_restitution() {
        assert_invalid(replace("restitution", "restitution = 1.5"), "restitution", "1.5");
        assert_invalid(replace("restitution", "restitution = 0.0"), "restitution", "0");
    }
    #[test]
    fn both_restitution_and_damping() {
        assert_invalid(with("damping = 0.1\n"), "damping", "0.1");
    }
    #[test]
    fn overdamped_damping() {
        assert_invalid(replace("restitution", "damping = 1000.0"), "damping", "1000");
        assert!(replace("restitution", "damping = 0.01").is_ok());
    }
    #[test]
    fn too_few_substeps_is_unstable() {
        assert_invalid(with("substeps_per_contact = 5\n"), "substeps_per_contact", "5");
    }
    #[test]
    fn bad_max_dt() {
        assert_invalid(with("max_dt = -1.0\n"), "max_dt", "-1");
    }
    #[test]
    fn bad_frame_interval() {
        assert_invalid(with("frame_dt = -0.1\n"), "frame_dt", "-0.1");
        assert_invalid(with("frame_interval_contact_times = 0.0\n"), "frame_interval_contact_times", "0");
        assert_invalid(
            with("frame_dt = 0.1\nframe_interval_contact_times = 1.0\n"),
            "frame_interval_contact_times",
            "1",
        );
        assert_invalid(with("frame_dt = 1e9\n"), "frame_dt", "1000000000");
    }
    #[test]
    fn bad_speed() {
        assert_invalid(with("[speed]\ndistribution = \"normal\"\nmean = -1.0\nsd = 0.1\n"), "speed.mean", "-1");
        assert_invalid(with("[speed]\ndistribution = \"normal\"\nmean = 1.0\nsd = -0.1\n"), "speed.sd", "-0.1");
        assert_invalid(with("[speed]\ndistribution = \"uniform\"\nmin = -1.0\nmax = 1.0\n"), "speed.min", "-1");
        assert_invalid(with("[speed]\ndistribution = \"uniform\"\nmin = 2.0\nmax = 1.0\n"), "speed.max", "1");
        let e = with("[speed]\ndistribution = \"maxwell\"\n").unwrap_err().to_string();
        assert!(e.contains("maxwell"), "{e}");
    }
    #[test]
    fn bad_trajectories_and_frames() {
        assert_invalid(with("trajectories = 0\n"), "trajectories", "0");
        assert_invalid(with("frames = 1\n"), "frames", "1");
    }
    #[test]
    fn box_too_full() {
        let e = replace("n_particles", "n_particles = 200").unwrap_err();
        assert!(matches!(e, SceneError::Placement { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("test.toml") && msg.contains("too full") && msg.contains("n_particles = 200"), "{msg}");
    }
    #[test]
    fn useless_physics_is_refused_with_the_reason() {
        // Masses that underflow f32.
        let e = with("density = 1e-60\n").unwrap_err().to_string();
        assert!(e.contains("density") && e.contains("f32") && e.contains("test.toml"), "{e}");
        // A spring so stiff that the frame interval (one contact time) is too
        // short for anything to move in f32 positions.
        let e = replace("spring_k", "spring_k = 1e30").unwrap_err().to_string();
        assert!(e.contains("spring_k") && e.contains("move") && e.contains("per frame"), "{e}");
        // The same spring with a long enough frame interval is fine as far as
        // motion goes (it is refused only if the sub-steps per frame explode).
        assert!(replace("spring_k", "spring_k = 3000.0").is_ok());
    }
    #[test]
    fn wrong_type_names_key() {
        let e = replace("n_particles", "n_particles = \"many\"").unwrap_err().to_string();
        assert!(e.contains("test.toml") && e.contains("n_particles"), "{e}");
    }
}
