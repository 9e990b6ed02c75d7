"""The data: IDX data sets prepared through a tensorflow-datasets builder (no TensorFlow), the
train/validation/test splits, the seeded batch order, and the shift augmentation of encoded images.

Imports: errors, faults, core
"""
