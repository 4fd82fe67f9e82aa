//! The shipped assets (`search_spaces/`, `latency_tables/`, `experiments/`): where the binary
//! finds them, and which supernet and predictor are a space's defaults.
//!
//! Looked for, in order: `$TINYNAS_HOME` (a tinynas checkout, for a binary installed elsewhere),
//! the current directory, the folders above the running executable (`target/release/nas` in a
//! checkout), then the source tree the binary was built from.

use std::path::{Path, PathBuf};

/// Environment variable naming a tinynas checkout to take the shipped assets from.
pub const HOME_VAR: &str = "TINYNAS_HOME";

/// The CIFAR-10 subset shipped for measuring the embedded default's front and as the fallback
/// data of `nas eval` / `nas export` (500 calibration + 1000 test images; 1000 held-out
/// validation images in [`MINI_HELD_OUT`]).
pub const MINI_DATA: &str = "experiments/data";
/// 1000 images of the shipped CIFAR supernets' validation split (`examples/mini_val_set.rs`).
pub const MINI_HELD_OUT: &str = "experiments/data/held-out/cifar10-mini-val.tar.gz";

/// Folders searched, in order, for shipped assets.
pub fn roots() -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = std::env::var_os(HOME_VAR).filter(|v| !v.is_empty()).map(PathBuf::from).into_iter().collect();
    roots.push(PathBuf::from("."));
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).take(4).map(PathBuf::from));
    }
    roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    roots
}

/// The first existing `root/rel` over [`roots`].
pub fn find(rel: impl AsRef<Path>) -> Option<PathBuf> {
    roots().into_iter().map(|r| r.join(rel.as_ref())).find(|p| p.exists())
}

/// Where assets were looked for, for messages when one is missing.
pub fn where_looked() -> String {
    let home = match std::env::var_os(HOME_VAR) {
        Some(v) if !v.is_empty() => format!("${HOME_VAR} ({})", PathBuf::from(v).display()),
        _ => format!("${HOME_VAR} (unset)"),
    };
    let rest: Vec<String> = roots().into_iter().skip_while(|r| r != Path::new(".")).map(|r| r.display().to_string()).collect();
    format!("looked in {home}, {}; run from a tinynas checkout or set {HOME_VAR} to one", rest.join(", "))
}

/// Default supernet folder and predictor file of a space: the experiment under `experiments/`
/// whose `space` file is `<space>.toml` names them (`experiments/supernets/<name>` and
/// `<name>.predictor.json`). Paths that exist nowhere are returned relative, for messages.
pub fn space_defaults(space: &str) -> (PathBuf, PathBuf) {
    let name = experiment_of_space(space).unwrap_or_else(|| space.to_string());
    let pick = |rel: String| find(&rel).unwrap_or_else(|| PathBuf::from(rel));
    (pick(format!("experiments/supernets/{name}")), pick(format!("experiments/supernets/{name}.predictor.json")))
}

/// Name of the first shipped experiment (by file name) that trains `space`.
fn experiment_of_space(space: &str) -> Option<String> {
    for root in roots() {
        let Ok(entries) = std::fs::read_dir(root.join("experiments")) else { continue };
        let mut files: Vec<PathBuf> =
            entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect();
        files.sort();
        for f in files {
            let Some(v) = std::fs::read_to_string(&f).ok().and_then(|t| t.parse::<toml::Table>().ok()) else { continue };
            let sp = v.get("space").and_then(|s| s.as_str()).unwrap_or("");
            if Path::new(sp).file_stem().is_some_and(|s| s == space)
                && let Some(n) = v.get("name").and_then(|n| n.as_str())
            {
                return Some(n.to_string());
            }
        }
    }
    None
}

/// The shipped mini data set, when found.
pub fn mini_data() -> Option<PathBuf> {
    find(MINI_DATA).filter(|p| p.is_dir())
}

/// The shipped mini set's held-out validation images, when found.
pub fn mini_held_out() -> Option<PathBuf> {
    find(MINI_HELD_OUT).filter(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cifar_space_defaults_to_the_shipped_supernet() {
        let (supernet, predictor) = space_defaults("cifar");
        assert!(supernet.ends_with("experiments/supernets/cifar10") && supernet.is_dir(), "{}", supernet.display());
        assert!(predictor.ends_with("experiments/supernets/cifar10.predictor.json") && predictor.is_file());
        assert!(mini_data().is_some());
        assert!(mini_held_out().is_some());
    }

    /// The mini set's held-out images were drawn from the validation split of seed 0 and
    /// `val_fraction` 0.1; a shipped supernet trained on another split may have seen them.
    #[test]
    fn the_held_out_mini_images_are_held_out_by_every_shipped_cifar_supernet() {
        for space in ["cifar", "cifar-fused"] {
            let (supernet, _) = space_defaults(space);
            let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(supernet.join("meta.json")).unwrap()).unwrap();
            let exp = &meta["experiment"];
            assert_eq!(exp["data"]["val_fraction"].as_f64(), Some(0.1), "{space}");
            assert_eq!(exp["train"]["seed"].as_u64(), Some(0), "{space}");
            assert!(exp["data"]["path"].as_str().unwrap().ends_with("cifar10-jpg"), "{space}");
        }
    }

    #[test]
    fn the_message_names_the_variable() {
        let m = where_looked();
        assert!(m.contains("$TINYNAS_HOME") && m.contains("set TINYNAS_HOME"), "{m}");
    }
}
