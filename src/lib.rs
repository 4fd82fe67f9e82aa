//! tinynas: hardware-aware neural architecture search for microcontrollers.
//!
//! Data flows through one representation: a [`space::SearchSpace`] (TOML) defines the choices,
//! an [`arch::Arch`] picks one subnet, [`ir::lower`] turns it into an [`ir::Network`] (ordered
//! layers over NHWC tensors), and everything downstream reads that network: [`cost`] (MACs,
//! flash, planned SRAM arena), the supernet, the search and the exporters.
//!
//! | module | what it is | depends on |
//! |---|---|---|
//! | `size` | human byte sizes (`256k`, `1MB`) | - |
//! | `space` | search spaces as data | - |
//! | `arch` | one subnet; sampling, mutation, crossover | space |
//! | `ir` | the layer list every consumer reads | arch, space |
//! | `cost` | MACs, params, flash, arena plan | ir |
//! | `board` | boards as data | size |
//! | `data` | datasets, augmentation, batching | - |
//! | `predictor` | accuracy predictors (MLP on a one-hot arch encoding) | arch, space; burn for training |
//! | `latency` | per-operator latency tables (CSV), their fit and the table latency model | ir, space, board |
//! | `search` | NSGA-II under budgets, latency estimate, archive, outputs | cost, board, predictor, latency |
//! | `plot` | report plots (plotters) | search |
//! | `export` | int8 quantisation, int8 reference executor, `.tflite` writer | ir, supernet |
//! | `codegen` | C code of an int8 subnet, firmware, the cross / host / QEMU tool driver | export, cost |
//! | `fingerprint` | content hashes that key caches and resumed runs | - |
//! | `assets` | where the shipped spaces, tables, supernets and data are found | - |
//! | `limits` | bounds on user-given counts, checked before work | - |
//! | `run_folder` | run folders: one writer (lock), one run per folder (run id) | search |
//! | `cli` | the `nas` command | all |

#![warn(missing_docs)]

pub mod arch;
pub mod assets;
pub mod board;
pub mod cli;
pub mod cost;
pub mod ir;
pub mod latency;
pub mod limits;
pub mod size;
pub mod space;

#[cfg(feature = "supernet")]
pub mod codegen;
pub mod data;
#[cfg(feature = "supernet")]
pub mod export;
pub mod fingerprint;
pub mod plot;
pub mod predictor;
pub mod run_folder;
pub mod search;
#[cfg(feature = "supernet")]
pub mod supernet;
#[doc(hidden)]
pub mod test_skip;
#[cfg(feature = "supernet")]
pub mod train;
