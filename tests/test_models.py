"""SEVNet family: shapes, gradients, closed-form params/MACs, errors, GFLOPs bands."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import sevnet
from sevnet.models import BLOCKS, SEVModule, count_gmacs, count_params, model_info

TINY = {"stages": [(16, 8, 1), (32, 16, 1), (32, 16, 1), (64, 32, 1)], "head_channels": 64}


@pytest.mark.parametrize("name", ["sevnet_xs", "sevnet_s", "sevnet_m", "sevnet_l"])
def test_output_shapes_odd_sizes(name: str) -> None:
    model = sevnet.create_model(name, num_classes=7).eval()
    with torch.no_grad():
        for t, h, w in [(1, 32, 32), (5, 33, 47), (3, 40, 24)]:
            assert model(torch.randn(2, 3, t, h, w)).shape == (2, 7)


@pytest.mark.parametrize("block", sorted(BLOCKS))
@pytest.mark.parametrize("se_ratio", [0.0, 0.25])
def test_blocks_and_se_build_run_and_train(block: str, se_ratio: float) -> None:
    model = sevnet.create_model("sevnet_xs", num_classes=3, block=block, se_ratio=se_ratio, **TINY)
    # The last BN of each residual body starts at zero (identity blocks); give it weight 1, as after
    # some training, so that every parameter must receive a non-zero gradient.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            torch.nn.init.ones_(m.weight)
    x = torch.randn(2, 3, 4, 32, 32)
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 2]))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient for {missing}"


def _conv(cin: int, cout: int, k: int, groups: int = 1) -> int:
    return cout * (cin // groups) * k


@pytest.mark.parametrize(
    ("cin", "cout", "mid", "stride", "gw", "tconv", "se"),
    [
        (32, 32, 16, 1, 8, "dense", 0.0),
        (32, 64, 32, 2, 4, "dense", 0.0),
        (48, 48, 24, 1, 8, "grouped", 0.0),
        (32, 32, 32, 1, 1, "dense", 0.25),
    ],
)
def test_sev_module_params_and_macs_closed_form(cin, cout, mid, stride, gw, tconv, se) -> None:
    block = SEVModule(cin, cout, mid, stride, group_width=gw, temporal_conv=tconv, se_ratio=se)
    groups = mid // gw
    t_groups = groups if tconv == "grouped" else 1
    params = _conv(cin, mid, 1) + 2 * mid  # channel-wise 1x1x1 + BN
    params += _conv(mid, mid, 9, groups) + 2 * mid  # spatial-grouped 1x3x3 + BN
    params += _conv(mid, cout, 3, t_groups) + 2 * cout  # temporal 3x1x1 + BN
    hidden = 0
    if se:
        hidden = max(8, round(mid * se))
        params += mid * hidden + hidden + hidden * mid + mid
    shortcut = cin != cout or stride > 1
    if shortcut:
        params += cin * cout + 2 * cout
    assert count_params(block) == params

    t, h, w = 4, 16, 16
    ho, wo = -(-h // stride), -(-w // stride)
    macs = t * h * w * cin * mid  # 1x1x1 at input resolution
    macs += t * ho * wo * mid * (mid // groups) * 9
    macs += t * ho * wo * cout * (mid // t_groups) * 3
    if se:
        macs += mid * hidden * 2
    if shortcut:
        macs += t * ho * wo * cin * cout
    assert count_gmacs(block, (1, cin, t, h, w)) * 1e9 == pytest.approx(macs, rel=1e-9)


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [("sevnet_xs", 0.5, 0.5), ("sevnet_s", 2, 2), ("sevnet_m", 5, 5), ("sevnet_l", 15, 25)],
)
def test_size_within_gflops_band(name: str, low: float, high: float) -> None:
    t, h, w = model_info(name).reference_input
    gmacs = count_gmacs(sevnet.create_model(name), (1, 3, t, h, w))
    assert low * 0.85 <= gmacs <= high * 1.15, f"{name}: {gmacs:.3f} GMACs"


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"group_width": 5}, "group_width=5"),
        ({"group_width": 0}, "group_width"),
        ({"temporal_conv": "sparse"}, "temporal_conv"),
        ({"block": "r3d", "group_width": 4}, "group_width"),
        ({"block": "transformer"}, "block"),
        ({"not_a_knob": 1}, "not_a_knob"),
        ({"temporal_kernel": 2}, "temporal_kernel"),
        ({"dropout": 1.5}, "dropout"),
    ],
)
def test_invalid_arguments_name_the_argument(kwargs: dict, needle: str) -> None:
    with pytest.raises((ValueError, TypeError), match=needle):
        sevnet.create_model("sevnet_xs", **kwargs)


def test_unknown_model_name() -> None:
    with pytest.raises(ValueError, match="unknown model name 'sevnet_xxl'"):
        sevnet.create_model("sevnet_xxl")


def test_registry_and_optional_peers() -> None:
    names = sevnet.list_models()
    assert {"sevnet_xs", "sevnet_s", "sevnet_m", "sevnet_l", "r3d_18", "r2plus1d_18"} <= set(names)
    code = "import sys, sevnet; print('pytorchvideo' in sys.modules, 'torchvision.models.video' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == "False", "importing sevnet must not import PyTorchVideo"


def test_spatial_kernel_t_ablation_knob() -> None:
    base = sevnet.create_model("sevnet_xs", **TINY)
    full = sevnet.create_model("sevnet_xs", spatial_kernel_t=3, **TINY)
    assert count_params(full) > count_params(base)
    assert full(torch.randn(1, 3, 2, 32, 32)).shape == (1, 400)


def test_sev_module_names_its_parts_in_paper_order() -> None:
    block = SEVModule(16, 32, 8, 2, se_ratio=0.25)
    assert [n for n, _ in block.named_children()][:4] == ["shortcut", "act", "channel", "spatial"]
    assert block.channel.conv.kernel_size == (1, 1, 1)
    assert block.spatial.conv.kernel_size == (1, 3, 3) and block.spatial.conv.groups == 8 // 8
    assert block.temporal.conv.kernel_size == (3, 1, 1)
    block.temporal.bn.weight.data.fill_(1.0)
    block.zero_init_last()
    assert torch.all(block.temporal.bn.weight == 0)


@pytest.mark.parametrize("zero_init_last", [True, False])
def test_zero_init_last_is_a_model_option(zero_init_last: bool) -> None:
    model = sevnet.create_model("sevnet_xs", zero_init_last=zero_init_last, **TINY)
    weights = [getattr(m, m.last_name).bn.weight for m in model.modules() if isinstance(m, BLOCKS["sev"])]
    assert weights and all(bool(torch.all(w == 0)) == zero_init_last for w in weights)


def test_block_args_pass_through_and_are_checked() -> None:
    model = sevnet.create_model("sevnet_xs", group_width=4, **TINY)
    assert model.cfg.block_args == {"group_width": 4}
    assert model.stages[0][0].spatial.conv.groups == 8 // 4
    with pytest.raises(ValueError, match="not accepted by block='r2plus1d'"):
        sevnet.create_model("sevnet_xs", block="r2plus1d", temporal_conv="grouped", **TINY)


def test_depths_change_only_the_block_counts() -> None:
    model = sevnet.create_model("sevnet_xs", depths=[1, 2, 2, 1], num_classes=5)
    xs = sevnet.create_model("sevnet_xs", num_classes=5)
    assert [len(stage) for stage in model.stages] == [1, 2, 2, 1]
    assert [s.out_channels for s in model.cfg.stages] == [s.out_channels for s in xs.cfg.stages]
    with pytest.raises(ValueError, match="depths must be 4 positive ints"):
        sevnet.create_model("sevnet_xs", depths=[1, 2, 0, 1])
    with pytest.raises(ValueError, match="depths must be 4 positive ints"):
        sevnet.create_model("sevnet_xs", depths=[1, 2])


@pytest.mark.parametrize("causal", [False, True])
def test_difference_init_makes_two_thirds_of_the_stem_blind_to_a_still_picture(causal: bool) -> None:
    model = sevnet.create_model("sevnet_xs", stem_temporal_kernel=3, stem_temporal_init="difference",
                                causal=causal, **TINY)  # fmt: skip
    conv = model.stem.temporal.conv
    still = torch.rand(1, conv.in_channels, 1, 5, 5).expand(1, -1, 4, -1, -1)  # 4 identical frames
    out = torch.nn.functional.conv3d(still, conv.weight)  # no padding: every tap sees a real frame
    moving = torch.arange(conv.out_channels) % 3 != 0
    assert out[:, moving].abs().max() < 1e-6 and out[:, ~moving].abs().max() > 1e-3
    with pytest.raises(ValueError, match="stem_temporal_init"):
        sevnet.create_model("sevnet_xs", stem_temporal_init="zeros", **TINY)


def test_stem_temporal_conv_option() -> None:
    model = sevnet.create_model("sevnet_xs", stem_temporal_kernel=3, **TINY)
    assert model.stem.temporal.conv.kernel_size == (3, 1, 1) and model.stem.temporal.conv.groups == 1
    off = sevnet.create_model("sevnet_xs", stem_temporal_kernel=1, **TINY)
    assert isinstance(off.stem.temporal, torch.nn.Identity)
    wide = sevnet.create_model("sevnet_xs", stem_kernel=5, **TINY)
    assert wide.stem.spatial.conv.kernel_size == (1, 5, 5) and wide.stem.spatial.conv.padding == (0, 2, 2)
    assert wide(torch.randn(1, 3, 2, 33, 33)).shape == (1, 400)
    with pytest.raises(ValueError, match="stem_kernel must be a positive odd int"):
        sevnet.create_model("sevnet_xs", stem_kernel=4, **TINY)


@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_causal_model_never_sees_the_future(block: str) -> None:
    torch.manual_seed(0)
    model = sevnet.create_model("sevnet_xs", block=block, causal=True, se_ratio=0.25, stem_temporal_kernel=3,
                                zero_init_last=False, motion_stages=[1, 2], **TINY).eval()  # fmt: skip
    clip = torch.randn(1, 3, 6, 32, 32)
    changed = clip.clone()
    changed[:, :, 4:] = torch.randn(1, 3, 2, 32, 32)  # only the last two frames differ
    with torch.no_grad():
        a = model.head_conv(model.stages(model.stem(clip)))
        b = model.head_conv(model.stages(model.stem(changed)))
    assert torch.allclose(a[:, :, :4], b[:, :, :4], atol=1e-5)  # frames 0..3 see only frames 0..3
    assert not torch.allclose(a[:, :, 4:], b[:, :, 4:], atol=1e-5)


def test_format_1_checkpoint_loads_with_identical_outputs(tmp_path) -> None:
    from _v1_fixture import fixed_input, write_v1_checkpoint

    from sevnet.engine.checkpoint import load_model

    path = tmp_path / "v1.safetensors"
    expected = write_v1_checkpoint(path)  # the logits sevnet 0.1.0 gave for this file
    model, meta = load_model(path)
    assert meta["model_overrides"]["stem_temporal_kernel"] == 1  # architecture pinned to format 1
    with torch.no_grad():
        assert torch.allclose(model(fixed_input())[0], torch.tensor(expected), atol=1e-5)


def test_format_1_checkpoint_predicts_and_exports(tmp_path) -> None:
    import numpy as np
    from _v1_fixture import write_v1_checkpoint

    from sevnet.deploy.export import export_checkpoint

    path = tmp_path / "v1.safetensors"
    write_v1_checkpoint(path)
    top = sevnet.load(path).predict(np.zeros((6, 24, 24, 3), dtype=np.uint8), topk=2)
    assert [t["label"] for t in top] and set(t["label"] for t in top) <= {"a b", "c", "d"}
    export_checkpoint(path, "onnx", tmp_path / "model")  # self-checks the ONNX model against PyTorch
    assert (tmp_path / "model.onnx").is_file()


def test_channels_last_training_keeps_every_gradient_channels_last() -> None:
    """The shortcut's pool used to hand back NCDHW gradients, which made channels-last CPU training
    slower than NCDHW (mixed layouts send ReLU/BN backward to a strided path); the head's global pool
    did too. Now every block's output gradient stays channels-last, and the pools compute what
    avg_pool3d / adaptive_avg_pool3d compute.

    The whole-model check runs at 2 threads, as the trainer does when it picks channels-last on a CPU
    (use_channels_last): on ONE thread PyTorch (2.11 and 2.14 alike) runs 1x1x1 and kx1x1 convs of
    batches under 16 with its native kernel, which returns NCDHW for a channels-last input (oneDNN is
    used only from 2 threads), so no model stays channels-last there and the trainer uses NCDHW. The
    pools' own layouts are checked at 1 thread too: they must not depend on the conv kernels."""
    from sevnet.models.layers import GlobalAvgPool, SpatialAvgPool

    cl = torch.channels_last_3d
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            x = torch.randn(2, 5, 3, 7, 9)
            for pool, reference in ((SpatialAvgPool(2), torch.nn.functional.avg_pool3d(x, (1, 2, 2), ceil_mode=True)),
                                    (GlobalAvgPool(), torch.nn.functional.adaptive_avg_pool3d(x, 1))):  # fmt: skip
                for layout in (torch.contiguous_format, cl):
                    given = x.contiguous(memory_format=layout).requires_grad_()
                    out = pool(given)
                    assert torch.allclose(out, reference, atol=1e-6)
                    assert out.is_contiguous(memory_format=layout)
                    (grad,) = torch.autograd.grad(out.square().sum(), given)
                    assert grad.is_contiguous(memory_format=layout), (type(pool).__name__, n, grad.stride())
        torch.set_num_threads(2)
        _assert_block_gradients_channels_last()
    finally:
        torch.set_num_threads(threads)


def _assert_block_gradients_channels_last() -> None:
    cl = torch.channels_last_3d
    model = sevnet.create_model("sevnet_xs", num_classes=4, stem_temporal_kernel=3, motion_stages=[1, 3],
                                se_ratio=0.25)  # fmt: skip
    model = model.to(memory_format=cl)
    layouts: dict[str, bool] = {}

    def watch(name: str):
        def hook(module, inputs, output) -> None:
            output.register_hook(lambda g: layouts.__setitem__(name, g.is_contiguous(memory_format=cl)))

        return hook

    for name, stage in model.stages.named_children():
        for index, block in stage.named_children():
            block.register_forward_hook(watch(f"stages.{name}.{index}"))
    model.head_conv.register_forward_hook(watch("head_conv"))
    x = torch.randn(2, 3, 4, 32, 32).contiguous(memory_format=cl)
    torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1])).backward()
    assert len(layouts) == 14 and all(layouts.values()), layouts


def test_local_correlation_says_where_each_feature_came_from() -> None:
    """Content that moved 1 down and 2 left since the last frame matches the previous frame at
    displacement (-1, +2): out[d] at t compares t with t-1 shifted by d."""
    from sevnet.models.layers import local_correlation

    torch.manual_seed(0)
    before = torch.randn(1, 64, 1, 12, 12)  # enough channels that only the true match correlates
    after = torch.roll(before, shifts=(1, -2), dims=(3, 4))
    corr = local_correlation(after, before, radius=2)  # (1, 25, 1, 12, 12)
    best = corr[0, :, 0, 3:-3, 3:-3].argmax(0)  # away from the border
    dy, dx = -1, 2
    assert (best == (dy + 2) * 5 + (dx + 2)).all()
    assert corr.is_contiguous(memory_format=torch.channels_last_3d)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last_3d])
def test_local_correlation_equals_the_loop_over_displacements(layout) -> None:
    """The matmul-and-band computation against its definition, forward and backward (float64)."""
    from sevnet.models.layers import local_correlation

    torch.manual_seed(0)
    key = torch.randn(2, 5, 3, 6, 7, dtype=torch.float64).contiguous(memory_format=layout).requires_grad_()
    previous = torch.randn_like(key).requires_grad_()
    padded = torch.nn.functional.pad(previous, (2, 2, 2, 2))
    loop = torch.stack([(key * padded[..., dy : dy + 6, dx : dx + 7]).mean(1) for dy in range(5) for dx in range(5)], 1)
    ours = local_correlation(key, previous, 2)
    assert torch.allclose(ours, loop) and ours.is_contiguous(memory_format=torch.channels_last_3d)
    grad = torch.randn_like(loop)
    expected = torch.autograd.grad(loop, (key, previous), grad)
    assert all(torch.allclose(a, b) for a, b in zip(torch.autograd.grad(ours, (key, previous), grad), expected))


def test_motion_stages_add_a_correlation_unit_counted_in_the_macs() -> None:
    from sevnet.models.layers import MotionCorrelation

    plain = sevnet.create_model("sevnet_xs", num_classes=5, **TINY)
    model = sevnet.create_model("sevnet_xs", num_classes=5, motion_stages=[1], motion_radius=1, **TINY)
    unit = model.stages[0].motion
    assert isinstance(unit, MotionCorrelation) and unit.proj.conv.in_channels == 9  # (2 * 1 + 1) ** 2
    assert [n for n, m in model.named_modules() if isinstance(m, MotionCorrelation)] == ["stages.0.motion"]
    x = torch.randn(2, 3, 4, 32, 32)
    assert model(x).shape == (2, 5)
    # stage 1 output: 16 x 8 x 8 at 32x32 input; 16 key channels x 9 displacements per position and frame
    extra = count_gmacs(model, (1, 3, 4, 32, 32)) - count_gmacs(plain, (1, 3, 4, 32, 32))
    convs = (16 * 16 + 9 * 16) * 4 * 8 * 8  # the key and projection 1x1x1 convs
    assert extra * 1e9 == pytest.approx(convs + 16 * 9 * 4 * 8 * 8, rel=1e-6)
    for bad in ([0], [5], ["1"]):
        with pytest.raises(ValueError, match="motion_stages must be stage numbers 1-4"):
            sevnet.create_model("sevnet_xs", motion_stages=bad, **TINY)
