"""Moved: the small models of the built-in digits benchmark live in :mod:`dgbench.builtin`.

This module keeps ``from dgbench.models.small import load_builtin`` (and every other old name)
working for one release. It imports nothing itself, so the model zoo never imports the data.
"""
from ..compat import forward

__getattr__ = forward(__name__, ("dgbench.builtin.small", "dgbench.builtin.names", "dgbench.builtin.checkpoints"))
