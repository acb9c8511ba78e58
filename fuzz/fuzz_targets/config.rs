//! `sensor.toml` parsing and validation on arbitrary UTF-8.
#![no_main]

use apisensor::Settings;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Settings::from_toml(text, "fuzz") {
        Ok(settings) => {
            // Accepted settings are valid by construction, and usable.
            assert!(settings.validate().is_ok());
            assert!(settings.worker_count() >= 1);
        }
        Err(e) => {
            // Every error has a message that names something.
            assert!(!e.to_string().is_empty());
        }
    }
});
