//! `nas pick`: choose one arch from a search's Pareto set ([`crate::search::pick`]) and write
//! its JSON.

use super::Outcome;
use super::search::latency_arg;
use crate::search::pick::{Limits, PickError, Rule as PickRule, pick};
use anyhow::Context;
use std::path::PathBuf;

/// How to choose.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub(crate) enum Rule {
    /// The member closest to the ideal point once every objective is min-max normalised over
    /// the (filtered) front: the best trade-off, no objective sacrificed.
    Knee,
    /// The most accurate member: highest top-1 measured on validation images, otherwise highest
    /// predicted top-1 (measurements on test images never choose).
    BestAcc,
}

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Run folder of `nas search` (reads its pareto.json).
    run: PathBuf,
    /// Selection rule.
    #[arg(long, value_enum, default_value = "knee")]
    rule: Rule,
    /// Only members whose latency estimate is at most this (e.g. 150ms).
    #[arg(long, value_parser = latency_arg)]
    max_latency: Option<f64>,
    /// Only members with peak SRAM at most this (e.g. 200k).
    #[arg(long, value_parser = super::size_arg)]
    max_sram: Option<u64>,
    /// Only members with flash at most this.
    #[arg(long, value_parser = super::size_arg)]
    max_flash: Option<u64>,
    /// Where to write the chosen arch JSON.
    #[arg(long)]
    out: PathBuf,
}

pub(crate) fn run(a: Args) -> anyhow::Result<Outcome> {
    let rule = match a.rule {
        Rule::Knee => PickRule::Knee,
        Rule::BestAcc => PickRule::BestAcc,
    };
    let limits = Limits { latency_ms: a.max_latency, sram: a.max_sram, flash: a.max_flash };
    let p = match pick(&a.run, rule, &limits) {
        Ok(p) => p,
        Err(e @ PickError::NoneWithin { .. }) => {
            eprintln!("nas: {e}");
            return Ok(Outcome::NoFit);
        }
        Err(e) => return Err(e.into()),
    };
    let m = &p.member;
    crate::search::write_atomic(&a.out, m.arch.to_json().as_bytes()).with_context(|| format!("writing {}", a.out.display()))?;
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{:.2}%", 100.0 * x));
    println!(
        "picked member {} (archive id; also RUN/pareto.json#{}) of {} ({} of {} within limits): {}\n  top-1 predicted {}, measured {}; latency {:.2} ms ({}); SRAM {}; flash {}; {:.2} M MACs\nwrote {}",
        m.id,
        m.id,
        a.run.display(),
        p.within,
        p.total,
        p.why,
        pct(m.metrics.acc_predicted),
        pct(m.acc_measured),
        m.metrics.latency_ms,
        p.latency_short,
        crate::size::Human(m.metrics.sram),
        crate::size::Human(m.metrics.flash),
        m.metrics.macs as f64 / 1e6,
        a.out.display()
    );
    if let Some(s) = &m.patches {
        println!(
            "  its SRAM is patch-based ({s}): `nas export --arch {}/pareto.json#{}` keeps the schedule; with the arch file add --patches {s}",
            a.run.display(),
            m.id
        );
    }
    Ok(Outcome::Ok)
}
