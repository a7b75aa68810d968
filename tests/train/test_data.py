from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from smokeclear.errors import UserError
from smokeclear.train import data
from smokeclear.train.desmoke import DesmokeTrainConfig, PairSampler
from smokeclear.train.recipe import TrainingFrames


def test_split_is_deterministic_and_roughly_70_10_20():
    names = [f"frame_{i:04d}.png" for i in range(2000)]
    splits = [data.split_of(name) for name in names]
    assert splits == [data.split_of(name) for name in names]
    shares = {s: splits.count(s) / len(splits) for s in ("train", "val", "test")}
    assert shares["train"] == pytest.approx(0.7, abs=0.04)
    assert shares["val"] == pytest.approx(0.1, abs=0.03)
    assert shares["test"] == pytest.approx(0.2, abs=0.03)


def test_scene_seeds_are_disjoint_between_splits():
    seen = [set(seeds) for seeds in data.SCENE_SEEDS.values()]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])


def test_clean_folders_load_by_split(tmp_path: Path):
    for i in range(30):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), np.full((10, 12, 3), i, np.uint8))
    counts = {s: len(data.load_clean_folders([tmp_path], s)) for s in ("train", "val", "test")}
    assert sum(counts.values()) == 30 and all(counts.values())
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no images"):
        data.image_files(empty)
    with pytest.raises(UserError, match="is not a folder"):
        data.image_files(tmp_path / "missing")


def test_random_crop_upscales_small_images(rng):
    image = np.zeros((20, 30, 3), np.float32)
    (crop,) = data.random_crop((image,), 64, rng)
    assert crop.shape == (64, 64, 3)


def test_pair_sampler_is_deterministic_and_adds_smoke():
    from smokeclear.synthetic.scene import LaparoscopicScene

    photos = [np.random.default_rng(0).random((80, 90, 3)).astype(np.float32) * 0.6]
    scenes = [LaparoscopicScene(96, 64, seed=1)]
    draws = []
    for _ in range(2):
        config = DesmokeTrainConfig(patch_size=32, scene_fraction=0.5)
        sampler = PairSampler(TrainingFrames(photos, scenes), config, np.random.default_rng(9))
        draws.append(sampler.batch(6))
    np.testing.assert_array_equal(draws[0][0].numpy(), draws[1][0].numpy())
    smoky, clean = draws[0]
    assert smoky.shape == clean.shape == (6, 3, 32, 32)
    assert float((smoky - clean).mean()) > 0.01, "smoke brightens the scene on average"


def test_clean_patch_draws_scene_frames_or_photos_by_the_fraction(rng):
    photo = np.full((40, 40, 3), 0.25, np.float32)
    scenes = data.scenes_for("train", 64, 48)[:1]
    from_photo = data.clean_patch([photo], scenes, 32, 0.0, rng)
    assert from_photo.shape == (32, 32, 3) and np.all(from_photo == 0.25)
    from_scene = data.clean_patch([photo], scenes, 32, 1.0, rng)
    assert from_scene.dtype == np.float32 and from_scene.std() > 0, "a rendered frame"
    assert data.clean_patch([], scenes, 32, 0.0, rng).std() > 0, "no photos: the scene"


def test_oriented_pair_batch_turns_and_mirrors_both_images_alike(rng):
    pairs = [(rng.random((8, 8, 3), dtype=np.float32),) * 2 for _ in range(6)]
    pairs = [(image, image * 2) for image, _ in pairs]
    degraded, clean = data.oriented_pair_batch(pairs, np.random.default_rng(0))
    assert degraded.shape == clean.shape == (6, 3, 8, 8)
    assert torch.equal(clean, degraded * 2), "the same orientation for both images"
    originals = torch.from_numpy(np.stack([p[0] for p in pairs]).transpose(0, 3, 1, 2))
    changed = [not torch.equal(degraded[k], originals[k]) for k in range(6)]
    assert any(changed), "some pairs are turned or mirrored"
    for k in range(6):
        variants = [torch.rot90(originals[k], t, dims=(1, 2)) for t in range(4)]
        variants += [v.flip(-1) for v in variants]
        assert any(torch.equal(degraded[k], v) for v in variants), "a turn and a mirror only"


def test_random_crop_rescales_every_image_alike_by_the_drawn_factor():
    # A 64 px checkerboard of 8 px squares, halved: squares of 4 px in the crop.
    board = (np.indices((64, 64)).sum(axis=0) // 8 % 2).astype(np.float32)
    image = np.repeat(board[..., None], 3, axis=2)
    first, second = data.random_crop(
        (image, image.copy()), 16, np.random.default_rng(0), scale_range=(0.5, 0.5)
    )
    np.testing.assert_array_equal(first, second)
    row = first[8, :, 0]
    runs = np.flatnonzero(np.diff(row > 0.5)) + 1
    assert set(np.diff(runs)) == {4}


def test_rescale_keeps_size_at_factor_one_and_shrinks_by_area():
    image = np.ones((40, 60, 3), np.float32)
    (same,) = data.rescale((image,), 1.0)
    assert same is image
    (half,) = data.rescale((image,), 0.5)
    assert half.shape == (20, 30, 3)
    np.testing.assert_allclose(half, 1.0)
