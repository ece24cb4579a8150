fn main() -> std::process::ExitCode {
    platform::app::main(admin_service::SERVICE, admin_service::build)
}
