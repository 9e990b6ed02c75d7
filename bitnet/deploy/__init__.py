"""Packed models: bit packing into uint32 words, XNOR-popcount inference, the portable .npz format
(bitnet-packed-v1/-v2) and the per-layer model summary. Nothing here trains or reads a workdir.

Imports: errors, faults, core
"""
