//! `POST /payments`'s amount: any text either parses to an amount that prints back as the same
//! value, or is refused; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use payments_service::money::Amount;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(amount) = Amount::parse(text) {
        let printed = amount.to_string();
        let again = Amount::parse(&printed).expect("an amount's own text parses");
        assert_eq!(again, amount, "{text:?} -> {printed:?}");
    }
});
