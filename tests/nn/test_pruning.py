"""Pruning computes only the nodes a level needs, and pruned modules equal the full model."""

from __future__ import annotations

import itertools

import pytest
import torch

from tests.conftest import randomize_batchnorm
from unetpp.nn.networks import LEVELS, MODES, UNetPlusPlus
from unetpp.runtime.inference import optimize_for_inference, run_inference

LEVEL_MODES = list(itertools.product(LEVELS, MODES))


@pytest.fixture(scope="module")
def model() -> UNetPlusPlus:
    torch.manual_seed(0)
    return randomize_batchnorm(UNetPlusPlus.from_preset("tiny")).eval()


def _executed_blocks(model: UNetPlusPlus, fn) -> set[str]:
    ran: set[str] = set()
    hooks = [
        mod.register_forward_hook(lambda *_, name=name: ran.add(name))
        for name, mod in [*model.blocks.items(), *model.ups.items(), *model.heads.items()]
    ]
    try:
        fn()
    finally:
        for h in hooks:
            h.remove()
    return ran


@pytest.mark.parametrize("level, mode", LEVEL_MODES)
def test_predict_runs_only_nodes_with_i_plus_j_at_most_level(model: UNetPlusPlus, level: int, mode: str) -> None:
    x = torch.randn(1, 3, 32, 32)
    ran = _executed_blocks(model, lambda: model.predict(x, level, mode))
    nodes = {f"x_{i}_{j}" for i in range(5) for j in range(5 - i) if i + j <= level}
    ups = {f"up_{i}_{j}" for i in range(5) for j in range(1, 5 - i) if i + j <= level}
    heads = {f"head_{level}"} if mode == "fast" else {f"head_{k}" for k in range(1, level + 1)}
    assert ran == nodes | ups | heads


@pytest.mark.parametrize("level, mode", LEVEL_MODES)
def test_pruned_equals_full_model(model: UNetPlusPlus, level: int, mode: str) -> None:
    pruned = model.prune(level, mode)
    own_keys = {k.split(".")[1] for k in pruned.state_dict()}
    assert all(int(k.split("_")[1]) + int(k.split("_")[2]) <= level for k in own_keys if k.startswith(("x_", "up_")))
    x = torch.randn(2, 3, 40, 56)
    with torch.inference_mode():
        expected = model.predict(x, level, mode)
        torch.testing.assert_close(pruned(x), expected)
        optimized = optimize_for_inference(model.prune(level, mode))
    torch.testing.assert_close(run_inference(optimized, x), expected, atol=1e-5, rtol=1e-4)


def test_modes_return_what_the_docs_say(model: UNetPlusPlus) -> None:
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        logits = model(x)
        torch.testing.assert_close(model.predict(x, 3, "fast"), torch.sigmoid(logits[2]))
        mean = torch.stack([torch.sigmoid(t) for t in logits[:3]]).mean(0)
        torch.testing.assert_close(model.predict(x, 3, "accurate"), mean)


def test_pruned_is_independent_of_the_full_model(model: UNetPlusPlus) -> None:
    pruned = model.prune(2, "fast")
    before = model.blocks["x_0_0"][0].weight.clone()
    pruned.blocks["x_0_0"][0].weight.data.zero_()
    torch.testing.assert_close(model.blocks["x_0_0"][0].weight, before)


def test_bad_level_or_mode(model: UNetPlusPlus) -> None:
    with pytest.raises(ValueError, match=r"level must be one of \(1, 2, 3, 4\)"):
        model.prune(5, "fast")
    with pytest.raises(ValueError, match="mode must be one of"):
        model.predict(torch.randn(1, 3, 16, 16), 2, "precise")


def test_without_deep_supervision_only_level_4() -> None:
    model = UNetPlusPlus.from_preset("tiny", deep_supervision=False).eval()
    with pytest.raises(ValueError, match=r"level must be one of \(4,\)"):
        model.predict(torch.randn(1, 3, 16, 16), 2, "fast")
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(model.prune(4, "accurate")(x), model.predict(x, 4, "accurate"))


def test_bf16_autocast_agrees_with_fp32(model: UNetPlusPlus) -> None:
    x = torch.randn(1, 3, 64, 64)
    pruned = optimize_for_inference(model.prune(4, "accurate"))
    fp32 = run_inference(pruned, x)
    bf16 = run_inference(pruned, x, bf16=True)
    assert bf16.dtype == torch.float32
    assert (fp32 - bf16).abs().max() < 0.05


def test_fold_batchnorm_needs_eval_mode() -> None:
    from unetpp.runtime.inference import fold_batchnorm

    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(UNetPlusPlus.from_preset("tiny").train())


def test_unet_baseline_prunes_to_its_one_level() -> None:
    from unetpp.nn.networks import UNet, build_model

    unet = randomize_batchnorm(UNet.from_preset("tiny")).eval()
    x = torch.randn(1, 3, 32, 32)
    inference = unet.prune()
    rebuilt = build_model("unet_inference", **inference.config)
    rebuilt.load_state_dict(inference.state_dict())
    with torch.inference_mode():
        torch.testing.assert_close(inference(x), unet.predict(x))
        torch.testing.assert_close(rebuilt.eval()(x), unet.predict(x))
    with pytest.raises(ValueError, match=r"level must be one of \(4,\)"):
        unet.prune(2, "fast")


@pytest.mark.parametrize("level, mode", LEVEL_MODES)
def test_probes_keep_every_head_of_the_level_and_leave_the_answer_alone(
    model: UNetPlusPlus, level: int, mode: str
) -> None:
    probed, plain = model.prune(level, mode, probes=True), model.prune(level, mode)
    assert probed.head_ids == tuple(range(1, level + 1)) and probed.answer_heads == plain.head_ids
    x = torch.randn(2, 3, 40, 56)
    with torch.inference_mode():
        torch.testing.assert_close(probed(x), plain(x))
        heads, features = probed.guard_outputs(x)
        expected = torch.stack([model.predict(x, k, "fast") for k in range(1, level + 1)], 1)
    torch.testing.assert_close(heads, expected)
    width = model.config["widths"][level]
    assert features.shape == (2, 2 * width)  # mean and std of X^{level,0}: the variant's bottleneck
    ran = _executed_blocks(probed, lambda: probed.guard_outputs(x))
    assert {n for n in ran if n.startswith("x_")} == {f"x_{i}_{j}" for i, j, _ in probed.nodes}
