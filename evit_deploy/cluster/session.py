"""Connecting to Ray: the caller's connection when there is one, else join ``--address``, else start a one-node
cluster on this machine (stopped again when the command ends).

A local cluster runs without Ray's dashboard. Ray's own services (GCS, raylets, object transfer) listen on all
interfaces whatever we ask (Ray has no loopback-only mode; it replaces 127.0.0.1 by the machine's address) and are
protected by Ray's token authentication, on by default since Ray 2.5x; the HTTP endpoint of ``serve --engine ray``
binds to ``--host`` (127.0.0.1 by default).
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
from collections.abc import Iterator
from typing import Any

from ..errors import EvitError, one_line
from ..optional import require
from .settings import RaySettings, WorkerResources


@contextlib.contextmanager
def connected(settings: RaySettings, purpose: str) -> Iterator[bool]:
    """Ray connected for the block; yields True when the block runs on a local cluster started here.

    A connection that exists already (``ray.init`` by the caller, e.g. a test or a notebook) is used as it is
    and left open; otherwise the connection made here is closed after the block, which stops a local cluster.
    """
    ray = require("ray", purpose)
    if ray.is_initialized():
        yield False
        return
    quiet: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
    try:
        if settings.address:
            _check_reachable(settings.address)
            ray.init(address=settings.address, **quiet)
        else:
            ray.init(address="local", num_cpus=settings.num_cpus, include_dashboard=False, **quiet)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        where = f"join the Ray cluster at {settings.address}" if settings.address else "start a local Ray cluster"
        raise EvitError(f"cannot {where}: {one_line(exc, 200)}") from None
    try:
        yield not settings.address
    finally:
        ray.shutdown()


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail fast on an address nothing listens at (Ray itself retries for minutes). ``auto`` is left to Ray."""
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(f"nothing answers at {target} ({exc.strerror or exc})") from None


def failure_reason(text: str) -> str:
    """One line for a failure in a worker: the last ``evit_deploy`` error of its traceback (Ray passes tracebacks
    on as text), else the text itself."""
    found = [line.strip() for line in text.splitlines() if re.match(r"\s*evit_deploy[\w.]*: ", line)]
    return one_line(found[-1].split(": ", 1)[1] if found else text, 300)


def cluster_cpus() -> float:
    """The CPUs of the connected cluster (all nodes)."""
    import ray

    return float(ray.cluster_resources().get("CPU", 0.0))


def check_fits(what: str, count: int, res: WorkerResources, flag: str) -> None:
    """On a cluster started here (nothing will add nodes): refuse ``count`` workers (``what``: "replica",
    "actor") it cannot hold, which Ray would wait for forever. ``flag`` is the option that sets ``count``."""
    import ray

    have = ray.cluster_resources()
    for name, each in (("CPU", res.num_cpus), ("GPU", res.num_gpus)):
        if each and count * each > have.get(name, 0.0):
            who = f"1 {what} needs" if count == 1 else f"{count} {what}s need"
            raise EvitError(f"{who} {count * each:g} {name}(s); the Ray cluster started here has "
                            f"{have.get(name, 0.0):g} (lower --threads or {flag}, or join a cluster with --address)")
