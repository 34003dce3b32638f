"""Weights: read every public RegNet checkpoint into canonical (timm-named) numpy arrays, and write them back out.

Modules, one concept each:

* ``keyspaces``   tensor names of timm / transformers / torchvision / pycls / VISSL and the converters between them
* ``containers``  where training checkpoints keep their ``state_dict`` (``model_state``, ``classy_state_dict``, ...)
* ``safetensors_io``, ``pickle_io``, ``hf_formats``, ``readers``: file formats, read without executing anything
* ``checkpoint``  ``read_checkpoint``: any file or model directory -> canonical weights
* ``hf_config``   transformers ``config.json`` <-> registry variant
* ``match``       which variant a set of weights belongs to
* ``hub``         Hugging Face Hub resolution (cache and offline mode honoured)
* ``source``      what ``create(..., pretrained=...)`` loads (the built-in ``resolve_weights`` hook)
* ``export``, ``save``, ``convert``: models and checkpoints back out (safetensors, transformers directories)
* ``classes``     ImageNet-1k class names

Importing this package imports no framework and not numpy.
"""

from .checkpoint import Checkpoint, read_checkpoint
from .classes import imagenet_classes
from .convert import convert_checkpoint
from .export import export_state
from .keyspaces import KEY_SPACES, detect_key_space, from_canonical, to_canonical
from .pretrained import from_pretrained
from .save import save_pretrained

__all__ = ["Checkpoint", "KEY_SPACES", "convert_checkpoint", "detect_key_space", "export_state", "from_canonical",
           "from_pretrained", "imagenet_classes", "read_checkpoint", "save_pretrained", "to_canonical"]
