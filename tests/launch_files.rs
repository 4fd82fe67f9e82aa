//! The cluster launch files in `examples/`: the Slurm scripts parse (`bash -n`; tests/search.rs
//! runs them as a job array would), and the Kubernetes manifests parse and agree with each
//! other: an Indexed Job whose `--shards` equals its completions, and a merge job that joins
//! exactly the shard files those completions write.

use serde_json::Value;
use std::path::{Path, PathBuf};
use tinynas::test_skip::{Need, skip};

fn examples(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(dir)
}

#[test]
fn slurm_scripts_parse() {
    let mut n = 0;
    for entry in std::fs::read_dir(examples("slurm")).unwrap() {
        let path = entry.unwrap().path();
        let o = std::process::Command::new("bash").arg("-n").arg(&path).output().unwrap();
        assert!(o.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&o.stderr));
        n += 1;
    }
    assert!(n >= 3, "{n} scripts");
}

/// The manifest's one YAML document as JSON (PyYAML's safe loader), or `None` when Python or
/// PyYAML is missing (a visible skip; a failure where test.sh installed it).
fn manifest(name: &str) -> Option<Value> {
    let path = examples("kubernetes").join(name);
    let script = "import json, sys, yaml\ndocs = list(yaml.safe_load_all(open(sys.argv[1])))\nprint(json.dumps(docs))";
    let o = match std::process::Command::new("python3").args(["-c", script]).arg(&path).output() {
        Ok(o) if o.status.success() => o,
        Ok(o) if String::from_utf8_lossy(&o.stderr).contains("No module named 'yaml'") => {
            skip(Need::Yaml, "Kubernetes manifest checks", "python3 has no PyYAML (test.sh installs it)");
            return None;
        }
        Ok(o) => panic!("{name} does not parse: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => {
            skip(Need::Yaml, "Kubernetes manifest checks", &format!("python3 cannot run: {e}"));
            return None;
        }
    };
    let mut docs: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(docs.len(), 1, "{name}: one document");
    let doc = docs.remove(0);
    assert_eq!(doc["apiVersion"], "batch/v1", "{name}");
    assert_eq!(doc["kind"], "Job", "{name}");
    Some(doc)
}

fn command(job: &Value) -> Vec<String> {
    let containers = job["spec"]["template"]["spec"]["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    containers[0]["command"].as_array().expect("command").iter().map(|a| a.as_str().expect("string argument").to_string()).collect()
}

fn flag<'a>(cmd: &'a [String], name: &str) -> &'a str {
    let i = cmd.iter().position(|a| a == name).unwrap_or_else(|| panic!("{name} missing in {cmd:?}"));
    &cmd[i + 1]
}

#[test]
fn kubernetes_manifests_agree() {
    let Some(measure) = manifest("measure-indexed-job.yaml") else { return };
    let spec = &measure["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    let completions = spec["completions"].as_u64().expect("completions") as usize;
    let cmd = command(&measure);
    assert_eq!(&cmd[..3], ["nas", "predictor", "build"]);
    assert_eq!(flag(&cmd, "--shard"), "env");
    assert_eq!(flag(&cmd, "--shards").parse::<usize>().unwrap(), completions, "--shards must equal completions");
    let out = flag(&cmd, "--out").to_string();

    let Some(merge) = manifest("merge-job.yaml") else { return };
    let cmd = command(&merge);
    assert_eq!(&cmd[..3], ["nas", "predictor", "merge"]);
    assert_eq!(flag(&cmd, "--out"), out);
    let files: Vec<&String> = cmd.iter().filter(|a| a.ends_with(".jsonl")).collect();
    let expected: Vec<String> = (0..completions).map(|k| format!("{out}.shard-{k}-of-{completions}.jsonl")).collect();
    assert_eq!(files, expected.iter().collect::<Vec<_>>());
    // Both jobs see the same volume.
    let claim = |j: &Value| j["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"].as_str().map(String::from);
    assert_eq!(claim(&measure), claim(&merge));
    assert!(claim(&measure).is_some());
}
