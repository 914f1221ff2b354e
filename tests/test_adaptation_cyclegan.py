"""CycleGAN: the networks' defining properties, learning a known mapping between toy domains, determinism,
kill-and-resume, translation of a whole dataset, the held-out specimen kept out, and bad configurations."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from synthex_lib.adaptation.config import FAULT_ENV, CycleGANConfig, adda_config, cyclegan_config
from synthex_lib.adaptation.cyclegan.networks import PatchDiscriminator, ResnetGenerator, receptive_field
from synthex_lib.adaptation.cyclegan.train import CHECKPOINT, RECORD, ImagePool, lr_factor, train_cyclegan
from synthex_lib.adaptation.cyclegan.translate import translate, translated_dataset
from synthex_lib.adaptation.data import DomainImages, HeldOutLeak, standardize, unlabelled_training_images
from synthex_lib.adaptation.runs import read_record
from synthex_lib.core.constants import HIP_LANDMARKS
from synthex_lib.core.errors import ConfigError
from synthex_lib.datasets.layout import SpecimenImages, read_group, read_poses, write_group, write_landmark_names

#: a tiny CycleGAN: seconds on one core
TINY = cyclegan_config("smoke", ngf=4, ndf=4, n_blocks=1, n_layers_d=2, epochs=2, decay_epochs=1, batch_size=2,
                       pool_size=4)


def _blobs(n: int, size: int, seed: int) -> np.ndarray:
    """Smooth images: three bright Gaussian blobs (radius 2-5 px) on a dark background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((n, size, size), np.float32)
    for i in range(n):
        for _ in range(3):
            cx, cy = rng.uniform(4, size - 4, 2)
            r = rng.uniform(2, 5)
            out[i] += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
    return out


def _true_map(a: np.ndarray) -> np.ndarray:
    """The toy domain shift A -> B: inversion, then a Gaussian blur of sigma 1.5 px."""
    return np.stack([gaussian_filter(1.0 - x, 1.5) for x in a]).astype(np.float32)


def _z(x: np.ndarray) -> np.ndarray:
    return standardize(torch.from_numpy(x)[:, None])[0][:, 0].numpy()


def test_patchgan_is_70px_and_generator_keeps_size():
    # Zhu et al. 2017: 3 strided layers give a 70 x 70 receptive field; 1 and 2 give 16 and 34
    assert receptive_field(PatchDiscriminator(4, n_layers=3)) == 70
    assert receptive_field(PatchDiscriminator(4, n_layers=2)) == 34
    assert receptive_field(PatchDiscriminator(4, n_layers=1)) == 16
    g = ResnetGenerator(4, 1, output_range=2.5)
    x = torch.randn(2, 1, 37, 30) * 10
    with torch.no_grad():
        y = g(x)
    assert y.shape == x.shape and float(y.abs().max()) < 2.5  # any size in, same size out, bounded by the range
    assert PatchDiscriminator(4, 3)(torch.randn(1, 1, 70, 70)).shape == (1, 1, 6, 6)


def test_image_pool_and_lr_schedule():
    pool = ImagePool(3)
    rng = np.random.default_rng(0)
    first = torch.arange(3.0).view(3, 1, 1, 1)
    assert torch.equal(pool.query(first, rng), first)  # filling: the new images come back
    returned_old = 0
    for i in range(2000):
        new = torch.full((1, 1, 1, 1), 100.0 + i)
        out = pool.query(new, rng)
        returned_old += int(float(out) != 100.0 + i)
        assert len(pool.images) == 3 and any(float(t) == 100.0 + i for t in pool.images) == (float(out) != 100.0 + i)
    assert 0.46 < returned_old / 2000 < 0.54  # an old image with probability 0.5
    assert torch.equal(ImagePool(0).query(first, rng), first)
    cfg = cyclegan_config("smoke", epochs=3, decay_epochs=4)
    assert [lr_factor(e, cfg) for e in range(7)] == pytest.approx([1, 1, 1, 0.8, 0.6, 0.4, 0.2])


def test_tiny_cyclegan_learns_a_known_mapping(tmp_path):
    """B = blur(1 - A): the cycle error falls and G_AB(A) is far closer to the true B than A itself."""
    a, b = _blobs(32, 32, 0), _true_map(_blobs(32, 32, 1))  # unpaired: B made from other images
    # the identity loss (Zhu et al.'s, for colour-preserving tasks) pulls G_AB(b) towards b and so fights a
    # polarity inversion of the whole image: this toy mapping is learned without it
    cfg = cyclegan_config("smoke", ngf=8, ndf=8, n_blocks=2, n_layers_d=2, epochs=5, decay_epochs=5, batch_size=4,
                          identity_fraction=0.0, pool_size=16)
    ckpt = train_cyclegan(a, b, cfg, tmp_path, seed=0, progress=False)
    cycle = [h["cycle"] for h in read_record(tmp_path / RECORD)["history"]]
    assert len(cycle) == 10 and cycle[-1] < 0.5 * cycle[0]
    test_a = _blobs(16, 32, 5)
    truth = _z(_true_map(test_a))
    err_translated = float(np.mean((_z(translate(ckpt, test_a)) - truth) ** 2))
    err_untranslated = float(np.mean((_z(test_a) - truth) ** 2))
    assert err_translated < 0.2 * err_untranslated, (err_translated, err_untranslated)


def test_same_seed_same_bytes_and_translation_is_deterministic(tmp_path):
    a, b = _blobs(6, 24, 0), _true_map(_blobs(5, 24, 1))
    p1 = train_cyclegan(a, b, TINY, tmp_path / "1", seed=3, progress=False)
    p2 = train_cyclegan(a, b, TINY, tmp_path / "2", seed=3, progress=False)
    p3 = train_cyclegan(a, b, TINY, tmp_path / "3", seed=4, progress=False)
    assert p1.read_bytes() == p2.read_bytes() != p3.read_bytes()
    x = _blobs(3, 28, 9)
    t1 = translate(p1, x, batch=2)
    assert t1.dtype == np.float32 and t1.shape == x.shape
    assert t1.tobytes() == translate(p2, x, batch=2).tobytes()  # same checkpoint bytes, same batches: same bytes
    np.testing.assert_allclose(translate(p1, x, batch=3), t1, rtol=1e-5, atol=1e-5)  # other batches: rounding
    assert not np.array_equal(t1, translate(p3, x))
    # the output lives on the input's scale: a gain and an offset of the input carry through
    np.testing.assert_allclose(translate(p1, 3.0 * x + 5.0), 3.0 * t1 + 5.0, rtol=1e-4, atol=1e-4)


def test_kill_and_resume_gives_the_same_checkpoint_bytes(tmp_path, monkeypatch):
    a, b = _blobs(6, 24, 0), _true_map(_blobs(6, 24, 1))
    steps_per_epoch = 3  # 6 images, batch 2
    monkeypatch.setenv(FAULT_ENV, str(steps_per_epoch + 2))  # killed in the second epoch
    with pytest.raises(RuntimeError, match="injected fault"):
        train_cyclegan(a, b, TINY, tmp_path / "killed", seed=1, progress=False)
    blob = torch.load(tmp_path / "killed" / CHECKPOINT, weights_only=False)
    assert blob["state"]["epoch"] == 1 and not list((tmp_path / "killed").glob("*.part"))
    monkeypatch.delenv(FAULT_ENV)
    resumed = train_cyclegan(a, b, TINY, tmp_path / "killed", seed=1, progress=False)
    fresh = train_cyclegan(a, b, TINY, tmp_path / "fresh", seed=1, progress=False)
    assert resumed.read_bytes() == fresh.read_bytes()
    # a checkpoint of other parameters is refused, not resumed
    with pytest.raises(ConfigError, match="out_dir.*config"):
        train_cyclegan(a, b, TINY.with_overrides(ngf=5), tmp_path / "fresh", seed=1, progress=False)


def _specimen(n: int, size: int, seed: int) -> SpecimenImages:
    rng = np.random.default_rng(seed)
    segs = rng.integers(0, 7, (n, size, size)).astype(np.uint8)
    lands = rng.uniform(0, size, (n, 2, len(HIP_LANDMARKS))).astype(np.float32)
    P = rng.normal(size=(n, 3, 4))
    return SpecimenImages(_blobs(n, size, seed) * 3.0 + 1.0, segs, lands, rng.random((n, len(HIP_LANDMARKS))) > 0.3,
                          P)


def _controlled_file(path, groups=("01", "02", "03"), n=3, size=24):
    with h5py.File(path, "w") as f:
        write_landmark_names(f, HIP_LANDMARKS)
        f.attrs["projector"] = "naive"
        f.attrs["pixel_mm"] = 0.8
        for k, g in enumerate(groups):
            write_group(f, g, _specimen(n, size, k))
            f[g].create_dataset("P_true", data=np.full((n, 3, 4), float(k)))
    return path


def test_translated_dataset_keeps_the_layout_and_is_read_back(tmp_path):
    a, b = _blobs(6, 24, 0), _true_map(_blobs(6, 24, 1))
    ckpt = train_cyclegan(a, b, TINY, tmp_path / "gan", seed=0, progress=False)
    src = _controlled_file(tmp_path / "naive.h5")
    out = translated_dataset(src, ckpt, tmp_path / "out", batch=2, progress=False)
    assert out.name.startswith("cyc-naive-") and out.suffix == ".h5"
    for g in ("01", "02", "03"):
        before, after = read_group(src, g), read_group(out, g)
        np.testing.assert_array_equal(after.projs, translate(ckpt, before.projs, batch=2))
        assert not np.allclose(after.projs, before.projs)
        for k in ("segs", "lands", "visible", "P"):
            np.testing.assert_array_equal(getattr(after, k), getattr(before, k))
        for k, v in read_poses(src, g).items():
            np.testing.assert_array_equal(read_poses(out, g)[k], v)
    with h5py.File(out) as f:
        assert f.attrs["pixel_mm"] == 0.8 and f.attrs["adaptation"] == "cyclegan"
        assert f.attrs["projector"] == "cyclegan(naive)" and int(f["land-names/num-lands"][()]) == len(HIP_LANDMARKS)
        assert f["01/projs"].fletcher32 and f["01/projs"].chunks == (1, 24, 24)
    stamp = out.stat().st_mtime_ns
    assert translated_dataset(src, ckpt, tmp_path / "out", progress=False) == out  # keyed: read back, not rewritten
    assert out.stat().st_mtime_ns == stamp
    other = train_cyclegan(a, b, TINY, tmp_path / "gan2", seed=1, progress=False)
    assert translated_dataset(src, other, tmp_path / "out", progress=False) != out  # another CycleGAN, another key


def test_held_out_specimen_never_reaches_the_cyclegan(tmp_path):
    real = _controlled_file(tmp_path / "real.h5")
    with pytest.raises(HeldOutLeak, match="held-out group"):
        unlabelled_training_images(real, held_out="01", groups=["01", "02"])
    with pytest.raises(ConfigError, match="held_out"):
        unlabelled_training_images(real, held_out="07")
    target = unlabelled_training_images(real, held_out="01")
    assert target.group_set() == ["02", "03"] and len(target) == 6
    sim = DomainImages(_blobs(9, 24, 3), np.repeat(["01", "02", "03"], 3))
    with pytest.raises(HeldOutLeak, match="source_images"):  # the simulated replicas of the test specimen too
        train_cyclegan(sim, target, TINY, tmp_path / "leak", held_out="01", progress=False)
    with pytest.raises(HeldOutLeak, match="unknown groups"):  # a bare array cannot be checked
        train_cyclegan(sim.images[3:], target.images, TINY, tmp_path / "leak", held_out="01", progress=False)
    assert not (tmp_path / "leak").exists()
    train_sim = DomainImages(sim.images[3:], sim.groups[3:])
    train_cyclegan(train_sim, target, TINY, tmp_path / "ok", held_out="01", progress=False)
    seen = read_record(tmp_path / "ok" / RECORD)["groups_seen"]
    assert seen == {"source": ["02", "03"], "target": ["02", "03"]}


@pytest.mark.parametrize(("make", "field"), [
    (lambda: cyclegan_config("smoke", ngf=0), "'ngf'"),
    (lambda: cyclegan_config("smoke", beta1=1.5), "'beta1'"),
    (lambda: cyclegan_config("smoke", identity_fraction=-1), "'identity_fraction'"),
    (lambda: cyclegan_config("smoke", crop_px=4), "'crop_px'"),
    (lambda: cyclegan_config("smoke", flip="yes"), "'flip'"),
    (lambda: cyclegan_config("smoke", epochs=0, decay_epochs=0), "'epochs'"),
    (lambda: cyclegan_config("smoke", ngff=3), "ngff"),
    (lambda: cyclegan_config("huge"), "'profile'"),
    (lambda: adda_config("smoke", k_disc=0), "'k_disc'"),
    (lambda: adda_config("smoke", disc_channels=()), "'disc_channels'"),
    (lambda: adda_config("smoke", adv_weight=-0.1), "'adv_weight'"),
    (lambda: adda_config("smoke", disc_gamma=0), "'disc_gamma'"),
])
def test_bad_config_raises_config_error_naming_the_field(make, field):
    with pytest.raises(ConfigError, match=field):
        make()


def test_bad_input_raises_config_error(tmp_path):
    a = _blobs(4, 24, 0)
    with pytest.raises(ConfigError, match="'source_images'"):
        train_cyclegan(a[0], a, TINY, tmp_path, progress=False)
    bad = a.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ConfigError, match="'target_images'"):
        train_cyclegan(a, bad, TINY, tmp_path, progress=False)
    with pytest.raises(ConfigError, match="'config'"):
        train_cyclegan(a, a, {"ngf": 4}, tmp_path, progress=False)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="'crop_px'"):
        train_cyclegan(a, a, TINY.with_overrides(crop_px=32), tmp_path, progress=False)
    assert isinstance(TINY, CycleGANConfig)
