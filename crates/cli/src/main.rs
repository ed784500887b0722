//! The `headlab` command line: parses arguments and calls the library crates.
//! Each subcommand lives in `cmd/<name>.rs` with its own clap `Args` and `run`.

use clap::{Parser, Subcommand};

mod cmd;
mod preset;
mod signals;

/// headlab — watch collision-detecting attention heads emerge in a
/// transformer that learns particle physics.
///
/// A typical session:
///   headlab simulate --scene scenes/demo.toml --out data/demo.h5
///   headlab inspect data/demo.h5
#[derive(Parser)]
#[command(name = "headlab", version, about, long_about, verbatim_doc_comment)]
struct Cli {
    /// More log output (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Demo(cmd::demo::Args),
    Simulate(cmd::simulate::Args),
    Train(cmd::train::Args),
    Eval(cmd::eval::Args),
    Inspect(cmd::inspect::Args),
    Probe(cmd::probe::Args),
    Ablate(cmd::ablate::Args),
    Llc(cmd::llc::Args),
    Fit(cmd::fit::Args),
    Report(cmd::report::Args),
    Sweep(cmd::sweep::Args),
    Study(cmd::study::Args),
    /// Paper lenses: toy tasks reproducing a finding (icl-regression, scaling, ...).
    Lens(cmd::lens::Args),
    View(cmd::view::Args),
}

fn main() {
    signals::install();
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let result = match cli.command {
        Command::Demo(a) => cmd::demo::run(a),
        Command::Simulate(a) => cmd::simulate::run(a),
        Command::Train(a) => cmd::train::run(a),
        Command::Eval(a) => cmd::eval::run(a),
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::Probe(a) => cmd::probe::run(a),
        Command::Ablate(a) => cmd::ablate::run(a),
        Command::Llc(a) => cmd::llc::run(a),
        Command::Fit(a) => cmd::fit::run(a).map(|_| ()),
        Command::Report(a) => cmd::report::run(a),
        Command::Sweep(a) => cmd::sweep::run(a),
        Command::Study(a) => cmd::study::run(a),
        Command::Lens(a) => cmd::lens::run(a),
        Command::View(a) => cmd::view::run(a),
    };
    if let Err(e) = result {
        // Print the chain, skipping causes that a message already quotes.
        let mut msg = e.to_string();
        for cause in e.chain().skip(1) {
            let c = cause.to_string();
            if !msg.contains(&c) {
                msg = format!("{msg}: {c}");
            }
        }
        eprintln!("error: {msg}");
        std::process::exit(1);
    }
}
