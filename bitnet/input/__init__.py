"""The data: IDX files read and checked (idx.py, numpy alone), IDX data sets prepared through a
tensorflow-datasets builder (no TensorFlow), the train/validation/test splits, the seeded batch
order, and the shift augmentation of encoded images.

Imports: errors, faults, core
"""
