"""Import shim, kept so that Triton repositories written by older versions of evit-deploy still load.

Their generated ``<model>/1/model.py`` imports ``TritonPythonModel`` from here; repositories written now import it
from :mod:`evit_deploy.triton.backend`, where the pipeline model lives. Nothing else belongs in this module.
"""

from ..triton.backend import TritonPythonModel

__all__ = ["TritonPythonModel"]
