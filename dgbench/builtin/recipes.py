"""How the shipped checkpoints were trained: the built-in benchmark's recipes, as data.

``dgbench train --reproduce-builtin`` retrains the digits classifiers with :data:`CLASSIFIER_RECIPE`
(the classification trainer's defaults are this recipe), and ``train_builtin_scene_models`` the
scene DeepLabs of :data:`SCENE_MODELS` with :data:`SCENE_RECIPE`; both manifests record the recipe.
"""
from __future__ import annotations

from typing import Any

# Seeded, one thread (see dgbench.train.classification for what each knob does).
CLASSIFIER_RECIPE: dict[str, Any] = {
    "epochs": 15,
    "batch_size": 64,
    "lr": 0.1,
    "weight_decay": 5e-4,
    "seed": 0,
    "num_threads": 1,
}

SCENE_MODELS = ("deeplab_small_resnet", "deeplab_small_resnet_ibn_a", "deeplab_small_resnet_ibn_b")
SCENE_RECIPE: dict[str, Any] = dict(
    # The paper's optimizer and schedule; fewer epochs and 64x64 crops for 400 small scenes; no
    # mirror (a mirrored digit is another glyph); the backbone starts from the digits benchmark's
    # shipped classifier of the *same* domain (the scenes' analogue of ImageNet pretraining,
    # without showing a model the other domain).
    epochs=12, batch_size=16, base_lr=0.01, lr_power=0.9, momentum=0.9, weight_decay=1e-4,
    crop_size=(64, 64), scale_range=(0.75, 1.25), aspect_range=(0.9, 1.1), mirror=False, seed=0,
)
