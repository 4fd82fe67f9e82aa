//! `nas pick`: choose one arch from a search's Pareto set and write its JSON.

use super::Outcome;
use super::search::latency_arg;
use crate::arch::Arch;
use anyhow::Context;
use std::path::PathBuf;

/// How to choose.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub(crate) enum Rule {
    /// The member closest to the ideal point once every objective is min-max normalised over
    /// the (filtered) front: the best trade-off, no objective sacrificed.
    Knee,
    /// The most accurate member: highest measured top-1 among members measured on the
    /// supernet, otherwise highest predicted top-1.
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

struct Member {
    id: u64,
    arch: Arch,
    acc_predicted: Option<f64>,
    acc_measured: Option<f64>,
    latency: f64,
    sram: u64,
    flash: u64,
    macs: u64,
    /// `PxP@LAYER` when the member runs patch-based (searched with `--patches`).
    patches: Option<String>,
}

pub(crate) fn run(a: Args) -> anyhow::Result<Outcome> {
    let file = crate::search::output::ParetoFile::read(&a.run.join("pareto.json"))?;
    let objectives = file.objectives.clone();
    let all: Vec<Member> = file
        .members
        .iter()
        .map(|m| {
            let x = &m.metrics;
            Member {
                id: m.id as u64,
                arch: m.arch.clone(),
                acc_predicted: x["acc_predicted"].as_f64(),
                acc_measured: x["acc_measured"].as_f64(),
                latency: x["latency_ms_estimate"].as_f64().unwrap_or(f64::INFINITY),
                sram: x["sram"].as_u64().unwrap_or(u64::MAX),
                flash: x["flash"].as_u64().unwrap_or(u64::MAX),
                macs: x["macs"].as_u64().unwrap_or(u64::MAX),
                patches: x["patches"]["schedule"].as_str().map(str::to_string),
            }
        })
        .collect();
    let total = all.len();
    let ok: Vec<&Member> = all
        .iter()
        .filter(|m| a.max_latency.is_none_or(|l| m.latency <= l))
        .filter(|m| a.max_sram.is_none_or(|s| m.sram <= s))
        .filter(|m| a.max_flash.is_none_or(|f| m.flash <= f))
        .collect();
    if ok.is_empty() {
        eprintln!("nas: none of the {total} Pareto members of {} meets the limits given", a.run.display());
        return Ok(Outcome::NoFit);
    }
    let (chosen, why) = match a.rule {
        Rule::BestAcc => {
            let measured: Vec<&&Member> = ok.iter().filter(|m| m.acc_measured.is_some()).collect();
            if !measured.is_empty() {
                let m = measured
                    .iter()
                    .max_by(|x, y| x.acc_measured.unwrap().total_cmp(&y.acc_measured.unwrap()).then(y.id.cmp(&x.id)))
                    .unwrap();
                (**m, "highest measured top-1")
            } else {
                let m = ok
                    .iter()
                    .max_by(|x, y| x.acc_predicted.unwrap_or(-1.0).total_cmp(&y.acc_predicted.unwrap_or(-1.0)).then(y.id.cmp(&x.id)))
                    .unwrap();
                if m.acc_predicted.is_none() {
                    anyhow::bail!("{}: the search had no accuracy objective; use --rule knee", a.run.display());
                }
                (*m, "highest predicted top-1 (no member was measured)")
            }
        }
        Rule::Knee => {
            use crate::search::objectives::Objective;
            let value = |m: &Member, o: Objective| match o {
                Objective::Acc => -m.acc_predicted.unwrap_or(0.0),
                Objective::Latency => m.latency,
                Objective::Sram => m.sram as f64,
                Objective::Flash => m.flash as f64,
                Objective::Macs => m.macs as f64,
            };
            let dist = |m: &Member| -> f64 {
                objectives
                    .iter()
                    .map(|&o| {
                        let (lo, hi) = ok.iter().map(|x| value(x, o)).fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(v), h.max(v)));
                        if hi > lo { ((value(m, o) - lo) / (hi - lo)).powi(2) } else { 0.0 }
                    })
                    .sum::<f64>()
            };
            let m = ok.iter().min_by(|x, y| dist(x).total_cmp(&dist(y)).then(x.id.cmp(&y.id))).unwrap();
            (*m, "closest to the ideal point (min-max normalised objectives)")
        }
    };
    crate::search::write_atomic(&a.out, chosen.arch.to_json().as_bytes()).with_context(|| format!("writing {}", a.out.display()))?;
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{:.2}%", 100.0 * x));
    println!(
        "picked member {} (archive id; also RUN/pareto.json#{}) of {} ({} of {} within limits): {why}\n  top-1 predicted {}, measured {}; latency {:.2} ms ({}); SRAM {}; flash {}; {:.2} M MACs\nwrote {}",
        chosen.id,
        chosen.id,
        a.run.display(),
        ok.len(),
        total,
        pct(chosen.acc_predicted),
        pct(chosen.acc_measured),
        chosen.latency,
        file.latency_short,
        crate::size::Human(chosen.sram),
        crate::size::Human(chosen.flash),
        chosen.macs as f64 / 1e6,
        a.out.display()
    );
    if let Some(p) = &chosen.patches {
        println!(
            "  its SRAM is patch-based ({p}): `nas export --arch {}/pareto.json#{}` keeps the schedule; with the arch file add --patches {p}",
            a.run.display(),
            chosen.id
        );
    }
    Ok(Outcome::Ok)
}
