//! The `nas` command.

fn main() {
    std::process::exit(tinynas::cli::main());
}
