"""``RegNetConfig``: transformers' RegNet configuration (fields, defaults, ``config.json`` I/O), in pure Python.

Defaults are transformers 4.57's (``facebook/regnet-y-040``: ``embedding_size=32``, ``hidden_sizes=[128, 192, 512,
1088]``, ``depths=[2, 6, 12, 2]``, ``groups_width=64``, ``layer_type="y"``, ``hidden_act="relu"``), plus the
``PretrainedConfig`` attributes an image classifier uses: ``num_labels`` / ``id2label`` / ``label2id`` (2 labels
by default), ``problem_type``, ``output_hidden_states``, ``return_dict`` / ``use_return_dict``. Unknown keyword
arguments become attributes and are written back, as transformers does.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

CONFIG_NAME = "config.json"
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")
REFERENCE_VERSION = "4.57.6"  # the transformers whose RegNetConfig this one mirrors


class RegNetConfig:
    """transformers' ``RegNetConfig`` (``model_type = "regnet"``).

    ``downsample_in_first_stage`` is always True, as in transformers (the argument is accepted and ignored).
    """

    model_type = "regnet"
    layer_types = ["x", "y"]

    def __init__(self, num_channels: int = 3, embedding_size: int = 32, hidden_sizes=(128, 192, 512, 1088),
                 depths=(2, 6, 12, 2), groups_width: int = 64, layer_type: str = "y", hidden_act: str = "relu", *,
                 num_labels: int | None = None, id2label: dict | None = None, label2id: dict | None = None,
                 problem_type: str | None = None, output_hidden_states: bool = False, return_dict: bool = True,
                 torchscript: bool = False, architectures: list[str] | None = None, **kwargs: Any):
        if layer_type not in self.layer_types:
            raise ValueError(f"layer_type={layer_type} is not one of {','.join(self.layer_types)}")
        if problem_type is not None and problem_type not in PROBLEM_TYPES:
            raise ValueError(f"problem_type must be one of {', '.join(PROBLEM_TYPES)} (or None to infer it from "
                             f"num_labels and the labels' dtype), got {problem_type!r}")
        if id2label is not None and not isinstance(id2label, dict):
            raise ValueError(f"id2label must be a dict of class index -> name, got {type(id2label).__name__}")
        if label2id is not None and not isinstance(label2id, dict):
            raise ValueError(f"label2id must be a dict of name -> class index, got {type(label2id).__name__}")
        self.num_channels = num_channels
        self.embedding_size = embedding_size
        self.hidden_sizes = list(hidden_sizes)
        self.depths = list(depths)
        self.groups_width = groups_width
        self.layer_type = layer_type
        self.hidden_act = hidden_act
        kwargs.pop("downsample_in_first_stage", None)
        self.downsample_in_first_stage = True  # transformers: "always downsample in the first stage"
        self.problem_type = problem_type
        self.output_hidden_states = output_hidden_states
        self.return_dict = return_dict
        self.torchscript = torchscript
        self.architectures = architectures
        self.transformers_version = kwargs.pop("transformers_version", None)
        kwargs.pop("model_type", None)
        self._name_or_path = str(kwargs.pop("name_or_path", kwargs.pop("_name_or_path", "")))
        if id2label is None:
            self.id2label = {i: f"LABEL_{i}" for i in range(2 if num_labels is None else num_labels)}
            self.label2id = dict(zip(self.id2label.values(), self.id2label.keys()))
        else:
            self.id2label = {int(k): v for k, v in id2label.items()}
            self.label2id = dict(zip(self.id2label.values(), self.id2label.keys())) if label2id is None else \
                {k: int(v) for k, v in label2id.items()}
        for key, value in kwargs.items():
            setattr(self, key, value)

    # --- labels and output switches --------------------------------------------------------------------------
    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, num_labels: int) -> None:
        if self.id2label is None or len(self.id2label) != num_labels:
            self.id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
            self.label2id = dict(zip(self.id2label.values(), self.id2label.keys()))

    @property
    def use_return_dict(self) -> bool:
        """Whether models return output objects (``return_dict`` and not ``torchscript``)."""
        return self.return_dict and not self.torchscript

    @property
    def name_or_path(self) -> str:
        return self._name_or_path

    # --- dict / JSON -----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every attribute, plus ``model_type``; what ``config.json`` holds."""
        out = {k: copy.deepcopy(v) for k, v in self.__dict__.items() if k != "_name_or_path"}
        out["model_type"] = self.model_type
        out["id2label"] = {str(k): v for k, v in self.id2label.items()}
        out["transformers_version"] = self.transformers_version or REFERENCE_VERSION
        return out

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, json_file_path: str | os.PathLike) -> None:
        from ..weights.atomic import atomic_file

        with atomic_file(json_file_path) as f:
            f.write(self.to_json_string().encode())

    def update(self, config_dict: dict[str, Any]) -> None:
        for key, value in config_dict.items():
            setattr(self, key, value)

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> "RegNetConfig":
        """A config from a ``to_dict()`` / ``config.json`` dict; ``kwargs`` override its fields."""
        model_type = config_dict.get("model_type", cls.model_type)
        if model_type != cls.model_type:
            raise ValueError(f"the config has model_type {model_type!r}; a RegNetConfig needs model_type 'regnet' "
                             f"(this is not a RegNet checkpoint)")
        merged = {**config_dict, **kwargs}
        if "num_labels" in kwargs and "id2label" not in kwargs:
            merged.pop("id2label", None)
            merged.pop("label2id", None)
        return cls(**merged)

    @classmethod
    def from_json_file(cls, json_file: str | os.PathLike) -> "RegNetConfig":
        return cls.from_dict(_read_json(Path(json_file)))

    # --- files -----------------------------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Write ``config.json`` into ``save_directory`` (created if needed), atomically."""
        path = Path(save_directory)
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(f"{str(path)!r} exists and is not a directory")
        self.to_json_file(path / CONFIG_NAME)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *, revision: str | None = None,
                        **kwargs: Any) -> "RegNetConfig":
        """The config of a hub repository id or a local directory (or a ``config.json`` path); ``kwargs`` override
        its fields. Hub files come through ``huggingface_hub`` (its cache and ``HF_HUB_OFFLINE`` honoured)."""
        from .files import config_file

        for ignored in ("cache_dir", "force_download", "local_files_only", "token", "subfolder"):
            kwargs.pop(ignored, None)
        path = config_file(pretrained_model_name_or_path, revision)
        config = cls.from_dict(_read_json(path), **kwargs)
        config._name_or_path = str(pretrained_model_name_or_path)
        return config

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RegNetConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config.json holds a JSON object, got {type(data).__name__}")
    return data
