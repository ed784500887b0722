//! `headlab fit`: fit emergence curves to probed score series.
use std::path::PathBuf;

use headlab_analysis::fit::text::{seeds_text, table_text, verdict_sentence};
use headlab_analysis::fit::{FitOptions, SeriesFit};
use headlab_analysis::fitrun::{fit_runs, FitSummary, TimeAxis, DEFAULT_SERIES};

/// Does emergence follow a power law, or an exponential or logistic
/// relaxation? For every head of every run, fit the score series with
///   power        S∞ − A·((t − t_on)/(t₁ − t_on))^(−α), time origin t_on free
///   power_onset  the same with t_on fixed at the measured onset (tail only)
///   onset        b + A·((t − t_c)/(t_N − t_c))^β after t_c
///   exp          S∞ − A·exp(−(t − t₁)/τ)
///   logistic     b + A/(1 + exp(−(t − t_m)/w))
///   loglogistic  logistic in ln t
/// on the whole curve and on the tail after onset (from the first checkpoint
/// at half the final value), by least squares from several starts.
///
/// What is reported, and why:
/// - Near-duplicate checkpoints (closer than 2 %) are merged first.
/// - Degenerate fits (a parameter on its bound or diverging, a curve that
///   collapsed onto a simpler form) are named as such and never printed as
///   estimates.
/// - Forms are compared by an AICc adjusted for the residuals' lag-1
///   autocorrelation (effective sample size n·(1−ρ)/(1+ρ)); every form's
///   ΔAICc and Akaike weight is shown. The test that matters is between
///   families: power-like (power, power_onset, onset, loglogistic) against
///   exponential-like (exp, logistic), decided at a margin of 4.
/// - α has a profile-likelihood interval; other parameters a moving-block
///   bootstrap interval; both are over the checkpoints of one run.
/// - With several runs (seeds of one configuration), each run's collision
///   head (highest final score) is summarized over seeds: intervals over
///   seeds, and the verdict "power law supported / not supported /
///   undecided" from the per-seed tests.
/// - --axis lr fits against the cumulative learning rate (Σ lr / peak lr),
///   so that a decaying learning-rate schedule cannot pass for a law.
///
/// Fits are stored in RUN/analysis.h5 (one entry per series and axis).
///
/// Example:
///   headlab fit checkpoints/demo/run
///   headlab fit checkpoints/study/runs/*  --bootstrap 500
///   headlab fit checkpoints/run1 --axis lr
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Probed run folders (several: seeds of one configuration).
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Series to fit (a name under /series in analysis.h5).
    #[arg(long, default_value = DEFAULT_SERIES.name())]
    pub series: String,
    /// Time axis: step, lr (cumulative learning rate) or both.
    #[arg(long, default_value = "both", value_parser = ["step", "lr", "both"])]
    pub axis: String,
    /// Moving-block bootstrap replicates for the parameter intervals.
    #[arg(long, default_value_t = 200)]
    pub bootstrap: usize,
    /// Confidence level of every interval.
    #[arg(long, default_value_t = 0.95)]
    pub level: f64,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print every form's table for every head, not only the collision head's.
    #[arg(long)]
    pub all_heads: bool,
}

/// The axes named by `--axis`.
pub fn axes(s: &str) -> Vec<TimeAxis> {
    match s {
        "step" => vec![TimeAxis::Step],
        "lr" => vec![TimeAxis::Lr],
        _ => TimeAxis::ALL.to_vec(),
    }
}

/// Run the fits and print them.
pub fn run(args: Args) -> anyhow::Result<FitSummary> {
    if !(args.level > 0.0 && args.level < 1.0) {
        anyhow::bail!("--level {} must lie strictly between 0 and 1 (e.g. 0.95)", args.level);
    }
    // fit stores its fits in each run's analysis.h5: one writer per run.
    let _locks = args.runs.iter().map(|r| super::lock_run(r, "headlab fit")).collect::<anyhow::Result<Vec<_>>>()?;
    let opts = FitOptions { bootstrap: args.bootstrap, seed: args.seed, level: args.level, ..Default::default() };
    let axes = axes(&args.axis);
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message(format!("fitting {} runs on {} axes", args.runs.len(), axes.len()));
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let s = fit_runs(&args.runs, &args.series, &axes, &opts);
    bar.finish_and_clear();
    let s = s?;
    print_summary(&s, args.all_heads);
    Ok(s)
}

fn short(f: Option<&SeriesFit>) -> String {
    f.map(|f| format!("{} ({})", f.verdict.words(), f.best().map(|b| b.model.name()).unwrap_or("no fit")))
        .unwrap_or_else(|| "-".into())
}

/// Print what `fit_runs` found: one line per head, every form for the
/// collision head, and the summary over seeds.
pub fn print_summary(s: &FitSummary, all_heads: bool) {
    for ((run, fits), ch) in s.runs.iter().zip(&s.per_run).zip(&s.collision_heads) {
        for f in fits {
            println!("{} — axis: {}:", run.display(), f.axis.label());
            for hf in &f.heads {
                let is_ch = ch.contains(&(hf.layer, hf.head));
                let em = hf
                    .report
                    .emergence
                    .map(|e| headlab_analysis::fit::text::fmt_est(&e, 0))
                    .unwrap_or_else(|| "-".into());
                println!(
                    " {}L{}.H{}  final {:.3}  emergence {em}  whole: {}  tail: {}",
                    if is_ch { "*" } else { " " },
                    hf.layer,
                    hf.head,
                    hf.report.final_value,
                    short(hf.report.whole.as_ref()),
                    short(hf.report.tail.as_ref())
                );
                if is_ch || all_heads {
                    for (what, sf) in
                        [("whole curve", hf.report.whole.as_ref()), ("tail after onset", hf.report.tail.as_ref())]
                    {
                        println!("     {}", verdict_sentence(sf, what));
                        if let Some(sf) = sf {
                            print!("{}", table_text(sf, "       "));
                        }
                    }
                    if hf.report.merged > 0 {
                        println!("     ({} near-duplicate checkpoints merged before fitting)", hf.report.merged);
                    }
                }
            }
        }
    }
    for (axis, sum) in &s.seeds {
        println!("over {} seeds (collision heads), axis {}:", sum.n_seeds, axis.label());
        for line in seeds_text(sum).lines() {
            println!("  {line}");
        }
    }
    println!("(* = collision head: highest final score, or tied with it within one standard error; emergence: step at half the final value, interval over checkpoints of the run)");
}
