//! An export's manifest, as `mfe migrate import` reads it: checked or refused with the list of
//! problems, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("mfe-fuzz-manifest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    std::fs::write(dir.join("manifest.json"), data).expect("the manifest is written");
    let _ = migrator::archive::check_archive(&dir);
});
