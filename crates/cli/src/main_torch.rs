//! `headlab-torch`: the part of the `headlab` command line that links
//! libtorch. The front binary `headlab` (main.rs) execs it, with the same
//! arguments, for the subcommands that run the model (demo, train, eval,
//! probe, ablate, llc, lens); run directly, it runs every subcommand as
//! `headlab` would. Same command tree (cli.rs), same messages and exit codes.

mod cli;
mod cmd;
mod preset;
mod signals;

use clap::Parser;

use cli::{Cli, Command};

fn main() {
    signals::install();
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
