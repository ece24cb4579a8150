fn main() -> std::process::ExitCode {
    platform::app::main(payments_service::SERVICE, payments_service::build)
}
