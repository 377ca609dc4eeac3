"""The microcontroller targets of ``qsnn export --target``: the part each one models, the Debian
packages its build needs, the refusals of a model or a sample count that cannot fit the part, and
the build, QEMU run and measurement of its image (``DIR/<target>/Makefile.fragment``, through the
export's ``Makefile``).

Both parts have 256 KB of flash and 64 KB of RAM (8 KB of it kept for the stack), and a 3 MB
sensor region outside the flash for the embedded samples (each target's ``linker.ld``)."""

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .integer_model import ExportError

ARM_GCC = "arm-none-eabi-gcc"
QEMU = "qemu-system-arm"
RV32_GCC = "riscv64-unknown-elf-gcc"
RV32_QEMU = "qemu-system-riscv32"
FLASH_BYTES = 256 * 1024  # linker.ld's part
RAM_BYTES = 64 * 1024
RESERVED_BYTES = 8 * 1024  # linker.ld's stack reserve
SENSOR_BYTES = 3 * 1024 * 1024  # linker.ld's SENSOR region: the embedded samples stand in for a sensor


@dataclass(frozen=True)
class Part:
    """A microcontroller target: its name in messages, the compiler and emulator it runs, the
    specs file its C library installs (found through the compiler), the Debian packages that
    provide them, the export Makefile's targets that measure and check it, and the manifest key of
    its instructions per inference (measured, and in the worst case)."""

    name: str
    compiler: str
    emulator: str
    libc_specs: str
    packages: str
    measure: str
    check: str
    instructions_key: str
    worst_key: str


PARTS = {
    "cortex-m4": Part("Cortex-M4", ARM_GCC, QEMU, "rdimon.specs",
                      "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm",
                      "measure-m4", "run-qemu", "m4_instructions_per_inference",
                      "m4_worst_instructions_per_inference"),
    "rv32": Part("RV32", RV32_GCC, RV32_QEMU, "picolibc.specs",
                 "gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf qemu-system-misc",
                 "measure-rv32", "run-qemu-rv32", "rv32_instructions_per_inference",
                 "rv32_worst_instructions_per_inference"),
}


def require_toolchain(target: str) -> None:
    """Refuse, naming the Debian packages to install, a target whose compiler, C library or QEMU is missing."""
    part = PARTS[target]
    missing = shutil.which(part.compiler) is None or shutil.which(part.emulator) is None
    if not missing:  # the compiler prints the bare name when it cannot find the file
        found = subprocess.run([part.compiler, f"-print-file-name={part.libc_specs}"], capture_output=True, text=True)
        missing = not Path(found.stdout.strip()).is_absolute()
    if missing:
        raise ExportError(f"--target {target} needs {part.compiler}, {part.libc_specs} and {part.emulator}: "
                          f"apt-get install {part.packages}")


def check_samples_fit(samples: int, sample_bytes: int, target: str) -> None:
    """Refuse more embedded samples than the image's sensor region holds, naming the most that fit."""
    if samples * sample_bytes > SENSOR_BYTES:
        raise ExportError(
            f"--samples {samples} embeds {samples * sample_bytes:,} bytes of int8 samples in the {PARTS[target].name} "
            f"image, more than its {SENSOR_BYTES:,}-byte sensor region holds: use --samples {SENSOR_BYTES // sample_bytes} "
            "or fewer (samples.bin for the host program holds any number)"
        )


def check_fits(info: dict, target: str) -> None:
    """Refuse, naming the sizes, a model whose constants or static buffers cannot fit the part."""
    flash, ram = info["model_bytes"], info["membrane_state_bytes"] + info["spike_arena_bytes"]
    if flash > FLASH_BYTES or ram > RAM_BYTES - RESERVED_BYTES:
        raise ExportError(
            f"the model needs {flash:,} bytes of flash for its constants and {ram:,} bytes of RAM for its "
            f"membrane state and spike maps; the {PARTS[target].name} target has {FLASH_BYTES:,} bytes of flash and "
            f"{RAM_BYTES:,} of RAM ({RESERVED_BYTES:,} kept for the stack): train a smaller model or "
            "export --target host"
        )


def _build_failure(output: str) -> str:
    """The line of a failed build or run that names its cause."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if "overflowed by" in line or "RAM overflow" in line:
            return line.split("ld: ")[-1]
    causes = [line for line in lines if not line.startswith("make")]
    return (causes or lines or ["no output"])[-1]


def build_image(folder: Path, target: str) -> dict:
    """Build ``<target>/app.elf`` in the export ``folder``, run it once under QEMU (-icount), check
    its lines against expected.txt, and measure flash, RAM and instructions per inference (and the
    worst case's, of ``<target>/app-worst.elf``)."""
    part = PARTS[target]
    require_toolchain(target)
    result = subprocess.run(["make", "-s", "-C", str(folder), part.measure], capture_output=True, text=True)
    if result.returncode != 0:
        raise ExportError(f"the {part.name} build or run failed: {_build_failure(result.stderr + result.stdout)}")
    values = {}
    for line in result.stdout.splitlines():
        for key in ("flash_bytes", "ram_bytes", part.instructions_key, part.worst_key):
            if line.startswith(key + "="):
                values[key] = int(line.split("=")[1].split()[0])
    check = subprocess.run(["make", "-s", "-C", str(folder), part.check], capture_output=True, text=True)
    values["qemu_matches_expected"] = check.returncode == 0
    return values
