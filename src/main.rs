fn main() -> std::process::ExitCode {
    nixmox::cli::main()
}
