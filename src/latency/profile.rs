//! Measuring a latency table: a profiling firmware that runs every operator configuration of a
//! search space ([`super::ops_of_space`]) with the project's int8 kernels (`tn_kernels.c`,
//! shipped verbatim) and prints one CSV row per configuration, built for a board (DWT cycles,
//! ITM console) or for QEMU (instruction counts, semihosting console), and the driver that
//! builds the QEMU variant, runs it and turns its rows into a [`LatencyTable`].
//!
//! The firmware (`tn_profile_main.c`) embeds no per-configuration data: one pseudo-random int8
//! weight blob sized to the largest configuration, int32 bias / multiplier / shift arrays sized
//! to the widest layer (multipliers in [2^30, 2^31), shifts -9..-7, as a synthetic model has
//! them), one static buffer sized to the largest configuration, and a table of configurations
//! (shapes, padding, buffer offsets) that drives the loop. Each configuration is called the way
//! the generated `model.c` calls it: pointwise (1x1, stride 1) through `tn_pointwise`, other
//! dense convolutions through `tn_conv` with its im2col scratch, depthwise **in place** (output
//! over input, as the memory plan runs it; the kernel's instruction count does not depend on
//! the aliasing), add into a third buffer, avgpool with its int32 scratch, fc per tensor.
//!
//! The QEMU counter advances once per 40 instructions, so a reading is exact to 40
//! instructions and depends on the counter's phase when the call starts (on what ran before).
//! Configurations under [`MIN_COUNT`] instructions are called back to back until the total
//! reaches it, and the row's value is total / calls: at most 0.04% quantisation, so a key
//! measures the same (to that) in any table; a given profile is bit-for-bit repeatable.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use super::key::{Op, OpKey};
use super::table::{LatencyRow, LatencyTable, Provenance, Unit};
use crate::codegen::firmware::{self, Core, STACK_BYTES, Target, qemu_args};
use crate::codegen::tools::{self, ToolError};
use crate::codegen::{KERNELS_C, KERNELS_H};
use crate::ir::Padding;

/// The profiler's application, shipped verbatim; it includes the generated `tn_profile_cfg.h`.
pub const PROFILE_MAIN_C: &str = include_str!("../codegen/c/fw/tn_profile_main.c");

/// Counter total below which a configuration is repeated (`TN_PROFILE_MIN_COUNT` in the C).
pub const MIN_COUNT: u64 = 100_000;

/// SRAM the profiler needs besides its buffer and the stack (its statics, about 120 B), bytes.
pub const STATIC_RESERVE: u64 = 256;

/// Flash kept for code, console, libc and constants other than the weight blob and the tables.
pub const CODE_RESERVE: u64 = 32 * 1024;

/// Bytes of one entry of the configuration table in flash (`tn_prof_cfg_t`).
pub const CONFIG_BYTES: u64 = 36;

/// The ELF built for the board.
pub const BOARD_ELF: &str = "profile.elf";
/// The ELF built for QEMU.
pub const QEMU_ELF: &str = "profile-qemu.elf";

/// The cycles-per-instruction assumption of QEMU tables.
pub const CPI_SOURCE: &str = "assumed 1 cycle per instruction: QEMU counts instructions, not cycles; no cycle measurement of these kernels exists yet (Cortex-M4 is single-issue with 1-cycle SMLAD, so CPI >= 1 from loads/branches; Cortex-M7 dual-issues and may run below 1); import board measurements (DWT->CYCCNT) with `nas latency import` to replace";

/// Seed of the weight blob and the requantisation arrays.
const DATA_SEED: u64 = 0x7469_6e79;

/// The kernel function a configuration calls (`TN_FN_*` in the C, in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// `tn_pointwise` (1x1, stride 1).
    Pointwise,
    /// `tn_conv` (kxk, or 1x1 with a stride).
    Conv,
    /// `tn_depthwise`, in place.
    Depthwise,
    /// `tn_add`.
    Add,
    /// `tn_avgpool`.
    AvgPool,
    /// `tn_fully_connected`.
    Fc,
}

impl Kernel {
    /// The kernel `model.c` calls for a layer with this key.
    pub fn of(key: &OpKey) -> Kernel {
        match key.op {
            Op::Pointwise if key.stride == 1 => Kernel::Pointwise,
            Op::Pointwise | Op::Conv => Kernel::Conv,
            Op::Depthwise => Kernel::Depthwise,
            Op::Add => Kernel::Add,
            Op::AvgPool => Kernel::AvgPool,
            Op::Fc => Kernel::Fc,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Where a configuration's tensors lie in the profiler's buffer (byte offsets), and the bytes
/// it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Layout {
    /// Input.
    pub input: u64,
    /// Second input (add only; else 0).
    pub input2: u64,
    /// Output (= input for the in-place depthwise).
    pub output: u64,
    /// Scratch (0 when the kernel has none).
    pub scratch: u64,
    /// Bytes used.
    pub bytes: u64,
}

fn align8(v: u64) -> u64 {
    v.div_ceil(8) * 8
}

impl Layout {
    /// The layout of `key`: input at 0, then (8-byte aligned) the second input, output and
    /// scratch the kernel needs; the depthwise output is the input (in place).
    pub fn of(key: &OpKey) -> Layout {
        let (i, o) = (key.in_elems(), key.out_elems());
        let k2 = (key.kernel * key.kernel) as u64;
        let mut l = Layout::default();
        let mut end = align8(i);
        let mut take = |n: u64| {
            let at = end;
            end = align8(end + n);
            at
        };
        match Kernel::of(key) {
            Kernel::Pointwise | Kernel::Fc => l.output = take(o),
            Kernel::Conv => {
                l.output = take(o);
                l.scratch = take(2 * 2 * k2 * key.in_c as u64);
            }
            Kernel::Depthwise => {
                l.output = 0;
                let ph = ((key.out_h - 1) * key.stride + key.kernel) as u64;
                let pw = ((key.out_w - 1) * key.stride + key.kernel) as u64;
                l.scratch = take(2 * ph * pw);
            }
            Kernel::Add => {
                l.input2 = take(i);
                l.output = take(o);
            }
            Kernel::AvgPool => {
                l.output = take(o);
                l.scratch = take(4 * key.in_c as u64);
            }
        }
        l.bytes = end;
        l
    }
}

/// int8 weight bytes a configuration reads.
pub fn weight_bytes(key: &OpKey) -> u64 {
    let k2 = (key.kernel * key.kernel) as u64;
    match key.op {
        Op::Pointwise | Op::Conv => k2 * key.in_c as u64 * key.out_c as u64,
        Op::Depthwise => k2 * key.in_c as u64,
        Op::Fc => key.in_c as u64 * key.out_c as u64,
        Op::Add | Op::AvgPool => 0,
    }
}

/// One configuration the profiler runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileConfig {
    /// Table key.
    pub key: OpKey,
    /// Expand ratio it came from (informational).
    pub expand: Option<usize>,
    /// The kernel called.
    pub kernel: Kernel,
    /// TFLite SAME padding (top, left).
    pub pad: (usize, usize),
    /// Buffer layout.
    pub layout: Layout,
}

/// A configuration left out because the board cannot hold it.
#[derive(Debug, Clone, PartialEq)]
pub struct Oversize {
    /// Table key.
    pub key: OpKey,
    /// SRAM bytes it needs (input, output, scratch).
    pub sram: u64,
    /// Flash bytes of its weights.
    pub weights: u64,
}

/// What the profiler cannot do.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Configurations need more memory than the board has.
    #[error(
        "{count} of {total} operator configurations do not fit board {board} ({sram_avail} B of SRAM for buffers after the {STACK_BYTES} B stack and {STATIC_RESERVE} B of statics, {flash_avail} B of flash for weights); the largest, {worst}, needs {need_sram} B of SRAM and {need_flash} B of weights. A network containing one needs at least that much arena (the layer's input and output live together) or flash, so it cannot fit the board either: pass --skip-oversize to profile the others"
    )]
    TooLarge {
        /// Board.
        board: String,
        /// Configurations over.
        count: usize,
        /// Configurations in all.
        total: usize,
        /// Buffer bytes available.
        sram_avail: u64,
        /// Weight bytes available.
        flash_avail: u64,
        /// The configuration needing the most SRAM (or flash).
        worst: String,
        /// Its SRAM.
        need_sram: u64,
        /// Its weights.
        need_flash: u64,
    },
    /// Nothing to profile.
    #[error("no operator configuration to profile{0}")]
    Empty(String),
    /// The firmware's output is not what it should print.
    #[error("profiler output: {0}")]
    Output(String),
    /// A tool failed.
    #[error(transparent)]
    Tool(#[from] ToolError),
    /// I/O.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The configurations to profile on one board and the sizes of the shared data.
#[derive(Debug, Clone)]
pub struct ProfilePlan {
    /// Configurations, in table order.
    pub configs: Vec<ProfileConfig>,
    /// Left out (`skip_oversize`).
    pub skipped: Vec<Oversize>,
    /// Bytes of the shared buffer.
    pub buf_bytes: u64,
    /// Bytes of the weight blob.
    pub weight_bytes: u64,
    /// Length of the bias / multiplier / shift arrays.
    pub max_channels: usize,
}

impl ProfilePlan {
    /// Plan `ops` for `target`'s memories. A configuration whose buffers or weights exceed the
    /// board is an error, or is skipped with `skip_oversize`.
    pub fn new(ops: &[(OpKey, Option<usize>)], target: &Target, skip_oversize: bool) -> Result<ProfilePlan, ProfileError> {
        let sram_avail = target.ram.saturating_sub(STACK_BYTES + STATIC_RESERVE);
        let max_c_all = ops.iter().map(|(k, _)| k.in_c.max(k.out_c)).max().unwrap_or(0) as u64;
        let flash_avail = target.flash.saturating_sub(CODE_RESERVE + CONFIG_BYTES * ops.len() as u64 + 12 * max_c_all);
        let mut configs = Vec::new();
        let mut skipped = Vec::new();
        for &(key, expand) in ops {
            let layout = Layout::of(&key);
            let weights = weight_bytes(&key);
            if layout.bytes > sram_avail || weights > flash_avail {
                skipped.push(Oversize { key, sram: layout.bytes, weights });
                continue;
            }
            let (pad, _, _) = Padding::same(key.in_h, key.in_w, key.kernel, key.stride);
            let pad = match key.op {
                Op::Pointwise | Op::Conv | Op::Depthwise => (pad.top, pad.left),
                Op::Add | Op::AvgPool | Op::Fc => (0, 0),
            };
            configs.push(ProfileConfig { key, expand, kernel: Kernel::of(&key), pad, layout });
        }
        if !skipped.is_empty() && !skip_oversize {
            let worst = skipped.iter().max_by_key(|o| (o.sram.saturating_sub(sram_avail), o.weights, o.sram)).expect("non-empty");
            return Err(ProfileError::TooLarge {
                board: target.board.clone(),
                count: skipped.len(),
                total: ops.len(),
                sram_avail,
                flash_avail,
                worst: worst.key.to_string(),
                need_sram: worst.sram,
                need_flash: worst.weights,
            });
        }
        if configs.is_empty() {
            let why = if skipped.is_empty() { String::new() } else { format!(": all {} exceed board {}", skipped.len(), target.board) };
            return Err(ProfileError::Empty(why));
        }
        let buf_bytes = configs.iter().map(|c| c.layout.bytes).max().unwrap_or(8).max(8);
        let weight_bytes = configs.iter().map(|c| weight_bytes(&c.key)).max().unwrap_or(0).max(4);
        let max_channels = configs.iter().map(|c| c.key.in_c.max(c.key.out_c)).max().unwrap_or(1);
        Ok(ProfilePlan { configs, skipped, buf_bytes, weight_bytes, max_channels })
    }

    /// Flash the data of the profiler takes: weight blob, per-channel arrays, configuration
    /// table (code not included).
    pub fn data_flash_bytes(&self) -> u64 {
        self.weight_bytes + 12 * self.max_channels as u64 + CONFIG_BYTES * self.configs.len() as u64
    }

    /// `tn_profile_cfg.h`: the shared data and the configuration table. `title` is printed by
    /// the firmware in its first line (no quotes or backslashes).
    pub fn config_header(&self, title: &str) -> String {
        let mut s = String::new();
        writeln!(s, "/* tn_profile_cfg.h - generated by tinynas (`nas latency profile`): {title}. Do not edit. */").unwrap();
        let title: String = title.chars().filter(|c| *c != '"' && *c != '\\').collect();
        writeln!(s, "#define TN_PROFILE_TITLE \"{title}\"").unwrap();
        writeln!(s, "#define TN_N_CONFIGS {}u\n#define TN_BUF_BYTES {}u", self.configs.len(), self.buf_bytes).unwrap();
        writeln!(s, "#define TN_PROFILE_MIN_COUNT {MIN_COUNT}u\n").unwrap();
        // ADD requantisation of inputs with scales 0.05 and 0.04 into an output of scale 0.06
        // (TFLite's int8 ADD: both inputs << 20, rescaled to twice the larger input scale).
        let twice_max = 2.0 * 0.05;
        let add = [0.05 / twice_max, 0.04 / twice_max, twice_max / ((1u64 << crate::export::quant::ADD_LEFT_SHIFT) as f64 * 0.06)]
            .map(crate::export::quant::quantize_multiplier);
        for (name, r) in ["IN1", "IN2", "OUT"].iter().zip(add) {
            writeln!(s, "#define TN_ADD_{name}_MULT {}\n#define TN_ADD_{name}_SHIFT {}", r.multiplier, r.shift).unwrap();
        }
        // Offsets 11, -7 and output zero point 4 (`tn_profile_main.c`), and the linear form the
        // code generator would give this ADD (every calibrated ADD measured so far has one).
        let f = crate::export::add_form::add_form(add[0], add[1], add[2], 11, -7, 4, -128, 127)
            .unwrap_or(crate::export::add_form::AddForm { mul_a: 0, mul_b: 0, bias: 0, shift: 0 });
        writeln!(
            s,
            "#define TN_ADD_LIN_A {}\n#define TN_ADD_LIN_B {}\n#define TN_ADD_LIN_BIAS {}\n#define TN_ADD_LIN_SHIFT {}",
            f.mul_a, f.mul_b, f.bias, f.shift
        )
        .unwrap();
        s.push('\n');
        // One stream per array: a configuration reads the first entries of each, which are
        // then the same whatever the sizes (the table's largest configuration) are.
        let rng = |i: u64| rand_chacha::ChaCha8Rng::seed_from_u64(DATA_SEED + i);
        let mut r = rng(0);
        let weights: Vec<i32> = (0..self.weight_bytes).map(|_| r.random_range(-127i32..=127)).collect();
        c_array(&mut s, "int8_t", "tn_weights", &weights, 32);
        let mut r = rng(1);
        let bias: Vec<i32> = (0..self.max_channels).map(|_| r.random_range(-2000..2000)).collect();
        c_array(&mut s, "int32_t", "tn_bias", &bias, 16);
        let mut r = rng(2);
        let mult: Vec<i64> = (0..self.max_channels).map(|_| r.random_range((1i64 << 30)..(1i64 << 31))).collect();
        c_array(&mut s, "int32_t", "tn_mult", &mult, 8);
        let mut r = rng(3);
        let shift: Vec<i32> = (0..self.max_channels).map(|_| r.random_range(-9..=-7)).collect();
        c_array(&mut s, "int32_t", "tn_shift", &shift, 24);
        writeln!(s, "/* fn, op, kernel, stride, pad_top, pad_left, in_h, in_w, in_c, out_h, out_w, out_c, in, in2, out, scratch */")
            .unwrap();
        writeln!(s, "static const tn_prof_cfg_t tn_cfgs[TN_N_CONFIGS] = {{").unwrap();
        for c in &self.configs {
            let k = &c.key;
            let l = &c.layout;
            let op = Op::ALL.iter().position(|o| *o == k.op).expect("known op");
            writeln!(
                s,
                "    {{{}, {op}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}u, {}u, {}u, {}u}},",
                c.kernel.index(),
                k.kernel,
                k.stride,
                c.pad.0,
                c.pad.1,
                k.in_h,
                k.in_w,
                k.in_c,
                k.out_h,
                k.out_w,
                k.out_c,
                l.input,
                l.input2,
                l.output,
                l.scratch
            )
            .unwrap();
        }
        s.push_str("};\n");
        s
    }
}

/// `static const T name[n] = {...};`, `per_line` values per line.
fn c_array<T: std::fmt::Display>(s: &mut String, ty: &str, name: &str, values: &[T], per_line: usize) {
    writeln!(s, "static const {ty} {name}[{}] = {{", values.len()).unwrap();
    for chunk in values.chunks(per_line) {
        s.push_str("    ");
        for v in chunk {
            write!(s, "{v},").unwrap();
        }
        s.push('\n');
    }
    s.push_str("};\n\n");
}

/// C sources of the profiler.
const SOURCES: [&str; 4] = ["tn_profile_main.c", "tn_kernels.c", "tn_port.c", "startup.c"];

/// The linker script file of a target.
fn linker_file(target: &Target) -> &'static str {
    if target.qemu { "link-qemu.ld" } else { "link.ld" }
}

/// The ELF file of a target.
fn elf_file(target: &Target) -> &'static str {
    if target.qemu { QEMU_ELF } else { BOARD_ELF }
}

/// Linker flags of a target with its own linker script.
fn ldflags(target: &Target) -> Vec<String> {
    let mut f: Vec<String> = target.ldflags().into_iter().filter(|f| !f.starts_with("-T")).collect();
    f.push(format!("-T{}", linker_file(target)));
    f
}

/// The Makefile: `profile.elf` for the board (`make`), `profile-qemu.elf` for QEMU
/// (`make qemu`), and `make run-qemu` printing the rows into `profile.csv`.
pub fn makefile(board: &Target, qemu: Option<&Target>) -> String {
    let mut s = String::new();
    writeln!(s, "# Makefile - generated by tinynas (`nas latency profile`) for {}.", board.board).unwrap();
    writeln!(s, "# `make` builds {BOARD_ELF} for the board: flash it, enable ITM stimulus port 0 (SWO) in the debugger and capture the")
        .unwrap();
    writeln!(s, "# console: one CSV row per operator configuration, counts in DWT->CYCCNT cycles.").unwrap();
    if qemu.is_some() {
        writeln!(s, "# `make qemu` builds {QEMU_ELF} (MPS2 memory map, semihosting console, instruction counts); `make run-qemu` runs it.")
            .unwrap();
    }
    writeln!(s, "CC = arm-none-eabi-gcc\nSIZE = arm-none-eabi-size").unwrap();
    writeln!(s, "CFLAGS = {}\nLDFLAGS = {}", board.cflags().join(" "), ldflags(board).join(" ")).unwrap();
    writeln!(s, "SRC = {}\nDEPS = $(SRC) tn_profile_cfg.h tn_kernels.h tn_port.h\n", SOURCES.join(" ")).unwrap();
    writeln!(s, "all: {BOARD_ELF}\n").unwrap();
    writeln!(s, "{BOARD_ELF}: $(DEPS) link.ld\n\t$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(SRC)\n\t$(SIZE) -A $@\n").unwrap();
    let mut phony = vec!["all", "clean"];
    if let Some(q) = qemu {
        let machine = q.core.qemu_machine().unwrap_or("?");
        writeln!(s, "QEMU_CFLAGS = {}\nQEMU_LDFLAGS = {}\n", q.cflags().join(" "), ldflags(q).join(" ")).unwrap();
        writeln!(s, "qemu: {QEMU_ELF}\n").unwrap();
        writeln!(s, "{QEMU_ELF}: $(DEPS) link-qemu.ld\n\t$(CC) $(QEMU_CFLAGS) $(QEMU_LDFLAGS) -o $@ $(SRC)\n").unwrap();
        writeln!(
            s,
            "run-qemu: {QEMU_ELF}\n\tqemu-system-arm {} -kernel {QEMU_ELF}\n",
            qemu_args(machine, Path::new("profile.csv")).join(" ")
        )
        .unwrap();
        phony.extend(["qemu", "run-qemu"]);
    }
    writeln!(s, "clean:\n\trm -f {BOARD_ELF} {QEMU_ELF} profile.csv\n\n.PHONY: {}", phony.join(" ")).unwrap();
    s
}

/// Write the profiler project into `dir` (created): sources, `tn_profile_cfg.h`, `link.ld`
/// for the board, `link-qemu.ld` when `qemu` is given, and the Makefile. Returns the files.
pub fn write_project(dir: &Path, plan: &ProfilePlan, board: &Target, qemu: Option<&Target>, title: &str) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut files: Vec<(&str, String)> = vec![
        ("tn_profile_main.c", PROFILE_MAIN_C.to_string()),
        ("tn_profile_cfg.h", plan.config_header(title)),
        ("tn_kernels.h", KERNELS_H.to_string()),
        ("tn_kernels.c", KERNELS_C.to_string()),
        ("tn_port.h", firmware::PORT_H.to_string()),
        ("tn_port.c", firmware::PORT_C.to_string()),
        ("startup.c", firmware::STARTUP_C.to_string()),
        ("link.ld", board.linker_script()),
        ("Makefile", makefile(board, qemu)),
    ];
    if let Some(q) = qemu {
        files.push(("link-qemu.ld", q.linker_script()));
    }
    firmware::write_files(dir, files.iter().map(|(n, t)| (*n, t.as_str())))
}

/// Cross-compile the profiler in `dir` for `target` (board or QEMU) with the Makefile's flags.
pub fn build(dir: &Path, target: &Target) -> Result<PathBuf, ToolError> {
    let elf = elf_file(target);
    let mut cmd = Command::new(tools::find("arm-none-eabi-gcc")?);
    cmd.current_dir(dir).args(target.cflags()).args(ldflags(target)).args(["-o", elf]).args(SOURCES);
    tools::run(cmd, &format!("arm-none-eabi-gcc ({elf} for {})", target.board))?;
    Ok(dir.join(elf))
}

/// One row the firmware printed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    /// Configuration.
    pub key: OpKey,
    /// Back-to-back calls timed.
    pub reps: u64,
    /// Counter total over the calls.
    pub count: u64,
}

impl Measurement {
    /// Counter units of one call.
    pub fn value(&self) -> f64 {
        self.count as f64 / self.reps as f64
    }
}

/// What the profiler printed: its rows and its unit (`instructions` or `cycles`).
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileOutput {
    /// Rows in order.
    pub rows: Vec<Measurement>,
    /// Counter unit.
    pub unit: Option<Unit>,
    /// Peak stack bytes, when the firmware finished.
    pub stack: Option<u64>,
    /// Whether the closing line was printed.
    pub done: bool,
}

/// Whether `line` is a data row (not a comment or the header).
fn is_row(line: &str) -> bool {
    !line.is_empty() && !line.starts_with('#') && !line.starts_with("op,")
}

/// Parse the profiler's console output (complete lines only).
pub fn parse_output(text: &str) -> Result<ProfileOutput, ProfileError> {
    let mut out = ProfileOutput { rows: Vec::new(), unit: None, stack: None, done: false };
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        let bad = |why: &str| ProfileError::Output(format!("line {}: {why}: {line:?}", n + 1));
        if let Some(rest) = line.strip_prefix("# unit ") {
            out.unit = Some(Unit::from_name(rest.trim()).ok_or_else(|| bad("unknown unit"))?);
        } else if let Some(rest) = line.strip_prefix("# stack ") {
            out.stack = Some(rest.trim().parse().map_err(|_| bad("stack bytes"))?);
        } else if line == "# done" {
            out.done = true;
        } else if is_row(line) {
            let f: Vec<&str> = line.split(',').collect();
            if f.len() != 11 {
                return Err(bad("expected 11 fields (op, 8 key columns, reps, count)"));
            }
            let op = Op::from_name(f[0]).ok_or_else(|| bad("unknown op"))?;
            let n: Vec<u64> = f[1..].iter().map(|v| v.parse::<u64>()).collect::<Result<_, _>>().map_err(|_| bad("not an integer"))?;
            let key = OpKey {
                op,
                in_h: n[0] as usize,
                in_w: n[1] as usize,
                in_c: n[2] as usize,
                out_h: n[3] as usize,
                out_w: n[4] as usize,
                out_c: n[5] as usize,
                kernel: n[6] as usize,
                stride: n[7] as usize,
            };
            if n[8] == 0 {
                return Err(bad("zero repetitions"));
            }
            out.rows.push(Measurement { key, reps: n[8], count: n[9] });
        }
    }
    Ok(out)
}

/// Rows printed so far in a partial output (complete lines only).
pub fn rows_done(text: &str) -> usize {
    let complete = text.rfind('\n').map_or("", |i| &text[..i]);
    complete.lines().filter(|l| is_row(l.trim())).count()
}

/// Run the QEMU profiler `elf` (built for `target`) with instruction counting; `progress` is
/// called with the rows printed so far while it runs. Returns the console text and the wall
/// time.
pub fn run_qemu(
    elf: &Path,
    target: &Target,
    timeout: Duration,
    progress: &mut dyn FnMut(usize),
) -> Result<(String, Duration), ProfileError> {
    let machine = target.core.qemu_machine().ok_or_else(|| ProfileError::Output(format!("no QEMU machine for {:?}", target.core)))?;
    let qemu = tools::find("qemu-system-arm")?;
    let out_file = elf.with_extension("csv");
    let _ = std::fs::remove_file(&out_file);
    let mut child = Command::new(qemu)
        .args(qemu_args(machine, &out_file))
        .arg("-kernel")
        .arg(elf)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let start = Instant::now();
    let mut last = 0;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        let text = std::fs::read_to_string(&out_file).unwrap_or_default();
        let n = rows_done(&text);
        if n != last {
            last = n;
            progress(n);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ProfileError::Output(format!(
                "QEMU did not finish {} within {timeout:?} ({n} rows printed); raise --timeout",
                elf.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let wall = start.elapsed();
    let text = std::fs::read_to_string(&out_file).unwrap_or_default();
    progress(rows_done(&text));
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        let tail: String = text.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
        return Err(ProfileError::Tool(ToolError::Failed {
            what: format!("profiler {} in QEMU", elf.display()),
            code: status.code(),
            output: format!("{err}{tail}"),
        }));
    }
    Ok((text, wall))
}

/// First line of `program args` (stdout), trimmed.
fn first_line(program: &str, args: &[&str]) -> Result<String, ToolError> {
    let mut cmd = Command::new(tools::find(program)?);
    cmd.args(args);
    let out = tools::run(cmd, &format!("{program} {}", args.join(" ")))?;
    Ok(out.lines().next().unwrap_or_default().trim().to_string())
}

/// `tinynas-c-dsp` when the kernels take their SXTB16/SMLAD path on `target`, else `tinynas-c`.
pub fn kernel_variant(target: &Target) -> &'static str {
    if target.plain_c || target.core == Core::M0Plus { "tinynas-c" } else { "tinynas-c-dsp" }
}

/// Provenance of a QEMU profile of `target`'s board: QEMU machine and version, compiler and
/// version, flags, kernel variant, today's date.
pub fn qemu_provenance(target: &Target, core: &str) -> Result<Provenance, ToolError> {
    let machine = target.core.qemu_machine().unwrap_or("?");
    let qemu_version = first_line("qemu-system-arm", &["--version"])?;
    let gcc_version = first_line("arm-none-eabi-gcc", &["-dumpversion"])?;
    Ok(Provenance {
        board: target.board.clone(),
        target: format!("qemu-system-arm {machine} -icount shift=0 ({qemu_version})"),
        core: core.to_string(),
        clock_mhz: target.clock_mhz,
        compiler: "arm-none-eabi-gcc".into(),
        compiler_version: gcc_version,
        flags: target.cflags().join(" "),
        kernel_variant: kernel_variant(target).into(),
        date: today_utc(),
    })
}

/// The table of a profile: one row per configuration of `plan`, in order, with the value per
/// call. Checks that the firmware printed exactly the plan's configurations and finished.
pub fn table_from_output(
    plan: &ProfilePlan,
    out: &ProfileOutput,
    provenance: &Provenance,
    cycles_per_unit: f64,
    cpi_source: &str,
    name: &str,
) -> Result<LatencyTable, ProfileError> {
    let unit = out.unit.ok_or_else(|| ProfileError::Output("no `# unit` line".into()))?;
    if out.rows.len() != plan.configs.len() || !out.done {
        return Err(ProfileError::Output(format!(
            "the firmware printed {} rows for {} configurations{}",
            out.rows.len(),
            plan.configs.len(),
            if out.done { "" } else { " and did not finish" }
        )));
    }
    let mut table = LatencyTable::new(name);
    for (i, (c, m)) in plan.configs.iter().zip(&out.rows).enumerate() {
        if c.key != m.key {
            return Err(ProfileError::Output(format!("row {}: printed {} for configuration {}", i + 1, m.key, c.key)));
        }
        if m.count == 0 {
            return Err(ProfileError::Output(format!("row {}: {} counted 0 {unit}", i + 1, m.key)));
        }
        table.rows.push(LatencyRow::new(c.key, c.expand, m.value(), unit, cycles_per_unit, cpi_source, provenance.clone()));
    }
    Ok(table)
}

/// Today's date in UTC, `YYYY-MM-DD`.
pub fn today_utc() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian; H. Hinnant's
/// `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A rough instruction estimate of one configuration, to weight a progress bar.
pub fn work_estimate(key: &OpKey) -> u64 {
    4 * key.macs() + 20 * key.work_elems() + 500
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(20_000), (2024, 10, 4));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(today_utc().len(), 10);
    }

    #[test]
    fn layouts_do_not_overlap_and_depthwise_is_in_place() {
        let space = crate::space::resolve("cifar").unwrap();
        for (k, _) in super::super::ops_of_space(&space) {
            let l = Layout::of(&k);
            let (i, o) = (k.in_elems(), k.out_elems());
            assert!(l.input + i <= l.bytes && l.output + o <= l.bytes, "{k}: {l:?}");
            for off in [l.input2, l.output, l.scratch] {
                assert_eq!(off % 8, 0, "{k}");
            }
            match Kernel::of(&k) {
                Kernel::Depthwise => assert_eq!(l.output, l.input, "{k}"),
                Kernel::Add => assert!(l.input2 >= i && l.output >= l.input2 + i, "{k}"),
                _ => assert!(l.output >= i, "{k}"),
            }
            if l.scratch > 0 {
                assert!(l.scratch >= l.output + if Kernel::of(&k) == Kernel::Depthwise { i } else { o }, "{k}");
            }
        }
    }

    #[test]
    fn parses_rows_and_checks_the_plan() {
        let target = Target {
            board: "b".into(),
            core: Core::M7,
            flash_origin: 0,
            flash: 1 << 20,
            ram_origin: 0x2000_0000,
            ram: 256 << 10,
            clock_mhz: 100.0,
            qemu: true,
            plain_c: false,
        };
        let key = |op, c: usize| OpKey { op, in_h: 4, in_w: 4, in_c: c, out_h: 4, out_w: 4, out_c: c, kernel: 1, stride: 1 };
        let ops = vec![(key(Op::Pointwise, 8), Some(3)), (key(Op::Add, 8), None)];
        let plan = ProfilePlan::new(&ops, &target, false).unwrap();
        let h = plan.config_header("t");
        assert!(h.contains("#define TN_N_CONFIGS 2u") && h.contains("tn_weights[64]"), "{h}");
        let text = "# tinynas latency profile: t\n# unit instructions\nop,in_h,in_w,in_c,out_h,out_w,out_c,kernel,stride,reps,count\n\
                    pointwise,4,4,8,4,4,8,1,1,4,12000\nadd,4,4,8,4,4,8,1,1,1,400";
        assert_eq!(rows_done(text), 1);
        let out = parse_output(text).unwrap();
        assert_eq!(out.rows.len(), 2);
        assert_eq!(out.rows[0].value(), 3000.0);
        let p = Provenance {
            board: "b".into(),
            target: "qemu".into(),
            core: "cortex-m7".into(),
            clock_mhz: 100.0,
            compiler: "gcc".into(),
            compiler_version: "1".into(),
            flags: String::new(),
            kernel_variant: "tinynas-c-dsp".into(),
            date: "2025-01-01".into(),
        };
        // Not finished: refused.
        assert!(table_from_output(&plan, &out, &p, 1.0, "x", "t").is_err());
        let out = parse_output(&format!("{text}\n# stack 300\n# done\n")).unwrap();
        let t = table_from_output(&plan, &out, &p, 1.0, "x", "t").unwrap();
        assert_eq!(t.rows[1].value, 400.0);
        assert_eq!(t.rows[0].expand, Some(3));
        assert!(parse_output("pointwise,4,4\n").is_err());
        // Too large for the board: refused, or skipped on request.
        let big =
            (OpKey { op: Op::Pointwise, in_h: 200, in_w: 200, in_c: 8, out_h: 200, out_w: 200, out_c: 8, kernel: 1, stride: 1 }, None);
        let ops2 = vec![ops[0], big];
        let e = ProfilePlan::new(&ops2, &target, false).unwrap_err().to_string();
        assert!(e.contains("1 of 2") && e.contains("--skip-oversize") && e.contains("200x200x8"), "{e}");
        let plan = ProfilePlan::new(&ops2, &target, true).unwrap();
        assert_eq!((plan.configs.len(), plan.skipped.len()), (1, 1));
    }
}
