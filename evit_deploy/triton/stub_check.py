"""The check that Triton's Python-backend stub hands numpy arrays over correctly, run when our models load.

Stubs built with pybind11 older than 2.12 (the one bundled with tritonserver 2.51 in nvidia-pytriton 0.7.0 is one)
read a dtype's item size from where numpy 1.x kept it in ``PyArray_Descr``. numpy 2 widened ``flags`` to 64 bits
and moved ``elsize`` behind it, so such a stub reads the low half of ``flags`` (0 for numeric, bytes and string
dtypes) as the item size: arrays it builds for us (``as_numpy()`` of request inputs and BLS outputs) get stride 0
and are copied as the first element repeated, silently, and tensors we build (``pb_utils.Tensor``) report 0 bytes
("output tensor shape does not match size of output"). Such a stub needs numpy 1.x in its Python; this check turns
the silent corruption into a load error that says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import EvitError

STUB_NUMPY_HELP = ("give the stub's Python numpy<2 (`evit-deploy triton --serve` does this for the bundled server; "
                   "for another Triton: an EXECUTION_ENV_PATH environment, or `pip install 'numpy<2'` in Triton's "
                   "Python)")


def check_numpy_exchange(pb_utils: Any) -> None:
    """Raise when this stub misreads numpy arrays (see the module docstring); cheap, run in ``initialize``.

    Every pybind11 reads numpy 1.x correctly, so only numpy 2 is probed: a tensor made from DLPack (whose size
    comes from DLPack, not from numpy) is read back through the array the stub builds over its bytes. (numpy
    1.x's own DLPack capsules break on the stub's renaming of used capsules, another reason not to probe there.)
    """
    if int(np.__version__.split(".")[0]) < 2:
        return
    probe = np.arange(4, dtype=np.float32)
    tensor = pb_utils.Tensor.from_dlpack("probe", probe)  # the stub builds its own array over our bytes
    seen = np.asarray(tensor.as_numpy()).reshape(-1)
    if seen.shape != probe.shape or not np.array_equal(seen, probe):
        raise EvitError(f"this Triton Python-backend stub misreads numpy {np.__version__} arrays (sent "
                        f"{probe.tolist()}, it read {seen.tolist()}): it was built for numpy 1.x; {STUB_NUMPY_HELP}")


def check_stub() -> None:
    """:func:`check_numpy_exchange` on the stub this code runs in; nothing outside Triton's Python backend (no
    ``triton_python_backend_utils``: no stub to check, e.g. a model initialised by a test)."""
    try:
        import triton_python_backend_utils as pb_utils
    except ImportError:
        return
    check_numpy_exchange(pb_utils)
