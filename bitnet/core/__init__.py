"""The bitwise math and layers: the paper's quantizers (sign, ternary masks, straight-through
estimators), the input encodings, threshold neurons and the Flax MLP that uses them.

Imports: errors, faults
"""
