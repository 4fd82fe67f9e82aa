//! Content fingerprints (64-bit FNV-1a): what a cache or a resumed run is keyed by, so that a
//! file replaced under the same path (one more training epoch, a re-measured table) is noticed,
//! and the same content reached by another path (another working directory) is recognised.
//! Not cryptographic: it guards against accidents, not against an adversary.

use std::path::Path;

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// A running FNV-1a hash.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(OFFSET)
    }
}

impl Fnv {
    /// Hash `bytes` into the state.
    pub fn update(&mut self, bytes: &[u8]) -> &mut Self {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(PRIME);
        }
        self
    }

    /// The fingerprint as text, `fnv1a64:` then 16 hex digits.
    pub fn finish(&self) -> String {
        format!("fnv1a64:{:016x}", self.0)
    }
}

/// Fingerprint of `bytes`.
pub fn of_bytes(bytes: &[u8]) -> String {
    Fnv::default().update(bytes).finish()
}

/// Fingerprint of the file at `path`.
pub fn of_file(path: &Path) -> std::io::Result<String> {
    Ok(of_bytes(&std::fs::read(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_and_sensitivity() {
        // FNV-1a 64 reference values.
        assert_eq!(of_bytes(b""), "fnv1a64:cbf29ce484222325");
        assert_eq!(of_bytes(b"a"), "fnv1a64:af63dc4c8601ec8c");
        assert_ne!(of_bytes(b"model v1"), of_bytes(b"model v2"));
        let mut f = Fnv::default();
        f.update(b"ab").update(b"c");
        assert_eq!(f.finish(), of_bytes(b"abc"));
    }
}
