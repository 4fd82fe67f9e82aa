#!/usr/bin/env bash
# Installs what the `mpi` feature builds and tests with: Open MPI (library, headers, mpirun) and
# libclang, which the mpi crate's build script generates its bindings with (Debian packages).
# Idempotent: does nothing when all are present.
set -euo pipefail
have_pkg() { dpkg -s "$1" >/dev/null 2>&1; }
if have_pkg libopenmpi-dev && have_pkg openmpi-bin && have_pkg libclang-dev && command -v mpirun >/dev/null; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends libopenmpi-dev openmpi-bin libclang-dev
