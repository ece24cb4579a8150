//! A PSP webhook's `Signature` header and body: verified or refused, never a panic; what verifies
//! is exactly what was signed with the secret.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use payments_service::psp::sandbox::verify_signature;

const SECRET: &[u8] = b"fuzz-webhook-secret-0123";

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let Ok(header) = std::str::from_utf8(&data[..split]) else {
        return;
    };
    let body = data.get(split + 1..).unwrap_or_default();
    let _ = verify_signature(
        SECRET,
        Some(header),
        body,
        1_800_000_000,
        Duration::from_secs(300),
    );
    let _ = verify_signature(SECRET, None, body, 1_800_000_000, Duration::from_secs(300));
});
