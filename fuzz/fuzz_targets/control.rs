//! Fuzzes `linkcal::readers::control_frames`: any bytes, never a panic, hang or unbounded allocation.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = linkcal::readers::control_frames(data);
});
