"""The segmentation trainer's one configuration object: a SegTrainJob (its SegTrainConfig inside)."""
from __future__ import annotations

from pathlib import Path

import pytest

from dgbench.train.segmentation import SegTrainConfig, SegTrainJob, run_training, train_segmentation

SMALL = dict(iterations=2, batch_size=4, crop_size=(32, 32), device="cpu", num_workers=0, progress=False,
             pretrained_backbone=False)


def test_settings_by_name_fill_the_config_and_the_job(tmp_path: Path) -> None:
    job = SegTrainJob.build("digit-scenes", "ibn_a", epochs=3, crop_size=[48, 48], out_dir=tmp_path, indices=[3, 1],
                            seed=5, num_workers=0)
    cfg = job.config
    assert isinstance(cfg, SegTrainConfig) and cfg.model == "deeplab_small_resnet_ibn_a"
    assert (cfg.epochs, cfg.crop_size, cfg.seed, cfg.num_classes) == (3, (48, 48), 5, 11)  # the scenes' classes
    assert (cfg.subset_size, job.indices, job.out_dir, job.num_workers) == (2, [3, 1], tmp_path, 0)
    assert cfg.subset_sha256 and cfg.init_weights_sha256 is None
    assert SegTrainJob.build("digit-scenes", "ibn_a", amp=False).precision == "fp32"  # the older switch
    assert len(job.train_dataset()) == 400  # the whole split, as the subset indices refer to it


def test_an_unknown_setting_is_named() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument.*: nope"):
        SegTrainJob.build("digit-scenes", "ibn_a", nope=1)
    with pytest.raises(TypeError, match="subset_sha256"):  # derived from indices, not set by hand
        train_segmentation("digit-scenes", "ibn_a", subset_sha256="0" * 64)


def test_a_built_job_trains_as_the_keywords_do(tmp_path: Path) -> None:
    by_keywords = train_segmentation("digit-scenes", "ibn_a", out_dir=tmp_path / "a", seed=2, **SMALL)
    job = SegTrainJob.build("digit-scenes", "ibn_a", out_dir=tmp_path / "b", seed=2, **SMALL)
    by_job = run_training(job)
    assert by_job.losses == by_keywords.losses and len(by_job.losses) == 2
    assert (tmp_path / "a" / "model.pth").read_bytes() == (tmp_path / "b" / "model.pth").read_bytes()
