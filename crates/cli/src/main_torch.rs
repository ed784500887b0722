//! `headlab-torch`: the part of the `headlab` command line that links
//! libtorch. The front binary `headlab` (main.rs) execs it, with the same
//! arguments, for the subcommands that run the model (demo, train, eval,
//! probe, ablate, llc, lens); run directly, it runs every subcommand as
//! `headlab` would. Same command tree (cli.rs), same messages and exit codes.
//! Exec'd by the front, it first checks that both come from the same build.

mod cli;
mod cmd;
mod preset;
mod signals;

use clap::Parser;

use cli::{Cli, Command};

fn main() {
    signals::install();
    if let Err(e) = same_build_as_front() {
        cli::finish(Err(e));
    }
    let cli = Cli::parse();
    cli::init_tracing(cli.verbose);
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
    cli::finish(result);
}

/// When the front binary exec'd this one ($HEADLAB_FRONT_BUILD set): an
/// error unless both come from the same build, since a stale headlab-torch
/// beside a newer headlab would silently run the old code. Run directly
/// (the variable unset), nothing to compare.
fn same_build_as_front() -> anyhow::Result<()> {
    let Some(front) = std::env::var_os(cli::FRONT_BUILD_VAR) else { return Ok(()) };
    if front == cli::BUILD_ID {
        return Ok(());
    }
    let me = std::env::current_exe().map_or_else(|_| "headlab-torch".to_string(), |p| p.display().to_string());
    let front_exe = std::env::var_os(cli::FRONT_EXE_VAR)
        .map_or_else(|| "the headlab binary that started it".to_string(), |p| p.to_string_lossy().into_owned());
    anyhow::bail!(
        "{me} is build {} but was started by {front_exe}, build {} (${}): the two binaries come from different builds, \
         and this one would run other code than that headlab; rebuild both with `cargo build -p headlab` (tools/headlab does), \
         or install both from the same build side by side (or point $HEADLAB_TORCH at the headlab-torch of that build)",
        cli::BUILD_ID,
        front.to_string_lossy(),
        cli::FRONT_BUILD_VAR
    )
}
