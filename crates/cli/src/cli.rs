//! The command tree shared by the two binaries of the `headlab` package:
//! `headlab` (the front: parses every subcommand, runs the ones that need no
//! libtorch in-process, execs `headlab-torch` for the others) and
//! `headlab-torch` (links libtorch and runs every subcommand). One tree, so
//! `--help`, argument errors and exit codes are the same whichever runs.

use clap::{Parser, Subcommand};

use crate::cmd;

/// This build's identity, `<version>+<hash of the sources>` (build.rs), the
/// same in both binaries of one build; `--version` prints it.
pub const BUILD_ID: &str = env!("HEADLAB_BUILD_ID");

/// The environment variable through which the front tells `headlab-torch`
/// its build identity; `headlab-torch` refuses to run when it differs
/// from its own (a stale binary beside a newer front). Unset when
/// `headlab-torch` is run directly: then no check.
pub const FRONT_BUILD_VAR: &str = "HEADLAB_FRONT_BUILD";

/// The path of the front binary that exec'd `headlab-torch`, for the
/// message when the builds differ.
pub const FRONT_EXE_VAR: &str = "HEADLAB_FRONT_EXE";

/// headlab — watch collision-detecting attention heads emerge in a
/// transformer that learns particle physics.
///
/// A typical session:
///   headlab simulate --scene scenes/demo.toml --out data/demo.h5
///   headlab inspect data/demo.h5
#[derive(Parser)]
#[command(name = "headlab", version = BUILD_ID, about, long_about, verbatim_doc_comment)]
pub struct Cli {
    /// More log output (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// Every subcommand. Which of them run the model (and so run in
/// `headlab-torch`) is decided by the front binary's `main`, one match arm
/// per subcommand, so a new subcommand must be placed on one side or the other.
#[derive(Subcommand)]
pub enum Command {
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

/// Log to stderr at the level `-v` asks for (RUST_LOG overrides).
pub fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

/// End the process as every subcommand does: on an error, print it (the
/// chain, skipping causes that a message already quotes) and exit with 1.
pub fn finish(result: anyhow::Result<()>) {
    if let Err(e) = result {
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
