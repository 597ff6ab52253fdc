"""Readers: the Drishti-GS1 layout (as downloaded: nested image folders) and the generic folder layout on
many file kinds and mask conventions (binary, instance, label maps with any background, a file per class)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from tests.conftest import folder_params
from unetpp.data.ingest import ingest
from unetpp.data.ledger import read_ledger
from unetpp.data.prepared import sample_file, source_arrays
from unetpp.data.sources import RawSample, consensus_masks, drishti_samples, folder_samples, mask_reference
from unetpp.data.splits import assign_splits
from unetpp.data.synthetic import generate_fundus
from unetpp.data.validate import DataValidationError
from unetpp.errors import UserError
from unetpp.params import Params
from unetpp.runtime.images import ImageReadError


def _drawn(params: Params) -> list[RawSample]:
    """The source's samples with their splits drawn as a first ingest draws them (an empty ledger)."""
    samples = (drishti_samples if params.data.source == "drishti" else folder_samples)(
        params.data, params.model.class_names
    )
    assign_splits(samples, params.data, read_ledger(None))
    return samples


def _write_drishti(root: Path, test_gt: str, nest: str = "") -> None:
    """Drishti-GS1's layout; `nest`: a folder under Images/ holding the photographs (a download's `ALL/`)."""
    for folder, gt, names in (
        ("Training", "GT", ["drishtiGS_002", "drishtiGS_004", "drishtiGS_006"]),
        ("Test", test_gt, ["drishtiGS_001"]),
    ):
        (root / folder / "Images" / nest).mkdir(parents=True)
        for k, name in enumerate(names):
            s = generate_fundus(k, 64, seed=5)
            Image.fromarray(s.image).save(root / folder / "Images" / nest / f"{name}.png")
            soft_dir = root / folder / gt / name / "SoftMap"
            soft_dir.mkdir(parents=True)
            for mask, suffix in ((s.masks[0], "OD"), (s.masks[1], "cup")):
                soft = mask.astype(np.uint8) * 255
                rim = mask & ~np.roll(mask, 3, axis=0)  # a band only some experts marked
                soft[rim] = 100
                Image.fromarray(soft).save(soft_dir / f"{name}_{suffix}segSoftmap.png")
            (root / folder / gt / name / f"{name}_cdrValues.txt").write_text(f"0.{5 + k}1 0.60 0.5 0.7")


@pytest.mark.parametrize(("test_gt", "nest"), [("Test_GT", ""), ("GT", ""), ("GT", "ALL")])
def test_drishti_test_folder_is_the_test_split_and_val_comes_from_training(
    tmp_path: Path, test_gt: str, nest: str
) -> None:
    _write_drishti(tmp_path, test_gt, nest)
    params = Params.model_validate({"data": {"source": "drishti", "path": str(tmp_path)}})
    samples = _drawn(params)
    splits = {s.id: s.split for s in samples}
    assert splits.pop("drishtiGS_001") == "test"
    assert sorted(splits.values()) == ["train", "train", "val"]  # one of the three Training/ images
    assert splits == {s.id: s.split for s in _drawn(params) if s.id in splits}  # seeded
    assert all(Path(m).is_file() for s in samples for m in s.source_masks)


def test_drishti_threshold(tmp_path: Path) -> None:
    _write_drishti(tmp_path, "Test_GT")
    areas = {}
    for threshold in (0.3, 0.5):
        params = Params.model_validate(
            {"data": {"source": "drishti", "path": str(tmp_path), "drishti": {"threshold": threshold}}}
        )
        loaded = drishti_samples(params.data, params.model.class_names)[0].load()
        assert loaded.masks.shape == (2, 64, 64) and loaded.masks.dtype == bool
        areas[threshold] = int(loaded.masks[0].sum())
    assert areas[0.3] > areas[0.5]  # the 100/255 band counts only at the lower threshold
    assert "at 0.5: a pixel is in a class where at least 50% of the experts marked it" in mask_reference(params.data)


def test_drishti_gives_each_experts_cup_to_disc_ratio_and_the_pixels_all_experts_marked(tmp_path: Path) -> None:
    _write_drishti(tmp_path, "Test_GT")
    lenient = {"source": "drishti", "path": str(tmp_path), "drishti": {"threshold": 0.3}}
    params = Params.model_validate({"data": lenient})
    sample = drishti_samples(params.data, params.model.class_names)[0]
    assert sample.expert_cdrs == (0.51, 0.6, 0.5, 0.7)
    consensus, some = consensus_masks(sample), sample.load().masks
    assert consensus.shape == some.shape and (consensus <= some).all() and consensus.sum() < some.sum()  # no rim


def test_drishti_missing_layout_is_named(tmp_path: Path) -> None:
    params = Params.model_validate({"data": {"source": "drishti", "path": str(tmp_path)}})
    with pytest.raises(UserError, match="not a Drishti-GS1 folder"):
        drishti_samples(params.data, params.model.class_names)
    (tmp_path / "Training" / "Images" / "ALL").mkdir(parents=True)
    with pytest.raises(UserError, match="no png, jpg or tif images under Training/Images"):
        drishti_samples(params.data, params.model.class_names)


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
    loaded = {smp.id: smp.load() for smp in folder_samples(params.data, params.model.class_names)}
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
    loaded = folder_samples(folder_params(tmp_path, folder={"mask_mode": "instance"}).data, ["disc"])[0].load()
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
    loaded = folder_samples(params.data, params.model.class_names)[0].load()
    assert loaded.masks[0].sum() == 900 and loaded.masks[1].sum() == 100 and loaded.mask_valid
    labels[0, 0] = 9  # a value outside the class set
    Image.fromarray(labels).save(masks / "a.png")
    assert not folder_samples(params.data, params.model.class_names)[0].load().mask_valid


def test_refuge_style_label_maps_with_background_255(tmp_path: Path) -> None:
    """255 background, 128 rim, 0 cup (REFUGE and the multi-domain fundus sets): only the label values set."""
    images, masks = _flat_folder(tmp_path)
    for k in range(3):
        s = generate_fundus(k, 64, seed=1)
        Image.fromarray(s.image).save(images / f"r{k}.png")
        refuge = np.full((64, 64), 255, np.uint8)
        refuge[s.masks[0]], refuge[s.masks[1]] = 128, 0
        Image.fromarray(refuge).save(masks / f"r{k}.png")
    labels = {"label_values": {"disc": [0, 128], "cup": [0]}}
    params = Params.model_validate(
        {"data": {"source": "folder", "path": str(tmp_path), "folder": labels}, "validate": {"min_train": 1}}
    )
    loaded = folder_samples(params.data, params.model.class_names)[0].load()
    s = generate_fundus(0, 64, seed=1)
    np.testing.assert_array_equal(loaded.masks, s.masks)
    assert loaded.mask_valid and loaded.background == 255
    manifest = ingest(params, tmp_path / "prepared")  # 1 train, 1 val, 1 test (`unetpp.data.splits.rank_splits`)
    assert set(manifest["mask_background"]) == {255}

    other = np.array(Image.open(masks / "r2.png"))
    other[other == 255] = 200  # a map with another background than the rest of the set: named by the gate
    Image.fromarray(other).save(masks / "r2.png")
    with pytest.raises(DataValidationError, match=r"mask_background[\s\S]*r2.png[\s\S]*same background"):
        ingest(params, tmp_path / "prepared2")


def test_a_mask_file_per_class(tmp_path: Path) -> None:
    """`masks/<class>/<stem>.png` beside `images/<stem>.*`: found with only the class names set."""
    images, masks = _flat_folder(tmp_path)
    s = generate_fundus(0, 64, seed=1)
    Image.fromarray(s.image).save(images / "eye.jpg", quality=95)
    for name, mask in zip(("disc", "cup"), s.masks, strict=True):
        (masks / name).mkdir()
        Image.fromarray(mask.astype(np.uint8) * 255).save(masks / name / "eye.png")
    params = Params.model_validate({"data": {"source": "folder", "path": str(tmp_path)}})
    sample = folder_samples(params.data, params.model.class_names)[0]
    assert sample.source_masks == [str(masks / "disc" / "eye.png"), str(masks / "cup" / "eye.png")]
    loaded = sample.load()
    np.testing.assert_array_equal(loaded.masks, s.masks)
    assert loaded.mask_valid

    (masks / "cup" / "eye.png").unlink()
    with pytest.raises(ImageReadError, match=r"masks/cup/eye.png: mask not found for image eye.jpg"):
        folder_samples(params.data, params.model.class_names)[0].load()
    shutil.rmtree(masks / "cup")
    with pytest.raises(UserError, match=r"2 classes \['disc', 'cup'\] need data.folder.label_values .* masks/cup/"):
        folder_samples(params.data, params.model.class_names)


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
