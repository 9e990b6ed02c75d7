"""Training: config checks and the stage plan, the jitted steps and chunks, the loop of a stage, K
runs stacked in one program, the binarized model a run ends with, and the run pipeline.

Imports: errors, faults, core, input, deploy, workdir
"""
