//! A page cursor and limit from the query string, and the time keys inside cursors: accepted or a
//! 422, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let limit = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let Ok(cursor) = std::str::from_utf8(&data[4..]) else {
        return;
    };
    let _ = platform::pagination::PageRequest::parse(Some(limit), Some(cursor));
    let _ = platform::pagination::parse_time_key(cursor);
});
