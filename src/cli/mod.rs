//! The `nas` command line: argument parsing (clap) and dispatch.
//!
//! Exit codes: 0 success, 1 the network does not fit the budget, 2 usage or input error.
//! Errors are printed once, as `nas: <message>`, never as a panic.

mod bench;
#[cfg(feature = "supernet")]
mod bench_mcu;
#[cfg(feature = "supernet")]
mod bench_train;
#[cfg(feature = "supernet")]
mod eval;
#[cfg(feature = "supernet")]
mod export;
#[cfg(feature = "supernet")]
mod finetune;
#[cfg(all(test, feature = "supernet"))]
mod flag_fuzz;
mod inspect;
mod latency;
mod pick;
mod plot;
mod predictor;
mod sample;
mod search;
mod space_opt;
#[cfg(feature = "supernet")]
mod train;

use clap::{Parser, Subcommand};

/// Exit code when a network or a search result does not fit the budget.
pub const EXIT_NO_FIT: i32 = 1;
/// Exit code for bad usage or bad input.
pub const EXIT_ERROR: i32 = 2;

const SIZE_HELP: &str =
    "Sizes accept 256k, 256K, 256KB, 256KiB, 1m, 1MB, 0.5M or plain bytes; K = 1024 and M = 1024*1024 (the MCU convention).";

#[derive(Parser, Debug)]
#[command(name = "nas", version, about = "Hardware-aware neural architecture search for microcontrollers", after_help = SIZE_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Per-layer costs, the planned SRAM arena and the budget verdict of one arch.
    Inspect(inspect::Args),
    /// Print a random valid arch of a search space as JSON.
    Sample(sample::Args),
    /// Multi-objective evolutionary search (NSGA-II) under SRAM, flash and latency budgets.
    Search(Box<search::Args>),
    /// Choose one arch of a search's Pareto set (knee point or best accuracy) and write its JSON.
    Pick(pick::Args),
    /// Report plots: Pareto fronts and hypervolume of a run, per-layer memory of an arch.
    #[command(subcommand)]
    Plot(plot::Plot),
    /// Search-space optimisation: MACs CDFs of feasible subnets per width x resolution pair.
    SpaceOpt(space_opt::Args),
    /// Accuracy predictor: build one from a trained supernet, or describe one.
    #[command(subcommand)]
    Predictor(predictor::Predictor),
    /// Per-operator latency tables: fit the fallback, import measurements, show, list a space's ops.
    #[command(subcommand)]
    Latency(latency::Latency),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(bench::Bench),
    /// Train a weight-shared supernet (sandwich rule) from an experiment file.
    #[cfg(feature = "supernet")]
    Train(train::Args),
    /// Top-1 of one subnet of a trained supernet, after BatchNorm recalibration.
    #[cfg(feature = "supernet")]
    Eval(eval::Args),
    /// Export one subnet of a trained supernet as an int8 model (post-training quantisation).
    #[cfg(feature = "supernet")]
    Export(export::Args),
    /// Train one chosen subnet standalone from its inherited supernet weights (optionally
    /// distilled from the supernet's largest subnet); resumable, per-epoch metrics and curves.
    #[cfg(feature = "supernet")]
    Finetune(finetune::Args),
}

/// Parse a size for clap (`--sram 256k`).
pub(crate) fn size_arg(s: &str) -> Result<u64, String> {
    crate::size::parse_size(s).map_err(|e| e.to_string())
}

/// How a command that writes a run folder starts in it (`--resume` and `--force` conflict in
/// clap, so at most one is set).
pub(crate) fn start(resume: bool, force: bool) -> crate::run_folder::Start {
    use crate::run_folder::Start;
    if resume {
        Start::Resume
    } else if force {
        Start::Force
    } else {
        Start::Fresh
    }
}

/// Outcome of a command that ran without error.
pub(crate) enum Outcome {
    /// Exit 0.
    Ok,
    /// Exit 1: the result does not fit the budget.
    NoFit,
}

/// Run the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_ERROR } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let result = match cli.command {
        Command::Inspect(a) => inspect::run(a),
        Command::Sample(a) => sample::run(a),
        Command::Bench(b) => bench::run(b),
        Command::Search(a) => search::run(*a),
        Command::Pick(a) => pick::run(a),
        Command::Plot(p) => plot::run(p),
        Command::SpaceOpt(a) => space_opt::run(a),
        Command::Predictor(p) => predictor::run(p),
        Command::Latency(l) => latency::run(l),
        #[cfg(feature = "supernet")]
        Command::Train(a) => train::run(a),
        #[cfg(feature = "supernet")]
        Command::Eval(a) => eval::run(a),
        #[cfg(feature = "supernet")]
        Command::Export(a) => export::run(a),
        #[cfg(feature = "supernet")]
        Command::Finetune(a) => finetune::run(a),
    };
    match result {
        Ok(Outcome::Ok) => 0,
        Ok(Outcome::NoFit) => EXIT_NO_FIT,
        Err(e) => {
            eprintln!("nas: {}", error_message(&e));
            EXIT_ERROR
        }
    }
}

/// The error and its causes on one line, each cause once: many library errors already quote
/// their cause in their own message, which `{:#}` would repeat.
fn error_message(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if msg.contains(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_quoted_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory (os error 2)");
        let e = anyhow::Error::from(crate::arch::ArchError::Io { path: "a.json".into(), source: io });
        assert_eq!(error_message(&e), "reading arch a.json: No such file or directory (os error 2)");
        let e = anyhow::anyhow!("inner cause").context("outer");
        assert_eq!(error_message(&e), "outer: inner cause");
    }
}
