"""A Triton Inference Server process on a repository :func:`write_repository` wrote (``evit-deploy triton --serve``).

The server is a ``tritonserver`` on the PATH, else the one bundled in the ``nvidia-pytriton`` wheel (tritonserver
2.51 with the Python backend only, run on the CPU here). For the bundled one, as pytriton's own launcher does,
the Python-backend stub built for the running Python is copied into a backend folder of this run (a temporary
folder, removed at the end) and the server's libraries and this Python's libpython go on ``LD_LIBRARY_PATH``.
The stub's Python ignores ``PYTHONPATH`` and takes its packages from the ``python`` first on the ``PATH``, so the
run also gets a small virtual environment of its own (:func:`make_stub_env`). That stub was built before numpy 2
and misreads numpy 2 arrays (see :mod:`evit_deploy.triton.stub_check`), so its Python alone gets numpy 1.x: the
environment lists a folder holding only ``numpy<2`` (:func:`stub_site`) first, then this process's packages;
this environment keeps its numpy.

The server binds HOST (127.0.0.1 by default) on its HTTP, gRPC and metrics ports, loads only the models we name
(``--model-control-mode=explicit``: other folders of the repository are never loaded) and is awaited until
``/v2/health/ready``; a model that fails to load ends the wait with the log's error line. The server runs in its
own process group, dies with this process (``PR_SET_PDEATHSIG``; a reaper process kills the whole group, stubs
included, when this process ends by any path, SIGKILL too), and is stopped with SIGTERM (Triton unloads the models
and finishes in-flight requests, up to ``exit_timeout`` seconds), then SIGKILL for whatever is left.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import EvitError, MissingDependency, one_line
from ..files import STAGING_MARKER, remove_stale_staging, signals_deferred
from ..ports import bind, free_port

BUNDLED_WHEEL = "nvidia-pytriton==0.7.0"
BUNDLED_PACKAGE = "pytriton"  # the wheel's import package, holding tritonserver/
INSTALL_HINT = f"pip install 'evit-deploy[triton]' && pip install --no-deps {BUNDLED_WHEEL}"
STUB_SITE_ENV = "EVIT_DEPLOY_TRITON_STUB_SITE"
_PR_SET_PDEATHSIG = 1
# glog lines: "E1206 18:40:26.024154 8600 file.cc:123] message"; Triton quotes the message
_GLOG = re.compile(r"^([IWE])\d{4} [\d:.]+\s+\d+ [^\]]+\] ?(.*)$")


@dataclass(frozen=True)
class ServerSettings:
    """Where the server listens and how long it gets to start and to stop (port 0: a free port)."""

    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    ready_timeout: float = 600.0
    exit_timeout: int = 30


@dataclass(frozen=True)
class TritonInstall:
    """A ``tritonserver`` binary and its backends (``bundled``: the nvidia-pytriton wheel's)."""

    binary: Path
    backend_dir: Path | None  # the folder of backends/<name>; None: the server's default, not known here
    bundled: bool = False
    libs: Path | None = None  # bundled: the wheel's shared libraries
    stub: Path | None = None  # bundled: the Python-backend stub for the running Python

    @property
    def backends(self) -> set[str] | None:
        """The backends this server has (``None``: unknown)."""
        if self.backend_dir is None or not self.backend_dir.is_dir():
            return None
        return {p.name for p in self.backend_dir.iterdir() if p.is_dir() and not p.name.startswith("_")}

    @property
    def label(self) -> str:
        return f"the bundled tritonserver of {BUNDLED_WHEEL}" if self.bundled else str(self.binary)


def find_install() -> TritonInstall:
    """A ``tritonserver`` on the PATH, else the bundled one; one line naming the extra when there is neither."""
    on_path = shutil.which("tritonserver")
    if on_path:
        binary = Path(on_path).resolve()
        default = binary.parent.parent / "backends"  # /opt/tritonserver/{bin,backends}
        return TritonInstall(binary, default if default.is_dir() else None)
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)  # finds the package without importing it (its deps are not needed)
    root = Path(spec.origin).parent / "tritonserver" if spec and spec.origin else None
    if root is None or not (root / "bin" / "tritonserver").is_file():
        raise MissingDependency(f"--serve needs a Triton server: no tritonserver on the PATH, and the one bundled in "
                                f"nvidia-pytriton (installed beside the [triton] extra) is not there: {INSTALL_HINT}")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        shipped = sorted(p.name for p in (root / "python_backend_stubs").iterdir()) if (
            root / "python_backend_stubs").is_dir() else []
        raise EvitError(f"the bundled Triton server has no Python-backend stub for Python {version} (it has "
                        f"{', '.join(shipped) or 'none'}); run evit-deploy with one of those Pythons")
    return TritonInstall(root / "bin" / "tritonserver", root / "backends", True, root.parent.parent /
                         "nvidia_pytriton.libs", stub)


def stub_site() -> Path:
    """The folder holding numpy<2 for the bundled stub's Python alone (``$EVIT_DEPLOY_TRITON_STUB_SITE``, else
    ``<sys.prefix>/share/evit-deploy/triton-stub-pyX.Y``)."""
    configured = os.environ.get(STUB_SITE_ENV)
    if configured:
        return Path(configured)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return Path(sys.prefix) / "share" / "evit-deploy" / f"triton-stub-py{version}"


def _numpy_version(site: Path) -> str | None:
    found = sorted(site.glob("numpy-*.dist-info"))
    return found[-1].name[len("numpy-"):-len(".dist-info")] if found and (site / "numpy").is_dir() else None


def check_stub_numpy(site: Path) -> Path | None:
    """The numpy<2 folder to put first on the bundled stub's PYTHONPATH (``None``: this environment's numpy is
    1.x already); one line saying how to make it when it is missing."""
    import numpy

    if int(numpy.__version__.split(".")[0]) < 2:
        return None
    found = _numpy_version(site)
    if found is None or int(found.split(".")[0]) >= 2:
        what = f"holds numpy {found}" if found else "does not exist" if not site.exists() else "holds no numpy"
        raise EvitError(f"the bundled Triton's Python-backend stub was built for numpy 1.x and misreads numpy "
                        f"{numpy.__version__} arrays, so it needs numpy<2 of its own ({site} {what}; this "
                        f"environment keeps its numpy): pip install --no-deps --target {site} 'numpy<2'")
    return site


def make_stub_env(folder: Path, numpy_site: Path | None) -> Path:
    """A virtual environment for the bundled stub's Python (it ignores ``PYTHONPATH`` and takes its packages from
    the ``python`` first on the PATH): this interpreter, with a ``.pth`` file listing the numpy<2 folder first,
    then this process's own import path (this evit_deploy, this environment's packages). Returns its ``bin``."""
    import venv

    venv.EnvBuilder(symlinks=True, with_pip=False, clear=True).create(folder)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(folder), "platbase": str(folder)}))
    paths = [str(numpy_site)] if numpy_site is not None else []
    paths += [str(Path(p).resolve()) for p in sys.path if p and Path(p).is_dir()]
    (site / "evit-deploy-stub.pth").write_text("\n".join(dict.fromkeys(paths)) + "\n")
    return folder / "bin"


def server_env(install: TritonInstall, stub_bin: Path | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The server's environment: this one with ``extra``; for the bundled server, its libraries and this Python's
    libpython on ``LD_LIBRARY_PATH`` and the stub's environment first on ``PATH``."""
    env = {**os.environ, **(extra or {})}
    if install.bundled:
        libdir = sysconfig.get_config_var("LIBDIR") if sysconfig.get_config_var("Py_ENABLE_SHARED") else None
        libs = [p for p in (libdir, str(install.libs)) if p]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(libs + [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p])
        env["PATH"] = os.pathsep.join([str(stub_bin or Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when this process dies (Linux ``PR_SET_PDEATHSIG``).
    libc's ``prctl`` is looked up here, in the parent, so that the child only makes the one call."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: the process group and stop() still end the server
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong]

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return hook


# The reaper: a small process of its own session holding the read end of a pipe whose write end only this process
# holds. When this process ends by any path, SIGKILL included, the pipe reads empty and the reaper kills the
# server's whole process group: the server and its Python-backend stubs (stubs busy in a request outlive a killed
# server otherwise). stop() writes one byte first, so a clean stop leaves the group alone.
_REAPER = """import os, signal, sys
fd, group = int(sys.argv[1]), int(sys.argv[2])
signal.signal(signal.SIGINT, signal.SIG_IGN)
try:
    done = os.read(fd, 1)
except OSError:
    done = b""
if not done:
    try:
        os.killpg(group, signal.SIGKILL)
    except OSError:
        pass
"""


def start_reaper(group: int) -> tuple[subprocess.Popen, int]:
    """Start the reaper of process group ``group``; returns it and the pipe's write end (see :data:`_REAPER`)."""
    read_end, write_end = os.pipe()
    try:
        reaper = subprocess.Popen([sys.executable, "-c", _REAPER, str(read_end), str(group)], pass_fds=(read_end,),
                                  stdin=subprocess.DEVNULL, start_new_session=True)
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    return reaper, write_end


def _resolve_ports(settings: ServerSettings) -> dict[str, int]:
    """The three ports (0 → a free one), each checked free now: a busy port is a one-line error before start."""
    ports: dict[str, int] = {}
    for option in ("http_port", "grpc_port", "metrics_port"):
        port = getattr(settings, option) or free_port(settings.host)
        if port in ports.values():
            raise EvitError(f"--{option.replace('_', '-')} {port} is also given for another of the server's ports")
        try:
            bind(settings.host, port).close()
        except EvitError as exc:
            raise EvitError(f"{exc} (--{option.replace('_', '-')}); choose another port or 0 for a free one") from None
        ports[option] = port
    return ports


def error_line(log: list[str]) -> str | None:
    """The line of Triton's log that says why it stopped, unquoted: a model that failed to load, else the server's
    own ``error:`` line, else its first error line."""
    errors, fatal = [], []
    for line in log:
        m = _GLOG.match(line)
        if m and m.group(1) == "E":
            errors.append(m.group(2).strip().strip('"'))
        elif line.startswith("error:"):
            fatal.append(line[len("error:"):].strip())
    failed = [e for e in errors + fatal if "failed to load" in e]
    return (failed or fatal or errors or [None])[0]


@dataclass
class TritonServer:
    """A running server; use :meth:`start` (waits for readiness) and :meth:`stop`, or ``with`` it."""

    install: TritonInstall
    repo: Path
    models: list[str]
    settings: ServerSettings = field(default_factory=ServerSettings)
    echo: Callable[[str], None] | None = None  # each log line, as it comes (e.g. the CLI's --log)
    env: dict[str, str] = field(default_factory=dict)  # added to the server's environment
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    log: collections.deque = field(default_factory=lambda: collections.deque(maxlen=2000))
    _workdir: Path | None = None
    _reader: threading.Thread | None = None
    _reaper: tuple[subprocess.Popen, int] | None = None

    @property
    def http_url(self) -> str:
        return f"http://{self._host()}:{self.ports['http_port']}"

    @property
    def grpc_url(self) -> str:
        return f"{self._host()}:{self.ports['grpc_port']}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self._host()}:{self.ports['metrics_port']}/metrics"

    def _host(self) -> str:
        host = "127.0.0.1" if self.settings.host in ("0.0.0.0", "") else self.settings.host
        return f"[{host}]" if ":" in host else host

    def command(self, backend_dir: Path | None) -> list[str]:
        s, p = self.settings, self.ports
        args = [str(self.install.binary), f"--model-repository={self.repo.resolve()}",
                "--model-control-mode=explicit", *(f"--load-model={m}" for m in self.models),
                f"--http-address={s.host}", f"--http-port={p['http_port']}",
                f"--grpc-address={s.host}", f"--grpc-port={p['grpc_port']}",
                f"--metrics-address={s.host}", f"--metrics-port={p['metrics_port']}",
                "--exit-on-error=true", "--strict-readiness=true", f"--exit-timeout-secs={s.exit_timeout}"]
        if backend_dir is not None:
            args.append(f"--backend-directory={backend_dir}")
        return args

    def _prepare(self, numpy_site: Path | None) -> tuple[Path | None, Path | None]:
        """For the bundled server, in this run's own folder: its backends with the stub for this Python, and the
        stub's environment. Returns (backend folder, the environment's bin)."""
        if not self.install.bundled:
            return None, None
        assert self.install.backend_dir is not None and self.install.stub is not None
        anchor = Path(tempfile.gettempdir()) / "evit-triton"
        with signals_deferred():  # never a run folder without its marker
            remove_stale_staging(anchor)  # run folders of servers whose process was killed (SIGKILL)
            self._workdir = Path(tempfile.mkdtemp(prefix=f".{anchor.name}.tmp-{os.getpid()}-", dir=anchor.parent))
            (self._workdir / STAGING_MARKER).write_text(f"{socket.gethostname()} {os.getpid()}\n")
        backends = self._workdir / "backends"
        shutil.copytree(self.install.backend_dir, backends, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(self.install.stub, backends / "python" / "triton_python_backend_stub")
        return backends, make_stub_env(self._workdir / "stub-env", numpy_site)

    def start(self) -> TritonServer:
        """Start the server and wait until it is ready; on failure nothing is left running."""
        self.ports = self.ports or _resolve_ports(self.settings)
        numpy_site = check_stub_numpy(stub_site()) if self.install.bundled else None
        try:
            backends, stub_bin = self._prepare(numpy_site)
            self.proc = subprocess.Popen(self.command(backends), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=server_env(self.install, stub_bin, self.env),
                                         cwd=self._workdir, start_new_session=True, preexec_fn=_die_with_parent_hook())
            self._reaper = start_reaper(self.proc.pid)
            self._reader = threading.Thread(target=self._read_log, daemon=True, name="tritonserver-log")
            self._reader.start()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _read_log(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self.log.append(line)
            if self.echo is not None:
                self.echo(line)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.settings.ready_timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                if self._reader is not None:
                    self._reader.join(5)
                reason = error_line(list(self.log)) or (list(self.log)[-1] if self.log else "no output")
                code = self.proc.returncode if self.proc is not None else "?"
                raise EvitError(f"Triton did not start ({self.install.label} exited with {code}): "
                                f"{one_line(reason, 400)}")
            if self.ready():
                return
            time.sleep(0.2)
        raise EvitError(f"Triton was not ready after {self.settings.ready_timeout:g}s (--ready-timeout); last log "
                        f"line: {one_line(list(self.log)[-1] if self.log else 'none', 300)}")

    def ready(self) -> bool:
        try:  # straight to the server: no proxy from the environment
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(f"{self.http_url}/v2/health/ready", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM (Triton unloads the models and lets in-flight requests finish), SIGKILL after ``exit_timeout``
        seconds and for anything left in its process group; the run's folder is removed. Returns the exit code."""
        code = None
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                if self.proc.poll() is None:
                    self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(self.settings.exit_timeout + 10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # the stubs of its Python models, should any remain
            if self._reader is not None:
                self._reader.join(5)
        if self._reaper is not None:
            reaper, write_end = self._reaper
            with contextlib.suppress(OSError):
                os.write(write_end, b"x")  # stopped: the reaper leaves the group alone
            os.close(write_end)
            with contextlib.suppress(subprocess.TimeoutExpired):
                reaper.wait(10)
            self._reaper = None
        if self._workdir is not None:
            with signals_deferred():
                shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        return code

    def __enter__(self) -> TritonServer:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def stop_signals() -> Iterator[threading.Event]:
    """While the block runs, SIGTERM/SIGINT/SIGHUP set the yielded event (a second one raises KeyboardInterrupt)."""
    stop = threading.Event()

    def handle(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    previous = {s: signal.signal(s, handle) for s in signals}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _remove_created(folders: list[Path], repo: Path, repo_created: bool) -> None:
    """Remove the model folders this run wrote (and the repository folder if this run made it and it is empty)."""
    with signals_deferred():
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
        if repo_created and repo.is_dir() and not any(repo.iterdir()):
            repo.rmdir()


def serve_export(export_dir: str | Path, repo: str | Path, settings: ServerSettings, say: Callable[[str], None],
                 log: Callable[[str], None] | None = None, **write_options: object) -> None:
    """Write the repository of an export (``write_options``: :func:`write_repository`'s) and serve it until
    SIGTERM/SIGINT/SIGHUP. Everything that can be refused is refused before anything is written (no server, a
    busy port, no numpy<2 for the bundled stub); if the server never gets ready (a model fails to load, a signal
    arrives) the model folders this run wrote are removed again and nothing is left running."""
    from ..files import terminate_as_exception
    from ..signing import ENV as SIGNATURE_ENV
    from .repository import write_repository

    repo = Path(repo)
    install = find_install()
    key = write_options.get("require_signature")
    env = {SIGNATURE_ENV: str(Path(str(key)).resolve())} if isinstance(key, (str, os.PathLike)) else {}
    server = TritonServer(install, repo, [], settings, echo=log, env=env)  # a required signature: checked at load
    server.ports = _resolve_ports(settings)
    if install.bundled:
        check_stub_numpy(stub_site())
    repo_created = not repo.exists()
    before = {p.name for p in repo.iterdir()} if repo.is_dir() else set()
    try:
        with terminate_as_exception():
            models = write_repository(export_dir, repo, backends=install.backends, **write_options)  # type: ignore[arg-type]
            server.models = [m.name for m in models]
            created = [m.folder for m in models if m.folder.name not in before]
            try:
                say(f"starting {install.label} on {repo} ({', '.join(server.models)}) ...")
                server.start()
            except BaseException:
                _remove_created(created, repo, repo_created)
                raise
            with stop_signals() as stop:
                say(f"serving {models[0].name}: HTTP {server.http_url}, gRPC {server.grpc_url}, metrics "
                    f"{server.metrics_url} (Ctrl-C or SIGTERM stops the server)")
                while not stop.wait(0.5):
                    if not server.running():
                        reason = error_line(list(server.log)) or "no error in its log"
                        code = server.proc.returncode if server.proc else "?"
                        raise EvitError(f"Triton stopped by itself (exit {code}): {one_line(reason, 300)}")
                say("stopping Triton (in-flight requests finish first) ...")
    finally:
        code = server.stop()
    say(f"Triton stopped (exit {code})")
