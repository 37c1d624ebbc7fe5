"""Datasets. Importing this package registers the dataset modules with :mod:`.base`'s registry.

The built-in benchmark's datasets (digits, digit scenes) register from :mod:`dgbench.builtin`,
loaded with the installed packages' datasets (see :mod:`dgbench.plugins`).
"""
from . import imagenet  # noqa: F401  (registers "imagenet")
from . import seg_registry  # noqa: F401,E402  (registers the segmentation datasets)
