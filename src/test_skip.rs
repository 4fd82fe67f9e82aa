//! How tests skip what this machine cannot run (no `../shared` datasets, no Arm toolchain or
//! QEMU, no LiteRT), so that a skip is never mistaken for a pass: `test.sh` lists every skip at
//! the end of its run, and where the need is required (`CI=true` for the datasets; whatever
//! `test.sh` installed, named in `TINYNAS_REQUIRE`) the test fails instead.

/// What a skipped test needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The datasets in `../shared/datasets`.
    Data,
    /// arm-none-eabi-gcc, qemu-system-arm and a host C compiler.
    McuTools,
    /// Python with ai-edge-litert.
    Litert,
    /// Python with PyYAML (the Kubernetes manifests' parser in tests).
    Yaml,
    /// Open MPI's mpirun (the `mpi` feature's tests).
    Mpi,
}

impl Need {
    fn name(self) -> &'static str {
        match self {
            Need::Data => "data",
            Need::McuTools => "mcu",
            Need::Litert => "litert",
            Need::Yaml => "yaml",
            Need::Mpi => "mpi",
        }
    }
}

/// Whether this environment promises `need` (a skip is then a failure).
pub fn required(need: Need) -> bool {
    let listed = std::env::var("TINYNAS_REQUIRE").is_ok_and(|v| v.split(',').any(|n| n.trim() == need.name()));
    listed || (need == Need::Data && std::env::var("CI").is_ok_and(|v| v == "true"))
}

/// Skip `what` because of `why`: panics when `need` is required here, else prints the skip and
/// appends it to the file named by `TINYNAS_SKIP_LOG` (which `test.sh` prints at the end).
pub fn skip(need: Need, what: &str, why: &str) {
    if required(need) {
        panic!("{what} cannot run: {why} (this environment requires `{}`: TINYNAS_REQUIRE or CI=true)", need.name());
    }
    eprintln!("\n*** SKIPPING {what}: {why} ***\n");
    if let Ok(log) = std::env::var("TINYNAS_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
            let _ = writeln!(f, "{what}: {why}");
        }
    }
}
