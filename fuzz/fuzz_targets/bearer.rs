//! The `Authorization` header: a token comes out only from a `Bearer` header, and it is a part of
//! the header; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(token) = contracts::auth::bearer_token(header) {
        assert!(!token.is_empty(), "{header:?}");
        assert!(header.contains(token), "{header:?}");
    }
});
