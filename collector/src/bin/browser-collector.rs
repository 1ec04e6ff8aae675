//! `browser-collector`: see the README's "Collectors" section.

fn main() -> std::process::ExitCode {
    collector::cli::main(collector::role::Role::Browser)
}
