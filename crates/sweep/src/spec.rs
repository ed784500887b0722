//! The sweep file: a base training config, a grid and/or list over dotted
//! config keys, seeds, how each run is executed, and Slurm resources.
//! Parsing, validation (in one place: [`SweepFile::validate`]) and expansion
//! into named runs ([`SweepFile::expand`]).

use crate::SweepError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A sweep file (TOML). See crates/sweep/README.md for a commented example.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SweepFile {
    /// Sweep folder (runs go to `OUT/runs/NAME`). Relative paths are taken
    /// from the sweep file's folder. Default: `checkpoints/sweeps/<file stem>`
    /// under the current directory.
    pub out: Option<PathBuf>,
    /// An existing dataset (from `headlab simulate`) shared by all runs.
    pub data: Option<PathBuf>,
    /// A scene file: the sweep simulates it once into `OUT/data.h5` first.
    pub scene: Option<PathBuf>,
    /// Extra arguments for that `headlab simulate` (e.g. ["--trajectories", "64"]).
    #[serde(default)]
    pub simulate_args: Vec<String>,
    /// The training config every run starts from (written, with the run's
    /// overrides, to `RUN/config.toml`; `headlab train` validates it).
    #[serde(default)]
    pub base: toml::Table,
    /// Dotted config key -> list of values; every combination is a run.
    #[serde(default)]
    pub grid: BTreeMap<String, Vec<toml::Value>>,
    /// Explicit override sets (dotted key -> value), each crossed with the grid.
    #[serde(default)]
    pub list: Vec<toml::Table>,
    /// Seeds to repeat every configuration with (passed as `--seed`).
    pub seeds: Option<Vec<u64>>,
    /// Shorthand for `seeds = [0, 1, ..., n_seeds - 1]`.
    pub n_seeds: Option<u32>,
    #[serde(default)]
    /// The `[run]` table: the pipeline of every run.
    pub run: RunConfig,
    #[serde(default)]
    /// The `[slurm]` table: resources of each array task.
    pub slurm: SlurmConfig,
}

/// One pipeline step of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// `headlab train`.
    Train,
    /// `headlab probe`.
    Probe,
    /// `headlab llc`.
    Llc,
    /// `headlab fit`.
    Fit,
}

impl Step {
    /// The subcommand's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Train => "train",
            Step::Probe => "probe",
            Step::Llc => "llc",
            Step::Fit => "fit",
        }
    }
}

/// How each run is executed: `HEADLAB train ...`, `HEADLAB probe RUN`, ...
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// The headlab binary the tasks run (default: the one running the sweep).
    pub headlab: Option<PathBuf>,
    /// Steps per run, in order. `train` must come first when present.
    pub steps: Vec<Step>,
    /// Extra arguments appended to each step's command.
    pub train_args: Vec<String>,
    /// Extra arguments of `headlab probe`.
    pub probe_args: Vec<String>,
    /// Extra arguments of `headlab llc`.
    pub llc_args: Vec<String>,
    /// Extra arguments of `headlab fit`.
    pub fit_args: Vec<String>,
    /// After all runs are done, run `headlab report RUN... --out SWEEP/report` to pool them.
    pub report: bool,
    /// Extra arguments of that `headlab report`.
    pub report_args: Vec<String>,
    /// Environment variables exported in every task.
    pub env: BTreeMap<String, String>,
    /// Shell lines run at the start of every task (e.g. `module load cuda`).
    pub setup: Vec<String>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            headlab: None,
            steps: vec![Step::Train, Step::Probe],
            train_args: vec![],
            probe_args: vec![],
            llc_args: vec![],
            fit_args: vec![],
            report: true,
            report_args: vec![],
            env: BTreeMap::new(),
            setup: vec![],
        }
    }
}

/// Resources of each array task and how the array is submitted.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmConfig {
    /// `--cpus-per-task`.
    pub cpus: u32,
    /// `--mem`, e.g. "4G".
    pub mem: Option<String>,
    /// `--time`, e.g. "02:00:00".
    pub time: Option<String>,
    /// `--gres`, e.g. "gpu:1".
    pub gres: Option<String>,
    /// `--partition`.
    pub partition: Option<String>,
    /// `--account`.
    pub account: Option<String>,
    /// `--qos`.
    pub qos: Option<String>,
    /// `--job-name` (default: "headlab-<sweep folder name>").
    pub job_name: Option<String>,
    /// Extra sbatch options, one per entry: "--constraint=a100" or
    /// "#SBATCH --constraint=a100".
    pub extra: Vec<String>,
    /// At most this many tasks of the array run at once (`--array=0-N%K`).
    pub throttle: Option<u32>,
    /// Largest array per submission; default: the cluster's MaxArraySize
    /// (from `scontrol show config`). Bigger sweeps are split into chunks.
    pub max_array_size: Option<u32>,
    /// Seconds between `squeue` polls while following the sweep.
    pub poll_seconds: f64,
}

impl Default for SlurmConfig {
    fn default() -> Self {
        SlurmConfig {
            cpus: 1,
            mem: None,
            time: None,
            gres: None,
            partition: None,
            account: None,
            qos: None,
            job_name: None,
            extra: vec![],
            throttle: None,
            max_array_size: None,
            poll_seconds: 5.0,
        }
    }
}

/// One run of a sweep: its parameters and its stable name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSpec {
    /// Position in the sweep (stable for a given sweep file).
    pub index: usize,
    /// Folder name, derived from the parameters (e.g. `lr=0.001,seed=3`).
    pub name: String,
    /// The overrides of this run (dotted key -> value), without the seed.
    pub params: BTreeMap<String, toml::Value>,
    /// The run's seed (`--seed`).
    pub seed: u64,
    /// The full resolved training config.
    pub config: toml::Table,
}

impl SweepFile {
    /// Reads and validates a sweep file; relative paths in it are made
    /// relative to the file's folder.
    pub fn load(path: &Path) -> Result<SweepFile, SweepError> {
        let text = std::fs::read_to_string(path).map_err(|e| SweepError::Io { path: path.to_path_buf(), source: e })?;
        let mut f: SweepFile = toml::from_str(&text)
            .map_err(|e| SweepError::Parse { path: path.to_path_buf(), message: e.to_string() })?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        for p in [&mut f.out, &mut f.data, &mut f.scene].into_iter().flatten() {
            if p.is_relative() && !dir.as_os_str().is_empty() {
                *p = dir.join(&*p);
            }
        }
        if let Some(h) = &mut f.run.headlab {
            // A bare name ("headlab") is looked up on PATH; a relative path is the file's.
            if h.components().count() > 1 && h.is_relative() && !dir.as_os_str().is_empty() {
                *h = dir.join(&*h);
            }
        }
        f.validate().map_err(|m| SweepError::Invalid { path: path.to_path_buf(), message: m })?;
        Ok(f)
    }

    /// Every check of a sweep file, in one place. Returns a message naming
    /// the key and the value, and what to do.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.data, &self.scene) {
            (Some(_), Some(_)) => return Err(
                "both `data` and `scene` are set; give one: `data` for an existing dataset, `scene` to simulate one"
                    .into(),
            ),
            (None, None) => return Err(
                "neither `data` nor `scene` is set; add `data = \"path/to/data.h5\"` or `scene = \"scenes/x.toml\"`"
                    .into(),
            ),
            _ => {}
        }
        if self.seeds.is_some() && self.n_seeds.is_some() {
            return Err("both `seeds` and `n_seeds` are set; keep one".into());
        }
        if let Some(s) = &self.seeds {
            if s.is_empty() {
                return Err("`seeds = []` gives no runs; list at least one seed".into());
            }
            let uniq: BTreeSet<_> = s.iter().collect();
            if uniq.len() != s.len() {
                return Err(format!("`seeds = {s:?}` repeats a seed; each seed once"));
            }
        }
        if self.n_seeds == Some(0) {
            return Err("`n_seeds = 0` gives no runs; use 1 or more".into());
        }
        for (k, vals) in &self.grid {
            check_key(k).map_err(|m| format!("grid key `{k}`: {m}"))?;
            if vals.is_empty() {
                return Err(format!("grid key `{k}` has no values; give at least one or remove it"));
            }
            if k == "seed" {
                return Err("`seed` in [grid]: use `seeds = [...]` or `n_seeds` instead".into());
            }
            for (i, a) in vals.iter().enumerate() {
                if vals[..i].contains(a) {
                    return Err(format!("grid key `{k}` repeats the value {a}"));
                }
            }
        }
        for (i, entry) in self.list.iter().enumerate() {
            for k in entry.keys() {
                check_key(k).map_err(|m| format!("list entry {i}, key `{k}`: {m}"))?;
                if k == "seed" {
                    return Err(format!("list entry {i} sets `seed`: use `seeds = [...]` instead"));
                }
                if self.grid.contains_key(k) {
                    return Err(format!("`{k}` is both in [grid] and in list entry {i}; keep it in one"));
                }
            }
        }
        if let Some(first) = self.run.steps.first() {
            if self.run.steps.iter().skip(1).any(|s| *s == Step::Train)
                || (*first != Step::Train && self.run.steps.contains(&Step::Train))
            {
                return Err("`run.steps`: `train` must be the first step".into());
            }
        } else {
            return Err("`run.steps = []`: give at least one of \"train\", \"probe\", \"llc\", \"fit\"".into());
        }
        let uniq: BTreeSet<_> = self.run.steps.iter().map(|s| s.as_str()).collect();
        if uniq.len() != self.run.steps.len() {
            return Err(format!("`run.steps` repeats a step: {:?}", self.run.steps));
        }
        for k in self.run.env.keys() {
            if k.is_empty()
                || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                || k.starts_with(|c: char| c.is_ascii_digit())
            {
                return Err(format!("`run.env` key `{k}` is not a valid environment variable name"));
            }
        }
        let s = &self.slurm;
        if s.cpus == 0 {
            return Err("`slurm.cpus = 0`: use 1 or more".into());
        }
        if s.throttle == Some(0) {
            return Err("`slurm.throttle = 0` would never start a task; use 1 or more, or remove it".into());
        }
        if s.max_array_size == Some(0) {
            return Err("`slurm.max_array_size = 0`: use 1 or more, or remove it to ask the cluster".into());
        }
        if !(s.poll_seconds.is_finite() && s.poll_seconds > 0.0) {
            return Err(format!("`slurm.poll_seconds = {}`: use a positive number of seconds", s.poll_seconds));
        }
        for (key, v) in [
            ("mem", &s.mem),
            ("time", &s.time),
            ("gres", &s.gres),
            ("partition", &s.partition),
            ("account", &s.account),
            ("qos", &s.qos),
            ("job_name", &s.job_name),
        ] {
            if let Some(v) = v {
                if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c == '\'' || c == '"') {
                    return Err(format!("`slurm.{key} = {v:?}`: must be one word without spaces or quotes"));
                }
            }
        }
        for line in &s.extra {
            let l = line.trim();
            if !(l.starts_with("--") || l.starts_with("#SBATCH ")) || l.contains('\n') {
                return Err(format!("`slurm.extra` entry {line:?}: write an sbatch option like \"--constraint=a100\" or \"#SBATCH --constraint=a100\""));
            }
        }
        Ok(())
    }

    /// The seeds of the sweep (default: `[0]`).
    pub fn seed_list(&self) -> Vec<u64> {
        if let Some(s) = &self.seeds {
            s.clone()
        } else {
            (0..self.n_seeds.unwrap_or(1) as u64).collect()
        }
    }

    /// All runs: (list entries, or one empty entry) × grid combinations × seeds,
    /// in a stable order, each with a unique stable name.
    pub fn expand(&self) -> Result<Vec<RunSpec>, String> {
        let entries: Vec<BTreeMap<String, toml::Value>> = if self.list.is_empty() {
            vec![BTreeMap::new()]
        } else {
            self.list.iter().map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).collect()
        };
        // Cartesian product of the grid (keys in sorted order, last key fastest).
        let mut combos: Vec<BTreeMap<String, toml::Value>> = vec![BTreeMap::new()];
        for (k, vals) in &self.grid {
            let mut next = Vec::with_capacity(combos.len() * vals.len());
            for c in &combos {
                for v in vals {
                    let mut c = c.clone();
                    c.insert(k.clone(), v.clone());
                    next.push(c);
                }
            }
            combos = next;
        }
        let mut params_all = Vec::new();
        for e in &entries {
            for c in &combos {
                let mut p = e.clone();
                p.extend(c.iter().map(|(k, v)| (k.clone(), v.clone())));
                params_all.push(p);
            }
        }
        let seeds = self.seed_list();
        let all_keys: BTreeSet<String> = params_all.iter().flat_map(|p| p.keys().cloned()).collect();
        let mut runs = Vec::new();
        for p in &params_all {
            let mut config = self.base.clone();
            for (k, v) in p {
                set_dotted(&mut config, k, v.clone()).map_err(|m| format!("override `{k}`: {m}"))?;
            }
            for &seed in &seeds {
                let name = run_name(p, seed, &all_keys);
                runs.push(RunSpec { index: runs.len(), name, params: p.clone(), seed, config: config.clone() });
            }
        }
        // Different parameters can sanitize to the same name: disambiguate by hash.
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for r in &runs {
            *count.entry(r.name.clone()).or_default() += 1;
        }
        for r in &mut runs {
            if count[&r.name] > 1 {
                r.name = format!("{}-{:08x}", r.name, (fnv1a(&canonical(&r.params, r.seed)) & 0xffff_ffff) as u32);
            }
        }
        let uniq: BTreeSet<_> = runs.iter().map(|r| &r.name).collect();
        if uniq.len() != runs.len() {
            return Err("two runs have identical parameters (a list entry repeats another?)".into());
        }
        Ok(runs)
    }
}

fn check_key(k: &str) -> Result<(), String> {
    if k.is_empty()
        || k.split('.').any(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
    {
        return Err("write a dotted config key like `optim.lr` (letters, digits, `_`, `-`)".into());
    }
    Ok(())
}

/// Sets `a.b.c = v` in a table, creating sub-tables as needed.
pub fn set_dotted(t: &mut toml::Table, key: &str, v: toml::Value) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    let mut cur = t;
    for (i, p) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            cur.insert(p.to_string(), v);
            return Ok(());
        }
        let entry = cur.entry(p.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match entry {
            toml::Value::Table(sub) => cur = sub,
            other => {
                return Err(format!("`{}` is a {} in [base], not a table", parts[..=i].join("."), other.type_str()))
            }
        }
    }
    Ok(())
}

/// Short text of a value for run names: 0.001, 2, adamw, true, 1-2-3.
fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => format!("{f}"),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(a) => a.iter().map(value_text).collect::<Vec<_>>().join("-"),
        toml::Value::Table(t) => t.iter().map(|(k, v)| format!("{k}{}", value_text(v))).collect::<Vec<_>>().join("-"),
    }
}

fn canonical(params: &BTreeMap<String, toml::Value>, seed: u64) -> String {
    let mut s: String = params.iter().map(|(k, v)| format!("{k}={v};")).collect();
    s.push_str(&format!("seed={seed}"));
    s
}

/// 64-bit FNV-1a: a hash that stays the same across Rust versions.
pub fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Longest run name before it is shortened and given a hash.
pub const MAX_NAME: usize = 80;

/// `lr=0.001,layers=2,seed=3`: the last part of each dotted key (the full key
/// where last parts collide), sanitized to `[A-Za-z0-9._=,+-]`; names longer
/// than [`MAX_NAME`] are cut and end with a hash of all parameters.
fn run_name(params: &BTreeMap<String, toml::Value>, seed: u64, all_keys: &BTreeSet<String>) -> String {
    let short = |k: &str| k.rsplit('.').next().unwrap_or(k).to_string();
    let mut shorts: BTreeMap<String, usize> = BTreeMap::new();
    for k in all_keys {
        *shorts.entry(short(k)).or_default() += 1;
    }
    shorts.entry("seed".into()).and_modify(|c| *c += 1);
    let mut parts: Vec<String> = params
        .iter()
        .map(|(k, v)| {
            let s = short(k);
            let key = if shorts.get(&s).copied().unwrap_or(0) > 1 { k.clone() } else { s };
            format!("{key}={}", value_text(v))
        })
        .collect();
    parts.push(format!("seed={seed}"));
    let raw = parts.join(",");
    let clean: String =
        raw.chars().map(|c| if c.is_ascii_alphanumeric() || "._=,+-".contains(c) { c } else { '_' }).collect();
    let clean = match clean.strip_prefix('.') {
        Some(rest) => format!("_{rest}"),
        None => clean,
    };
    if clean.len() <= MAX_NAME {
        clean
    } else {
        format!("{}-{:08x}", &clean[..MAX_NAME - 9], (fnv1a(&canonical(params, seed)) & 0xffff_ffff) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> SweepFile {
        let f: SweepFile = toml::from_str(s).unwrap();
        f
    }

    #[test]
    fn grid_times_seeds_with_stable_names() {
        let f = parse(
            r#"
            data = "d.h5"
            seeds = [3, 4]
            [base]
            steps = 100
            [base.optim]
            lr = 0.01
            [grid]
            "optim.lr" = [0.001, 0.0001]
            "model.n_layers" = [1, 2]
            "#,
        );
        f.validate().unwrap();
        let runs = f.expand().unwrap();
        assert_eq!(runs.len(), 8);
        let names: Vec<_> = runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names[0], "n_layers=1,lr=0.001,seed=3");
        assert_eq!(names[7], "n_layers=2,lr=0.0001,seed=4");
        let uniq: BTreeSet<_> = names.iter().collect();
        assert_eq!(uniq.len(), 8);
        // The override lands in the nested table and keeps the rest of [base].
        let c = &runs[7].config;
        assert_eq!(c["optim"]["lr"].as_float(), Some(0.0001));
        assert_eq!(c["model"]["n_layers"].as_integer(), Some(2));
        assert_eq!(c["steps"].as_integer(), Some(100));
        // Same file, same names.
        assert_eq!(f.expand().unwrap(), runs);
    }

    #[test]
    fn long_and_colliding_names_get_hashes() {
        let f = parse(
            r#"
            data = "d.h5"
            [grid]
            "a.tag" = ["x y", "x/y", "a-very-long-value-that-goes-on-and-on-and-on-and-on-and-on-and-on-and-on-and-on"]
            "b.tag" = [1]
            "#,
        );
        f.validate().unwrap();
        let runs = f.expand().unwrap();
        // `tag` appears under two keys: full keys are used.
        assert!(runs[0].name.starts_with("a.tag="), "{}", runs[0].name);
        // "x y" and "x/y" both sanitize to "x_y": hashes keep them apart.
        assert_ne!(runs[0].name, runs[1].name);
        assert!(runs[0].name.contains("x_y"));
        assert!(runs[2].name.len() <= MAX_NAME, "{}", runs[2].name);
        for r in &runs {
            assert!(r.name.chars().all(|c| c.is_ascii_alphanumeric() || "._=,+-".contains(c)), "{}", r.name);
        }
    }

    #[test]
    fn list_entries_cross_the_grid() {
        let f = parse(
            r#"
            data = "d.h5"
            n_seeds = 2
            list = [{ "optim.kind" = "adam", "optim.lr" = 0.001 }, { "optim.kind" = "sgd", "optim.lr" = 0.1 }]
            [grid]
            "model.n_heads" = [2, 4]
            "#,
        );
        f.validate().unwrap();
        let runs = f.expand().unwrap();
        assert_eq!(runs.len(), 8);
        // Keys in sorted order of the full dotted key (model.* before optim.*).
        assert_eq!(runs[0].name, "n_heads=2,kind=adam,lr=0.001,seed=0");
        assert_eq!(runs[7].config["optim"]["kind"].as_str(), Some("sgd"));
        assert_eq!(runs[7].seed, 1);
    }

    #[test]
    fn invalid_files_name_the_key() {
        let cases = [
            ("seeds = [1]", "neither `data` nor `scene`"),
            ("data = 'a'\nscene = 'b'", "both `data` and `scene`"),
            ("data = 'a'\nseeds = [1]\nn_seeds = 2", "both `seeds` and `n_seeds`"),
            ("data = 'a'\nseeds = [1, 1]", "repeats a seed"),
            ("data = 'a'\n[grid]\n'optim.lr' = []", "grid key `optim.lr` has no values"),
            ("data = 'a'\n[grid]\n'optim..lr' = [1]", "grid key `optim..lr`"),
            ("data = 'a'\n[run]\nsteps = ['probe', 'train']", "`train` must be the first step"),
            ("data = 'a'\n[slurm]\nthrottle = 0", "slurm.throttle = 0"),
            ("data = 'a'\n[slurm]\nmem = '4 G'", "slurm.mem"),
            ("data = 'a'\n[slurm]\nextra = ['constraint=a100']", "slurm.extra"),
        ];
        for (text, want) in cases {
            let err = parse(text).validate().unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        let e = toml::from_str::<SweepFile>("data = 'a'\n[slurm]\ncpu = 2").unwrap_err().to_string();
        assert!(e.contains("cpu"), "{e}");
        // A grid key that runs into a non-table value of [base].
        let f = parse("data = 'a'\n[base]\noptim = 3\n[grid]\n'optim.lr' = [1.0]");
        let e = f.expand().unwrap_err();
        assert!(e.contains("`optim` is a integer"), "{e}");
    }
}
