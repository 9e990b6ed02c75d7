"""Runs as a user sees them: evaluating a workdir or a model file, sweeps (expanding, grouping,
tabulating), the registry of published runs, and the child commands a launcher runs (signals passed on).

Imports: errors, faults, core, input, deploy, workdir, training
"""
