"""``regnet_zoo.transformers``: transformers' RegNet API in PyTorch, TensorFlow and Flax, checked against
transformers 4.57 on checkpoints it writes (random weights, randomised BN) into an offline hub cache.

Each documented example runs twice with only the library changed: transformers (from the snapshot directory) and
``regnet_zoo.transformers`` (from the hub id). With transformers 5 installed (no TF / Flax classes) the module runs
without the reference comparisons: checkpoints are then written by our own classes
(see ``test_runs_with_transformers_5``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness import randomize, rel_err
from regnet_zoo.errors import WeightsError
from hubcache import HubCache, use_hub_cache
from testdeps import TESTS_DIR, require

SPECS = {"regnety_002": dict(embedding_size=32, hidden_sizes=[24, 56, 152, 368], depths=[1, 1, 4, 7], groups_width=8,
                             layer_type="y"),
         "regnetx_002": dict(embedding_size=32, hidden_sizes=[24, 56, 152, 368], depths=[1, 1, 4, 7], groups_width=8,
                             layer_type="x")}
LABELS = {i: f"class_{i}" for i in range(10)}
PROCESSOR = {"crop_pct": 0.875, "do_normalize": True, "do_resize": True, "feature_extractor_type": "ConvNextFeatureExtractor",
             "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "resample": 3,
             "size": 64}  # the facebook/regnet-* preprocessor_config.json, at 64 (not 224) pixels to keep tests fast
FORMATS = {"pt": "model.safetensors", "tf": "tf_model.h5", "flax": "flax_model.msgpack"}
SAMPLE = Path(__file__).parents[1] / "regnet_zoo" / "data" / "sample.png"
TOL = {"pt": 1e-6, "tf": 1e-4, "flax": 1e-4}  # relative to the output's scale; torch: the same ops as transformers,
# summed in another order (timm's SE takes x.mean, transformers' an AdaptiveAvgPool2d): 0 on Intel, ~1e-7 on AMD Zen 5


def reference():
    """transformers 4.x with its TF and Flax RegNet classes, or None (transformers 5)."""
    require("transformers")
    import transformers

    major = int(transformers.__version__.split(".")[0])
    expected = os.environ.get("REGNET_ZOO_EXPECT_TRANSFORMERS")
    assert expected is None or major == int(expected), f"transformers {transformers.__version__} was imported"
    return transformers if major < 5 else None


def ours():
    import regnet_zoo.transformers as rzt

    return rzt


def image():
    from PIL import Image

    return Image.open(SAMPLE).convert("RGB")


def np_(x):
    return np.asarray(x.detach().numpy() if hasattr(x, "detach") else x, np.float32)


@pytest.fixture(scope="session")
def repos(tmp_path_factory):
    """``{(variant, format): snapshot dir}`` in a session hub cache (repo ids ``test-org/<variant>-<format>``): the
    classifier in PyTorch, TF and Flax files (Flax: Y only with the reference, whose Flax cannot build X)."""
    require("torch", "tensorflow", "flax", "h5py")
    ref = reference()
    lib = ref or ours()
    root = tmp_path_factory.mktemp("transformers_api")
    cache = HubCache(root / "hf_home" / "hub")
    out = {}
    for name, spec in SPECS.items():
        config = lib.RegNetConfig(**spec, id2label=LABELS)
        model = lib.RegNetForImageClassification(config)
        randomize(model if ref else model.model).eval()
        model.save_pretrained(root / name / "pt")
        formats = ["pt", "tf"] + (["flax"] if spec["layer_type"] == "y" or not ref else [])
        for fmt in formats[1:]:
            cls = lib.TFRegNetForImageClassification if fmt == "tf" else lib.FlaxRegNetForImageClassification
            kwargs = {"from_pt": True} if ref else {}
            cls.from_pretrained(root / name / "pt", **kwargs).save_pretrained(root / name / fmt)
        for fmt in formats:
            (root / name / fmt / "preprocessor_config.json").write_text(json.dumps(PROCESSOR))
            out[name, fmt] = cache.add_dir(f"test-org/{name}-{fmt}", root / name / fmt)
    out["root"] = cache.root
    return out


@pytest.fixture
def hub(repos, monkeypatch):
    use_hub_cache(repos["root"], monkeypatch)
    return repos


# --- the documented examples, written once, run with either library -------------------------------------------
def example_pt_model(lib, repo, image):
    import torch

    image_processor = lib.AutoImageProcessor.from_pretrained(repo)
    model = lib.RegNetModel.from_pretrained(repo)
    inputs = image_processor(image, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs, output_hidden_states=True)
    return outputs, None


def example_pt_classifier(lib, repo, image):
    import torch

    image_processor = lib.AutoImageProcessor.from_pretrained(repo)
    model = lib.RegNetForImageClassification.from_pretrained(repo)
    inputs = image_processor(image, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs, output_hidden_states=True)
    predicted_label = outputs.logits.argmax(-1).item()
    return outputs, model.config.id2label[predicted_label]


def example_tf_model(lib, repo, image):
    image_processor = lib.AutoImageProcessor.from_pretrained(repo)
    model = lib.TFRegNetModel.from_pretrained(repo)
    inputs = image_processor(image, return_tensors="tf")
    outputs = model(**inputs, output_hidden_states=True, training=False)
    return outputs, None


def example_tf_classifier(lib, repo, image):
    import tensorflow as tf

    image_processor = lib.AutoImageProcessor.from_pretrained(repo)
    model = lib.TFRegNetForImageClassification.from_pretrained(repo)
    inputs = image_processor(image, return_tensors="tf")
    outputs = model(**inputs, output_hidden_states=True, training=False)
    predicted_label = int(tf.math.argmax(outputs.logits, axis=-1)[0])
    return outputs, model.config.id2label[predicted_label]


def example_flax_model(lib, repo, image):
    image_processor = lib.AutoImageProcessor.from_pretrained(repo)
    model = lib.FlaxRegNetModel.from_pretrained(repo)
    inputs = image_processor(images=image, return_tensors="np")
    outputs = model(**inputs, output_hidden_states=True)
    return outputs, None


def example_flax_classifier(lib, repo, image):
    import jax

    image_processor = lib.AutoImageProcessor.from_pretrained(repo)
    model = lib.FlaxRegNetForImageClassification.from_pretrained(repo)
    inputs = image_processor(images=image, return_tensors="np")
    outputs = model(**inputs, output_hidden_states=True)
    predicted_class_idx = jax.numpy.argmax(outputs.logits, axis=-1)
    return outputs, model.config.id2label[predicted_class_idx.item()]


EXAMPLES = {("pt", "model"): example_pt_model, ("pt", "classifier"): example_pt_classifier,
            ("tf", "model"): example_tf_model, ("tf", "classifier"): example_tf_classifier,
            ("flax", "model"): example_flax_model, ("flax", "classifier"): example_flax_classifier}
FIELDS = {"model": ("last_hidden_state", "pooler_output", "hidden_states"), "classifier": ("logits", "hidden_states")}


def assert_same(ours_out, ref_out, fields, tol: float):
    """Each field equal within ``tol`` relative to its scale (``tol=0``: bit for bit)."""
    for field in fields:
        mine, theirs = getattr(ours_out, field), getattr(ref_out, field)
        pairs = list(zip(mine, theirs)) if field == "hidden_states" else [(mine, theirs)]
        assert len(pairs) == (5 if field == "hidden_states" else 1)
        for a, b in pairs:
            a, b = np_(a), np_(b)
            assert a.shape == b.shape, (field, a.shape, b.shape)
            if tol == 0:
                assert np.abs(a - b).max() == 0.0, (field, np.abs(a - b).max())
            else:
                assert rel_err(a, b) <= tol, (field, rel_err(a, b))


@pytest.mark.parametrize("framework", ["pt", "tf", "flax"])
@pytest.mark.parametrize("kind", ["model", "classifier"])
@pytest.mark.parametrize("variant", list(SPECS))
def test_documented_example(hub, variant, kind, framework):
    """The example with only the import changed: same outputs and shapes as transformers 4.57 (X in Flax: ours
    against transformers' PyTorch class, since transformers' Flax cannot build X)."""
    example = EXAMPLES[framework, kind]
    fmt = framework if (variant, framework) in hub else "pt"
    mine, label = example(ours(), f"test-org/{variant}-{fmt}", image())
    assert type(mine).__name__ == {
        ("pt", "model"): "BaseModelOutputWithPoolingAndNoAttention",
        ("pt", "classifier"): "ImageClassifierOutputWithNoAttention",
        ("tf", "model"): "TFBaseModelOutputWithPoolingAndNoAttention",
        ("tf", "classifier"): "TFSequenceClassifierOutput",
        ("flax", "model"): "FlaxBaseModelOutputWithPoolingAndNoAttention",
        ("flax", "classifier"): "FlaxImageClassifierOutputWithNoAttention"}[framework, kind]
    if kind == "model":
        assert tuple(mine.last_hidden_state.shape) == (1, 368, 2, 2)
        assert tuple(mine.pooler_output.shape) == (1, 368, 1, 1)
    else:
        assert tuple(mine.logits.shape) == (1, 10) and label in LABELS.values()
    assert [tuple(h.shape) for h in mine.hidden_states] == [(1, 32, 32, 32), (1, 24, 16, 16), (1, 56, 8, 8),
                                                           (1, 152, 4, 4), (1, 368, 2, 2)]
    ref = reference()
    if ref is None:
        return
    ref_framework = framework if (variant, framework) in hub else "pt"
    theirs, ref_label = EXAMPLES[ref_framework, kind](ref, str(hub[variant, fmt]), image())
    assert label == ref_label
    assert_same(mine, theirs, FIELDS[kind], TOL[framework])


@pytest.mark.parametrize("fmt", ["pt", "tf", "flax"])
def test_every_weight_format_into_every_class(hub, fmt):
    """transformers' three file formats load into the classes of the other two frameworks (the documented examples
    cover each framework's own format), with the logits of transformers' PyTorch class."""
    import torch

    rzt, ref, x = ours(), reference(), np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    lib = ref or rzt
    with torch.no_grad():
        expected = np_(lib.RegNetForImageClassification.from_pretrained(str(hub["regnety_002", "pt"]))(
            torch.from_numpy(x)).logits)
    repo = f"test-org/regnety_002-{fmt}"
    for framework, cls in (("pt", rzt.RegNetForImageClassification), ("tf", rzt.TFRegNetForImageClassification),
                           ("flax", rzt.FlaxRegNetForImageClassification)):
        if framework == fmt:
            continue
        with torch.no_grad():
            got = np_(cls.from_pretrained(repo)(torch.from_numpy(x) if framework == "pt" else x).logits)
        if framework == "pt":  # bit for bit at this input on both machines so far (unlike the examples: TOL)
            assert np.abs(got - expected).max() == 0.0
        else:
            assert rel_err(got, expected) <= TOL[framework], framework


@pytest.mark.parametrize("framework", ["pt", "tf", "flax"])
def test_save_pretrained_is_what_transformers_reads(hub, tmp_path, framework):
    """Our save_pretrained writes transformers' files; transformers 4.57 (same framework) and we load them back."""
    rzt, ref = ours(), reference()
    x = np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype(np.float32)
    prefix = {"pt": "", "tf": "TF", "flax": "Flax"}[framework]
    feed = (lambda a: __import__("torch").from_numpy(a)) if framework == "pt" else (lambda a: a)
    for kind, fields in (("ForImageClassification", ("logits",)), ("Model", ("last_hidden_state", "pooler_output"))):
        name = f"{prefix}RegNet{kind}"
        model = getattr(rzt, name).from_pretrained("test-org/regnety_002-pt")
        target = tmp_path / f"{framework}-{kind}"
        model.save_pretrained(target)
        assert sorted(p.name for p in target.iterdir()) == sorted(["config.json", FORMATS[framework]])
        config = json.loads((target / "config.json").read_text())
        assert config["model_type"] == "regnet" and config["architectures"] == [f"RegNet{kind}"]
        assert config["id2label"]["3"] == "class_3"
        again = getattr(rzt, name).from_pretrained(target)
        out = model(feed(x))
        assert_same(again(feed(x)), out, fields, 0)
        if ref is not None:
            theirs = getattr(ref, name).from_pretrained(target)
            assert_same(out, theirs(feed(x)), fields, TOL[framework])


def test_config_matches_transformers(tmp_path):
    """Fields, defaults (transformers 4.57's, not its docstring's) and config.json in both directions."""
    rzt = ours()
    assert (rzt.RegNetConfig().embedding_size, rzt.RegNetConfig().hidden_sizes, rzt.RegNetConfig().num_labels) == \
        (32, [128, 192, 512, 1088], 2)
    transformers = reference()
    if transformers is None:
        return
    mine, theirs = rzt.RegNetConfig(), transformers.RegNetConfig()
    fields = ("num_channels", "embedding_size", "hidden_sizes", "depths", "groups_width", "layer_type", "hidden_act",
              "downsample_in_first_stage", "num_labels", "id2label", "label2id", "problem_type",
              "output_hidden_states", "return_dict", "use_return_dict")
    assert {f: getattr(mine, f) for f in fields} == {f: getattr(theirs, f) for f in fields}
    mine = rzt.RegNetConfig(layer_type="x", id2label=LABELS, problem_type="multi_label_classification")
    mine.save_pretrained(tmp_path / "a")
    back = transformers.RegNetConfig.from_pretrained(tmp_path / "a")
    assert {f: getattr(back, f) for f in fields} == {f: getattr(mine, f) for f in fields}
    transformers.RegNetConfig(depths=[1, 1, 4, 7], num_labels=3).save_pretrained(tmp_path / "b")
    back = rzt.RegNetConfig.from_pretrained(tmp_path / "b", output_hidden_states=True)
    assert back.depths == [1, 1, 4, 7] and back.num_labels == 3 and back.output_hidden_states
    assert rzt.RegNetConfig.from_dict(back.to_dict()) == back
    with pytest.raises(ValueError, match="layer_type=z is not one of x,y"):
        rzt.RegNetConfig(layer_type="z")


def test_config_only_model_and_switches():
    """``RegNetModel(RegNetConfig())`` builds regnety_040; config.output_hidden_states / use_return_dict are
    honoured and ``return_dict=False`` gives transformers' tuples, in every framework."""
    require("torch", "tensorflow", "flax")
    import torch

    rzt = ours()
    configuration = rzt.RegNetConfig()
    model = rzt.RegNetModel(configuration)
    assert model.config is configuration
    assert sum(p.numel() for p in model.parameters()) == 19_557_656  # transformers' RegNetModel(RegNetConfig())
    x = np.random.default_rng(2).standard_normal((1, 3, 64, 64)).astype(np.float32)
    for prefix, feed in (("", torch.from_numpy), ("TF", lambda a: a), ("Flax", lambda a: a)):
        config = rzt.RegNetConfig(**SPECS["regnetx_002"], num_labels=3)
        model = getattr(rzt, f"{prefix}RegNetForImageClassification")(config)
        assert model(feed(x)).hidden_states is None
        config.output_hidden_states = True
        assert len(model(feed(x)).hidden_states) == 5
        config.return_dict = False
        logits, hidden = model(feed(x))
        assert tuple(logits.shape) == (1, 3) and [tuple(h.shape)[1] for h in hidden] == [32, 24, 56, 152, 368]
        assert len(model(feed(x), output_hidden_states=False)) == 1
        base = getattr(rzt, f"{prefix}RegNetModel")(rzt.RegNetConfig(**SPECS["regnetx_002"]))
        last, pooled = base(feed(x), return_dict=False)
        assert tuple(last.shape) == (1, 368, 2, 2) and tuple(pooled.shape) == (1, 368, 1, 1)


@pytest.mark.parametrize("problem,labels_of", [
    ("single_label_classification", lambda rng, n: rng.integers(0, n, (2,)).astype(np.int64)),
    ("multi_label_classification", lambda rng, n: (rng.random((2, n)) > 0.5).astype(np.float32)),
    ("regression", lambda rng, n: rng.standard_normal((2, n)).astype(np.float32)),
])
def test_loss_rules(problem, labels_of):
    """transformers' loss for each problem_type: identical in PyTorch; TF per example (B,) like transformers' TF;
    Flax equal to PyTorch's; the problem type is inferred from the labels as transformers does."""
    require("torch", "tensorflow", "flax")
    import torch

    rzt, ref, rng = ours(), reference(), np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    labels = labels_of(rng, 4)
    explicit = problem if problem == "regression" else None  # regression with 4 outputs must be asked for
    pt = rzt.RegNetForImageClassification(rzt.RegNetConfig(**SPECS["regnety_002"], num_labels=4,
                                                           problem_type=explicit)).eval()
    randomize(pt.model)
    loss = pt(torch.from_numpy(x), labels=torch.from_numpy(labels)).loss
    assert pt.config.problem_type == problem
    if ref is not None:
        theirs = ref.RegNetForImageClassification(ref.RegNetConfig(**SPECS["regnety_002"], num_labels=4,
                                                                   problem_type=explicit)).eval()
        theirs.load_state_dict(_hf_state(pt))
        assert torch.equal(theirs(torch.from_numpy(x), labels=torch.from_numpy(labels)).loss, loss)
    state = pt.canonical_state()
    for prefix in ("TF", "Flax"):
        cls = getattr(rzt, f"{prefix}RegNetForImageClassification")
        model = cls(rzt.RegNetConfig(**SPECS["regnety_002"], num_labels=4, problem_type=explicit))
        from regnet_zoo.weights.export import load_state

        load_state(model.model, state, model.framework)
        got = np.asarray(model(x, labels=labels).loss)
        assert got.shape == ((2,) if prefix == "TF" else ())
        assert abs(float(got.mean()) - loss.item()) <= 1e-4 * max(1.0, abs(loss.item()))


def _hf_state(model):
    import torch

    from regnet_zoo.weights.keyspaces import canonical_to_hf

    return {k: torch.from_numpy(np.asarray(v)) for k, v in canonical_to_hf(model.canonical_state()).items()}


def test_bad_labels_say_what_fits():
    require("torch")
    import torch

    rzt = ours()
    model = rzt.RegNetForImageClassification(rzt.RegNetConfig(**SPECS["regnety_002"], num_labels=4)).eval()
    x = torch.zeros(2, 3, 64, 64)
    with pytest.raises(ValueError, match=r"one class index per image: labels of shape \(2,\), got \(2, 3\)"):
        model(x, labels=torch.zeros(2, 3, dtype=torch.long))
    model.config.problem_type = None  # the first call fixed it, as in transformers
    with pytest.raises(ValueError, match=r"multi_label_classification needs labels of the logits' shape \(2, 4\)"):
        model(x, labels=torch.zeros(2, 3))
    model.config.problem_type = "single_label_classification"
    with pytest.raises(ValueError, match="single_label_classification needs integer class indices, got float32"):
        model(x, labels=torch.zeros(2))


def test_flax_train_updates_every_batch_norm_and_dtype_is_compute_dtype():
    require("flax")
    import jax
    import jax.numpy as jnp

    rzt = ours()
    x = np.random.default_rng(4).standard_normal((2, 3, 64, 64)).astype(np.float32)
    model = rzt.FlaxRegNetForImageClassification(rzt.RegNetConfig(**SPECS["regnetx_002"], num_labels=3))
    with jax.disable_jit():  # op by op: compiling two more programs costs more than running them once
        out, state = model(x, train=True)
        half = rzt.FlaxRegNetForImageClassification(model.config, dtype=jnp.bfloat16)
        half.params = model.params
        assert half(x).logits.dtype == jnp.bfloat16
    assert out.logits.shape == (2, 3) and set(state) == {"batch_stats"}
    before, after = jax.tree.leaves(model.params["batch_stats"]), jax.tree.leaves(state["batch_stats"])
    assert len(before) == len(after) == 2 * (1 + 13 * 3 + 4)  # stem, 3 per block, 4 shortcuts; mean and var
    assert all(not np.array_equal(a, b) for a, b in zip(before, after))
    assert {leaf.dtype for leaf in jax.tree.leaves(half.params)} == {jnp.dtype("float32")}


def test_bad_input_is_named(hub, tmp_path):
    """Another model type, a hub repo that is not a RegNet, a config regnet-zoo cannot build (prelu), NHWC pixel
    values."""
    require("torch", "tensorflow", "flax")
    import torch

    rzt = ours()
    (tmp_path / "vit").mkdir()
    (tmp_path / "vit" / "config.json").write_text(json.dumps({"model_type": "vit", "hidden_size": 768}))
    (tmp_path / "vit" / "model.safetensors").write_bytes(b"not read")
    with pytest.raises(ValueError, match="model_type 'vit'.*not a RegNet checkpoint"):
        rzt.RegNetModel.from_pretrained(tmp_path / "vit")
    HubCache(hub["root"]).add_dir("google/vit-base", tmp_path / "vit")
    with pytest.raises(ValueError, match="model_type 'vit'.*not a RegNet checkpoint"):
        rzt.TFRegNetForImageClassification.from_pretrained("google/vit-base")
    with pytest.raises(Exception, match="HF_HUB_OFFLINE is set and nobody/regnet is not in the Hugging Face cache"):
        rzt.RegNetModel.from_pretrained("nobody/regnet")
    with pytest.raises(WeightsError, match=r"RegNetConfig: hidden_act='prelu' is not supported; regnet-zoo builds "
                                           r"hidden_act 'relu', "):
        rzt.RegNetModel(rzt.RegNetConfig(hidden_sizes=[32, 64, 128, 256], depths=[1, 1, 1, 1], hidden_act="prelu"))
    nhwc = np.zeros((1, 64, 64, 3), np.float32)
    config = rzt.RegNetConfig(**SPECS["regnety_002"])
    for cls, x in ((rzt.RegNetModel, torch.from_numpy(nhwc)), (rzt.TFRegNetModel, nhwc), (rzt.FlaxRegNetModel, nhwc)):
        with pytest.raises(ValueError, match="NCHW|channels_first|N, 3, H, W"):
            cls(config)(x)
    with pytest.raises(ValueError, match="ignore_mismatched_sizes=True"):
        rzt.RegNetForImageClassification.from_pretrained("test-org/regnety_002-pt", num_labels=3)
    model = rzt.RegNetForImageClassification.from_pretrained("test-org/regnety_002-pt", num_labels=3,
                                                             ignore_mismatched_sizes=True)
    assert model.config.num_labels == 3 and model(torch.zeros(1, 3, 64, 64)).logits.shape == (1, 3)


def test_save_pretrained_leaves_nothing_half_written(tmp_path, monkeypatch):
    require("torch")
    from regnet_zoo.transformers import files

    rzt = ours()
    model = rzt.RegNetForImageClassification(rzt.RegNetConfig(**SPECS["regnety_002"], num_labels=3))

    def broken(directory, state, has_head):
        (directory / "model.safetensors").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setitem(files.WRITERS, "pt", broken)
    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(tmp_path / "new")
    assert not (tmp_path / "new").exists() and os.listdir(tmp_path) == []
    with pytest.raises(NotADirectoryError):
        (tmp_path / "file").write_text("x")
        model.save_pretrained(tmp_path / "file")


def test_image_processor_matches_transformers(tmp_path):
    require("torch", "tensorflow", "jax")
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({**PROCESSOR, "size": 224}))
    rzt = ours()
    img = image()
    mine = rzt.AutoImageProcessor.from_pretrained(tmp_path)
    for tensors, typename in (("pt", "Tensor"), ("tf", "EagerTensor"), ("jax", "ArrayImpl")):
        assert type(mine([img, img], return_tensors=tensors)["pixel_values"]).__name__ == typename
    transformers = reference()
    if transformers is None:
        assert mine(img, return_tensors="np").pixel_values.shape == (1, 3, 224, 224)
        return
    theirs = transformers.AutoImageProcessor.from_pretrained(tmp_path, use_fast=False)
    for picture in (img, img.resize((300, 217)), np.asarray(img.resize((200, 260)))):
        expected = theirs(picture, return_tensors="np")["pixel_values"]
        got = mine(picture, return_tensors="np").pixel_values
        assert got.shape == expected.shape == (1, 3, 224, 224) and np.abs(got - expected).max() == 0.0
    big = mine(img, return_tensors="np", size={"shortest_edge": 384}).pixel_values
    assert np.abs(big - theirs(img, return_tensors="np", size={"shortest_edge": 384})["pixel_values"]).max() == 0.0


def test_imports_without_transformers_or_frameworks():
    """``regnet_zoo.transformers`` and its config / processor need neither transformers nor a framework."""
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('transformers', 'torch', 'tensorflow', 'jax', 'flax', 'keras'):\n"
        "            raise ImportError(name + ' is blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import regnet_zoo.transformers as t\n"
        "c = t.RegNetConfig(num_labels=3)\n"
        "assert t.RegNetConfig.from_dict(c.to_dict()) == c\n"
        "p = t.RegNetImageProcessor(size=224, crop_pct=0.875)\n"
        f"from PIL import Image; x = p(Image.open({str(SAMPLE)!r}).convert('RGB'), return_tensors='np').pixel_values\n"
        "assert x.shape == (1, 3, 224, 224)\n"
        "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(TESTS_DIR).parent),
                                                                          os.environ.get("PYTHONPATH", "")])})
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# transformers 5 (no TF / Flax classes) beside the installed 4.57, in a directory that goes first on PYTHONPATH of a
# subprocess; these are the packages it needs that the test environment lacks or has too old (pinned, --no-deps).
TRANSFORMERS_5 = ["transformers==5.24.0", "huggingface_hub==2.4.0", "tokenizers==0.23.3", "httpx2==2.16.2",
                  "httpcore2==2.16.2", "h11==0.16.0", "anyio==4.16.0", "idna==3.20", "sniffio==1.3.1",
                  "truststore==0.10.5"]


@pytest.mark.transformers5
def test_runs_with_transformers_5(tmp_path):
    """This module (minus the reference comparisons) with transformers 5 installed. Needs PyPI; run by .ci/run."""
    target = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                          *TRANSFORMERS_5], capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr
    env = {**os.environ, "REGNET_ZOO_EXPECT_TRANSFORMERS": "5",
           "PYTHONPATH": os.pathsep.join([str(target), str(Path(TESTS_DIR).parent),
                                          os.path.join(str(Path(TESTS_DIR).parent), "plugins"),
                                          os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider",
                          "-m", "not transformers5", __file__], capture_output=True, text=True, timeout=1800, env=env,
                         cwd=str(Path(TESTS_DIR).parent))
    assert run.returncode == 0 and " passed" in run.stdout and "skipped" not in run.stdout, run.stdout[-4000:]
