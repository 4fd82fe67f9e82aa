//! Firmware around a generated model: startup code, a linker script sized to the board, a
//! console, and a Makefile. Two applications: `tn_main.c` runs embedded test images and prints
//! outputs, per-layer counters and the stack peak (QEMU or a board); `tn_main_deploy.c` only
//! runs one inference, and is what the linked footprint is measured on.
//!
//! Under QEMU (`mps2-an386` for Cortex-M4, `mps2-an500` for Cortex-M7) the memory origins are
//! the MPS2 ones (code at 0x0, SRAM at 0x20000000) but the lengths are the board's, so a model
//! over the board's flash or SRAM fails at link time exactly as it would for the board.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::CModel;
use crate::board::Board;

/// Startup: vector table and reset handler.
pub const STARTUP_C: &str = include_str!("c/fw/startup.c");
/// Console, exit, counters, stack measurement.
pub const PORT_H: &str = include_str!("c/fw/tn_port.h");
/// Console, exit, counters, stack measurement.
pub const PORT_C: &str = include_str!("c/fw/tn_port.c");
/// The test application (embedded inputs, prints outputs and counters).
pub const MAIN_C: &str = include_str!("c/fw/tn_main.c");
/// The minimal application the footprint is measured on.
pub const MAIN_DEPLOY_C: &str = include_str!("c/fw/tn_main_deploy.c");

/// Stack reserved by the linker script, bytes. The deepest path is a kernel call from
/// `model_invoke` (the depthwise kernel keeps its int16 weights on the stack); the measured peak
/// is printed by the test firmware and checked against this in the tests.
pub const STACK_BYTES: u64 = 1024;

/// A Cortex-M core the firmware is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Core {
    /// Cortex-M0+ (no DSP extension: plain C kernels).
    M0Plus,
    /// Cortex-M4 with FPU.
    M4,
    /// Cortex-M7 with double-precision FPU.
    M7,
    /// Cortex-M33 with DSP extension and FPU.
    M33,
}

impl Core {
    /// From a board table's core name.
    pub fn parse(core: &str) -> Result<Core, String> {
        match core.to_ascii_lowercase().as_str() {
            "cortex-m0plus" | "cortex-m0+" => Ok(Core::M0Plus),
            "cortex-m4" | "cortex-m4f" => Ok(Core::M4),
            "cortex-m7" => Ok(Core::M7),
            "cortex-m33" => Ok(Core::M33),
            other => Err(format!(
                "no firmware support for core {other:?}: expected cortex-m0plus, cortex-m4, cortex-m4f, cortex-m7 or cortex-m33"
            )),
        }
    }

    /// GCC flags selecting the core and its float ABI.
    pub fn cpu_flags(self) -> &'static [&'static str] {
        match self {
            Core::M0Plus => &["-mcpu=cortex-m0plus", "-mthumb", "-mfloat-abi=soft"],
            Core::M4 => &["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"],
            Core::M7 => &["-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16"],
            Core::M33 => &["-mcpu=cortex-m33", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16"],
        }
    }

    /// The QEMU MPS2 machine emulating this core, if any.
    pub fn qemu_machine(self) -> Option<&'static str> {
        match self {
            Core::M4 => Some("mps2-an386"),
            Core::M7 => Some("mps2-an500"),
            Core::M0Plus | Core::M33 => None,
        }
    }
}

/// Optimisation and warning flags shared by every build (host and target).
pub const COMMON_CFLAGS: &[&str] = &["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-ffunction-sections", "-fdata-sections"];

/// What the firmware is built for.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Board name.
    pub board: String,
    /// Core.
    pub core: Core,
    /// Flash origin and length, bytes.
    pub flash_origin: u64,
    /// Flash length.
    pub flash: u64,
    /// SRAM origin.
    pub ram_origin: u64,
    /// SRAM length.
    pub ram: u64,
    /// Core clock, MHz.
    pub clock_mhz: f64,
    /// Built to run under QEMU (MPS2 memory map, semihosting, instruction counter).
    pub qemu: bool,
    /// Plain C kernels only (`-DTN_NO_DSP`), for comparison with the DSP path.
    pub plain_c: bool,
}

impl Target {
    /// The board itself (ready to flash), or the board's budgets on the QEMU machine of its core.
    pub fn for_board(board: &Board, qemu: bool) -> Result<Target, String> {
        let core = Core::parse(&board.core)?;
        if qemu && core.qemu_machine().is_none() {
            return Err(format!("board {}: QEMU has no MPS2 machine for {} (only cortex-m4 and cortex-m7)", board.name, board.core));
        }
        let (flash_origin, ram_origin) = if qemu { (0, 0x2000_0000) } else { (board.flash_origin, board.sram_origin) };
        Ok(Target {
            board: board.name.clone(),
            core,
            flash_origin,
            flash: board.flash,
            ram_origin,
            ram: board.sram,
            clock_mhz: board.clock_mhz,
            qemu,
            plain_c: false,
        })
    }

    /// Compiler flags (core, optimisation, warnings, defines).
    pub fn cflags(&self) -> Vec<String> {
        let mut f: Vec<String> = self.core.cpu_flags().iter().chain(COMMON_CFLAGS).map(|s| s.to_string()).collect();
        if self.qemu {
            f.push("-DTN_QEMU".into());
        }
        if self.plain_c {
            f.push("-DTN_NO_DSP".into());
        }
        f
    }

    /// Linker flags (own startup, newlib-nano for memcpy/memset only, unused sections dropped).
    pub fn ldflags(&self) -> Vec<String> {
        ["-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs", "-Wl,--gc-sections", "-Tlink.ld"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// The linker script: the board's flash and SRAM lengths, the stack reserved after `.bss`.
    pub fn linker_script(&self) -> String {
        let mut s = String::new();
        writeln!(
            s,
            "/* link.ld - generated by tinynas for {} ({}). */",
            self.board,
            if self.qemu { "QEMU MPS2 memory map" } else { "the board" }
        )
        .unwrap();
        writeln!(s, "ENTRY(Reset_Handler)\n\nMEMORY\n{{").unwrap();
        writeln!(s, "    FLASH (rx) : ORIGIN = {:#010x}, LENGTH = {}", self.flash_origin, self.flash).unwrap();
        writeln!(s, "    RAM (rwx) : ORIGIN = {:#010x}, LENGTH = {}\n}}\n", self.ram_origin, self.ram).unwrap();
        writeln!(s, "STACK_SIZE = {STACK_BYTES};\n").unwrap();
        s.push_str(
            "SECTIONS\n{\n\
             \x20   .isr_vector : { KEEP(*(.isr_vector)) } > FLASH\n\
             \x20   .text : { *(.text*) *(.rodata*) . = ALIGN(4); } > FLASH\n\
             \x20   .ARM.exidx : { *(.ARM.exidx*) } > FLASH\n\
             \x20   .data : { __data_start = .; *(.data*) . = ALIGN(4); __data_end = .; } > RAM AT > FLASH\n\
             \x20   __data_load = LOADADDR(.data);\n\
             \x20   .bss (NOLOAD) : { __bss_start = .; *(.bss*) *(COMMON) . = ALIGN(4); __bss_end = .; } > RAM\n\
             \x20   .stack (NOLOAD) : ALIGN(8) { __stack_limit = .; . += STACK_SIZE; __stack_top = .; } > RAM\n\
             }\n",
        );
        s
    }

    /// A Makefile building `fw.elf` (test application) and `deploy.elf` (footprint).
    pub fn makefile(&self) -> String {
        let mut s = String::new();
        writeln!(s, "# Makefile - generated by tinynas for {}. `make` builds fw.elf and deploy.elf.", self.board).unwrap();
        writeln!(s, "CC = arm-none-eabi-gcc\nSIZE = arm-none-eabi-size").unwrap();
        writeln!(s, "CFLAGS = {}\nLDFLAGS = {}", self.cflags().join(" "), self.ldflags().join(" ")).unwrap();
        writeln!(s, "COMMON = model.c tn_kernels.c tn_port.c startup.c\n").unwrap();
        s.push_str("all: fw.elf deploy.elf\n\n");
        s.push_str(
            "fw.elf: $(COMMON) tn_main.c tn_inputs.h link.ld\n\t$(CC) $(CFLAGS) -DTN_PROFILE $(LDFLAGS) -o $@ $(COMMON) tn_main.c\n\n",
        );
        s.push_str("deploy.elf: $(COMMON) tn_main_deploy.c link.ld\n\t$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(COMMON) tn_main_deploy.c\n\t$(SIZE) -A $@\n\n");
        if let Some(m) = self.core.qemu_machine().filter(|_| self.qemu) {
            writeln!(s, "run: fw.elf\n\tqemu-system-arm {} -kernel fw.elf\n", qemu_args(m, Path::new("out.txt")).join(" ")).unwrap();
        }
        s.push_str("clean:\n\trm -f fw.elf deploy.elf out.txt\n\n.PHONY: all run clean\n");
        s
    }
}

/// QEMU arguments (before `-kernel`): no display, console on semihosting into `out`,
/// deterministic instruction counting (1 instruction per ns of virtual time).
pub fn qemu_args(machine: &str, out: &Path) -> Vec<String> {
    [
        "-M",
        machine,
        "-nographic",
        "-monitor",
        "none",
        "-serial",
        "none",
        "-semihosting-config",
        "enable=on,target=native,chardev=c0",
        "-chardev",
        &format!("file,id=c0,path={}", out.display()),
        "-icount",
        "shift=0,align=off,sleep=off",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `tn_inputs.h`: the test images as int8 arrays.
pub fn inputs_header(inputs: &[Vec<i8>], input_size: usize) -> String {
    let mut s =
        String::from("/* tn_inputs.h - generated by tinynas: test images (int8, NHWC). */\n#include <stdint.h>\n#include \"model.h\"\n");
    writeln!(s, "#define TN_N_INPUTS {}\nstatic const int8_t tn_inputs[TN_N_INPUTS][MODEL_INPUT_SIZE] = {{", inputs.len()).unwrap();
    for img in inputs {
        assert_eq!(img.len(), input_size, "test image size");
        s.push_str("    {");
        for (i, v) in img.iter().enumerate() {
            if i % 32 == 0 {
                s.push_str("\n        ");
            }
            write!(s, "{v},").unwrap();
        }
        s.push_str("\n    },\n");
    }
    s.push_str("};\n");
    s
}

/// Write the model, the firmware sources, `link.ld` and the Makefile into `dir` (created), each
/// file atomically. Returns the files written.
pub fn write_project(dir: &Path, model: &CModel, target: &Target, inputs: &[Vec<i8>], input_size: usize) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let generated = [inputs_header(inputs, input_size), target.linker_script(), target.makefile()];
    let mut files: Vec<(&str, &str)> = model.files().to_vec();
    files.extend([
        ("startup.c", STARTUP_C),
        ("tn_port.h", PORT_H),
        ("tn_port.c", PORT_C),
        ("tn_main.c", MAIN_C),
        ("tn_main_deploy.c", MAIN_DEPLOY_C),
        ("tn_inputs.h", generated[0].as_str()),
        ("link.ld", generated[1].as_str()),
        ("Makefile", generated[2].as_str()),
    ]);
    write_files(dir, files)
}

/// Write each (name, contents) into `dir` atomically; returns the paths written.
pub fn write_files<'a>(dir: &Path, files: impl IntoIterator<Item = (&'a str, &'a str)>) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        crate::search::write_atomic(&path, text.as_bytes())?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linker_script_has_board_lengths() {
        let t = Target {
            board: "b".into(),
            core: Core::M7,
            flash_origin: 0x0800_0000,
            flash: 1 << 20,
            ram_origin: 0x2000_0000,
            ram: 320 * 1024,
            clock_mhz: 216.0,
            qemu: false,
            plain_c: false,
        };
        let s = t.linker_script();
        assert!(s.contains("ORIGIN = 0x08000000, LENGTH = 1048576"), "{s}");
        assert!(s.contains("ORIGIN = 0x20000000, LENGTH = 327680"), "{s}");
        assert!(!t.cflags().contains(&"-DTN_QEMU".to_string()));
        assert!(Core::parse("cortex-m85").unwrap_err().contains("cortex-m85"));
    }
}
