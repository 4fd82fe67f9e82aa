//! Boards as data (`latency_tables/boards.toml`): core, clock, SRAM and flash of each target.

use crate::size::parse_size;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Path of the shipped board table, relative to an asset root.
pub const BOARDS_FILE: &str = "latency_tables/boards.toml";

/// A board file could not be used, or a board is unknown.
#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    /// The file could not be read.
    #[error("reading boards file {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file did not parse.
    #[error("boards file {path}: {message}")]
    Parse {
        /// File.
        path: String,
        /// What is wrong, with the key.
        message: String,
    },
    /// No board of that name.
    #[error("unknown board {name:?}: expected one of {known}")]
    Unknown {
        /// Name asked for.
        name: String,
        /// Known names, comma separated.
        known: String,
    },
}

/// One target board.
#[derive(Debug, Clone, PartialEq)]
pub struct Board {
    /// Key in the table, e.g. `stm32f746`.
    pub name: String,
    /// Human description.
    pub description: String,
    /// CPU core, e.g. `cortex-m7`.
    pub core: String,
    /// Core clock in MHz.
    pub clock_mhz: f64,
    /// SRAM available to the arena, bytes.
    pub sram: u64,
    /// Flash, bytes.
    pub flash: u64,
    /// Address of the flash the firmware is linked at (default 0x0, the Armv7-M code region).
    pub flash_origin: u64,
    /// Address of the SRAM region the arena lives in (default 0x20000000).
    pub sram_origin: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBoard {
    #[serde(default)]
    description: String,
    core: String,
    clock_mhz: f64,
    sram: String,
    flash: String,
    #[serde(default)]
    flash_origin: Option<u64>,
    #[serde(default)]
    sram_origin: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    boards: BTreeMap<String, RawBoard>,
}

/// All boards of a table, by name.
#[derive(Debug, Clone)]
pub struct Boards(pub BTreeMap<String, Board>);

impl Boards {
    /// Parse a boards table; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, BoardError> {
        let parse_err = |message: String| BoardError::Parse { path: origin.to_string(), message };
        let raw: RawFile = toml::from_str(text).map_err(|e| parse_err(e.message().to_string()))?;
        let mut boards = BTreeMap::new();
        for (name, b) in raw.boards {
            let size = |field: &str, v: &str| parse_size(v).map_err(|e| parse_err(format!("boards.{name}.{field}: {e}")));
            if b.clock_mhz.is_nan() || b.clock_mhz <= 0.0 {
                return Err(parse_err(format!("boards.{name}.clock_mhz = {}: expected a positive number of MHz", b.clock_mhz)));
            }
            let board = Board {
                sram: size("sram", &b.sram)?,
                flash: size("flash", &b.flash)?,
                name: name.clone(),
                description: b.description,
                core: b.core,
                clock_mhz: b.clock_mhz,
                flash_origin: b.flash_origin.unwrap_or(0),
                sram_origin: b.sram_origin.unwrap_or(0x2000_0000),
            };
            boards.insert(name, board);
        }
        Ok(Boards(boards))
    }

    /// Read a boards table from a file.
    pub fn from_path(path: &Path) -> Result<Self, BoardError> {
        let text = std::fs::read_to_string(path).map_err(|source| BoardError::Io { path: path.to_path_buf(), source })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// The shipped table, found under the asset roots.
    pub fn shipped() -> Result<Self, BoardError> {
        let found = crate::assets::find(BOARDS_FILE).filter(|p| p.is_file());
        match found {
            Some(p) => Self::from_path(&p),
            None => Err(BoardError::Io {
                path: PathBuf::from(BOARDS_FILE),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("shipped boards table not found: {}", crate::assets::where_looked()),
                ),
            }),
        }
    }

    /// Look a board up by name.
    pub fn get(&self, name: &str) -> Result<&Board, BoardError> {
        self.0
            .get(name)
            .ok_or_else(|| BoardError::Unknown { name: name.to_string(), known: self.0.keys().cloned().collect::<Vec<_>>().join(", ") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_boards() {
        let b = Boards::from_path(&Path::new(env!("CARGO_MANIFEST_DIR")).join(BOARDS_FILE)).unwrap();
        let f7 = b.get("stm32f746").unwrap();
        assert_eq!((f7.sram, f7.flash, f7.clock_mhz), (320 * 1024, 1 << 20, 216.0));
        for name in ["stm32f412", "stm32h743", "stm32l4r5", "nrf52840"] {
            b.get(name).unwrap();
        }
        let e = b.get("esp8266").unwrap_err().to_string();
        assert!(e.contains("esp8266") && e.contains("stm32f746"), "{e}");
    }

    #[test]
    fn bad_size_names_board_and_field() {
        let e = Boards::from_toml_str("[boards.x]\ncore='m4'\nclock_mhz=1\nsram='256q'\nflash='1m'\n", "b.toml").unwrap_err().to_string();
        assert!(e.contains("b.toml") && e.contains("boards.x.sram") && e.contains("256q"), "{e}");
    }
}
