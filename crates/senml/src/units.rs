//! The SenML units registry (IANA "SenML Units"): the symbols a record's `u`
//! or `bu` may hold.
//!
//! [`PRIMARY`] is RFC 8428 §12.1 with the units RFC 8798 §3 added to it;
//! [`SECONDARY`] is RFC 8798 §4's "SenML Secondary Units" (scaled forms such
//! as `kWh` or `mV`), which a receiver that knows them may accept in `u`.
//! Symbols are case-sensitive (`Cel`, not `cel`). Units IANA registered later
//! by expert review are not listed: add them here when a device needs one.

/// RFC 8428 §12.1 and RFC 8798 §3. Symbols marked "not recommended for
/// producers" in the registry (`g`, `l`, `%`, `beat/min`, ...) are still
/// valid input.
pub const PRIMARY: &[&str] = &[
    // RFC 8428 §12.1
    "m", "kg", "g", "s", "A", "K", "cd", "mol", "Hz", "rad", "sr", "N", "Pa", "J", "W", "C", "V",
    "F", "Ohm", "S", "Wb", "T", "H", "Cel", "lm", "lx", "Bq", "Gy", "Sv", "kat", "m2", "m3", "l",
    "m/s", "m/s2", "m3/s", "l/s", "W/m2", "cd/m2", "bit", "bit/s", "lat", "lon", "pH", "dB", "dBW",
    "Bspl", "count", "/", "%", "%RH", "%EL", "EL", "1/s", "1/min", "beat/min", "beats", "S/m",
    // RFC 8798 §3
    "B", "VA", "VAs", "var", "vars", "J/m", "kg/m3", "deg",
];

/// RFC 8798 §4 secondary units.
pub const SECONDARY: &[&str] = &[
    "ms", "min", "h", "MHz", "kW", "kVA", "kvar", "Ah", "Wh", "kWh", "varh", "kvarh", "kVAh",
    "Wh/km", "KiB", "GB", "Mbit/s", "B/s", "MB/s", "mV", "mA", "dBm", "ug/m3", "mm/h", "m/h",
    "ppm", "/100", "/1000", "hPa", "mm", "cm", "km", "km/h",
];

/// Symbols accepted beyond the registry, each for a reason. `rad/s`: the
/// registry has no unit of angular velocity, and gyroscopes (the behaviour
/// model's `gyr_x` … `gyr_z`, docs/model.md) measure in it.
pub const ACCEPTED_UNREGISTERED: &[&str] = &["rad/s"];

/// Whether `unit` is a registered SenML unit symbol (or one of
/// [`ACCEPTED_UNREGISTERED`]). A linear scan: the tables are ~100 short
/// strings, cheaper to scan than to hash.
pub fn is_registered(unit: &str) -> bool {
    PRIMARY.contains(&unit) || SECONDARY.contains(&unit) || ACCEPTED_UNREGISTERED.contains(&unit)
}
