//! The `nas` command.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // Rust ignores SIGPIPE, so a closed pipe (`nas search | head -1`) turns the next print into a
    // panic; with the default action the process ends quietly, as `cat` or `grep` do. Outputs
    // are written atomically and run folders are locked with flock, so nothing is left
    // half-written or locked.
    #[cfg(unix)]
    // SAFETY: called first in main, before any thread exists; SIG_DFL is a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::process::exit(tinynas::cli::main());
}
