"""Runs as a user sees them: evaluating a workdir or a model file, sweeps (expanding, grouping,
tabulating) and the registry of published runs.

Imports: errors, faults, core, input, deploy, workdir, training
"""
