"""Flax contenders: regnet-zoo flax (NNX) and HF FlaxRegNetForImageClassification under jax.jit.

Inference: regnet-zoo through ``model.predict`` (the plugin's jitted path, NHWC), HF through
``jax.jit(lambda p, x: model(x, params=p, train=False).logits)`` (NCHW, HF's API). A training step is
forward in training mode (BN batch statistics, updated), cross-entropy, gradients of the parameters, no optimiser
update: regnet-zoo with the NNX idiom (``nnx.jit`` + ``nnx.value_and_grad``), HF with
``jax.jit(jax.value_and_grad(loss, has_aux=True))`` over its params / batch_stats dicts. Every call ends with
``jax.block_until_ready``.
"""

from __future__ import annotations

import time

from contenders import INFER, Unavailable
from prepared import Prepared, hf_config, seeded_input, seeded_labels

jax = jnp = None


def prepare(threads: int, device: str, contender: str) -> dict:
    global jax, jnp
    import flax
    import jax as _jax
    import jax.numpy as _jnp

    jax, jnp = _jax, _jnp
    backend = jax.default_backend()
    if device == "cuda" and backend != "gpu":
        raise Unavailable(f"JAX runs on {backend!r}, not a GPU (install jax[cuda])")
    return {"jax": jax.__version__, "flax": flax.__version__, "jax_backend": backend}


def _cross_entropy(logits, labels):
    logp = jax.nn.log_softmax(logits.astype(jnp.float32))
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))


# -- how each contender's model is made (adjust here when the plugin's API changes) -------------------------------

def make_rz_flax(model: str):
    import regnet_zoo as rz

    return rz.create(model, framework="flax")


def make_hf_flax(model: str, size: int):
    from transformers import FlaxRegNetForImageClassification

    import regnet_zoo as rz

    try:
        return FlaxRegNetForImageClassification(hf_config(model), input_shape=(1, size, size, 3), seed=0)
    except TypeError as e:
        if rz.get_variant(model).block == "x":
            raise Unavailable(f"transformers FlaxRegNet cannot build X variants ({e})") from None
        raise


def _rz_train_step(model):
    """The NNX idiom (``nnx.jit`` + ``nnx.value_and_grad``; BN statistics update in place)."""
    from flax import nnx

    model.train()

    @nnx.jit
    def step(m, x, y):
        return nnx.value_and_grad(lambda m: _cross_entropy(m(x), y))(m)

    return lambda x, y: step(model, x, y)


def _hf_train_step(model):
    params, batch_stats = model.params["params"], model.params["batch_stats"]

    def loss_fn(p, bs, x, y):
        out, mutated = model(x, params={"params": p, "batch_stats": bs}, train=True)
        return _cross_entropy(out.logits, y), mutated["batch_stats"]

    f = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    return lambda x, y: f(params, batch_stats, x, y)


def build(contender: str, case, device: str) -> Prepared:
    hf = contender.startswith("hf-")
    if hf:
        import transformers  # noqa: F401  (import outside the timed creation)
    else:
        import regnet_zoo_flax.build  # noqa: F401
    t0 = time.perf_counter()
    model = make_hf_flax(case.model, case.size) if hf else make_rz_flax(case.model)
    if hf:
        jax.block_until_ready(model.params)
    else:
        from flax import nnx

        jax.block_until_ready(nnx.state(model))
    create_s = time.perf_counter() - t0
    if hf:
        params = sum(a.size for a in jax.tree_util.tree_leaves(model.params["params"]))
    else:
        from flax import nnx

        params = sum(a.size for a in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param)))

    x = jax.device_put(seeded_input(case.batch, case.size, "nchw" if hf else "nhwc"))
    if case.mode == INFER:
        if hf:
            f = jax.jit(lambda p, t: model(t, params=p, train=False).logits)
            p = model.params
            fn = lambda t: f(p, t)  # noqa: E731
        else:
            fn = model.predict

        def step():
            return jax.block_until_ready(fn(x))
    else:
        y = jax.device_put(seeded_labels(case.batch).astype("int32"))
        fn = _hf_train_step(model) if hf else _rz_train_step(model)

        def step():
            return jax.block_until_ready(fn(x, y))

    return Prepared(step=step, create_s=create_s, params=int(params))


def abstract_build(contender: str, model: str) -> dict:
    """Shapes only: regnet-zoo ``abstract=True``; HF ``_do_init=False`` (its documented lazy-init form)."""
    import regnet_zoo as rz

    if contender == "rz-flax":
        import regnet_zoo_flax.build  # noqa: F401
        from flax import nnx

        t0 = time.perf_counter()
        m = rz.create(model, framework="flax", abstract=True)
        build_s = time.perf_counter() - t0
        leaves = jax.tree_util.tree_leaves(nnx.state(m, nnx.Param))
    elif contender == "hf-flax-jit":
        from transformers import FlaxRegNetForImageClassification

        cfg = hf_config(model)
        t0 = time.perf_counter()
        m = FlaxRegNetForImageClassification(cfg, _do_init=False)
        shapes = jax.eval_shape(lambda: m.init_weights(jax.random.PRNGKey(0), (1, 224, 224, 3)))
        build_s = time.perf_counter() - t0
        leaves = jax.tree_util.tree_leaves(shapes["params"])
    else:
        raise Unavailable(f"no abstract build for {contender}")
    return {"build_s": build_s, "params": int(sum(_size(a) for a in leaves)),
            "where": type(leaves[0]).__name__ if leaves else "?"}


def _size(a) -> int:
    n = 1
    for d in a.shape:
        n *= int(d)
    return n
