// mimalloc: glibc's malloc was ~9% of the CPU a request cost under load (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    platform::app::main(auth_service::SERVICE, auth_service::build)
}
