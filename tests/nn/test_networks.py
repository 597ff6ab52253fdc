"""Shared model tester (in the manner of smp's): every architecture and option goes through it."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import randomize_batchnorm
from unetpp.nn.networks import UNet, UNetPlusPlus, build_model, set_head_prior

VARIANTS = {
    "unetpp-batch-transpose": lambda: UNetPlusPlus.from_preset("tiny"),
    "unetpp-instance-bilinear": lambda: UNetPlusPlus.from_preset("tiny", norm="instance", upsample="bilinear"),
    "unetpp-none-1ch-1class": lambda: UNetPlusPlus.from_preset("tiny", norm="none", in_channels=1, num_classes=1),
    "unetpp-no-deep-supervision": lambda: UNetPlusPlus.from_preset("tiny", deep_supervision=False),
    "unet-batch-transpose": lambda: UNet.from_preset("tiny"),
    "unet-none-bilinear": lambda: UNet.from_preset("tiny", norm="none", upsample="bilinear"),
}


@pytest.fixture(params=sorted(VARIANTS))
def model(request: pytest.FixtureRequest) -> torch.nn.Module:
    return VARIANTS[request.param]()


def _input(model: torch.nn.Module, h: int, w: int, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, model.config["in_channels"], h, w)


def test_untrained_heads_predict_mostly_background(model: torch.nn.Module) -> None:
    """The heads' prior bias: a fresh model starts near 1% foreground, not at an even 50%."""
    torch.manual_seed(0)
    with torch.no_grad():
        probs = torch.stack([torch.sigmoid(t) for t in model(_input(model, 64, 64))])
    assert probs.mean() < 0.05


def test_forward_backward(model: torch.nn.Module) -> None:
    x = _input(model, 64, 64)
    logits = model(x)
    assert len(logits) == len(model.head_ids)
    for t in logits:
        assert t.shape == (2, model.config["num_classes"], 64, 64)
    sum(t.mean() for t in logits).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("size", [(16, 16), (32, 96), (37, 53), (17, 130), (1, 1)])
def test_any_resolution_is_padded_and_cropped_back(model: torch.nn.Module, size: tuple[int, int]) -> None:
    model.eval()
    if model.config["norm"] == "instance" and max(size) <= 16:
        with pytest.raises(ValueError, match="instance norm needs more than one pixel at depth 4"):
            model.predict(_input(model, *size, batch=1))
        return
    x = _input(model, *size, batch=1)
    with torch.inference_mode():
        probs = model.predict(x)
    assert probs.shape == (1, model.config["num_classes"], *size)
    assert probs.min() >= 0 and probs.max() <= 1


def test_padding_leaves_the_original_pixels_alone(model: torch.nn.Module) -> None:
    """A 37x53 input gives the same outputs as the same input zero-padded to 48x64, cropped back."""
    model.eval()
    x = _input(model, 37, 53, batch=1)
    padded = torch.nn.functional.pad(x, (0, 11, 0, 11))
    with torch.inference_mode():
        torch.testing.assert_close(model.predict(x), model.predict(padded)[..., :37, :53])


@pytest.mark.parametrize("shape", [(3, 64, 64), (1, 5, 64, 64), (1, 3, 1, 64, 64)])
def test_wrong_input_shape_names_shape_and_expectation(shape: tuple[int, ...]) -> None:
    model = UNetPlusPlus.from_preset("tiny").eval()
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 3, H, W\); got"):
        model(torch.randn(shape))


def test_save_load_roundtrip(model: torch.nn.Module, tmp_path) -> None:
    model = randomize_batchnorm(model).eval()
    path = tmp_path / "model.pt"
    torch.save({"config": model.config, "state_dict": model.state_dict()}, path)
    ckpt = torch.load(path, weights_only=True)
    arch = "unet" if isinstance(model, UNet) else "unetpp"
    clone = build_model(arch, **ckpt["config"])
    clone.load_state_dict(ckpt["state_dict"])
    x = _input(model, 48, 48)
    with torch.inference_mode():
        torch.testing.assert_close(clone.eval().predict(x), model.predict(x))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(widths=(8, 16, 32)), "widths must be 5 positive integers"),
        (dict(norm="group"), "norm must be one of"),
        (dict(upsample="nearest"), "upsample must be"),
        (dict(num_classes=0), "in_channels and num_classes must be >= 1"),
    ],
)
def test_bad_config_is_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        UNetPlusPlus.from_preset("tiny", **kwargs)


def test_unknown_preset_and_arch() -> None:
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        UNetPlusPlus.from_preset("huge")
    with pytest.raises(ValueError, match="unknown arch 'fcn'"):
        build_model("fcn")


def test_compile_matches_eager() -> None:
    model = UNetPlusPlus.from_preset("tiny").eval()
    x = torch.randn(1, 3, 32, 32)
    compiled = torch.compile(model.prune(2, "accurate"), backend="aot_eager")
    with torch.inference_mode():
        torch.testing.assert_close(compiled(x), model.predict(x, 2, "accurate"))


def test_heads_start_at_each_classes_foreground_share_within_the_prior_bounds() -> None:
    """A class covering a third of its images starts there; one rarer than 1% at 1%; one covering most at 50%."""
    net = UNetPlusPlus.from_preset("tiny", num_classes=3)
    set_head_prior(net, [0.33, 0.001, 0.9])
    for head in net.heads.values():
        assert torch.sigmoid(head.bias).tolist() == pytest.approx([0.33, 0.01, 0.5], abs=1e-6)
