"""Production inference: :class:`Predictor` (pre-processing, model run, post-processing) for every artifact.

```python
from evit_deploy import Predictor

p = Predictor.from_export("exports/efficientvit-b1-r224-cpu-ort")   # or Predictor.from_model(name, weights)
p("photo.jpg").labels                                               # top-5 ImageNet class names
sam = Predictor.from_export("exports/efficientvit-sam-l0-cpu-ort")
sam.set_image("photo.jpg"); sam.predict_masks(points=[[320, 200]]).masks
```

Modules: ``predictor`` (the facade), ``handlers`` (the base of the task handlers; each task's handler is in its
spec, :mod:`evit_deploy.tasks`), ``prompts`` (SAM prompt checks), ``engine_base``/``engines`` (how the graphs
run), ``postprocess``/``results``/``palettes``/``overlay``. The names below are imported on first use (the task
specs import the handler base without importing torch).
"""

from __future__ import annotations

from .._lazy import lazy_names

_LAZY = {
    "NonFiniteOutput": "evit_deploy.errors",
    "ImageError": "evit_deploy.images",
    "ImageTooLarge": "evit_deploy.images",
    "Engine": "evit_deploy.predict.engine_base",
    "ExportEngine": "evit_deploy.predict.engines",
    "TorchEngine": "evit_deploy.predict.engines",
    "Prepared": "evit_deploy.predict.handlers",
    "PromptedHandler": "evit_deploy.predict.handlers",
    "TaskHandler": "evit_deploy.predict.handlers",
    "CITYSCAPES_PALETTE": "evit_deploy.predict.palettes",
    "ade20k_palette": "evit_deploy.predict.palettes",
    "palette_for": "evit_deploy.predict.palettes",
    "decode_png": "evit_deploy.predict.postprocess",
    "rle_decode": "evit_deploy.predict.postprocess",
    "rle_encode": "evit_deploy.predict.postprocess",
    "Predictor": "evit_deploy.predict.predictor",
    "SamImage": "evit_deploy.predict.predictor",
    "decode_image": "evit_deploy.predict.predictor",
    "to_rgb": "evit_deploy.predict.predictor",
    "OptionError": "evit_deploy.predict.prompts",
    "PromptError": "evit_deploy.predict.prompts",
    "SamPrompt": "evit_deploy.predict.prompts",
    "parse_prompt": "evit_deploy.predict.prompts",
    "Classification": "evit_deploy.predict.results",
    "Result": "evit_deploy.predict.results",
    "SamMasks": "evit_deploy.predict.results",
    "Segmentation": "evit_deploy.predict.results",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_names("evit_deploy.predict", _LAZY, globals())
