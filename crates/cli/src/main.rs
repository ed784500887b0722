//! The `headlab` command line: parses arguments and calls the library crates.
//! Each subcommand lives in `cmd/<name>.rs` with its own clap `Args` and `run`.
//!
//! This is the front binary: it links no libtorch, so the subcommands that
//! never run the model (simulate, inspect, fit, report, sweep, view,
//! `--help`, `--version`, argument errors) start like any small program. The
//! others (demo, train, eval, probe, ablate, llc, lens, study: it estimates
//! the LLC in process) are executed by the
//! sibling binary `headlab-torch` (`main_torch.rs`), which replaces this
//! process (exec) with the same arguments: same PID, signals, output and
//! exit code as if it had been run directly.

mod cli;
// The torch subcommands' `run` functions are compiled here for their Args
// only; they are called (and checked for dead code) in headlab-torch.
#[allow(dead_code)]
mod cmd;
mod preset;
mod signals;

use std::path::PathBuf;

use clap::Parser;

use cli::{Cli, Command};

fn main() {
    signals::install();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate(a) => light(cli.verbose, || cmd::simulate::run(a)),
        Command::Inspect(a) => light(cli.verbose, || cmd::inspect::run(a)),
        Command::Fit(a) => light(cli.verbose, || cmd::fit::run(a).map(|_| ())),
        Command::Report(a) => light(cli.verbose, || cmd::report::run(a)),
        Command::Sweep(a) => light(cli.verbose, || cmd::sweep::run(a)),
        Command::View(a) => light(cli.verbose, || cmd::view::run(a)),
        Command::Demo(_)
        | Command::Train(_)
        | Command::Eval(_)
        | Command::Probe(_)
        | Command::Ablate(_)
        | Command::Llc(_)
        | Command::Lens(_)
        | Command::Study(_) => exec_torch(),
    };
    cli::finish(result);
}

/// Run a subcommand that needs no libtorch, here.
fn light(verbose: u8, f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    cli::init_tracing(verbose);
    f()
}

/// Where `headlab-torch` is: $HEADLAB_TORCH, else next to this binary.
fn torch_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("HEADLAB_TORCH") {
        return Ok(PathBuf::from(p));
    }
    let me = std::env::current_exe()
        .map_err(|e| anyhow::anyhow!("cannot find the path of the running headlab binary: {e}"))?;
    let dir = me.parent().map(PathBuf::from).unwrap_or_default();
    Ok(dir.join(format!("headlab-torch{}", std::env::consts::EXE_SUFFIX)))
}

/// Replace this process by `headlab-torch` with the same arguments (it
/// parses them again with the same command tree). Returns only on failure.
fn exec_torch() -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let bin = torch_binary()?;
    const ADVICE: &str = "the subcommands that run the model live in the binary headlab-torch beside headlab; build both with `cargo build -p headlab` (tools/headlab does)";
    if !bin.is_file() {
        let why = if std::env::var_os("HEADLAB_TORCH").is_some() { " (named by $HEADLAB_TORCH)" } else { "" };
        anyhow::bail!("{}: no such file{why}; {ADVICE}", bin.display());
    }
    // A $HEADLAB_TORCH that names this very binary would exec itself forever.
    let same = |a: &std::path::Path, b: &std::path::Path| matches!((std::fs::canonicalize(a), std::fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y);
    if std::env::current_exe().is_ok_and(|me| same(&me, &bin)) {
        anyhow::bail!("{}: $HEADLAB_TORCH names the front binary headlab itself; {ADVICE}", bin.display());
    }
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "headlab".into());
    // headlab-torch compares this with its own identity (a stale binary
    // from another build refuses to run) and names the front when they differ.
    let mut command = std::process::Command::new(&bin);
    command.arg0(arg0).args(args).env(cli::FRONT_BUILD_VAR, cli::BUILD_ID);
    if let Ok(me) = std::env::current_exe() {
        command.env(cli::FRONT_EXE_VAR, me);
    }
    let err = command.exec();
    Err(anyhow::anyhow!("starting {}: {err}; {ADVICE}", bin.display()))
}
