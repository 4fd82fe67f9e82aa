#!/usr/bin/env bash
# Installs the tools the MCU tests need: the Arm cross compiler (Debian bookworm) and
# qemu-system-arm from bookworm-backports. The backports package is fetched through a private apt
# configuration so the system's own sources stay untouched; the plain bookworm qemu (7.2) would
# conflict with the preinstalled qemu-utils 10.x. Idempotent: does nothing when both are present.
set -euo pipefail
have() { command -v "$1" >/dev/null 2>&1; }
if have arm-none-eabi-gcc && have arm-none-eabi-size && have qemu-system-arm; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
if ! have arm-none-eabi-gcc || ! have arm-none-eabi-size; then
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends gcc-arm-none-eabi libnewlib-arm-none-eabi binutils-arm-none-eabi
fi
if ! have qemu-system-arm; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    src=/etc/apt/sources.list.d/debian.sources
    if [ -f "$src" ]; then
        # The system's sources plus the backports suite (qemu's dependencies come from bookworm).
        cp "$src" "$tmp/backports.sources"
        awk 'BEGIN{RS="";ORS="\n\n"} /debian-security/ {next} {print}' "$src" |
            sed -E 's/^Suites:.*/Suites: bookworm-backports/' >>"$tmp/backports.sources"
        mkdir -p "$tmp/lists/partial"
        chmod -R a+rX "$tmp"
        opts=(-o Dir::Etc::SourceList="$tmp/backports.sources" -o Dir::Etc::SourceParts=/nonexistent -o Dir::State::Lists="$tmp/lists")
        $SUDO apt-get "${opts[@]}" update -qq
        $SUDO apt-get "${opts[@]}" install -y -qq --no-install-recommends -t bookworm-backports qemu-system-arm
    else
        $SUDO apt-get install -y -qq --no-install-recommends qemu-system-arm
    fi
fi
