"""The builder and runner hooks of the ``flax`` framework.

``build(request)`` returns

* ``api="nnx"`` (default): a ``regnet_zoo_flax.nnx_model.RegNet`` (a ``flax.nnx.Module``), in inference mode;
* ``api="linen"``: a ``LinenModel(module, variables)`` named tuple, i.e. a ``flax.linen.Module``
  (``RegNetLinen``) and its ``{"params", "batch_stats"}`` dict with the same tree as the NNX form.

Variables are derived from the plan alone: the model is first traced abstractly (``nnx.eval_shape`` /
``jax.eval_shape``: shapes only, no memory, no forward on data), the requested weights are placed into it, and only
the variables still missing are initialised, in one jitted call from which XLA drops every unused initialiser.
``abstract=True`` stops after the first step: every variable is a ``jax.ShapeDtypeStruct`` (regnety_10b's 9.4 B
parameters in well under a second), ready for ``weights.load_canonical``.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from regnet_zoo.frameworks import BuildRequest
from regnet_zoo.loading import state_to_load
from regnet_zoo.pretrained_cfg import pretrained_cfg

from .config import NetConfig, make_config
from .linen_model import RegNetLinen
from .ops import check_input
from .nnx_model import RegNet, seed_dropout
from .weights import expected_shapes, init_canonical, load_canonical, set_canonical
from .xla_options import jit_inference


class _LinenPair(NamedTuple):
    module: RegNetLinen
    variables: dict


class LinenModel(_LinenPair):
    """``create(..., api="linen")``: unpack as ``module, variables = ...``.

    Unlike a bare named tuple it carries attributes, as the NNX model does: ``pretrained_cfg`` (timm's data / head
    config of the weight tag), and ``variant_name`` / ``weight_tag`` (set by ``rz.create``).
    """

    @property
    def feature_info(self):
        return self.module.config.feature_info

    @property
    def config(self) -> NetConfig:
        return self.module.config

    def predict(self, x, *, output_hidden_states: bool = False):
        """Jitted inference (running BN statistics)."""
        check_input(x, self.config.in_chans, self.config.channels_first)  # before jit turns int64 into int32
        return _linen_predict_fn(self.module, output_hidden_states)(self.variables, x)


@functools.lru_cache(maxsize=32)
def _linen_predict_fn(module: RegNetLinen, output_hidden_states: bool):
    return jit_inference(functools.partial(module.apply, train=False, output_hidden_states=output_hidden_states))


def build(request: BuildRequest):
    """Builder hook: a RegNet NNX module (or linen pair) for ``request``, with ``request.weights`` loaded."""
    config, opts = make_config(request)
    state = state_to_load(request)
    cfg = pretrained_cfg(request.variant, request.weight, features_only=request.features_only)
    if opts["api"] == "linen":
        model = build_linen(config, state, seed=opts["seed"], abstract=opts["abstract"])
        model.pretrained_cfg = cfg
        return model
    model = build_nnx(config, state, seed=opts["seed"], abstract=opts["abstract"])
    model.pretrained_cfg_items = tuple(cfg.items())
    return model


def build_nnx(config: NetConfig, state: Mapping[str, Any] | None = None, *, seed: int = 0,
              abstract: bool = False) -> RegNet:
    """The NNX model of ``config``: ``state`` (canonical weights) loaded, the rest randomly initialised."""
    model = nnx.eval_shape(lambda: RegNet(config, rngs=nnx.Rngs(seed)))
    seed_dropout(model, nnx.Rngs(dropout=seed))
    return _fill(model, config, state, seed, abstract)


def build_linen(config: NetConfig, state: Mapping[str, Any] | None = None, *, seed: int = 0,
                abstract: bool = False) -> LinenModel:
    """The linen form of ``config`` with its variables (same loading / initialisation rules as ``build_nnx``)."""
    module = RegNetLinen(config)
    shape = (1, config.in_chans, 32, 32) if config.channels_first else (1, 32, 32, config.in_chans)
    variables = jax.eval_shape(lambda: module.init(jax.random.key(seed), jnp.zeros(shape, jnp.float32)))
    return _fill(LinenModel(module, _as_dicts(variables)), config, state, seed, abstract)


def _fill(model, config: NetConfig, state, seed: int, abstract: bool):
    """Load ``state`` into the abstract ``model``, then (unless ``abstract``) initialise what is still missing.

    Random values are drawn on the host (``weights.init_canonical``, timm's rules): jitting ~200 initialisers
    costs XLA 10-30 s of compile time on CPU, numpy well under a second for regnety_040.
    """
    if state:
        load_canonical(model, state, strict=False)
    if abstract:
        return model
    for key, shape in expected_shapes(model).items():
        if not state or key not in state:
            set_canonical(model, key, init_canonical(key, shape, config.plan, seed, config.zero_init_last))
    return model


def _as_dicts(tree):
    if isinstance(tree, Mapping):
        return {k: _as_dicts(v) for k, v in tree.items()}
    return tree


def run(model, x: np.ndarray, labels: np.ndarray | None = None):
    """Runner hook: inference on an NCHW float32 numpy batch; logits (N, K) or a list of NCHW maps, as numpy; with
    ``labels`` (NNX models), the loss (a float) in inference mode."""
    config: NetConfig = model.config
    x = np.asarray(x)
    if not config.channels_first:
        x = np.transpose(x, (0, 2, 3, 1))
    if labels is not None:
        return float(model(jnp.asarray(x), labels=jnp.asarray(labels)).loss)
    out = model.predict(x)
    if config.features_only:
        maps = [np.asarray(m, np.float32) for m in out]
        return maps if config.channels_first else [np.transpose(m, (0, 3, 1, 2)) for m in maps]
    return np.asarray(out, np.float32)
