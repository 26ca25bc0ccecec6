"""Scale-out on Ray: the HTTP service as a Ray Serve application, batch prediction as a Ray Data job.

Needs the ``[ray]`` extra. ``evit-deploy serve EXPORT --engine ray`` and ``evit-deploy predict EXPORT IMAGES
--engine ray`` run them. Modules: ``settings`` (``RaySettings``, every default, and the resources of a replica or
actor; no Ray needed), ``session`` (start a local cluster or join one), ``serving`` (the Serve application around
``evit_deploy.serve.app``), ``batch`` (the Ray Data job around ``evit_deploy.predict.jobs``).

The names below are imported on first use, so reading ``RaySettings`` does not import Ray.
"""

from __future__ import annotations

from .._lazy import lazy_names

_LAZY = {
    "RaySettings": "evit_deploy.cluster.settings",
    "worker_resources": "evit_deploy.cluster.settings",
    "connected": "evit_deploy.cluster.session",
    "build_application": "evit_deploy.cluster.serving",
    "serve_on_ray": "evit_deploy.cluster.serving",
    "predict_on_ray": "evit_deploy.cluster.batch",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_names("evit_deploy.cluster", _LAZY, globals())
