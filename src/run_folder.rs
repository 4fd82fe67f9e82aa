//! Run folders: the folders a search, a training run or an export writes its outputs into.
//!
//! Two guarantees, because a run's outputs are read back later (`nas pick`, `nas plot`,
//! `--resume`) and a mix of two runs would be read as one without any error:
//! - one process at a time: opening a folder takes an exclusive advisory lock (`flock`) on its
//!   `.lock` file, released by the OS when the process ends, even on `kill -9`;
//! - one run per folder: a fresh run refuses a folder holding an earlier run's files unless told
//!   to clear it, and every run gets an id (`run.json`) that its outputs carry, so a reader can
//!   refuse files left by another run.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock file inside a run folder (holds the pid of the process that has the folder open).
pub const LOCK_FILE: &str = ".lock";
/// The run's identity: `{"id": ..., "command": ..., "started_unix": ...}`.
pub const RUN_FILE: &str = "run.json";

/// How a run starts in its folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// A new run: the folder must be empty or absent.
    Fresh,
    /// Continue the run already in the folder (or start one if the folder is empty).
    Resume,
    /// A new run: delete whatever the folder holds first.
    Force,
}

/// Errors of opening a run folder.
#[derive(Debug, thiserror::Error)]
pub enum RunFolderError {
    /// The folder could not be created, listed, locked or cleared.
    #[error("run folder {path}: {message}")]
    Io {
        /// Folder or file.
        path: PathBuf,
        /// OS error.
        message: String,
    },
    /// Another process has the folder open.
    #[error("run folder {path} is in use by another nas process{}: wait for it to finish or choose another --out", holder.map_or(String::new(), |p| format!(" (pid {p})")))]
    Busy {
        /// The folder.
        path: PathBuf,
        /// Pid written by the holder, when readable.
        holder: Option<u32>,
    },
    /// A fresh run found files of an earlier run.
    #[error(
        "run folder {path} already holds {} of an earlier run ({}): pass --resume to continue that run, --force to delete them and start afresh, or choose another --out",
        if entries.len() == 1 { "1 file".to_string() } else { format!("{} files", entries.len()) },
        list(entries)
    )]
    NotEmpty {
        /// The folder.
        path: PathBuf,
        /// Names of what it holds.
        entries: Vec<String>,
    },
}

fn list(entries: &[String]) -> String {
    let mut s = entries.iter().take(4).cloned().collect::<Vec<_>>().join(", ");
    if entries.len() > 4 {
        s.push_str(", ...");
    }
    s
}

/// An open run folder: the lock is held as long as this value lives.
#[derive(Debug)]
pub struct RunFolder {
    path: PathBuf,
    id: String,
    // Holding the file keeps the lock; dropping it releases the lock.
    _lock: File,
}

impl RunFolder {
    /// Create (if needed) and lock `path`, then check or clear its contents as `start` says.
    /// `command` is recorded in `run.json` for a new run.
    pub fn open(path: &Path, start: Start, command: &str) -> Result<Self, RunFolderError> {
        let io = |p: &Path, e: std::io::Error| RunFolderError::Io { path: p.to_path_buf(), message: e.to_string() };
        std::fs::create_dir_all(path).map_err(|e| io(path, e))?;
        let lock_path = path.join(LOCK_FILE);
        let mut lock =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&lock_path).map_err(|e| io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut s = String::new();
                let holder = lock.read_to_string(&mut s).ok().and_then(|_| s.trim().parse().ok());
                return Err(RunFolderError::Busy { path: path.to_path_buf(), holder });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path, e)),
        }
        let pid = std::process::id();
        lock.set_len(0).and_then(|_| lock.seek(SeekFrom::Start(0))).and_then(|_| writeln!(lock, "{pid}")).map_err(|e| io(&lock_path, e))?;
        let entries = contents(path).map_err(|e| io(path, e))?;
        let existing = read_run_id(path);
        let id = match start {
            // A `run.json` alone is a run that wrote nothing (refused before its first output).
            Start::Fresh if entries.iter().any(|e| e != RUN_FILE) => {
                return Err(RunFolderError::NotEmpty { path: path.to_path_buf(), entries });
            }
            Start::Resume if existing.is_some() => existing.expect("checked"),
            Start::Force => {
                for name in &entries {
                    let p = path.join(name);
                    let r = if p.is_dir() && !p.is_symlink() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
                    r.map_err(|e| io(&p, e))?;
                }
                new_run(path, command)?
            }
            // A fresh run into an empty folder, or a resumed run from before run ids existed.
            _ => new_run(path, command)?,
        };
        Ok(RunFolder { path: path.to_path_buf(), id, _lock: lock })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The run's id, carried by its outputs.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Names in `dir` other than the lock file, sorted.
fn contents(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if name != LOCK_FILE {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

fn new_run(dir: &Path, command: &str) -> Result<String, RunFolderError> {
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let id = format!("{started:x}-{:x}-{:08x}", std::process::id(), rand::random::<u32>());
    let json = serde_json::json!({ "id": id, "command": command, "started_unix": started });
    let path = dir.join(RUN_FILE);
    let text = serde_json::to_string_pretty(&json).expect("json") + "\n";
    crate::search::write_atomic(&path, text.as_bytes()).map_err(|e| RunFolderError::Io { path, message: e.to_string() })?;
    Ok(id)
}

/// The id in `dir/run.json`, if the folder has a readable one.
pub fn read_run_id(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(RUN_FILE)).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["id"].as_str().map(str::to_string)
}

/// Refuse an output file (`file`, carrying `file_run_id`) that does not belong to the run that
/// owns its folder: a leftover of an earlier run would otherwise be read as this run's.
pub fn check_belongs(file: &Path, file_run_id: Option<&str>) -> Result<(), String> {
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    match (read_run_id(dir), file_run_id) {
        (Some(folder), Some(own)) if folder != own => Err(format!(
            "{} was written by run {own}, but its folder now belongs to run {folder} (a leftover of an earlier run, or a mixed folder): re-run the command that writes it",
            file.display()
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_opener_is_refused_naming_the_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let first = RunFolder::open(tmp.path(), Start::Fresh, "test").unwrap();
        let err = RunFolder::open(tmp.path(), Start::Resume, "test").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, RunFolderError::Busy { holder: Some(p), .. } if p == std::process::id()), "{msg}");
        assert!(msg.contains(&format!("pid {}", std::process::id())), "{msg}");
        drop(first);
        RunFolder::open(tmp.path(), Start::Resume, "test").unwrap();
    }

    #[test]
    fn fresh_refuses_an_earlier_run_resume_keeps_its_id_force_clears() {
        let tmp = tempfile::tempdir().unwrap();
        let id = RunFolder::open(tmp.path(), Start::Fresh, "test").unwrap().id().to_string();
        std::fs::write(tmp.path().join("metrics.csv"), "old").unwrap();
        std::fs::create_dir(tmp.path().join("checkpoints")).unwrap();
        let err = RunFolder::open(tmp.path(), Start::Fresh, "test").unwrap_err().to_string();
        assert!(err.contains("3 files") && err.contains("checkpoints, metrics.csv, run.json") && err.contains("--force"), "{err}");
        assert_eq!(RunFolder::open(tmp.path(), Start::Resume, "test").unwrap().id(), id);
        let forced = RunFolder::open(tmp.path(), Start::Force, "test").unwrap();
        assert_ne!(forced.id(), id);
        assert_eq!(contents(tmp.path()).unwrap(), vec![RUN_FILE.to_string()]);
        // A folder holding only run.json (a run that wrote nothing) takes a fresh run.
        drop(forced);
        assert_ne!(RunFolder::open(tmp.path(), Start::Fresh, "test").unwrap().id(), id);
    }

    #[test]
    fn a_file_of_another_run_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunFolder::open(tmp.path(), Start::Fresh, "test").unwrap();
        let file = tmp.path().join("pareto.json");
        assert!(check_belongs(&file, Some(run.id())).is_ok());
        assert!(check_belongs(&file, None).is_ok(), "files from before run ids are accepted");
        let err = check_belongs(&file, Some("other")).unwrap_err();
        assert!(err.contains("written by run other") && err.contains(run.id()), "{err}");
    }
}
