"""Packed models: bit packing into uint32 words, XNOR-popcount inference, the portable .npz format
(bitnet-packed-v1/-v2), the per-layer model summary and the text of a dependency-free C99 runtime.
Nothing here trains or reads a workdir.

Imports: errors, faults, core
"""
