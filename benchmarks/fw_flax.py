"""Flax contenders: regnet-zoo flax (NNX; float32 and bfloat16 compute), HF FlaxRegNetForImageClassification
under jax.jit, and the roofline's dense conv.

Inference: regnet-zoo through ``model.predict`` (the plugin's jitted path, NHWC), HF through
``jax.jit(lambda p, x: model(x, params=p, train=False).logits)`` (NCHW, HF's API). A training step is
forward in training mode (BN batch statistics, updated), cross-entropy, gradients of the parameters and one plain
SGD update: regnet-zoo with the NNX idiom (``nnx.jit`` + ``nnx.value_and_grad`` + ``nnx.Optimizer`` over
``optax.sgd``), HF with ``jax.jit`` of ``jax.value_and_grad(loss, has_aux=True)`` and ``optax.sgd`` over its params
/ batch_stats dicts (buffers donated). Every call ends with ``jax.block_until_ready``.
"""

from __future__ import annotations

import time

from contenders import INFER, REFERENCE_CONV, Unavailable
from prepared import LEARNING_RATE, Prepared, hf_config, rz_create, seeded_input, seeded_labels

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
    return rz_create(model, "flax")


def make_rz_flax_bf16(model: str):
    """bfloat16 compute, float32 parameters (the plugin's ``dtype``)."""
    return rz_create(model, "flax", dtype="bfloat16")


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
    """The NNX idiom (``nnx.jit`` + ``nnx.value_and_grad`` + ``nnx.Optimizer``; BN statistics update in place)."""
    import optax
    from flax import nnx

    model.train()
    optimizer = nnx.Optimizer(model, optax.sgd(LEARNING_RATE), wrt=nnx.Param)

    @nnx.jit
    def step(m, opt, x, y):
        loss, grads = nnx.value_and_grad(lambda m: _cross_entropy(m(x), y))(m)
        opt.update(m, grads)
        return loss

    return lambda x, y: step(model, optimizer, x, y)


def _hf_train_step(model):
    import optax

    tx = optax.sgd(LEARNING_RATE)
    state = {"params": model.params["params"], "batch_stats": model.params["batch_stats"]}
    state["opt"] = tx.init(state["params"])

    def loss_fn(p, bs, x, y):
        out, mutated = model(x, params={"params": p, "batch_stats": bs}, train=True)
        return _cross_entropy(out.logits, y), mutated["batch_stats"]

    def update(p, bs, opt, x, y):
        (loss, bs), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, bs, x, y)
        updates, opt = tx.update(grads, opt, p)
        return loss, optax.apply_updates(p, updates), bs, opt

    f = jax.jit(update, donate_argnums=(0, 1, 2))

    def step(x, y):
        loss, state["params"], state["batch_stats"], state["opt"] = f(state["params"], state["batch_stats"],
                                                                      state["opt"], x, y)
        return loss

    return step


def build_reference(contender: str) -> Prepared:
    """The roofline's dense 3x3 conv: ``lax.conv_general_dilated`` on NHWC / HWIO under ``jax.jit``."""
    c = REFERENCE_CONV
    dtype = jnp.bfloat16 if contender.endswith("-bf16") else jnp.float32
    kx, kw = jax.random.split(jax.random.PRNGKey(0))
    x = jax.random.normal(kx, (c["batch"], c["size"], c["size"], c["channels"])).astype(dtype)
    w = (jax.random.normal(kw, (3, 3, c["channels"], c["channels"])) * 0.02).astype(dtype)
    conv = jax.jit(lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                                             dimension_numbers=("NHWC", "HWIO", "NHWC")))
    return Prepared(step=lambda: jax.block_until_ready(conv(x, w)), create_s=0.0, params=9 * c["channels"] ** 2)


def build(contender: str, case, device: str) -> Prepared:
    if contender.startswith("conv-"):
        return build_reference(contender)
    hf = contender.startswith("hf-")
    if hf:
        import transformers  # noqa: F401  (import outside the timed creation)
    else:
        import regnet_zoo_flax.build  # noqa: F401
    t0 = time.perf_counter()
    if hf:
        model = make_hf_flax(case.model, case.size)
    else:
        model = make_rz_flax_bf16(case.model) if contender == "rz-flax-bf16" else make_rz_flax(case.model)
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
