"""Moved: the built-in digits datasets live in :mod:`dgbench.builtin.digits`.

This module keeps ``from dgbench.data.digits import ...`` working for one release.
"""
from ..compat import forward

__getattr__ = forward(__name__, ("dgbench.builtin.digits",))
