"""Datasets. Importing this package registers the dataset modules with :mod:`.base`'s registry."""
from . import imagenet  # noqa: F401  (registers "imagenet")
from . import digits  # noqa: F401,E402  (registers "digits" and "typeset-digits")
from . import seg_registry  # noqa: F401,E402  (registers the segmentation datasets)
