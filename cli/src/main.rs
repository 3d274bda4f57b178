//! The `cmdeploy` binary: the built-in components and the command line.

fn main() -> std::process::ExitCode {
    cmdeploy::main()
}
