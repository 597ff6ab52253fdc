"""Readers: Drishti-GS1 layout and the generic folder layout on many file kinds."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from tests.conftest import folder_params
from unetpp.data.ingest import ingest
from unetpp.data.prepared import sample_file, source_arrays
from unetpp.data.sources import drishti_samples, folder_samples, split_of
from unetpp.data.synthetic import generate_fundus
from unetpp.data.validate import DataValidationError
from unetpp.errors import UserError
from unetpp.params import Params


def _write_drishti(root: Path, test_gt: str) -> None:
    for folder, gt, names in (
        ("Training", "GT", ["drishtiGS_002", "drishtiGS_004", "drishtiGS_006"]),
        ("Test", test_gt, ["drishtiGS_001"]),
    ):
        (root / folder / "Images").mkdir(parents=True)
        for k, name in enumerate(names):
            s = generate_fundus(k, 64, seed=5)
            Image.fromarray(s.image).save(root / folder / "Images" / f"{name}.png")
            soft_dir = root / folder / gt / name / "SoftMap"
            soft_dir.mkdir(parents=True)
            for mask, suffix in ((s.masks[0], "OD"), (s.masks[1], "cup")):
                soft = mask.astype(np.uint8) * 255
                rim = mask & ~np.roll(mask, 3, axis=0)  # a band only some experts marked
                soft[rim] = 100
                Image.fromarray(soft).save(soft_dir / f"{name}_{suffix}segSoftmap.png")


@pytest.mark.parametrize("test_gt", ["Test_GT", "GT"])
def test_drishti_test_folder_is_the_test_split_and_val_comes_from_training(tmp_path: Path, test_gt: str) -> None:
    _write_drishti(tmp_path, test_gt)
    params = Params.model_validate({"data": {"source": "drishti", "path": str(tmp_path)}})
    samples = drishti_samples(params.data)
    splits = {s.id: s.split for s in samples}
    assert splits.pop("drishtiGS_001") == "test"
    assert sorted(splits.values()) == ["train", "train", "val"]  # one of the three Training/ images
    assert splits == {s.id: s.split for s in drishti_samples(params.data) if s.id in splits}  # seeded
    assert all(Path(m).is_file() for s in samples for m in s.source_masks)


def test_drishti_threshold(tmp_path: Path) -> None:
    _write_drishti(tmp_path, "Test_GT")
    areas = {}
    for threshold in (0.3, 0.5):
        params = Params.model_validate(
            {"data": {"source": "drishti", "path": str(tmp_path), "drishti": {"threshold": threshold}}}
        )
        loaded = drishti_samples(params.data)[0].load()
        assert loaded.masks.shape == (2, 64, 64) and loaded.masks.dtype == bool
        areas[threshold] = int(loaded.masks[0].sum())
    assert areas[0.3] > areas[0.5]  # the 100/255 band counts only at the lower threshold


def test_drishti_missing_layout_is_named(tmp_path: Path) -> None:
    params = Params.model_validate({"data": {"source": "drishti", "path": str(tmp_path)}})
    with pytest.raises(UserError, match="not a Drishti-GS1 folder"):
        drishti_samples(params.data)


def _flat_folder(root: Path) -> tuple[Path, Path]:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    return root / "images", root / "masks"


def test_folder_reads_png_jpg_tif_16bit_rgba(tmp_path: Path) -> None:
    images, masks = _flat_folder(tmp_path)
    s = generate_fundus(0, 64, seed=1)
    disc = s.masks[0].astype(np.uint8) * 255
    Image.fromarray(s.image).save(images / "rgb.png")
    Image.fromarray(s.image).save(images / "photo.jpg", quality=95)
    Image.fromarray(np.dstack([s.image, np.full((64, 64), 255, np.uint8)])).save(images / "rgba.png")
    tifffile.imwrite(images / "deep.tif", s.image.astype(np.uint16) * 257)
    Image.fromarray(s.image[..., 1].astype(np.uint16) * 257).save(images / "gray16.png")
    tifffile.imwrite(images / "planar.tiff", np.moveaxis(s.image, -1, 0))
    for stem in ("rgb", "photo", "rgba", "deep", "gray16"):
        Image.fromarray(disc).save(masks / f"{stem}.png")
    tifffile.imwrite(masks / "planar.tif", disc)
    params = folder_params(tmp_path)
    loaded = {smp.id: smp.load() for smp in folder_samples(params.data)}
    assert set(loaded) == {"rgb", "photo", "rgba", "deep", "gray16", "planar"}
    assert loaded["rgba"].channels == 3 and loaded["gray16"].channels == 1  # PNG alpha is transparency
    assert loaded["deep"].dtype == "uint16" and loaded["gray16"].dtype == "uint16"
    for name in ("rgba", "planar"):
        np.testing.assert_array_equal(loaded[name].image, s.image)
    np.testing.assert_array_equal(loaded["deep"].image, s.image.astype(np.uint16) * 257)  # values as stored
    assert all(v.image.shape[:2] == (64, 64) and v.mask_valid for v in loaded.values())
    np.testing.assert_array_equal(loaded["gray16"].image[..., 0], s.image[..., 1].astype(np.uint16) * 257)


def test_folder_instance_and_label_masks(tmp_path: Path) -> None:
    images, masks = _flat_folder(tmp_path)
    img = generate_fundus(0, 64, seed=1).image
    Image.fromarray(img).save(images / "a.png")
    instance = np.zeros((64, 64), np.uint16)
    instance[10:20, 10:20], instance[30:40, 30:40] = 1, 7
    Image.fromarray(instance).save(masks / "a.png")
    loaded = folder_samples(folder_params(tmp_path, folder={"mask_mode": "instance"}).data)[0].load()
    assert loaded.masks.shape == (1, 64, 64) and loaded.masks.sum() == 200 and loaded.mask_valid

    labels = np.zeros((64, 64), np.uint8)
    labels[10:40, 10:40], labels[20:30, 20:30] = 1, 2  # 1: disc rim, 2: cup
    Image.fromarray(labels).save(masks / "a.png")
    params = Params.model_validate(
        {
            "data": {
                "source": "folder",
                "path": str(tmp_path),
                "folder": {"mask_mode": "labels", "label_values": {"disc": [1, 2], "cup": [2]}},
            }
        }
    )
    loaded = folder_samples(params.data)[0].load()
    assert loaded.masks[0].sum() == 900 and loaded.masks[1].sum() == 100 and loaded.mask_valid
    labels[0, 0] = 9  # a value outside the class set
    Image.fromarray(labels).save(masks / "a.png")
    assert not folder_samples(params.data)[0].load().mask_valid


def test_folder_split_subfolders_or_hashed(folder_dataset: Path, tmp_path: Path) -> None:
    splits = {s.id: s.split for s in folder_samples(folder_params(folder_dataset).data)}
    assert splits == {
        **{f"train_eye{i}": "train" for i in range(4)},
        **{f"val_eye{i}": "val" for i in (4, 5)},
        **{f"test_eye{i}": "test" for i in (6, 7)},
    }

    flat = tmp_path / "flat"
    images, _ = _flat_folder(flat)
    for i in range(10):
        Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(images / f"x{i}.png")
    first = {s.id: s.split for s in folder_samples(folder_params(flat, val_fraction=0.3, seed=4).data)}
    other = {s.id: s.split for s in folder_samples(folder_params(flat, val_fraction=0.3, seed=5).data)}
    assert first == {i: split_of(i, {"test": 0.2, "val": 0.3}, 4) for i in first} and first != other
    for i in range(10, 30):  # the set grows: no existing sample moves
        Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(images / f"x{i}.png")
    grown = {s.id: s.split for s in folder_samples(folder_params(flat, val_fraction=0.3, seed=4).data)}
    assert {i: grown[i] for i in first} == first and len(grown) == 30


def test_hashed_shares_approach_the_fractions() -> None:
    fractions = {"test": 0.2, "val": 0.2}
    shares = Counter(split_of(f"img_{i:05d}", fractions, 0) for i in range(10_000))
    assert abs(shares["test"] / 10_000 - 0.2) < 0.02 and abs(shares["val"] / 10_000 - 0.2) < 0.02


def test_a_group_stays_in_one_split_and_the_gate_refuses_one_that_spans_two(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    images, _ = _flat_folder(flat)
    for patient in range(12):
        for k in range(3):
            Image.fromarray(np.full((8, 8, 3), 10 * patient + k, np.uint8)).save(images / f"P{patient}_{k}.png")
    samples = folder_samples(folder_params(flat, group_pattern=r"^(P\d+)_").data)
    by_patient: dict[str, set[str]] = {}
    for s in samples:
        by_patient.setdefault(s.id.split("_")[0], set()).add(s.split)
    assert by_patient == {p: {split_of(p, {"test": 0.2, "val": 0.2}, 0)} for p in by_patient}
    assert {"train", "val", "test"} == set().union(*by_patient.values())

    split_folders = tmp_path / "folders"
    for split, name in (("train", "P1_a"), ("train", "P2_a"), ("val", "P3_a"), ("test", "P1_b")):
        for sub in ("images", "masks"):
            (split_folders / sub / split).mkdir(parents=True, exist_ok=True)
        s = generate_fundus(len(name), 64, seed=2)
        Image.fromarray(s.image).save(split_folders / "images" / split / f"{name}.png")
        Image.fromarray(s.masks[0].astype(np.uint8) * 255).save(split_folders / "masks" / split / f"{name}.png")
    with pytest.raises(DataValidationError, match="group 'P1' in test and train"):
        ingest(folder_params(split_folders, group_pattern=r"^(P\d+)_"), tmp_path / "prepared")
    with pytest.raises(UserError, match="does not match this file name"):
        folder_samples(folder_params(split_folders, group_pattern=r"^Q").data)


def test_ingest_writes_arrays_and_manifest(folder_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "prepared"
    manifest = ingest(folder_params(folder_dataset), out)
    assert len(manifest) == 8 and manifest["error"].isna().all()
    expected = {
        "id",
        "split",
        "group",
        "source_image",
        "image_sha256",
        "mask_sha256",
        "width",
        "height",
        "channels",
        "dtype",
        "fg_disc",
        "mean_intensity",
        "std_intensity",
    }
    assert expected <= set(manifest.columns)
    with np.load(sample_file(out, "train_eye0")) as npz:  # stored once, as decoded: every grid resamples it
        assert set(npz.files) == {"source_image", "source_mask"}
    image, masks = source_arrays(out, "train_eye0")
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8 and masks.shape == (1, 64, 64) and masks.any()
    assert (out / "manifest.csv").is_file()
    # the test split is measured for the gate, but no arrays of it are stored: only `unetpp test` reads it
    assert set(manifest[manifest["split"] == "test"]["id"]) == {"test_eye6", "test_eye7"}
    assert not list((out / "samples").glob("test_*"))
