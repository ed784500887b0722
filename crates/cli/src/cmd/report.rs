//! `headlab report`: the HTML report of probed (and fitted) runs.
use std::path::PathBuf;

use headlab_analysis::fit::FitOptions;
use headlab_analysis::fitrun::DEFAULT_SERIES;
use headlab_report::{write_report, ReportOptions};

/// Write an HTML report with figures, readable offline: loss curves, the
/// collision score of every head against step (log axis) with its fitted
/// forms and bootstrap bands, every form's ΔAICc, Akaike weight and
/// parameters (or why it is degenerate) for the strongest head on the step
/// and cumulative-learning-rate axes, g(r) heatmaps (step × distance) and
/// profiles, attention entropy, a table of heads sorted by final score with
/// emergence step, verdicts and exponents, and a plain-language summary that
/// says what every interval is over. With several runs (seeds), one report
/// compares them and summarizes their collision heads over seeds (seeds are
/// the unit of replication; see `headlab study`).
/// Runs without stored fits are fitted on the fly (see `headlab fit`).
///
/// Example:
///   headlab report checkpoints/demo            # -> checkpoints/demo/report/index.html
///   headlab report checkpoints/sweep/seed* --out checkpoints/sweep/report
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Probed run folders.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Output folder (default: RUN/report, or <parent>/report for several runs).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Series shown and fitted.
    #[arg(long, default_value = DEFAULT_SERIES.name())]
    pub series: String,
    /// Fit again even where analysis.h5 holds fits.
    #[arg(long)]
    pub refit: bool,
    /// Bootstrap replicates when fitting here.
    #[arg(long, default_value_t = 200)]
    pub bootstrap: usize,
    /// Leave out the fits against cumulative learning rate.
    #[arg(long)]
    pub no_lr_axis: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    // The report may store fits in each run's analysis.h5 and writes its
    // figures into a run folder: one writer per run.
    let _locks = args.runs.iter().map(|r| super::lock_run(r, "headlab report")).collect::<anyhow::Result<Vec<_>>>()?;
    let opts = ReportOptions {
        series: args.series.clone(),
        fit: FitOptions { bootstrap: args.bootstrap, ..Default::default() },
        refit: args.refit,
        lr_axis: !args.no_lr_axis,
        extra_sections: Vec::new(),
    };
    let s = write_report(&args.runs, args.out.as_deref(), &opts)?;
    println!("{}", s.headline);
    println!("report: {}", s.index.display());
    Ok(())
}
