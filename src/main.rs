//! The `dinq-message` binary: a thin wrapper around [`dinq_message::cli`].

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    dinq_message::cli::main(&args)
}
