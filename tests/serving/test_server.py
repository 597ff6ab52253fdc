"""TorchServe on loopback over HTTP: answers equal the in-process model's, bad input gets 4xx, hot swap."""

from __future__ import annotations

import base64
import io
import shutil
import sqlite3
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import requests
import tifffile
import yaml
from PIL import Image

from tests.kinds import two_channel
from tests.models import fit_tiny, log_selection
from tests.serving.conftest import make_project, serve_champion
from unetpp.data.heldout import heldout_samples
from unetpp.data.synthetic import generate_fundus
from unetpp.evaluation.test import score_test_split
from unetpp.params import Params
from unetpp.registry.promotion import Registry
from unetpp.runtime.forward import forward_images, segment
from unetpp.runtime.geometry import Geometry, network_input
from unetpp.runtime.guard import Guard
from unetpp.runtime.inference import optimize_for_inference
from unetpp.runtime.intensity import Intensity
from unetpp.runtime.readout import anatomical, masks_at, rle_decode
from unetpp.runtime.requestlog import DB
from unetpp.runtime.served import load_served
from unetpp.scoring.foreign import foreign
from unetpp.serving.server import Server, load_archive

pytestmark = pytest.mark.slow


def _png(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def _post(server: Server, body: bytes | str, ctype: str | None = "image/png", **headers: str) -> requests.Response:
    h = {"Authorization": f"Bearer {server.keys()['inference']}", **headers}
    if ctype is not None:
        h["Content-Type"] = ctype
    return requests.post(f"{server.inference}/predictions/{server.name}", data=body, headers=h, timeout=60)


def _fundus(i: int = 0, size: int = 96) -> np.ndarray:
    return generate_fundus(i, size, seed=11).image


def _tiff(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr)
    return buf.getvalue()


def _matches_in_process(server: Server, image: np.ndarray, body: bytes | None = None) -> dict:
    """The served masks of `image` (sent as `body`, a PNG of it by default) equal, pixel for pixel, the
    archive's model run here on the same image."""
    resp = _post(server, _png(image) if body is None else body, "application/octet-stream")
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    model, meta = load_archive(server.newest_archive())
    names = list(meta["class_names"])
    model_info = {k: answer["model"][k] for k in ("name", "version", "level", "mode")}
    assert model_info == {"name": "unetpp", "version": "1", "level": 2, "mode": "fast"}
    assert answer["size"] == list(image.shape[:2]) and set(answer["classes"]) == set(names)

    model, geometry = optimize_for_inference(model), Geometry.of(meta)
    flips = tuple(meta.get("tta_flips") or ())
    assert answer["model"].get("tta_flips", []) == list(flips)
    intensity = Intensity.of(meta, model.config["in_channels"])
    x = network_input(image, geometry, intensity)[None]
    probs = segment(model, x, geometry, flips=flips)[0]
    expected = anatomical(masks_at(probs, *image.shape[:2]), names)
    for name, mask in zip(names, expected, strict=True):
        got = rle_decode(answer["classes"][name]["rle"])
        assert (got == mask).all(), name
        assert answer["classes"][name]["area"] == int(mask.sum())
    verdict = Guard.of(meta).verdict(forward_images(model, [image], geometry, intensity, flips)[0], names)
    assert answer["out_of_distribution"] == verdict["out_of_distribution"]
    assert answer["ood_score"] == pytest.approx(verdict["ood_score"], abs=2e-3)
    assert answer["confidence"] == pytest.approx(verdict["confidence"], abs=2e-4)
    assert answer["low_confidence"] == verdict["low_confidence"]
    return answer


def test_prediction_equals_the_in_process_model(served: Server) -> None:
    _matches_in_process(served, _fundus(0, 96))
    with zipfile.ZipFile(served.newest_archive()) as mar:
        code = {n for n in mar.namelist() if n.startswith("unetpp/")}
    assert {"unetpp/nn/networks.py", "unetpp/runtime/intensity.py", "unetpp/errors.py"} <= code
    assert {n.split("/")[1] for n in code} == {"__init__.py", "errors.py", "files.py", "nn", "runtime"}


def test_foreign_inputs_are_flagged_out_of_distribution(served: Server) -> None:
    """Each answer carries its guard's verdict (equal to the in-process one); a blank frame and uniform noise,
    unlike any training image, are flagged."""
    image = _fundus(2, 96)
    answer = _matches_in_process(served, image)
    assert set(answer["confidence"]) == set(answer["low_confidence"]) == {"disc", "cup"}
    for kind in ("blank", "noise"):
        flagged = _matches_in_process(served, foreign(image, kind, seed=3))
        assert flagged["out_of_distribution"] and flagged["ood_score"] > 1, kind


def test_a_2channel_16bit_model_answers_over_http(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A model trained on 2-channel 16-bit TIFFs (channel-first, as microscopes write them) answers such a
    TIFF as the in-process code does, channels-last too; an RGB request gets 422 naming both counts."""
    root = tmp_path_factory.mktemp("wells")
    names = two_channel(root / "source", count=10, side=64)
    (root / "repo").mkdir()
    project = make_project(
        root / "repo",
        {"model": {"class_names": names}, "data": {"source": "folder", "path": str(root / "source")}},
    )
    with serve_champion(project, intensity=Intensity(2, 2)) as server:
        _, meta = load_archive(server.newest_archive())
        assert meta["intensity"] == {"channels": 2, "in_channels": 2, "clip": None}  # the archive carries it
        file = root / "source" / "images" / "well03.tif"
        image = np.moveaxis(tifffile.imread(file), 0, -1)  # stored (2, H, W) uint16
        _matches_in_process(server, image, file.read_bytes())
        contiguous = io.BytesIO()  # channels-last samples (YXS)
        tifffile.imwrite(contiguous, image, photometric="minisblack", planarconfig="contig")
        _matches_in_process(server, image, contiguous.getvalue())
        refused = _post(server, _png(_fundus(1, 64)))
        assert refused.status_code == 422 and "3-channel image; expected 2 channels" in refused.json()["error"]


def test_a_patch_model_segments_a_large_image_with_sliding_windows(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A model trained on patches at half the source resolution, selected with left-right mirroring: the
    handler resamples a 200 x 160 request to 100 x 80, slides 48-px windows over it and its mirror image,
    averages, and answers at 200 x 160, as the in-process code does."""
    project = make_project(tmp_path_factory.mktemp("patch"))
    with serve_champion(project, Geometry("patch", 48, 0.5), tta_flips=(1,)) as server:
        assert Geometry("patch", 48, 0.5).windows(200, 160) > 1
        _matches_in_process(server, generate_fundus(4, 200, seed=11).image[:, 20:180])


def test_the_served_answer_is_the_mask_the_test_stage_scored(
    serving_project: Path, served: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test stage on the served model (its model.pt, as `select` would have left it), then each test
    image sent to TorchServe: the answer equals, pixel for pixel, the masks the stage scored."""
    selection, models = serving_project / "selected-1", tmp_path / "models"
    (models / "pruned").mkdir(parents=True)
    shutil.copy(selection / "pruned" / "model.pt", models / "pruned" / "model.pt")
    for name in ("selected.json", "run.json"):
        shutil.copy(selection / name, models / name)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{serving_project / 'mlruns' / 'mlflow.db'}")
    params = Params.model_validate(yaml.safe_load((serving_project / "params.yaml").read_text()))
    prepared = serving_project / "data" / "prepared"
    summary = score_test_split(params, prepared, models, tmp_path / "metrics", tmp_path / "reports")
    cases = heldout_samples(params.data, params.model.class_names, prepared)
    assert summary["cases"] == len(cases) >= 1
    for sample in cases:
        answer = _post(served, _png(sample.load().image)).json()
        for name in ("disc", "cup"):
            scored = np.asarray(Image.open(tmp_path / "reports" / "test_masks" / f"{sample.id}_{name}.png")) > 0
            assert (rle_decode(answer["classes"][name]["rle"]) == scored).all(), (sample.id, name)


def test_the_handler_the_gate_and_the_test_stage_give_one_answer(served: Server) -> None:
    """One image through TorchServe (the handler's `load_served`), version 1 as the registry gate loads it, and
    the selected checkpoint as the `test` stage loads it: the same masks and the same verdict."""
    image = _fundus(7, 88)
    answer = _post(served, _png(image)).json()
    registry = Registry(served.params, served.root)
    loaded = {
        "gate": registry.served(registry.version("1")),
        "test": load_served(served.root / "selected-1" / "pruned" / "model.pt"),
    }
    for who, model in loaded.items():
        got = next(model.answers([image]))
        for k, name in enumerate(model.names):
            assert (rle_decode(answer["classes"][name]["rle"]) == got.masks[k]).all(), (who, name)
        assert got.body["out_of_distribution"] == answer["out_of_distribution"], who
        assert got.body["low_confidence"] == answer["low_confidence"], who
        assert got.body["confidence"] == pytest.approx(answer["confidence"], abs=2e-4), who
        assert got.body["ood_score"] == pytest.approx(answer["ood_score"], abs=2e-3), who
        described = model.describe()
        assert described == {k: answer["model"][k] for k in described}, who


def test_inputs_of_every_supported_kind(served: Server) -> None:
    rgb = _fundus(1, 80)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    jpg = io.BytesIO()
    Image.fromarray(rgb).save(jpg, format="JPEG", quality=90)
    cases = {
        "rgb png": (_png(rgb), "image/png"),
        "rgba png": (_png(rgba), "image/png"),
        "16-bit rgb tiff": (_tiff(rgb.astype(np.uint16) * 257), "image/tiff"),
        "channel-first rgb tiff": (_tiff(np.moveaxis(rgb, -1, 0)), "image/tiff"),
        "float rgb tiff": (_tiff(rgb.astype(np.float32) / 255), "image/tiff"),
        "jpeg": (jpg.getvalue(), "image/jpeg"),
        "json base64": ('{"image": "' + base64.b64encode(_png(rgb)).decode() + '"}', "application/json"),
    }
    for kind, (body, ctype) in cases.items():
        resp = _post(served, body, ctype)
        assert resp.status_code == 200, (kind, resp.text)
        assert resp.json()["size"] == [80, 80], kind
    overlay = _post(served, _png(rgb), Accept="image/png")
    assert overlay.status_code == 200 and overlay.headers["Content-Type"].startswith("image/png")
    assert Image.open(io.BytesIO(overlay.content)).size == (80, 80)


def test_bad_input_gets_a_clear_4xx_and_the_worker_carries_on(served: Server) -> None:
    good = _png(_fundus(2, 64))
    noise = np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)
    jpg = io.BytesIO()
    Image.fromarray(_fundus(3, 64)).save(jpg, format="JPEG")
    gray = _fundus(3, 64).mean(axis=2).astype(np.uint8)
    cases = {
        "empty body": (b"", "image/png", 400, "empty request body"),
        "not an image": (b"hello, this is text", "image/png", 400, "not a readable image"),
        "truncated png": (good[: len(good) // 2], "image/png", 400, "not a readable image"),
        "truncated jpeg": (jpg.getvalue()[:300], "image/jpeg", 400, "not a readable image"),
        "too many pixels": (_png(np.zeros((600, 600), np.uint8)), "image/png", 413, "over the limit"),
        "too many bytes": (_png(noise), "image/png", 413, "over the limit"),
        "a stack": (_tiff(np.zeros((20, 30, 40), np.uint16)), "image/tiff", 415, "expected a 2-D image with 1 to"),
        "gray to a colour model": (_png(gray), "image/png", 422, "1-channel image; expected 3 channels"),
        "16-bit gray": (_png(gray.astype(np.uint16) * 257), "image/png", 422, "1-channel image; expected 3"),
        "invalid json": ("{not json", "application/json", 400, "invalid JSON"),
        "invalid base64": ('{"image": "***"}', "application/json", 400, "not valid base64"),
        "json without image": ('{"picture": "x"}', "application/json", 400, 'string field "image"'),
        "unsupported type": (b"abc", "text/plain", 415, "unsupported Content-Type"),
    }
    for kind, (body, ctype, status, words) in cases.items():
        resp = _post(served, body, ctype)
        assert resp.status_code == status, (kind, resp.status_code, resp.text)
        assert words in resp.json()["error"], (kind, resp.text)
        after = _post(served, good)
        assert after.status_code == 200, (kind, after.text)


def test_metrics_status_and_the_request_log(served: Server) -> None:
    """Prometheus carries our own metrics beside TorchServe's (answers by flag, predicted risk, seconds per
    stage), and every answer left a record in the request log (no image: `serve.keep_images` is off)."""
    status = served.status()
    assert status["versions"][0]["workers"][0]["status"] == "READY"
    answer = _post(served, _png(foreign(_fundus(3, 96), "noise", seed=5))).json()
    assert answer["out_of_distribution"]
    metrics = requests.get(f"http://127.0.0.1:{served.cfg.metrics_port}/metrics", timeout=10)
    assert metrics.status_code == 200 and "ts_inference_requests_total" in metrics.text
    lines = metrics.text.splitlines()
    flagged = [x for x in lines if x.startswith("Answers{") and 'Flag="out_of_distribution"' in x]
    assert flagged and float(flagged[0].rsplit(" ", 1)[1]) >= 1, metrics.text[-3000:]
    assert any(x.startswith("PredictedRisk_bucket{") and 'Class="cup"' in x for x in lines)
    assert any(x.startswith("StageSeconds_count{") and 'Stage="forward"' in x for x in lines)
    with sqlite3.connect(served.requests / DB) as db:
        rows = db.execute("SELECT version, out_of_distribution, image FROM requests ORDER BY id").fetchall()
    assert rows[-1] == ("1", 1, None)
    assert requests.get(f"{served.management}/models", timeout=10).status_code in (400, 401)  # token required


def test_hot_swap_under_load_drops_no_request(served: Server) -> None:
    project = served.root
    registry = Registry(served.params, project)
    model = fit_tiny(served.params, project / "data" / "prepared", steps=0, seed=5)
    version, _ = registry.register(log_selection(model, project / "selected-2", served.params, level=3))
    body, stop = _png(_fundus(4, 64)), threading.Event()
    per_client: list[list[tuple[object, str | None]]] = [[], []]

    def loop(results: list[tuple[object, str | None]]) -> None:
        while not stop.is_set():
            try:
                resp = _post(served, body)
                results.append((resp.status_code, resp.json().get("model", {}).get("version")))
            except requests.RequestException as err:
                results.append((type(err).__name__, None))

    threads = [threading.Thread(target=loop, args=(r,)) for r in per_client]
    for t in threads:
        t.start()
    try:
        mar, v = served.package(str(version.version))
        info = served.swap(mar, v)
        stop.wait(2.0)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert [x["version"] for x in info["versions"]] == [v]
    results = [r for client in per_client for r in client]
    assert all(code == 200 for code, _ in results), [r for r in results if r[0] != 200][:5]
    assert "1" in {ver for _, ver in results} and v == "2"
    for client in per_client:  # each client's requests go one after another: once answered by 2, never by 1
        versions = [ver for _, ver in client]
        assert versions[-1] == v and versions == sorted(versions)


def test_predict_cli_prints_the_answer_and_writes_the_overlay(
    served: Server, tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from unetpp.cli import main

    image = tmp_path / "eye.png"
    image.write_bytes(_png(_fundus(5, 72)))
    monkeypatch.chdir(served.root)
    assert main(["predict", str(image)]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["size"] == [72, 72] and answer["model"]["name"] == "unetpp"
    assert Image.open(tmp_path / "eye.overlay.png").size == (72, 72)
    assert main(["predict", str(tmp_path / "missing.png")]) == 2
    assert "no such file" in capsys.readouterr().err
