"""Production inference: :class:`Predictor` (pre-processing, model run, post-processing) for every artifact.

```python
from evit_deploy import Predictor

p = Predictor.from_export("exports/efficientvit-b1-r224-cpu-ort")   # or Predictor.from_model(name, weights)
p("photo.jpg").labels                                               # top-5 ImageNet class names
sam = Predictor.from_export("exports/efficientvit-sam-l0-cpu-ort")
sam.set_image("photo.jpg"); sam.predict_masks(points=[[320, 200]]).masks
```

Modules: ``predictor`` (the facade), ``handlers`` (per-task pre/post-processing, ``register_task``), ``prompts``
(SAM prompt checks), ``engines`` (how the graphs run), ``postprocess``/``results``/``palettes``/``overlay``.
"""

from ..errors import NonFiniteOutput
from ..images import ImageError, ImageTooLarge
from .engines import Engine, ExportEngine, TorchEngine
from .handlers import TASK_HANDLERS, Prepared, TaskHandler, register_task
from .palettes import CITYSCAPES_PALETTE, ade20k_palette, palette_for
from .postprocess import decode_png, rle_decode, rle_encode
from .predictor import Predictor, SamImage, decode_image, to_rgb
from .prompts import OptionError, PromptError, SamPrompt, parse_prompt
from .results import Classification, Result, SamMasks, Segmentation

__all__ = [
    "CITYSCAPES_PALETTE", "TASK_HANDLERS", "Classification", "Engine", "ExportEngine", "ImageError", "ImageTooLarge",
    "NonFiniteOutput", "OptionError", "Predictor", "Prepared", "PromptError", "Result", "SamImage", "SamMasks",
    "SamPrompt", "Segmentation", "TaskHandler", "TorchEngine", "ade20k_palette", "decode_image", "decode_png",
    "palette_for", "parse_prompt", "register_task", "rle_decode", "rle_encode", "to_rgb",
]
