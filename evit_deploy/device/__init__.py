"""Devices that do not run our Python: a phone (LiteRT ``benchmark_model`` or ``onnxruntime_perf_test`` over
``adb``) and a Jetson (TensorRT ``trtexec``).

- :mod:`.bundle` writes a self-contained device bundle from an export: the artifact, golden inputs (the export's
  validation photos and noise, pre-processed as its validation does) with the PyTorch reference outputs, a
  ``run.sh`` with the exact command lines (:mod:`.android`, :mod:`.jetson`), a README and ``bundle.json``.
- :mod:`.parsers` reads what the device tools print and write; :mod:`.importer` turns a results folder into the
  same report as ``evit-deploy bench`` (every row labelled with the named device, beside the paper's figure for
  that device class) plus per-layer times and the correctness of the device's outputs (the validation gate).
- :mod:`.adb` runs a bundle's steps over ``adb`` (push, run, pull) and imports the results in one command.
"""
