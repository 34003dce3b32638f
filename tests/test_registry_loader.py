"""The variants YAML loader: every problem reported at once as file:line:col lines."""

from __future__ import annotations

import textwrap

import pytest

from regnet_zoo.errors import RegistryError
from regnet_zoo.registry import Registry
from regnet_zoo.registry_file import load_file, load_text

GOOD = """\
schema: 1
variants:
  tiny_x:
    block: x
    stem_width: 32
    widths: [24, 56, 152, 368]
    depths: [1, 1, 4, 7]
    group_width: 8
    generator: {w0: 24, wa: 36.44, wm: 2.49, depth: 13}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(RegistryError) as e:
        load_text(textwrap.dedent(text), "t.yaml")
    return e.value.problems


def test_good_file_loads_with_locations():
    (v,) = load_text(GOOD, "t.yaml")
    assert (v.name, v.block, v.group_widths, v.se_ratio) == ("tiny_x", "x", (8, 8, 8, 8), 0.0)
    assert (v.location.file, v.location.line, v.location.column) == ("t.yaml", 3, 3)


def test_every_problem_is_reported_with_file_line_col():
    text = """\
    schema: 1
    variants:
      bad_a:
        block: x
        stem_widht: 32
        widths: [24, 56, 152, 368]
        depths: [1, 1, 4, true]
        group_width: 8
      bad_b:
        block: z
        stem_width: 32
        widths: [24, 56, 152]
        depths: [1, 1, 4, 7]
        group_width: 8
    """
    lines = problems(text)
    assert "t.yaml:5:5: unknown field 'stem_widht' in variant 'bad_a'; did you mean 'stem_width'?" in lines
    assert "t.yaml:3:3: variant 'bad_a' is missing required field 'stem_width'" in lines
    assert "t.yaml:7:23: bad_a.depths[3] must be an int, got a bool ('true')" in lines
    assert "t.yaml:10:12: bad_b.block must be one of x, y, got 'z'" in lines
    assert "t.yaml:12:13: bad_b.widths must have 4 entries, got 3" in lines
    assert len(lines) == 5


def test_duplicate_keys_are_detected_on_nodes():
    lines = problems(GOOD + "    block: y\n")
    assert lines == ["t.yaml:10:5: duplicate key 'block' in variant 'tiny_x' (first defined at line 4)"]
    lines = problems(GOOD + "  tiny_x:\n    block: x\n")
    assert lines[0].startswith("t.yaml:10:3: duplicate key 'tiny_x' in variants (first defined at line 3)")


def test_group_width_must_divide_stage_width():
    """HF's regnet-y-2560-seer config: 1696 channels are not a multiple of group width 640."""
    lines = problems("""\
    schema: 1
    variants:
      seer_2560_hf:
        block: y
        stem_width: 32
        widths: [640, 1696, 2544, 5088]
        depths: [3, 7, 16, 1]
        group_width: 640
    """)
    assert any("group width 640 does not divide stage s2 width 1696" in p for p in lines)
    assert any("stage s4 width 5088" in p for p in lines)
    assert all(p.startswith("t.yaml:8:18: ") for p in lines)


def test_group_width_is_clipped_to_the_stage_width():
    (v,) = load_text(GOOD.replace("group_width: 8", "group_width: [24, 56, 8, 8]").replace(
        "    generator: {w0: 24, wa: 36.44, wm: 2.49, depth: 13}\n", ""), "t.yaml")
    assert v.group_widths == (24, 56, 8, 8)


def test_generator_must_reproduce_the_lists():
    lines = problems(GOOD.replace("[1, 1, 4, 7]", "[1, 1, 5, 6]"))
    assert lines == ["t.yaml:9:16: tiny_x.generator (pycls rounding) gives widths [24, 56, 152, 368], depths "
                     "[1, 1, 4, 7], but the variant lists widths [24, 56, 152, 368], depths [1, 1, 5, 6]"]


def test_rounding_matters():
    """regnetx_004 (pycls) and regnetx_004_tv (torchvision) differ only by rounding."""
    text = GOOD.replace("tiny_x", "x004").replace("[24, 56, 152, 368]", "[32, 64, 160, 400]").replace(
        "[1, 1, 4, 7]", "[1, 2, 7, 12]").replace("group_width: 8", "group_width: 16").replace(
        "{w0: 24, wa: 36.44, wm: 2.49, depth: 13}", "{w0: 24, wa: 24.48, wm: 2.54, depth: 22, rounding: %s}")
    (v,) = load_text(text % "torchvision", "t.yaml")
    assert v.widths[-1] == 400
    assert "gives widths [32, 64, 160, 384]" in problems(text % "pycls")[0]


def test_types_and_values():
    lines = problems(GOOD.replace("stem_width: 32", "stem_width: 32.0").replace(
        "generator: {w0: 24", "se_ratio: 0.25\n    generator: {w0: 24"))
    assert "t.yaml:5:17: tiny_x.stem_width must be an int, got a float ('32.0')" in lines
    assert any("X blocks have no squeeze-excitation" in p for p in lines)


def test_weight_tags_are_validated():
    text = GOOD + """\
    weights:
      good: {hub: me/x, keys: timm, num_classes: 10, input_size: 224, crop_pct: 0.9, interpolation: bicubic,
             mean: imagenet, std: imagenet, license: mit}
      bad: {hub: me/y, keys: onnx, num_classes: -1, input_size: 224, crop_pct: 1.5, interpolation: bicubic,
            mean: [0.5, 0.5], std: imagenet, licence: mit}
"""
    lines = problems(text)
    joined = "\n".join(lines)
    assert "weight tag tiny_x.bad.keys must be one of timm, hf, torchvision, pycls, vissl, got 'onnx'" in joined
    assert "num_classes must be >= 0, got -1" in joined
    assert "crop_pct must be in (0, 1], got 1.5" in joined
    assert "mean must have 3 entries, got 2" in joined
    assert "unknown field 'licence' in weight tag tiny_x.bad; did you mean 'license'?" in joined
    assert "missing required field 'license'" in joined


def test_invalid_yaml_and_schema():
    with pytest.raises(RegistryError, match=r"t.yaml:3:1: invalid YAML: did not find expected node content"):
        load_text("schema: 1\nvariants: [\n", "t.yaml")
    assert problems("schema: 3\nvariants: {}\n") == ["t.yaml:1:9: unsupported schema 3; this regnet-zoo reads "
                                                     "schemas 1, 2"]
    with pytest.raises(RegistryError, match="empty file"):
        load_text("", "t.yaml")


def test_unreadable_file(tmp_path):
    with pytest.raises(RegistryError, match="cannot read variants file"):
        load_file(tmp_path / "nope.yaml")


def test_duplicate_names_and_aliases_across_files(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(GOOD.replace("generator", "aliases: [Tiny]\n    generator"))
    b.write_text(GOOD.replace("tiny_x", "other_x").replace("generator", "aliases: [tiny]\n    generator"))
    reg = Registry()
    reg.add(load_file(a, plugin="plug_a"))
    with pytest.raises(RegistryError) as e:
        reg.add(load_file(b, plugin="plug_b"))
    (line,) = e.value.problems
    assert line.startswith(f"{b}:3:3: alias 'tiny' of variant 'other_x' is already used by variant 'tiny_x' "
                           f"({a}:3 (plug_a))")


SCHEMA2 = GOOD.replace("schema: 1", "schema: 2").replace("    generator: {w0: 24, wa: 36.44, wm: 2.49, depth: 13}\n",
                                                         "")


def test_schema_2_fields_load_and_reach_the_plan():
    """issue 13: timm's RegNetCfg design space as data (RegNetV / RegNetZ / GroupNorm fields)."""
    from regnet_zoo.plan import build_plan

    text = SCHEMA2 + ("    act: silu\n    norm: groupnorm\n    norm_group_size: 8\n    bottle_ratio: 2.0\n"
                      "    downsample: avg\n    preact: true\n    linear_out: false\n    num_features: 512\n"
                      "    strides: [1, 2, 2, 2]\n")
    (v,) = load_text(text, "t.yaml")
    assert (v.act, v.norm, v.norm_group_size, v.bottle_ratio, v.downsample, v.preact, v.linear_out, v.num_features,
            v.strides) == ("silu", "groupnorm", 8, 2.0, "avg", True, False, 512, (1, 2, 2, 2))
    plan = build_plan(v)
    assert [s.bottleneck_width for s in plan.stages] == [48, 112, 304, 736]
    assert [b.shortcut for b in plan.stages[0].blocks] == ["avg"]  # 32 -> 24 channels at stride 1
    assert [f.reduction for f in plan.all_feature_info()] == [2, 2, 4, 8, 16]
    assert plan.num_features == 512 and plan.norm_groups(48) == 6
    assert plan.design_features() == {"act:silu", "groupnorm", "preact", "final_conv", "shortcut:avg", "bottle_ratio",
                                      "stage_stride_1"}


def test_schema_2_field_errors():
    text = SCHEMA2 + ("    act: swish\n    norm: groupnrom\n    bottle_ration: 2\n    downsample: pool\n"
                      "    preact: 1\n    strides: [2, 3, 2, 2]\n")
    lines = problems(text)
    assert ("t.yaml:9:10: tiny_x.act must be one of relu, silu, gelu, gelu_tanh, quick_gelu, mish, relu6, leaky_relu, "
            "tanh, sigmoid, identity, got 'swish'") in lines
    assert "t.yaml:10:11: tiny_x.norm must be one of batchnorm, groupnorm, got 'groupnrom'" in lines
    assert "t.yaml:11:5: unknown field 'bottle_ration' in variant 'tiny_x'; did you mean 'bottle_ratio'?" in lines
    assert "t.yaml:12:17: tiny_x.downsample must be one of conv1x1, avg, none, got 'pool'" in lines
    assert "t.yaml:13:13: tiny_x.preact must be true or false, got an int ('1')" in lines
    assert "t.yaml:14:18: tiny_x.strides[1] must be one of 1, 2, got 3" in lines
    both = problems(SCHEMA2 + "    preact: true\n    linear_out: true\n")
    assert both == ["t.yaml:10:5: tiny_x.linear_out: pre-activation blocks (preact: true) have no activation after the "
                    "residual add to drop; remove one of the two"]
    gn = problems(SCHEMA2.replace("    group_width: 8\n", "    group_width: 8\n    norm: groupnorm\n"))
    assert gn == ["t.yaml:9:11: tiny_x.norm: groupnorm needs norm_group_size (channels per group, e.g. 16) or "
                  "norm_groups (number of groups, e.g. 32)"]
    both_sizes = problems(SCHEMA2.replace("    group_width: 8\n", "    group_width: 8\n    norm: groupnorm\n"
                                          "    norm_group_size: 8\n    norm_groups: 4\n"))
    assert both_sizes == ["t.yaml:11:5: tiny_x: give norm_group_size (channels per group) or norm_groups (number of "
                          "groups), not both"]
    bn_groups = problems(SCHEMA2.replace("    group_width: 8\n", "    group_width: 8\n    norm_groups: 4\n"))
    assert bn_groups == ["t.yaml:9:5: tiny_x.norm_groups is for norm: groupnorm only"]
    groups = SCHEMA2.replace("    group_width: 8\n", "    group_width: 8\n    norm: groupnorm\n    norm_groups: 8\n")
    (v,) = load_text(groups, "t.yaml")
    from regnet_zoo.plan import build_plan

    assert build_plan(v).norm_groups(24) == build_plan(v).norm_groups(368) == 8  # a fixed count, any width
    assert problems(groups.replace("norm_groups: 8", "norm_groups: 16")) == [
        "t.yaml:10:18: tiny_x.norm_groups 16 does not divide the normalised widths [24, 56, 152]; choose a "
        "divisor of every width"]
    odd = problems(SCHEMA2.replace("    group_width: 8\n",
                                   "    group_width: 8\n    norm: groupnorm\n    norm_group_size: 48\n"))
    assert odd == ["t.yaml:10:22: tiny_x.norm_group_size 48 does not divide the normalised widths [24, 32, 56, 152, "
                   "368]; choose a divisor of every width"]


def test_se_act_is_for_y_blocks_and_reaches_the_plan():
    """issue 13: transformers' Y blocks keep ReLU inside squeeze-excitation whatever hidden_act says (``se_act``)."""
    from regnet_zoo.plan import DESIGN_FEATURES, build_plan

    y = SCHEMA2.replace("block: x", "block: y").replace("    group_width: 8\n",
                                                        "    group_width: 8\n    act: gelu\n    se_act: relu\n")
    (v,) = load_text(y, "t.yaml")
    plan = build_plan(v)
    assert (plan.act, plan.se_activation) == ("gelu", "relu")
    assert plan.design_features() == {"act:gelu", "se_act"}
    (same,) = load_text(y.replace("se_act: relu", "se_act: gelu"), "t.yaml")
    assert build_plan(same).se_act == "" and build_plan(same).design_features() == {"act:gelu"}
    (more,) = load_text(y.replace("act: gelu", "act: mish").replace("se_act: relu", "se_act: identity"), "t.yaml")
    assert build_plan(more).design_features() == {"act:mish", "se_act", "act:identity"}
    assert set(build_plan(more).design_features()) <= set(DESIGN_FEATURES)
    assert problems(SCHEMA2.replace("    group_width: 8\n", "    group_width: 8\n    se_act: relu\n")) == [
        "t.yaml:9:5: tiny_x.se_act: X blocks have no squeeze-excitation; remove se_act or use block: y"]


def test_schema_2_fields_need_schema_2():
    lines = problems(GOOD.replace("    group_width: 8\n", "    group_width: 8\n    act: silu\n"))
    assert lines == ["t.yaml:9:5: tiny_x.act needs 'schema: 2' at the top of the file (this file says schema 1)"]
