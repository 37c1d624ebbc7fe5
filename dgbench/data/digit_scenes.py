"""Moved: the built-in digit scenes live in :mod:`dgbench.builtin.digit_scenes`.

This module keeps ``from dgbench.data.digit_scenes import ...`` working for one release.
"""
from ..compat import forward

__getattr__ = forward(__name__, ("dgbench.builtin.digit_scenes",))
