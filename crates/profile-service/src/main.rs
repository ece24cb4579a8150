fn main() -> std::process::ExitCode {
    platform::app::main(profile_service::SERVICE, profile_service::build)
}
