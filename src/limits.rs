//! Bounds on user-given counts (population, samples, layer widths, ...): checked before any
//! work or allocation, so an absurd value is a clear error naming the flag, not an abort on a
//! multi-gigabyte allocation or a run that never ends.

/// A value outside its allowed range.
#[derive(Debug, thiserror::Error)]
#[error("{flag} {value}: expected {lo} to {hi} ({why})")]
pub struct OutOfRange {
    /// The flag or field.
    pub flag: String,
    /// The value given.
    pub value: String,
    /// Smallest allowed.
    pub lo: String,
    /// Largest allowed.
    pub hi: String,
    /// Why it is bounded.
    pub why: String,
}

/// `value` within `lo..=hi`, else an error naming `flag` and `why` it is bounded.
pub fn check_range<T: PartialOrd + std::fmt::Display>(flag: &str, value: T, lo: T, hi: T, why: &str) -> Result<(), OutOfRange> {
    if value < lo || value > hi {
        return Err(OutOfRange { flag: flag.into(), value: value.to_string(), lo: lo.to_string(), hi: hi.to_string(), why: why.into() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_message_names_flag_value_and_bounds() {
        assert!(super::check_range("--population", 50, 4, 100, "archs").is_ok());
        let e = super::check_range("--population", 100_000_000usize, 4, 100_000, "archs per generation").unwrap_err();
        assert_eq!(e.to_string(), "--population 100000000: expected 4 to 100000 (archs per generation)");
    }
}
