"""The "native" backend: a whole packed MLP as one XLA FFI call on the CPU (`native/bitwise_mlp.cc`).

XLA's loop fusion leaves the popcount network at 35-50 % of the CPU's XOR + popcount peak (it never
holds byte counts across words and never blocks over rows; BENCHMARKS.md). The C++ kernel does both.
It is built on first use with the system C++ compiler (`$CXX`, else `c++`, `g++`, `clang++`;
`-O3 -march=native`, or the target in `$BITNET_NATIVE_MARCH`, e.g. `x86-64-v3` for a cluster of
mixed CPUs) against the XLA FFI headers that ship with jaxlib, cached under `$BITNET_NATIVE_CACHE`
(default `~/.cache/bitnet/native`) by a key of source, compiler, flags, jaxlib and CPU, and
registered with `jax.ffi` (~10 s the first time). Where it cannot be built `status()` says why (also
logged) and "auto" picks the XLA popcount backend instead; the integers are the same either way.
The kernel reads a model as one buffer (`prepare`, a `NativeModel`), which `PackedModel.native_model`
makes once per model: a call passes two arrays, inputs and model.
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

import flax.struct
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


@flax.struct.dataclass
class NativeModel:
    """A packed model as the kernel reads it: every layer's arrays in one buffer, so that a call passes
    two arrays (inputs, model) instead of six per layer. Per layer, at the offsets in `layout`,
    with the layer's neurons padded to `padded`, a multiple of 32 (padding neurons: zero weights,
    never firing):
        base       int32 [padded]          a = base + factor * total: bias + popcount(mask) (n_in if
                                           dense), or bias - 32 * words for 0/1 inputs (factor +1)
        polarity   int32 [padded]          +1 or -1, and
        threshold  int32 [padded]          a hidden bit is 1 where polarity * a >= threshold (sign
                                           neurons: +1 and 0)
        sign       uint32 [padded, words]  the packed layer's sign words
        other      uint32 [padded, words]  its mask, or for 0/1 inputs the -1 weights (mask AND NOT
                                           sign); a dense layer has none (its offset is sign's)
    `layout` holds LAYOUT_FIELDS integers per layer: mode, n_out, padded, words, and the offsets (in
    uint32 words) of base, polarity, threshold, sign and other."""

    words: jax.Array  # uint32 [size]
    layout: tuple[int, ...] = flax.struct.field(pytree_node=False)
    n_in: int = flax.struct.field(pytree_node=False)


LAYOUT_FIELDS = 9
ALIGN_WORDS = 16  # every array starts on a 64-byte boundary


def prepare(model) -> NativeModel:
    """The kernel's form of a bitnet.deploy.inference.PackedModel (made once; PackedModel.native_model
    keeps it). JAX operations, so that it also works on a model traced under an outer `jax.jit`."""
    pieces: list[jax.Array] = []
    size = 0

    def place(values, fill: int, dtype) -> int:
        """Appends `values` (rows padded to `padded` with `fill`) on the next 64-byte boundary; its offset."""
        nonlocal size
        values = jnp.asarray(values).astype(dtype)
        values = jnp.concatenate([values, jnp.full((padded - values.shape[0], *values.shape[1:]), fill, dtype)])
        gap = -size % ALIGN_WORDS
        pieces.extend([jnp.zeros(gap, jnp.uint32), jax.lax.bitcast_convert_type(values, jnp.uint32).ravel()])
        at, size = size + gap, size + gap + values.size
        return at

    layout: list[int] = []
    for index, layer in enumerate(model.layers):
        binary = index == 0 and model.input_bits == "binary"
        mode = BINARY if binary else DENSE if layer.dense else MASKED
        n_out, words = layer.sign.shape
        padded = -(-n_out // 32) * 32
        count = -32 * words if binary else layer.n_in if layer.dense else layer.nonzeros
        sign_neurons = layer.threshold is None
        offsets = [place(jnp.asarray(layer.bias, jnp.int32) + count, 0, jnp.int32),
                   place(jnp.ones(n_out) if sign_neurons else layer.polarity, 1, jnp.int32),
                   place(jnp.zeros(n_out) if sign_neurons else layer.threshold, np.iinfo(np.int32).max, jnp.int32),
                   place(layer.sign, 0, jnp.uint32)]
        offsets.append(offsets[-1] if mode == DENSE else place(layer.mask & ~layer.sign if binary else layer.mask, 0, jnp.uint32))
        layout += [mode, n_out, padded, words, *offsets]
    return NativeModel(jnp.concatenate(pieces), tuple(layout), model.layers[0].n_in)


@jax.jit
def native_predict(model: NativeModel, inputs: jax.Array) -> jax.Array:
    """Class predictions int32 [batch] from encoded inputs [batch, n_in] (a bit is value > 0) by the
    native kernel (built and registered on the first call; a RuntimeError says why where it cannot be).
    The checks run when a shape is first traced, not on every call: at batch 1 each Python step counts."""
    built, detail = status()
    if not built:
        raise RuntimeError(f"the native backend is unavailable here ({detail}); use backend 'popcount'")
    inputs = jnp.asarray(inputs)
    if inputs.ndim != 2 or inputs.shape[1] != model.n_in:
        raise ValueError(f"inputs must be [batch, {model.n_in}] for this model, got shape {inputs.shape}")
    if inputs.dtype != jnp.float32:
        inputs = (inputs > 0).astype(jnp.float32)
    call = jax.ffi.ffi_call(TARGET, jax.ShapeDtypeStruct((inputs.shape[0],), jnp.int32), vmap_method="sequential")
    return call(inputs, model.words, layout=np.asarray(model.layout, np.int64))
