"""The public weights API: exported lazily, importing neither numpy nor any framework until used."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_weights_api_imports_nothing_heavy():
    code = ("import sys, regnet_zoo as rz\n"
            "fns = [rz.save_pretrained, rz.from_pretrained, rz.read_checkpoint, rz.convert_checkpoint, "
            "rz.imagenet_classes, rz.Checkpoint]\n"
            "import regnet_zoo.weights.readers, regnet_zoo.weights.hub, regnet_zoo.hub_weights\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in {'numpy', 'torch', 'tensorflow', 'keras', "
            "'jax', 'flax', 'safetensors', 'huggingface_hub', 'h5py', 'msgpack'}))")
    assert _run(code) == "[]"


def test_lazy_preprocess_exports():
    code = ("import regnet_zoo as rz\n"
            "from regnet_zoo.preprocessing import SAMPLE_IMAGE\n"
            "x = rz.preprocess(SAMPLE_IMAGE, rz.data_config('regnety_040.ra3_in1k'), data_format='channels_last')\n"
            "print(callable(rz.preprocess), x.shape, rz.data_config('regnety_040.ra3_in1k')['crop_pct'])")
    assert _run(code) == "True (1, 224, 224, 3) 0.95"


def test_builtin_weights_plugin_is_registered_after_the_variants():
    code = ("from regnet_zoo.plugins import get_host\n"
            "print([p.name for p in get_host().plugins() if p.builtin][:2], "
            "[i.plugin_name for i in get_host().pm.hook.resolve_weights.get_hookimpls()])")
    assert _run(code) == "['regnet_zoo.builtin_variants', 'regnet_zoo.hub_weights'] ['regnet_zoo.hub_weights']"
