//! Running an exported `.tflite` through LiteRT (the TFLite interpreter, Python package
//! `ai-edge-litert`) with its reference kernels, to check the int8 model a user deploys with
//! TFLite against the Rust int8 reference that `nas export` reports.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

/// The runner script, shipped inside the binary and written next to the inputs when used.
const SCRIPT: &str = include_str!("litert_run.py");

/// Exit status of the script when Python lacks `ai-edge-litert` or `numpy`.
const MISSING_PACKAGE: i32 = 3;

/// Fails with a message naming the fix unless `python3` can import LiteRT and numpy; cheap, so
/// callers check before their expensive work.
pub fn check_available() -> anyhow::Result<()> {
    let out = Command::new("python3")
        .args(["-c", "import numpy; from ai_edge_litert.interpreter import Interpreter"])
        .output()
        .context("--litert needs python3 (not found on PATH)")?;
    if !out.status.success() {
        bail!(
            "--litert needs python3 with the ai-edge-litert and numpy packages (`python3 -m pip install ai-edge-litert numpy`): {}",
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("import failed")
        );
    }
    Ok(())
}

/// int8 outputs of `model` for each of `inputs` (int8 network inputs), LiteRT's reference
/// kernels. `dir` receives the script and the inputs file.
pub fn run(model: &Path, inputs: &[Vec<i8>], dir: &Path) -> anyhow::Result<Vec<Vec<i8>>> {
    let script = dir.join("litert_run.py");
    std::fs::write(&script, SCRIPT).with_context(|| format!("writing {}", script.display()))?;
    let data = dir.join("inputs.bin");
    let bytes: Vec<u8> = inputs.iter().flatten().map(|&v| v as u8).collect();
    std::fs::write(&data, bytes).with_context(|| format!("writing {}", data.display()))?;
    let out = Command::new("python3").arg(&script).arg(model).arg(&data).arg("ref").output().context("running python3")?;
    if out.status.code() == Some(MISSING_PACKAGE) {
        check_available()?;
    }
    if !out.status.success() {
        bail!("LiteRT failed on {}: {}", model.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).context("reading LiteRT's outputs")?;
    let outputs = report["outputs"].as_array().context("LiteRT's report has no outputs")?;
    if outputs.len() != inputs.len() {
        bail!("LiteRT returned {} outputs for {} inputs", outputs.len(), inputs.len());
    }
    outputs
        .iter()
        .map(|o| {
            o.as_array()
                .context("an output is not a list")?
                .iter()
                .map(|v| v.as_i64().filter(|v| (-128..=127).contains(v)).map(|v| v as i8).context("an output value is not int8"))
                .collect()
        })
        .collect()
}
