"""Transitional: models/hf_source.py still imports Checkpoint from here.

hf_source.py is being edited on another branch; when that lands, change its import to
``from ..containers.safetensors_read import Checkpoint`` and delete this file. Nothing else may
import it (the reader is safetensors_read.py, the writer safetensors_write.py).
"""

from .safetensors_read import Checkpoint

__all__ = ["Checkpoint"]
