"""The "native" backend: a whole packed MLP as one XLA FFI call on the CPU (`native/bitwise_mlp.cc`).

XLA's loop fusion leaves the popcount network at 35-50 % of the CPU's XOR + popcount peak (it never
holds byte counts across words and never blocks over rows; BENCHMARKS.md). The C++ kernel does both.
It is built on first use with the system C++ compiler (`$CXX`, else `c++`, `g++`, `clang++`;
`-O3 -march=native`, or the target in `$BITNET_NATIVE_MARCH`, e.g. `x86-64-v3` for a cluster of
mixed CPUs) against the XLA FFI headers that ship with jaxlib, cached under `$BITNET_NATIVE_CACHE`
(default `~/.cache/bitnet/native`) by a key of source, compiler, flags, jaxlib and CPU, and
registered with `jax.ffi` (~10 s the first time). Where it cannot be built `status()` says why (also
logged) and "auto" picks the XLA popcount backend instead; the integers are the same either way.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

SOURCE = Path(__file__).with_name("native") / "bitwise_mlp.cc"
TARGET = "bitnet_bitwise_mlp"
SYMBOL = "BitnetBitwiseMlp"
CACHE_ENV = "BITNET_NATIVE_CACHE"
MARCH_ENV = "BITNET_NATIVE_MARCH"
FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-Wall", "-Wextra")  # tests add -Werror
BUILD_SECONDS = 600
DENSE, MASKED, BINARY = 0, 1, 2  # the kernel's layer modes


def compiler() -> str | None:
    """The C++ compiler to build with: `$CXX`, else `c++`, else `g++`, else `clang++` (None: none found)."""
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def _cpu_identity() -> str:
    """What -march=native depends on: the CPU's model and feature flags (Linux), else the machine name."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return "\n".join(sorted({line for line in lines if line.split(":")[0].strip() in ("model name", "flags", "Features")}))
    except OSError:
        return f"{platform.machine()} {platform.processor()}"


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "bitnet" / "native")


def flags() -> tuple[str, ...]:
    return (*FLAGS, f"-march={os.environ.get(MARCH_ENV) or 'native'}")


def build_command(cxx: str, output: Path, extra: tuple[str, ...] = ()) -> list[str]:
    return [cxx, *flags(), *extra, "-isystem", jax.ffi.include_dir(), "-o", str(output), str(SOURCE)]


def library_path(cxx: str) -> Path:
    """Where the library built by `cxx` for this source, jaxlib and CPU lives."""
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False).stdout
    key = hashlib.sha256("\0".join([SOURCE.read_text(), " ".join(flags()), version, jaxlib.__version__, _cpu_identity()]).encode()).hexdigest()
    return cache_dir() / f"bitwise_mlp-{key[:16]}.so"


def build(cxx: str) -> Path:
    """The built library (compiled now unless cached); RuntimeError with the compiler's first error line on failure."""
    path = library_path(cxx)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        output = Path(scratch) / path.name
        result = subprocess.run(build_command(cxx, output), capture_output=True, text=True, timeout=BUILD_SECONDS, check=False)
        if result.returncode != 0:
            lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
            errors = [line for line in lines if "error" in line] or lines  # the first error, not the notes after it
            raise RuntimeError(f"{cxx} failed on {SOURCE.name}: {errors[0] if errors else f'exit {result.returncode}'}")
        os.replace(output, path)  # atomic: a concurrent build of the same key writes the same bytes
    return path


_REGISTERED: list[Any] = []  # the library XLA calls, kept loaded; registered once per process


@functools.lru_cache(maxsize=None)
def status() -> tuple[bool, str]:
    """(whether the native backend runs here, the library's path or why not). Builds and registers it
    once per process (`status.cache_clear()` asks again, e.g. after a compiler was installed)."""
    if _REGISTERED:
        return True, _REGISTERED[0][0]
    cxx = compiler()
    if cxx is None:
        logging.warning("bitnet native backend unavailable: no C++ compiler (set CXX, or install g++ or clang++)")
        return False, "no C++ compiler found (set CXX, or install g++ or clang++)"
    try:
        path = build(cxx)
        library = ctypes.cdll.LoadLibrary(str(path))
        jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(getattr(library, SYMBOL)), platform="cpu")
    except (OSError, RuntimeError, subprocess.SubprocessError, AttributeError) as error:
        logging.warning("bitnet native backend unavailable: %s", error)
        return False, str(error)
    _REGISTERED.append((str(path), library))
    return True, str(path)


def available() -> bool:
    return status()[0]


def layer_operands(model) -> tuple[list[jax.Array], tuple[int, ...], tuple[int, ...]]:
    """The kernel's six buffers per layer (sign, mask, bias, nonzeros, polarity, threshold: the packed
    layer's own arrays, so a call runs no XLA operation besides the kernel), each layer's mode and
    whether it has threshold neurons."""
    operands, modes, thresholds = [], [], []
    for index, layer in enumerate(model.layers):
        binary = index == 0 and model.input_bits == "binary"
        modes.append(BINARY if binary else DENSE if layer.dense else MASKED)
        thresholds.append(int(layer.threshold is not None))
        numbers = [layer.bias, layer.nonzeros, *((layer.polarity, layer.threshold) if thresholds[-1] else (layer.bias, layer.bias))]
        operands += [jnp.asarray(layer.sign, jnp.uint32), jnp.asarray(layer.mask, jnp.uint32), *(jnp.asarray(n, jnp.int32) for n in numbers)]
    return operands, tuple(modes), tuple(thresholds)


def native_predict(model, inputs: jax.Array) -> jax.Array:
    """Class predictions int32 [batch] from encoded inputs [batch, n_in] (a bit is value > 0) by the
    native kernel (built and registered on the first call; a RuntimeError says why where it cannot be)."""
    built, detail = status()
    if not built:
        raise RuntimeError(f"the native backend is unavailable here ({detail}); use backend 'popcount'")
    n_in = model.layers[0].n_in
    if jnp.ndim(inputs) != 2 or jnp.shape(inputs)[1] != n_in:
        raise ValueError(f"inputs must be [batch, {n_in}] for this model, got shape {tuple(jnp.shape(inputs))}")
    return _native_predict(model, inputs)


@jax.jit
def _native_predict(model, inputs: jax.Array) -> jax.Array:
    inputs = jnp.asarray(inputs)
    if inputs.dtype != jnp.float32:
        inputs = (inputs > 0).astype(jnp.float32)
    operands, modes, thresholds = layer_operands(model)
    call = jax.ffi.ffi_call(TARGET, jax.ShapeDtypeStruct((inputs.shape[0],), jnp.int32), vmap_method="sequential")
    return call(inputs, *operands, modes=np.asarray(modes, np.int64), thresholds=np.asarray(thresholds, np.int64))
