"""QaTa-COV19 loader: v1, v2 and the SyntheX 5-fold layouts."""

from __future__ import annotations

import numpy as np
import pytest

from synthex_lib.core.errors import ConfigError, DataError
from synthex_lib.realdata.fixtures import write_qata_fixture
from synthex_lib.realdata.qata import QaTaCOV19


def test_v1_pairs_masks_and_unmasked(tmp_path):
    write_qata_fixture(tmp_path, "v1", n_images=4, n_masks=3, size=(20, 24))
    q = QaTaCOV19(tmp_path)  # found below the dataset folder
    assert q.layout == "v1" and len(q.pairs) == 3 and [p.name for p in q.pairs] == ["covid_1", "covid_2", "covid_3"]
    assert [p.name for p in q.unmasked] == ["covid_4.png"]
    img, mask = q.load(q.pairs[0])
    assert img.dtype == np.float32 and img.shape == (20, 24) and 0 <= img.min() and img.max() <= 1
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1} and mask[5:10, 6:18].all()
    imgs, masks = q.arrays(size=16)
    assert imgs.shape == (3, 16, 16) and masks.shape == (3, 16, 16) and set(np.unique(masks)) <= {0, 1}
    with pytest.raises(ConfigError, match="needs the 5-fold layout"):
        q.select(fold=1)


def test_folds_layout(tmp_path):
    write_qata_fixture(tmp_path, "folds", n_images=2, size=(16, 16))
    q = QaTaCOV19(tmp_path / "QaTa-COV19")
    assert q.layout == "folds" and len(q.pairs) == 5 * 3 * 2
    test2 = q.select(split="test", fold=2)
    assert [p.split for p in test2] == ["Fold2/test"] * 2 and test2[0].image.name == "00000.png"
    imgs, masks = q.arrays(split="train", fold=5)
    assert imgs.shape == (2, 16, 16) and masks.max() == 1
    with pytest.raises(ConfigError, match="no QaTa-COV19 pairs"):
        q.select(split="nonsense")


def test_v2_layout(tmp_path):
    write_qata_fixture(tmp_path, "v2", n_images=2, n_masks=2)
    q = QaTaCOV19(tmp_path)
    assert q.layout == "v2" and q.splits == ["Test Set", "Train Set"] and len(q.select(split="Test Set")) == 2


def test_bad_layouts(tmp_path):
    with pytest.raises(DataError, match="folder not found.*synthex data import qata-cov19"):
        QaTaCOV19(tmp_path / "nothing")
    (tmp_path / "random").mkdir()
    with pytest.raises(DataError, match="no QaTa-COV19 layout found"):
        QaTaCOV19(tmp_path / "random")
    base = write_qata_fixture(tmp_path / "a", "v1", n_images=2, n_masks=2)
    (base / "QaTa-COV19-v1" / "Images" / "covid_2.png").unlink()
    with pytest.raises(DataError, match=r"mask_covid_2\.png: mask without its image"):
        QaTaCOV19(tmp_path / "a")
    base = write_qata_fixture(tmp_path / "b", "v1", n_images=1, n_masks=1, size=(20, 24))
    write_qata_fixture(tmp_path / "c", "v1", n_images=1, n_masks=1, size=(10, 12))
    (base / "QaTa-COV19-v1/Ground-truths/mask_covid_1.png").write_bytes(
        (tmp_path / "c/QaTa-COV19/QaTa-COV19-v1/Ground-truths/mask_covid_1.png").read_bytes())
    q = QaTaCOV19(tmp_path / "b")
    with pytest.raises(DataError, match=r"mask shape \(10, 12\) differs"):
        q.load(q.pairs[0])
    (base / "QaTa-COV19-v1/Images/covid_1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DataError, match="covid_1.png: not a readable image"):
        q.load(q.pairs[0])
