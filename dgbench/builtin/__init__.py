"""The built-in benchmark, in one package: data and models that need no download.

* :mod:`.domains`: the domains, declared once (handwritten and typeset digits; their scenes);
* :mod:`.digits`, :mod:`.digit_scenes`: the datasets (registered with :mod:`dgbench.data.base`);
* :mod:`.small`, :mod:`.scene_models`: the small IBN ResNets and their DeepLabs (registered
  with :mod:`dgbench.models.registry`);
* :mod:`.checkpoints`: the shipped checkpoints (files under ``dgbench/assets/checkpoints``) and
  their manifests;
* :mod:`.names`: which model a short name (``ibn_a``) means on a built-in domain.

The registries load the registering modules through :data:`dgbench.plugins.BUILTIN`, as they
load an installed package's, so the zoo (:mod:`dgbench.models`) and the dataset modules
(:mod:`dgbench.data`) never import this package. Importing this package itself imports nothing.
"""
