fn main() -> std::process::ExitCode {
    platform::app::main(auth_service::SERVICE, auth_service::build)
}
