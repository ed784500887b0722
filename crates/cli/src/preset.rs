//! Presets: a scene plus the training, probe and study settings that make
//! collision heads form on it, under one name (`presets/NAME.toml`), so that
//! `headlab study --preset NAME` runs a measured recipe. Loading and every
//! check live here; an error names the preset file, the key and the value.
//!
//! A preset file (relative paths are taken from the file's folder):
//!
//! ```toml
//! # What it produces and how long it takes (comment, for people).
//! description = "64 disks in 2D: ..."      # one line, printed when the study starts
//! scene = "../scenes/gas64_2d.toml"
//! [simulate]                               # overrides of the scene's defaults
//! trajectories = 128
//! [train]                                  # a training config, as `headlab train --config`
//! steps = 3000
//! [probe]
//! eval_frames = 128
//! [study]
//! seeds = 3
//! keep_schedule = false
//! [expect]                                 # what tools/check-preset verifies on a full run
//! score_min = 0.5
//! ```
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// Where presets are looked up by name: `./presets`, then the `presets`
/// folder of the source tree this binary was built from.
pub fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("presets")];
    if let Ok(built) = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../presets").canonicalize() {
        if std::path::absolute("presets").ok().and_then(|p| p.canonicalize().ok()).as_ref() != Some(&built) {
            dirs.push(built);
        }
    }
    dirs
}

/// The names of the presets found in [`search_dirs`], sorted, unique.
pub fn available() -> Vec<String> {
    let mut names: Vec<String> = search_dirs()
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|rd| rd.filter_map(|e| e.ok()))
        .filter_map(|e| {
            let p = e.path();
            (p.extension().is_some_and(|x| x == "toml") && p.is_file())
                .then(|| p.file_stem().map(|s| s.to_string_lossy().to_string()))
                .flatten()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The file of preset `name`: a path when it ends in `.toml` or contains a
/// `/`, otherwise `NAME.toml` in the first of [`search_dirs`] that has it.
pub fn locate(name: &str) -> anyhow::Result<PathBuf> {
    if name.ends_with(".toml") || name.contains('/') {
        let p = PathBuf::from(name);
        anyhow::ensure!(p.is_file(), "--preset {name}: no such preset file");
        return Ok(p);
    }
    for d in search_dirs() {
        let p = d.join(format!("{name}.toml"));
        if p.is_file() {
            return Ok(p);
        }
    }
    let have = available();
    anyhow::bail!(
        "--preset {name}: no preset of that name in {}; available: {}",
        search_dirs().iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
        if have.is_empty() { "none".to_string() } else { have.join(", ") }
    )
}

/// `[simulate]`: overrides of the scene's `trajectories`, `frames`, `seed`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulateSettings {
    /// Trajectories to simulate.
    pub trajectories: Option<usize>,
    /// Frames per trajectory.
    pub frames: Option<usize>,
    /// Simulation seed.
    pub seed: Option<u64>,
}

/// `[probe]`: probe options of every run.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSettings {
    /// Evaluation frames (`headlab probe --eval-frames`).
    pub eval_frames: Option<usize>,
}

/// `[study]`: how `headlab study --preset` runs it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudySettings {
    /// Seeds (at least 2; the command line's --seeds overrides).
    pub seeds: Option<u32>,
    /// Keep the `[train]` learning-rate schedule instead of the study's constant one.
    #[serde(default)]
    pub keep_schedule: bool,
}

/// `[expect]`: what a full run of the preset produced when it was measured;
/// `tools/check-preset` checks a fresh run against it (never the test suite).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectSettings {
    /// Some head reaches this self-excluded score at the last checkpoint...
    pub score_min: Option<f64>,
    /// ...and this distance-matched AUROC (the same head, as the bar asks).
    pub matched_min: Option<f64>,
}

/// A preset file, parsed and checked ([`Preset::load`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    /// One line: what it produces and what it costs.
    pub description: String,
    /// The scene file (absolute after loading).
    pub scene: PathBuf,
    /// `[simulate]`.
    #[serde(default)]
    pub simulate: SimulateSettings,
    /// `[train]`: a training config table.
    #[serde(default)]
    pub train: toml::Table,
    /// `[probe]`.
    #[serde(default)]
    pub probe: ProbeSettings,
    /// `[study]`.
    #[serde(default)]
    pub study: StudySettings,
    /// `[expect]`.
    #[serde(default)]
    pub expect: ExpectSettings,
    /// The file it was read from.
    #[serde(skip)]
    pub path: PathBuf,
}

impl Preset {
    /// Read, parse and check a preset file: the scene must load and resolve,
    /// `[train]` must be a valid training config, every count positive.
    pub fn load(path: &Path) -> anyhow::Result<Preset> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("{}: cannot read the preset", path.display()))?;
        Self::from_toml(&text, path)
    }

    /// Parse and check preset text; `path` names the file in errors and
    /// anchors its relative paths.
    pub fn from_toml(text: &str, path: &Path) -> anyhow::Result<Preset> {
        let origin = path.display().to_string();
        let mut p: Preset = toml::from_str(text).with_context(|| format!("{origin}: not a valid preset"))?;
        p.path = path.to_path_buf();
        if p.scene.is_relative() {
            p.scene = path.parent().unwrap_or(Path::new("")).join(&p.scene);
        }
        p.validate()?;
        Ok(p)
    }

    /// Every check, in one place.
    pub fn validate(&self) -> anyhow::Result<()> {
        let origin = self.path.display().to_string();
        let bad = |key: &str, value: String, allowed: &str| -> anyhow::Result<()> {
            anyhow::bail!("{origin}: `{key}` = {value} is not allowed; {allowed}")
        };
        if self.description.trim().is_empty() {
            bad("description", "\"\"".into(), "say in one line what the preset produces and how long it takes")?;
        }
        let scene = headlab_sim::Scene::from_file(&self.scene)
            .with_context(|| format!("{origin}: `scene` = {}", self.scene.display()))?;
        scene.resolve(&self.scene.display().to_string()).with_context(|| format!("{origin}: `scene`"))?;
        for (key, v) in
            [("simulate.trajectories", self.simulate.trajectories), ("simulate.frames", self.simulate.frames)]
        {
            if v == Some(0) {
                bad(key, "0".into(), "use a positive number")?;
            }
        }
        if let Some(f) = self.simulate.frames {
            if f < 2 {
                bad("simulate.frames", f.to_string(), "training needs at least 2 frames per trajectory")?;
            }
        }
        let cfg = self.train_config().with_context(|| format!("{origin}: [train]"))?;
        anyhow::ensure!(
            cfg.data.is_empty(),
            "{origin}: `train.data` = {:?} is not allowed; the preset's scene is simulated and used",
            cfg.data
        );
        if self.probe.eval_frames == Some(0) {
            bad("probe.eval_frames", "0".into(), "use a positive number of evaluation frames (e.g. 128)")?;
        }
        if let Some(s) = self.study.seeds {
            if s < 2 {
                bad("study.seeds", s.to_string(), "a study needs at least 2 seeds")?;
            }
        }
        for (key, v) in [("expect.score_min", self.expect.score_min), ("expect.matched_min", self.expect.matched_min)] {
            if let Some(v) = v {
                if !(v.is_finite() && (-1.0..=1.0).contains(&v)) {
                    bad(key, v.to_string(), "use a number in [-1, 1]")?;
                }
            }
        }
        Ok(())
    }

    /// The `[train]` table as a checked training config.
    pub fn train_config(&self) -> anyhow::Result<headlab_train::TrainConfig> {
        let text = toml::to_string(&self.train).context("cannot be written back as TOML")?;
        Ok(headlab_train::TrainConfig::from_toml(&text, &self.path.display().to_string())?)
    }

    /// Arguments of `headlab simulate` for `[simulate]`.
    pub fn simulate_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        let s = &self.simulate;
        for (flag, v) in [
            ("--trajectories", s.trajectories.map(|v| v.to_string())),
            ("--frames", s.frames.map(|v| v.to_string())),
            ("--seed", s.seed.map(|v| v.to_string())),
        ] {
            if let Some(v) = v {
                a.push(flag.to_string());
                a.push(v);
            }
        }
        a
    }
}

/// Fill a study's arguments from `--preset`: the scene, the `[simulate]`
/// overrides, the training config (written to OUT/preset_train.toml), the
/// probe's evaluation frames, seeds and schedule. Flags given on the command
/// line win. Returns the preset, if any.
pub fn apply_to_study(args: &mut crate::cmd::study::Args) -> anyhow::Result<Option<Preset>> {
    let Some(name) = args.preset.clone() else { return Ok(None) };
    let p = Preset::load(&locate(&name)?)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let cfg_path = args.out.join("preset_train.toml");
    let text = format!(
        "# [train] of preset {} (written by headlab study --preset)\n{}",
        p.path.display(),
        toml::to_string(&p.train).context("the preset's [train] cannot be written as TOML")?
    );
    headlab_store::fsutil::write_atomic_if_changed(&cfg_path, text.as_bytes())
        .with_context(|| format!("writing {}", cfg_path.display()))?;
    args.config = Some(cfg_path);
    args.scene = Some(p.scene.clone());
    args.simulate_args = p.simulate_args();
    args.eval_frames = args.eval_frames.or(p.probe.eval_frames);
    args.seeds = args.seeds.or(p.study.seeds);
    args.keep_schedule |= p.study.keep_schedule;
    eprintln!("preset {}: {}", p.path.display(), p.description.trim());
    Ok(Some(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presets_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../presets")
    }

    /// Every shipped preset parses, its scene simulates and its training
    /// config trains two steps (tiny data: the recipe's validity, not its result).
    #[test]
    fn every_shipped_preset_simulates_and_trains() {
        let mut n = 0;
        for e in std::fs::read_dir(presets_dir()).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_none_or(|x| x != "toml") {
                continue;
            }
            n += 1;
            let p = Preset::load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            let scene = headlab_sim::Scene::from_file(&p.scene).unwrap();
            let opts = headlab_sim::SimOptions { n_traj: 4, n_frames: 6, seed: 0, threads: 1 };
            let ds = headlab_sim::simulate(&scene, opts, None).unwrap();
            assert_eq!(ds.n_particles, scene.n_particles);
            let mut cfg = p.train_config().unwrap();
            cfg.steps = 2;
            cfg.batch_size = 2;
            cfg.val_fraction = 0.25;
            cfg.val_samples = 4;
            cfg.threads = 1;
            cfg.device = headlab_model::DeviceSpec::Cpu;
            cfg.checkpoints.count = 2;
            let dir = tempfile::tempdir().unwrap();
            let s = headlab_train::train(&cfg, &ds, dir.path(), &Default::default()).unwrap();
            assert_eq!(s.step, 2, "{}", path.display());
            assert!(s.train_loss.is_finite(), "{}: loss {}", path.display(), s.train_loss);
        }
        assert!(n >= 2, "expected the shipped presets in {}", presets_dir().display());
    }

    #[test]
    fn bad_presets_are_refused_naming_file_key_and_value() {
        let dir = presets_dir();
        let path = dir.join("x.toml");
        let load = |text: &str| format!("{:#}", Preset::from_toml(text, &path).unwrap_err());
        let scene = "scene = \"../scenes/demo.toml\"\n";
        let e = load(&format!("description = \"d\"\n{scene}bogus = 1\n"));
        assert!(e.contains("x.toml") && e.contains("bogus"), "{e}");
        let e = load(&format!("description = \"d\"\n{scene}[train]\nsteps = 0\n"));
        assert!(e.contains("x.toml") && e.contains("steps") && e.contains('0'), "{e}");
        let e = load(&format!("description = \"d\"\n{scene}[train.optimizer]\nlr = -1.0\n"));
        assert!(e.contains("optimizer.lr") && e.contains("-1"), "{e}");
        let e = load(&format!("description = \"d\"\n{scene}[study]\nseeds = 1\n"));
        assert!(e.contains("study.seeds") && e.contains('1'), "{e}");
        let e = load(&format!("description = \"d\"\n{scene}[simulate]\nframes = 1\n"));
        assert!(e.contains("simulate.frames"), "{e}");
        let e = load("description = \"d\"\nscene = \"../scenes/nope.toml\"\n");
        assert!(e.contains("x.toml") && e.contains("nope.toml"), "{e}");
        let e = load(&format!("description = \" \"\n{scene}"));
        assert!(e.contains("description"), "{e}");
        let e = load(&format!("description = \"d\"\n{scene}[expect]\nscore_min = nan\n"));
        assert!(e.contains("expect.score_min"), "{e}");
    }

    #[test]
    fn unknown_names_list_the_available_presets() {
        let e = format!("{:#}", locate("no-such-preset").unwrap_err());
        assert!(e.contains("no-such-preset") && e.contains("available"), "{e}");
    }
}
