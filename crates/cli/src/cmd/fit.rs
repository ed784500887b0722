//! `headlab fit`: fit emergence curves to probed score series.
use std::path::PathBuf;

use headlab_analysis::fit::{FitModel, FitOptions};
use headlab_analysis::fitrun::{fit_runs, DEFAULT_SERIES};

/// Fit, for every head of every run, the score series against training step
/// with a saturating power law S∞ − A·(t+t0)^(−α), a power-law onset
/// b + A·(t−t_c)^β, exponential saturation, and logistics in t and in log t;
/// by least squares from several starts, with bootstrap confidence intervals
/// and model choice by AICc — on the whole curve and on the tail after onset
/// (from the first checkpoint at half the final value). With several runs
/// (seeds), each run's collision head (highest final score) is also fitted
/// pooled, with the spread between seeds. Fits are stored in RUN/analysis.h5.
///
/// Example:
///   headlab fit checkpoints/demo
///   headlab fit checkpoints/sweep/seed*  --bootstrap 500
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Probed run folders (several: seeds of one configuration).
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Series to fit (a name under /series in analysis.h5).
    #[arg(long, default_value = DEFAULT_SERIES.name())]
    pub series: String,
    /// Bootstrap replicates for the confidence intervals.
    #[arg(long, default_value_t = 200)]
    pub bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let opts = FitOptions { bootstrap: args.bootstrap, seed: args.seed, ..Default::default() };
    let s = fit_runs(&args.runs, &args.series, &opts)?;
    for ((run, fits), ch) in s.runs.iter().zip(&s.per_run).zip(&s.collision_heads) {
        println!("{}:", run.display());
        for hf in &fits.heads {
            let mark = if ch.contains(&(hf.layer, hf.head)) { "*" } else { " " };
            let w = |f: Option<&headlab_analysis::fit::SeriesFit>| f.and_then(|f| f.best().map(|b| format!("{} (+{:.1})", b.model.name(), f.margin()))).unwrap_or_else(|| "-".into());
            let alpha = hf.report.tail.as_ref().and_then(|t| t.get(FitModel::Power)).and_then(|p| p.param("alpha")).map(|a| format!("{:.2} [{:.2}, {:.2}]", a.value, a.lo, a.hi)).unwrap_or_else(|| "-".into());
            let em = hf.report.emergence.map(|e| format!("{:.0} [{:.0}, {:.0}]", e.value, e.lo, e.hi)).unwrap_or_else(|| "-".into());
            println!(
                " {mark}L{}.H{}  final {:.3}  emergence {em}  whole: {}  tail: {}  tail power-law alpha {alpha}",
                hf.layer,
                hf.head,
                hf.report.final_value,
                w(hf.report.whole.as_ref()),
                w(hf.report.tail.as_ref())
            );
        }
    }
    if let Some(p) = &s.pooled {
        let b = |f: &Option<headlab_analysis::fit::SeriesFit>| f.as_ref().and_then(|f| f.best().map(|b| format!("{} (+{:.1})", b.model.name(), f.margin()))).unwrap_or_else(|| "-".into());
        println!("pooled over {} seeds (each run's collision heads averaged): whole {}  tail {}  emergence {:.0} ± {:.0}", p.n_seeds, b(&p.whole), b(&p.tail), p.emergence_mean, p.emergence_std);
    }
    println!("(* = collision head: highest final score, or tied with it within one standard error; +x = AICc margin of the winner over the runner-up)");
    Ok(())
}
