"""What the six model classes share, framework-free: config -> registry variant -> ``regnet_zoo.create``, and
``from_pretrained`` / ``save_pretrained`` over transformers' files.

A config that describes a registry variant builds that variant (every ``facebook/regnet-*`` checkpoint, the default
``RegNetConfig()`` = regnety_040); any other config builds an unnamed variant made from its fields
(``weights.hf_config.unnamed_variant``), e.g. the tiny configs of transformers' own test suite; ``num_channels``
is the model's ``in_chans``.
"""

from __future__ import annotations

import logging
import os
from typing import Any, ClassVar

from ..variant import Variant
from ..weights import match
from ..weights.export import export_state, load_state
from ..weights.hf_config import variant_from_config
from . import files
from .configuration import RegNetConfig

log = logging.getLogger("regnet_zoo.transformers")
# from_pretrained keywords of transformers that only concern where files come from or which format to prefer: every
# format is read here, and huggingface_hub's own environment (HF_HOME, HF_HUB_OFFLINE, HF_TOKEN) is honoured.
LOADING_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "use_auth_token", "from_pt", "from_tf",
                  "from_flax", "use_safetensors", "subfolder", "resume_download", "proxies", "_do_init",
                  "low_cpu_mem_usage", "trust_remote_code")


def variant_for(config: RegNetConfig) -> "str | Variant":
    """The registry variant ``config`` describes (its name), else the unnamed variant built from its fields
    (``WeightsError`` naming the field when regnet-zoo cannot build it)."""
    if not isinstance(config, RegNetConfig):
        raise TypeError(f"config must be a regnet_zoo.transformers.RegNetConfig, got {type(config).__name__}")
    return variant_from_config(config.to_dict(), "RegNetConfig")


class PretrainedRegNet:
    """Mixin of the model classes. Subclasses set the class variables and keep the regnet-zoo model in ``.model``."""

    config_class = RegNetConfig
    base_model_prefix = "regnet"
    main_input_name = "pixel_values"
    framework: ClassVar[str]          # regnet-zoo framework name
    weights_format: ClassVar[str]     # key of files.WRITERS
    with_head: ClassVar[bool]
    model_options: ClassVar[tuple[str, ...]] = ()  # from_pretrained keywords that go to the constructor

    @classmethod
    def create_model(cls, config: RegNetConfig, **options: Any):
        """The regnet-zoo model of ``config`` (random weights), NCHW in and out."""
        from ..api import create

        return create(variant_for(config), cls.framework, num_classes=config.num_labels if cls.with_head else 0,
                      in_chans=config.num_channels, **options)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *model_args: Any,
                        config: RegNetConfig | str | os.PathLike | None = None, revision: str | None = None,
                        ignore_mismatched_sizes: bool = False, **kwargs: Any):
        """A model from a hub repository id or a local directory holding ``config.json`` and weights in any of
        transformers' formats. Keywords that are config fields (``num_labels``, ``id2label``, ``problem_type``,
        ``output_hidden_states``, ...) override the config; a classifier whose size differs from the checkpoint's
        needs ``ignore_mismatched_sizes=True`` (the head is then re-initialised)."""
        if model_args:
            raise TypeError(f"{cls.__name__}.from_pretrained takes no positional arguments after the source")
        options = {k: kwargs.pop(k) for k in cls.model_options if k in kwargs}
        for k in LOADING_KWARGS:
            kwargs.pop(k, None)
        source = pretrained_model_name_or_path
        if not isinstance(config, RegNetConfig):
            config = RegNetConfig.from_pretrained(source if config is None else config, revision=revision, **kwargs)
        elif kwargs:
            config.update(kwargs)
        checkpoint = files.read_weights(source, revision)
        state = match.without_counters(checkpoint.state)
        found = match.head_classes(state)
        strict = True
        if not cls.with_head:
            state = match.backbone(state)
        elif found == 0:
            log.warning("%s has no classifier; the head of %s (%d labels) is newly initialised: train it before use",
                        source, cls.__name__, config.num_labels)
            strict = False
        elif found != config.num_labels:
            if not ignore_mismatched_sizes:
                raise ValueError(f"{source}: the checkpoint's classifier has {found} classes, config.num_labels is "
                                 f"{config.num_labels}; pass ignore_mismatched_sizes=True to re-initialise the head")
            log.warning("%s: classifier of %d classes not loaded; the head of %d labels is newly initialised",
                        source, found, config.num_labels)
            state, strict = match.backbone(state), False
        model = cls(config, **options)
        load_state(model.model, state, cls.framework, strict=strict)
        model.config._name_or_path = str(source)
        return model.after_loading()

    def after_loading(self):
        """Hook run after ``from_pretrained`` loaded the weights (torch: inference mode, as transformers)."""
        return self

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Write ``config.json`` and the weights in this framework's transformers format (``model.safetensors``,
        ``tf_model.h5`` or ``flax_model.msgpack``); transformers 4.x and every class here load it. Atomic."""
        unknown = set(kwargs) - {"safe_serialization", "push_to_hub", "max_shard_size", "params"}
        if unknown or kwargs.get("push_to_hub"):
            raise TypeError(f"save_pretrained does not support {', '.join(sorted(unknown)) or 'push_to_hub'}")
        state = self.canonical_state(kwargs["params"]) if kwargs.get("params") is not None else self.canonical_state()
        self.config.architectures = [type(self).__name__.removeprefix("TF").removeprefix("Flax")]
        files.save_directory(save_directory, self.config, state, self.weights_format, self.with_head)

    def canonical_state(self) -> dict[str, Any]:
        """The weights under canonical (timm) names, as numpy arrays."""
        return export_state(self.model, self.framework)
