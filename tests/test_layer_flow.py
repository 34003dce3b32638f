"""The structural plan's dataflow (``regnet_zoo.layer_flow``), framework-free: walked with symbolic ops, each block
must compute what timm's ``Bottleneck`` / ``PreBottleneck`` forward computes (the backends that build from the table,
TensorFlow's Keras backbone and fast path, are checked against timm numerically in tests/tf)."""

import pytest

import regnet_zoo as rz
from regnet_zoo import layer_flow, layer_table


class Trace:
    """``layer_flow.NetworkOps`` on strings: every unit becomes ``name(input)``."""

    def unit(self, u, x):
        fused = "+".join(layer.name.rsplit(".", 1)[-1] for layer in (u.norm, u.act) if layer is not None)
        return f"{u.name}{'[' + fused + ']' if fused else ''}({x})"

    def squeeze(self, x, unit):
        return f"mean({x})"

    def gate(self, x, s, unit):
        return f"gate({x}, {s})"

    def add(self, y, shortcut, block):
        return f"add({y}, {shortcut})"


def _block(name, stage=2):
    plan = rz.plan(name)
    return plan, plan.stages[stage - 1].blocks[0]


def test_post_activation_block_with_se_and_projection_shortcut():
    plan, b = _block("regnety_002")
    got = layer_flow.run_block(plan, b, 4, "x", Trace())
    conv2 = "s2.b1.conv2.conv[bn+act](s2.b1.conv1.conv[bn+act](x))"
    se = f"s2.b1.se.fc2(s2.b1.se.fc1[act](mean({conv2})))"
    assert got == (f"s2.b1.act3(add(s2.b1.conv3.conv[bn](gate({conv2}, {se})), "
                   f"s2.b1.downsample.conv[bn](x)))")


def test_identity_shortcut_adds_the_block_input():
    plan = rz.plan("regnetx_002")
    got = layer_flow.run_block(plan, plan.stages[2].blocks[1], 16, "x", Trace())
    assert got == "s3.b2.act3(add(s3.b2.conv3.conv[bn](s3.b2.conv2.conv[bn+act](s3.b2.conv1.conv[bn+act](x))), x))"


def test_pre_activation_block_folds_norm2_into_conv1_and_shortcuts_from_norm1():
    """RegNetV-6.4GF (timm's ``PreBottleneck``, avg-pool shortcut): norm1 + act run on the input, which both
    branches then take; norm2 follows conv1 directly, so it is conv1's unit; nothing follows the sum."""
    plan, b = _block("regnetv_064")
    got = layer_flow.run_block(plan, b, 4, "x", Trace())
    x = "s2.b1.norm1[act](x)"
    assert got.startswith(f"add(s2.b1.conv3(s2.b1.norm3[act](gate(s2.b1.conv2(s2.b1.conv1[norm2+act]({x}))")
    assert got.endswith(f"s2.b1.downsample.1(s2.b1.downsample.0({x})))")


def test_linear_out_block_has_no_activation_after_the_sum_and_a_block_without_shortcut_no_sum():
    plan = rz.plan("regnetz_005")
    first, second = plan.stages[1].blocks[:2]
    assert layer_flow.run_block(plan, second, 8, "x", Trace()).startswith("add(s2.b2.conv3.conv[bn](gate(")
    assert layer_flow.run_block(plan, first, 4, "x", Trace()).startswith("s2.b1.conv3.conv[bn](gate(")


@pytest.mark.parametrize("name", ["regnetx_002", "regnety_040", "regnetv_064", "regnetz_040", "regnety_040_sgn"])
def test_every_layer_of_the_trunk_is_run_once(name):
    """Every layer of the table (up to the last stage) is applied exactly once, fused or alone."""
    plan = rz.plan(name)
    seen = []

    class Collect(Trace):
        def unit(self, u, x):
            seen.extend(layer.name for layer in (u.layer, u.norm, u.act) if layer is not None)
            return x

        def gate(self, x, s, unit):
            seen.append(unit.name)
            return x

    maps = layer_flow.run_trunk(plan, "x", Collect())
    assert len(maps) == len(plan.stages) + 1
    trunk = [layer.name for layer in layer_table.layers(plan, num_classes=0)]
    assert sorted(seen) == sorted(trunk[:len(trunk) - len(layer_table.final_layers(plan))])
