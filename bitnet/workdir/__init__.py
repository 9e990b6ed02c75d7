"""What a run leaves in its workdir, and how it is written safely: the workdir lock, provenance
segments in config.json, orbax checkpoints, the metrics lines, and the SIGTERM/SIGINT handling that
saves before a stop.

Imports: errors, faults
"""
