"""Synchronised BN under tf.distribute.MirroredStrategy on two logical CPU devices.

Logical devices must be configured before TensorFlow initialises its runtime, so the check runs in a subprocess.
"""

from __future__ import annotations

import json

import regnet_zoo as rz
from testdeps import require
from regnet_zoo.keys import canonical_shapes

require("tensorflow", "keras", "keras_hub")

from tf_helpers import run_script  # noqa: E402

SCRIPT = """
import json, sys
import numpy as np
from regnet_zoo_tf._tf import keras, tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import regnet_zoo as rz
from regnet_zoo_tf.layers import BatchNorm
from regnet_zoo_tf.weights import export_canonical, load_canonical

sync_bn = {"auto": None, "off": False}[sys.argv[1]]
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    model = rz.create("regnetx_002", "tf", num_classes=4, **({} if sync_bn is None else {"sync_bn": sync_bn}))
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
bns = [layer for layer in model.backbone.layers if isinstance(layer, BatchNorm)]
initial = export_canonical(model)
x = np.random.default_rng(0).normal(size=(8, 64, 64, 3)).astype(np.float32)
model.fit(x, np.arange(8) % 4, batch_size=8, epochs=1, shuffle=False, verbose=0)

reference = rz.create("regnetx_002", "tf", num_classes=4, sync_bn=False)  # one device, the whole batch
load_canonical(reference, initial)
reference(x, training=True)
ref_bns = [layer for layer in reference.backbone.layers if isinstance(layer, BatchNorm)]
between_replicas = vs_full_batch = 0.0
for bn, ref in zip(bns, ref_bns):
    for attr in ("moving_mean", "moving_variance"):
        values = [np.asarray(v) for v in getattr(bn, attr).value.values]
        between_replicas = max(between_replicas, float(np.max(np.abs(values[0] - values[1]))))
        vs_full_batch = max(vs_full_batch, float(np.max(np.abs(values[0] - np.asarray(getattr(ref, attr))))))
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "synchronized": all(b.synchronized for b in bns),
                  "bns": len(bns), "between_replicas": between_replicas, "vs_full_batch": vs_full_batch}))
"""


def _run(mode: str) -> dict:
    result = run_script(SCRIPT.replace("sys.argv[1]", repr(mode)))
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_replicas_share_global_batch_statistics_with_sync_bn():
    got = _run("auto")  # built inside a 2-replica strategy scope: sync_bn turns on by itself
    num_bn = sum(k.endswith("running_mean") for k in canonical_shapes(rz.plan("regnetx_002"), 0))
    assert got["replicas"] == 2 and got["synchronized"] and got["bns"] == num_bn
    assert got["between_replicas"] == 0.0
    assert got["vs_full_batch"] < 1e-5  # the same as one device seeing the whole batch


def test_without_sync_bn_replicas_drift_apart():
    got = _run("off")
    assert not got["synchronized"]
    assert got["between_replicas"] > 1e-3
