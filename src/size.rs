//! Human byte sizes: `256k`, `256K`, `256KB`, `256KiB`, `1m`, `1MB`, `0.5M`, `1048576`.
//!
//! K = 1024 and M = 1024 x 1024 (the MCU convention: datasheets say "320 KB SRAM" for
//! 327,680 bytes). Fractions are allowed if they come out to whole bytes.

use std::fmt;

/// A size string that could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid size {input:?}: {reason}")]
pub struct SizeError {
    /// The text as given.
    pub input: String,
    /// Why it was refused, and what is expected.
    pub reason: String,
}

const SIZE_EXPECTED: &str =
    "expected a number with an optional unit k/K/KB/KiB, m/M/MB/MiB or g/G/GB/GiB (K = 1024), e.g. 256k, 1MB, 0.5M, 65536";

/// Parse a human size into bytes.
pub fn parse_size(input: &str) -> Result<u64, SizeError> {
    let err = || SizeError { input: input.to_string(), reason: SIZE_EXPECTED.to_string() };
    let s = input.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return Err(err());
    }
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(err()),
    };
    let value: f64 = number.parse().map_err(|_| err())?;
    let bytes = value * scale as f64;
    if !bytes.is_finite() || bytes > u64::MAX as f64 / 2.0 {
        return Err(err());
    }
    if bytes.fract() != 0.0 {
        let reason =
            format!("{bytes} bytes is not a whole number of bytes (K = 1024); give the bytes, e.g. {} or {}", bytes.floor(), bytes.ceil());
        return Err(SizeError { input: input.to_string(), reason });
    }
    Ok(bytes as u64)
}

/// Bytes shown as KiB/MiB with one decimal ("242.0 KiB").
pub struct Human(pub u64);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0 as f64;
        if self.0 >= 1 << 20 {
            write!(f, "{:.2} MiB", b / (1u64 << 20) as f64)
        } else if self.0 >= 1 << 10 {
            write!(f, "{:.1} KiB", b / 1024.0)
        } else {
            write!(f, "{} B", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        for (s, v) in [
            ("256k", 262_144),
            ("256K", 262_144),
            ("256KB", 262_144),
            ("256KiB", 262_144),
            ("256 kb", 262_144),
            ("1m", 1_048_576),
            ("1MB", 1_048_576),
            ("0.5M", 524_288),
            ("1048576", 1_048_576),
            ("320k", 327_680),
            ("2MiB", 2_097_152),
            ("100b", 100),
        ] {
            assert_eq!(parse_size(s), Ok(v), "{s}");
        }
    }

    #[test]
    fn rejected_forms() {
        for s in ["256q", "", "k", "1.5", "0.3k", "-1k", "1e3", "12kk", ".5M", "5.M", "1 2k"] {
            let e = parse_size(s).unwrap_err();
            assert!(e.to_string().contains(&format!("{s:?}")), "{e}");
        }
    }

    #[test]
    fn a_fraction_of_a_byte_says_so() {
        let e = parse_size("49.7k").unwrap_err().to_string();
        assert!(e.contains("50892.8 bytes is not a whole number of bytes") && e.contains("e.g. 50892 or 50893"), "{e}");
    }

    #[test]
    fn human_display() {
        assert_eq!(Human(242 * 1024).to_string(), "242.0 KiB");
        assert_eq!(Human(3 << 20).to_string(), "3.00 MiB");
        assert_eq!(Human(12).to_string(), "12 B");
    }
}
