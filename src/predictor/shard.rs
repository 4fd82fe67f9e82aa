//! Sharded subnet measurement: `nas predictor build --shard K/N` measures its round-robin share
//! of the build's fixed, seeded subnet list into a shard file of its own, and `nas predictor
//! merge` joins the shard files of all N shards and fits the predictor exactly as one
//! unsharded build would.
//!
//! The shards are the tasks of a cluster's job array (Slurm, Kubernetes Indexed Jobs): each
//! reads its index from the flag or from the scheduler's environment. A shard file is a journal:
//! its first line is a [`ShardHeader`] (what was measured, with what, and which share), then one
//! [`IndexedPair`] per measured subnet, appended and flushed one at a time, so a killed shard
//! resumes where it stopped. Merging refuses files from another supernet, data, measurement
//! setting, subnet list or shard count, and a set with a shard missing, doubled or incomplete.

use super::train::{BuildReport, BuildRequest, FitConfig, HeldOut, MeasureKey, Measurer, Pair, build_archs, fit, open};
use super::{MlpPredictor, PredictorSource};
use crate::arch::Arch;
use crate::space::SearchSpace;
use crate::supernet::DeviceChoice;
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Shard `index` of `count` (0-based index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// This shard, `0..count`.
    pub index: usize,
    /// Shards in all.
    pub count: usize,
}

/// Most shards a list is cut into.
pub const MAX_SHARDS: usize = 100_000;

/// Longest subnet list a shard header may announce: `--samples` is capped at 1,000,000, plus
/// the refinement fronts.
pub const MAX_LIST: usize = 10_000_000;

impl Shard {
    /// A checked shard.
    pub fn new(index: usize, count: usize, what: &str) -> anyhow::Result<Shard> {
        if count == 0 || count > MAX_SHARDS {
            bail!("{what}: {count} shards, expected 1 to {MAX_SHARDS}");
        }
        if index >= count {
            bail!("{what}: shard index {index} is not below the shard count {count} (indices are 0-based)");
        }
        Ok(Shard { index, count })
    }

    /// Parse `--shard`: `K/N` (K 0-based), or `env`, which reads the scheduler's variables
    /// through `var`: Slurm's `SLURM_ARRAY_TASK_ID` minus `SLURM_ARRAY_TASK_MIN` (0 if unset)
    /// out of `SLURM_ARRAY_TASK_COUNT`, else Kubernetes' `JOB_COMPLETION_INDEX` out of `shards`
    /// (`--shards N`, which an Indexed Job does not export).
    pub fn parse(spec: &str, shards: Option<usize>, var: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Shard> {
        let num = |name: &str, v: &str| -> anyhow::Result<usize> {
            v.trim().parse::<usize>().with_context(|| format!("{name}={v:?}: expected a non-negative integer"))
        };
        if spec != "env" {
            let (k, n) = spec.split_once('/').with_context(|| format!("--shard {spec:?}: expected K/N (e.g. 0/3, K 0-based) or env"))?;
            let (k, n) = (num("--shard K", k)?, num("--shard N", n)?);
            return Shard::new(k, n, &format!("--shard {spec}"));
        }
        if let (Some(id), Some(count)) = (var("SLURM_ARRAY_TASK_ID"), var("SLURM_ARRAY_TASK_COUNT")) {
            let id = num("SLURM_ARRAY_TASK_ID", &id)?;
            let min = var("SLURM_ARRAY_TASK_MIN").map(|m| num("SLURM_ARRAY_TASK_MIN", &m)).transpose()?.unwrap_or(0);
            let count = num("SLURM_ARRAY_TASK_COUNT", &count)?;
            let index = id.checked_sub(min).with_context(|| format!("SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}"))?;
            return Shard::new(index, count, "Slurm array task");
        }
        if let Some(idx) = var("JOB_COMPLETION_INDEX") {
            let index = num("JOB_COMPLETION_INDEX", &idx)?;
            let count =
                shards.context("JOB_COMPLETION_INDEX is set but the shard count is not: pass --shards N (the Job's completions)")?;
            return Shard::new(index, count, "Kubernetes indexed job");
        }
        bail!(
            "--shard env: none of the scheduler's variables is set (Slurm: SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT; \
             Kubernetes: JOB_COMPLETION_INDEX with --shards N); pass --shard K/N instead"
        )
    }

    /// Positions of `total` list entries this shard measures (round robin).
    pub fn positions(&self, total: usize) -> impl Iterator<Item = usize> + '_ {
        (self.index..total).step_by(self.count)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Magic string of a shard file's header.
pub const SHARD_FORMAT: &str = "tinynas-measurement-shard-1";

/// First line of a shard file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardHeader {
    /// [`SHARD_FORMAT`].
    pub format: String,
    /// What a measurement depends on.
    pub key: MeasureKey,
    /// Provenance written into the merged predictor.
    pub source: PredictorSource,
    /// Space of the subnets, in full (a space file need not be at hand when merging).
    pub space: SearchSpace,
    /// Length of the whole subnet list.
    pub total: usize,
    /// Fingerprint of the whole list (archs in order).
    pub list: String,
    /// Which share this file holds.
    pub shard: Shard,
}

/// One measured subnet with its position in the whole list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexedPair {
    /// Position in the list.
    pub index: usize,
    /// The subnet.
    pub arch: Arch,
    /// Top-1 (fraction).
    pub acc: f64,
}

/// Fingerprint of an ordered subnet list.
pub fn list_fingerprint(archs: &[Arch]) -> String {
    let mut h = crate::fingerprint::Fnv::default();
    for a in archs {
        h.update(serde_json::to_string(a).expect("arch serialises").as_bytes());
        h.update(b"\n");
    }
    h.finish()
}

/// The shard file of `out` for `shard`: `<out>.shard-K-of-N.jsonl`.
pub fn shard_path(out: &Path, shard: Shard) -> PathBuf {
    PathBuf::from(format!("{}.shard-{}-of-{}.jsonl", out.display(), shard.index, shard.count))
}

/// What one shard did.
#[derive(Debug)]
pub struct ShardReport {
    /// The shard.
    pub shard: Shard,
    /// Its file.
    pub file: PathBuf,
    /// Subnets in its share.
    pub share: usize,
    /// Of which already in the file (resumed).
    pub resumed: usize,
    /// Length of the whole list.
    pub total: usize,
    /// Seconds measuring.
    pub secs: f64,
}

impl std::fmt::Display for ShardReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "shard {}: {} of the {} subnets measured into {} ({} resumed from the file, {} now, {:.1} s)",
            self.shard,
            self.share,
            self.total,
            self.file.display(),
            self.resumed,
            self.share - self.resumed,
            self.secs
        )?;
        writeln!(f, "when every shard is done: nas predictor merge --out PREDICTOR.json SHARD_FILES...")
    }
}

/// Measure shard `shard` of the build `r` (same subnet list as the unsharded build: samples,
/// then refinement fronts) into [`shard_path`]; resumes a file with the same header.
pub fn measure_shard(r: &BuildRequest, shard: Shard, log: &mut dyn FnMut(&str), progress: bool) -> anyhow::Result<ShardReport> {
    r.check()?;
    let device: DeviceChoice = r.device.parse()?;
    let start = std::time::Instant::now();
    let m = open(&r.supernet, r.data.as_deref(), r.calib, r.val_images, &HeldOut::Validation, device)?;
    let archs = build_archs(r, m.evaluator.space())?;
    let header = ShardHeader {
        format: SHARD_FORMAT.into(),
        key: m.key.clone(),
        source: m.source.clone(),
        space: m.evaluator.space().clone(),
        total: archs.len(),
        list: list_fingerprint(&archs),
        shard,
    };
    let file = shard_path(&r.out, shard);
    if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    log(&format!("shard {shard}: measuring {} of {} subnets into {}", shard.positions(archs.len()).count(), archs.len(), file.display()));
    let (share, resumed) = journal_measure(&m, &archs, &header, &file, progress)?;
    Ok(ShardReport { shard, file, share, resumed, total: archs.len(), secs: start.elapsed().as_secs_f64() })
}

/// Measure this shard's positions of `archs`, appending to `file` (header checked).
fn journal_measure(m: &Measurer, archs: &[Arch], header: &ShardHeader, file: &Path, progress: bool) -> anyhow::Result<(usize, usize)> {
    let head = serde_json::to_string(header).expect("header serialises");
    let mut known: std::collections::BTreeMap<usize, IndexedPair> = std::collections::BTreeMap::new();
    if let Ok(text) = std::fs::read_to_string(file) {
        let mut lines = text.lines();
        if lines.next() != Some(head.as_str()) {
            bail!(
                "{} holds another measurement (other supernet, data, settings, subnet list or shard count): \
                 move it away or pick another --out",
                file.display()
            );
        }
        // A torn last line (killed mid-write) is dropped and measured again.
        for p in lines.filter_map(|l| serde_json::from_str::<IndexedPair>(l).ok()) {
            if p.index < archs.len() && archs[p.index] == p.arch {
                known.insert(p.index, p);
            }
        }
    }
    let mut text = format!("{head}\n");
    for p in known.values() {
        text += &serde_json::to_string(p).expect("pair serialises");
        text.push('\n');
    }
    crate::search::write_atomic(file, text.as_bytes()).with_context(|| format!("writing {}", file.display()))?;
    let mut f = std::fs::OpenOptions::new().append(true).open(file).with_context(|| format!("opening {}", file.display()))?;
    let share: Vec<usize> = header.shard.positions(archs.len()).collect();
    let resumed = share.iter().filter(|i| known.contains_key(i)).count();
    let bar = if progress { indicatif::ProgressBar::new((share.len() - resumed) as u64) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} subnets measured, eta {eta}").expect("template"),
    );
    for &i in share.iter().filter(|i| !known.contains_key(i)) {
        let acc = m.evaluator.evaluate(&archs[i])?;
        let line = serde_json::to_string(&IndexedPair { index: i, arch: archs[i].clone(), acc }).expect("pair serialises");
        writeln!(f, "{line}").and_then(|_| f.flush()).with_context(|| format!("appending to {}", file.display()))?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok((share.len(), resumed))
}

/// Read one shard file: its header and pairs.
fn read_shard(path: &Path) -> anyhow::Result<(ShardHeader, Vec<IndexedPair>)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading shard file {}", path.display()))?;
    let mut lines = text.lines();
    let header: ShardHeader = lines
        .next()
        .and_then(|l| serde_json::from_str(l).ok())
        .with_context(|| format!("{}: not a shard file (its first line is no {SHARD_FORMAT} header)", path.display()))?;
    if header.format != SHARD_FORMAT {
        bail!("{}: format {:?}, expected {SHARD_FORMAT}", path.display(), header.format);
    }
    // A damaged header must not index out of bounds or size a huge allocation.
    Shard::new(header.shard.index, header.shard.count, &format!("{}: header", path.display()))?;
    if header.total > MAX_LIST {
        bail!("{}: header claims {} subnets, expected at most {MAX_LIST}", path.display(), header.total);
    }
    let pairs = lines.filter_map(|l| serde_json::from_str::<IndexedPair>(l).ok()).collect();
    Ok((header, pairs))
}

/// Which field of two headers differs, for the refusal message.
fn header_difference(a: &ShardHeader, b: &ShardHeader) -> Option<&'static str> {
    [
        (a.key.weights != b.key.weights, "supernet weights"),
        (a.key.data != b.key.data, "data"),
        (a.key.settings != b.key.settings, "measurement settings"),
        (a.space != b.space, "space"),
        (a.total != b.total || a.list != b.list, "subnet list (--samples, --seed or --refine)"),
        (a.shard.count != b.shard.count, "shard count"),
        (a.source != b.source, "supernet path or data path"),
    ]
    .into_iter()
    .find_map(|(differs, what)| differs.then_some(what))
}

/// Join the shard files of one sharded build into its pairs, in list order, with the source.
pub fn merge_pairs(files: &[PathBuf]) -> anyhow::Result<(ShardHeader, Vec<Pair>)> {
    let Some(first) = files.first() else { bail!("no shard files given") };
    let (head, _) = read_shard(first)?;
    let mut slots: Vec<Option<Pair>> = vec![None; head.total];
    let mut seen: Vec<Option<PathBuf>> = vec![None; head.shard.count];
    for path in files {
        let (h, pairs) = read_shard(path)?;
        if let Some(what) = header_difference(&head, &h) {
            bail!("{} and {} differ in {what}: they are not shards of one build", first.display(), path.display());
        }
        if let Some(other) = &seen[h.shard.index] {
            bail!("{} and {} are both shard {}", other.display(), path.display(), h.shard);
        }
        seen[h.shard.index] = Some(path.clone());
        let share: Vec<usize> = h.shard.positions(h.total).collect();
        for p in pairs {
            if p.index % h.shard.count != h.shard.index || p.index >= h.total {
                bail!("{}: subnet {} does not belong to shard {}", path.display(), p.index, h.shard);
            }
            slots[p.index] = Some(Pair { arch: p.arch, acc: p.acc });
        }
        let missing = share.iter().filter(|&&i| slots[i].is_none()).count();
        if missing > 0 {
            bail!(
                "{}: shard {} is incomplete ({missing} of its {} subnets unmeasured): run it again to finish",
                path.display(),
                h.shard,
                share.len()
            );
        }
    }
    let absent: Vec<String> =
        seen.iter().enumerate().filter(|(_, s)| s.is_none()).map(|(i, _)| format!("{i}/{}", head.shard.count)).collect();
    if !absent.is_empty() {
        bail!("shard{} {} missing: pass every shard file", if absent.len() > 1 { "s" } else { "" }, absent.join(", "));
    }
    Ok((head, slots.into_iter().map(|p| p.expect("every shard complete")).collect()))
}

/// What `nas predictor merge` is asked.
#[derive(Debug, Clone)]
pub struct MergeRequest {
    /// Shard files, every shard of one build once.
    pub files: Vec<PathBuf>,
    /// Predictor file to write; the joined measurements go to `<out>.samples.jsonl`.
    pub out: PathBuf,
    /// MLP fitting, as `nas predictor build` would have used.
    pub fit: FitConfig,
}

/// Merge shard files and fit: the predictor equals the one an unsharded `nas predictor build`
/// with the same flags writes, and its measurement cache is written too (a later unsharded
/// build of the same list reuses it).
pub fn merge(r: &MergeRequest, log: &mut dyn FnMut(&str)) -> anyhow::Result<BuildReport> {
    r.fit.check()?;
    let start = std::time::Instant::now();
    let (head, pairs) = merge_pairs(&r.files)?;
    let space = head.space.clone();
    log(&format!("merged {} shards: {} subnets of space {}", head.shard.count, pairs.len(), space.name));
    let cache = PathBuf::from(format!("{}.samples.jsonl", r.out.display()));
    let mut text = serde_json::to_string(&head.key).expect("key serialises") + "\n";
    for p in &pairs {
        text += &serde_json::to_string(p).expect("pair serialises");
        text.push('\n');
    }
    if let Some(parent) = r.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    crate::search::write_atomic(&cache, text.as_bytes()).with_context(|| format!("writing {}", cache.display()))?;
    let merged_s = start.elapsed().as_secs_f64();
    let file = fit(&space, &pairs, &r.fit, head.source.clone())?;
    MlpPredictor::save(&file, &r.out)?;
    Ok(BuildReport {
        out: r.out.clone(),
        fit: r.fit.clone(),
        merged_from: Some(head.shard.count),
        pairs,
        file,
        secs: (merged_s, start.elapsed().as_secs_f64() - merged_s),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn shard_specs_from_flag_and_schedulers() {
        let none = env(&[]);
        assert_eq!(Shard::parse("2/3", None, &none).unwrap(), Shard { index: 2, count: 3 });
        let slurm = env(&[("SLURM_ARRAY_TASK_ID", "5"), ("SLURM_ARRAY_TASK_MIN", "4"), ("SLURM_ARRAY_TASK_COUNT", "3")]);
        assert_eq!(Shard::parse("env", None, &slurm).unwrap(), Shard { index: 1, count: 3 });
        let slurm0 = env(&[("SLURM_ARRAY_TASK_ID", "2"), ("SLURM_ARRAY_TASK_COUNT", "3")]);
        assert_eq!(Shard::parse("env", None, &slurm0).unwrap(), Shard { index: 2, count: 3 });
        let k8s = env(&[("JOB_COMPLETION_INDEX", "0")]);
        assert_eq!(Shard::parse("env", Some(4), &k8s).unwrap(), Shard { index: 0, count: 4 });
        for (spec, shards, vars, says) in [
            ("3/3", None, &none as &dyn Fn(&str) -> Option<String>, "not below the shard count 3"),
            ("1/0", None, &none, "0 shards"),
            ("a/3", None, &none, "--shard K=\"a\""),
            ("3", None, &none, "expected K/N"),
            ("env", None, &none, "none of the scheduler's variables"),
            ("env", None, &k8s, "--shards N"),
            ("env", Some(2), &env(&[("JOB_COMPLETION_INDEX", "2")]), "not below the shard count 2"),
            (
                "env",
                None,
                &env(&[("SLURM_ARRAY_TASK_ID", "1"), ("SLURM_ARRAY_TASK_MIN", "2"), ("SLURM_ARRAY_TASK_COUNT", "3")]),
                "below SLURM_ARRAY_TASK_MIN",
            ),
        ] {
            let e = Shard::parse(spec, shards, vars).unwrap_err().to_string();
            assert!(e.contains(says), "{spec}: {e}");
        }
    }

    #[test]
    fn damaged_headers_are_refused_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let good = r#"{"format":"tinynas-measurement-shard-1","key":{"weights":"w","data":"d","settings":"s"},"source":{"supernet":"sn","measured_on":"x","calib_images":1},"space":SPACE,"total":TOTAL,"list":"l","shard":{"index":INDEX,"count":3}}"#;
        let space = serde_json::to_string(&crate::space::resolve("cifar").unwrap()).unwrap();
        for (total, index, says) in [("20", "7", "shard index 7 is not below the shard count 3"), ("99999999999", "0", "expected at most")]
        {
            let path = dir.path().join(format!("s{index}.jsonl"));
            std::fs::write(&path, good.replace("SPACE", &space).replace("TOTAL", total).replace("INDEX", index) + "\n").unwrap();
            let e = merge_pairs(&[path]).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn shares_partition_the_list() {
        for n in 1..6 {
            let mut all: Vec<usize> = (0..n).flat_map(|k| Shard { index: k, count: n }.positions(23).collect::<Vec<_>>()).collect();
            all.sort_unstable();
            assert_eq!(all, (0..23).collect::<Vec<_>>());
        }
    }
}
