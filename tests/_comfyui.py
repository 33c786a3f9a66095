"""Helpers to drive a real ComfyUI server from the tests (not collected by pytest).

The tests run with ``--import-mode=importlib``; ``tests/conftest.py`` puts ``tests/`` on ``sys.path`` so they
``import _comfyui as H`` (and ``_comfyui_example as X``).

ComfyUI is prepared by ``.ci/prepare_comfyui.sh`` into ``$POLYCOLOR_COMFYUI_DIR`` (default
``<repo>/.ci/_comfyui``), and it runs in the Python a ComfyUI-Manager user has, built by
``.ci/prepare_comfyui_env.sh`` (ComfyUI's requirements + the pack's requirements.txt, nothing else; never the
dev environment): ``$POLYCOLOR_COMFYUI_PYTHON``, default ``<repo>/.ci/_venv/bin/python``
(:func:`find_comfyui_python`). :func:`start_server` never writes into that tree: the node pack is
symlinked into a per-run ``custom_nodes`` folder that is registered through a generated
``extra_model_paths`` yaml (key ``custom_nodes``), which also maps the ``polycolor`` model folder;
input/output/temp/user directories are per run and the database is in memory. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_COMFYUI_DIR = REPO_ROOT / ".ci" / "_comfyui"
ENV_VAR = "POLYCOLOR_COMFYUI_DIR"
PYTHON_ENV_VAR = "POLYCOLOR_COMFYUI_PYTHON"
DEFAULT_PYTHON = REPO_ROOT / ".ci" / "_venv" / "bin" / "python"
MODELS_FOLDER = "polycolor"

# Never send localhost traffic through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ComfyUIError(RuntimeError):
    """The server failed to start, rejected a prompt, or a prompt failed / timed out."""


# --------------------------------------------------------------------------- discovery


def find_comfyui() -> Path | None:
    """The prepared ComfyUI folder (``$POLYCOLOR_COMFYUI_DIR`` or ``<repo>/.ci/_comfyui``), or None.

    An explicitly set env var wins even when it does not hold ComfyUI (then None is returned).
    """
    env = os.environ.get(ENV_VAR)
    cand = Path(env).expanduser() if env else DEFAULT_COMFYUI_DIR
    if (cand / "main.py").is_file() and (cand / "folder_paths.py").is_file():
        return cand.resolve()
    return None


def find_comfyui_python() -> str | None:
    """The Manager-built Python ComfyUI runs in (``$POLYCOLOR_COMFYUI_PYTHON``, set or not, else ``.ci/_venv``), or None."""
    env = os.environ.get(PYTHON_ENV_VAR)
    cand = Path(env).expanduser() if env else DEFAULT_PYTHON
    return str(cand) if cand.is_file() and os.access(cand, os.X_OK) else None


def require_comfyui(skip_or_fail) -> tuple[Path, str]:
    """(ComfyUI folder, its Manager-built Python), or ``skip_or_fail(message)`` naming what to run."""
    if (found := find_comfyui()) is None:
        skip_or_fail(f"ComfyUI is not prepared (set {ENV_VAR} or run `bash .ci/prepare_comfyui.sh`)")
    if (python := find_comfyui_python()) is None:
        skip_or_fail(f"no Manager-built Python for ComfyUI (set {PYTHON_ENV_VAR} or run "
                     f"`bash .ci/prepare_comfyui_env.sh {found}`)")
    return found, python


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- HTTP


def _request(url: str, data: bytes | None = None, timeout: float = 10.0,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def get_json(url: str, path: str, timeout: float = 10.0) -> Any:
    status, body = _request(url.rstrip("/") + path, timeout=timeout)
    if status != 200:
        raise ComfyUIError(f"GET {path} -> HTTP {status}: {body[:2000]!r}")
    return json.loads(body)


def object_info(url: str, node_class: str | None = None, timeout: float = 30.0) -> dict:
    path = "/object_info" if node_class is None else "/object_info/" + urllib.parse.quote(node_class)
    return get_json(url, path, timeout=timeout)


# --------------------------------------------------------------------------- server


def _tail(path: Path | None, n_chars: int = 6000) -> str:
    if path is None:
        return "(no log)"
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return f"(log unreadable: {e})"
    return data[-n_chars:].decode("utf-8", "replace")


@dataclass
class ComfyUIServer:
    url: str
    port: int
    proc: subprocess.Popen
    log_path: Path
    work_dir: Path
    comfy_dir: Path
    input_dir: Path
    output_dir: Path
    models_dir: Path | None
    node_name: str
    _cleanup: list = field(default_factory=list, repr=False)
    _log_file: Any = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n_chars: int = 6000) -> str:
        if self._log_file is not None:
            try:
                self._log_file.flush()
            except (OSError, ValueError):
                pass
        return _tail(self.log_path, n_chars)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the server's process group, SIGKILL after ``timeout``; idempotent."""
        if self.proc.poll() is None:
            for sig, wait_s in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
                try:
                    os.killpg(self.proc.pid, sig)  # own session: pgid == pid
                except ProcessLookupError:
                    break
                except PermissionError:
                    self.proc.send_signal(sig)
                try:
                    self.proc.wait(timeout=wait_s)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self._log_file is not None:
            try:
                self._log_file.close()
            except OSError:
                pass
            self._log_file = None
        while self._cleanup:
            fn = self._cleanup.pop()
            try:
                fn()
            except OSError:
                pass
        return self.proc.poll()

    def __enter__(self) -> "ComfyUIServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _yaml_str(p: Path) -> str:
    return json.dumps(str(p))  # a JSON string is a valid YAML double-quoted scalar


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        dst.symlink_to(src, target_is_directory=True)
    except OSError:
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns(
            ".git", ".ci", "__pycache__", "*.pyc", ".pytest_cache", "runs", "reports", "exports"))


def start_server(
    comfy_dir: Path | str,
    custom_nodes_src: Path | str | None,
    models_dir: Path | str | None = None,
    timeout: float = 180.0,
    *,
    node_name: str | None = None,
    work_dir: Path | str | None = None,
    models_folder: str = MODELS_FOLDER,
    python: str | None = None,
    extra_args: Iterable[str] = (),
    env: dict[str, str] | None = None,
) -> ComfyUIServer:
    """Start ``python main.py --cpu`` on a free port with ``custom_nodes_src`` loaded as a node pack.

    * ``custom_nodes_src``: the node-pack folder (must contain ``__init__.py``); it appears to ComfyUI
      as ``custom_nodes/<node_name>`` (default: the folder's own name; pass ``node_name="polycolor"``
      for the repo root). ``None`` starts ComfyUI without an extra pack.
    * ``models_dir``: registered as ComfyUI model folder ``models_folder`` (``"polycolor"``) via the
      generated extra_model_paths yaml, i.e. ``folder_paths.get_filename_list("polycolor")`` lists it.
    * ``work_dir``: where the per-run input/output/temp/user dirs, yaml and ``comfyui.log`` go
      (a fresh temp dir, deleted on ``stop()``, when None; pass pytest's ``tmp_path`` to keep logs).
    * ``python``: the interpreter (default :func:`find_comfyui_python`, the Manager-built venv).

    Returns once ``/object_info`` answers; raises :class:`ComfyUIError` (with the log tail) when the
    process exits or ``timeout`` seconds pass first. The server is stopped on any failure.
    """
    comfy_dir = Path(comfy_dir).resolve()
    python = python or find_comfyui_python()  # the Manager-built venv, never this process's environment
    if python is None:
        raise ComfyUIError(f"no Manager-built Python for ComfyUI: run .ci/prepare_comfyui_env.sh or set {PYTHON_ENV_VAR}")
    if not (comfy_dir / "main.py").is_file():
        raise ComfyUIError(f"{comfy_dir} has no main.py (run .ci/prepare_comfyui.sh)")

    cleanup: list = []
    if work_dir is None:
        work = Path(tempfile.mkdtemp(prefix="polycolor-comfyui-"))
        cleanup.append(lambda: shutil.rmtree(work, ignore_errors=True))
    else:
        work = Path(work_dir).resolve()
        work.mkdir(parents=True, exist_ok=True)

    input_dir, output_dir = work / "input", work / "output"
    temp_root, user_dir, nodes_dir = work / "temp", work / "user", work / "custom_nodes"
    for d in (input_dir, output_dir, temp_root, user_dir, nodes_dir):
        d.mkdir(parents=True, exist_ok=True)

    name = ""
    if custom_nodes_src is not None:
        src = Path(custom_nodes_src).resolve()
        if not (src / "__init__.py").is_file():
            raise ComfyUIError(f"{src} has no __init__.py; ComfyUI would skip it")
        name = node_name or src.name
        dst = nodes_dir / name  # the repository folder in custom_nodes, as ComfyUI-Manager's git clone puts it
        if dst.is_symlink():
            dst.unlink()
        elif dst.exists():
            shutil.rmtree(dst)
        _link_or_copy(src, dst)

    lines = ["polycolor_tests:", f"  custom_nodes: {_yaml_str(nodes_dir)}"]
    mdir = None
    if models_dir is not None:
        mdir = Path(models_dir).resolve()
        mdir.mkdir(parents=True, exist_ok=True)
        lines.append(f"  {models_folder}: {_yaml_str(mdir)}")
    yaml_path = work / "extra_model_paths.yaml"
    yaml_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    run_env = dict(os.environ)
    run_env.update({
        "PYTHONUNBUFFERED": "1",
        "CUDA_VISIBLE_DEVICES": "",        # --cpu anyway; keeps torch from probing GPUs
        "HF_HUB_OFFLINE": run_env.get("HF_HUB_OFFLINE", "1"),
        "DO_NOT_TRACK": "1",
    })
    if env:
        run_env.update(env)

    log_path = work / "comfyui.log"
    last_err: ComfyUIError | None = None
    for _attempt in range(3):  # a free port can be taken between probe and bind: retry
        port = free_port()
        cmd = [
            python, "main.py",
            "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch",
            "--disable-api-nodes",                       # no comfy.org API nodes / network
            "--extra-model-paths-config", str(yaml_path),
            "--input-directory", str(input_dir),
            "--output-directory", str(output_dir),
            "--temp-directory", str(temp_root),          # ComfyUI appends "/temp"
            "--user-directory", str(user_dir),
            "--database-url", "sqlite:///:memory:",
            "--log-stdout",
            *extra_args,
        ]
        log_file = open(log_path, "ab")
        log_file.write(f"$ {' '.join(cmd)}\n".encode())
        log_file.flush()
        proc = subprocess.Popen(
            cmd, cwd=comfy_dir, env=run_env, stdin=subprocess.DEVNULL,
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )
        server = ComfyUIServer(
            url=f"http://127.0.0.1:{port}", port=port, proc=proc, log_path=log_path,
            work_dir=work, comfy_dir=comfy_dir, input_dir=input_dir, output_dir=output_dir,
            models_dir=mdir, node_name=name, _log_file=log_file,
        )
        try:
            _wait_ready(server, timeout)
        except ComfyUIError as e:
            server.stop()
            last_err = e
            if "address already in use" in str(e).lower():
                continue
            break
        except BaseException:
            server.stop()
            for fn in reversed(cleanup):
                fn()
            raise
        server._cleanup = cleanup
        return server
    for fn in reversed(cleanup):
        try:
            fn()
        except OSError:
            pass
    assert last_err is not None
    raise last_err


def _wait_ready(server: ComfyUIServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not server.alive():
            raise ComfyUIError(
                f"ComfyUI exited with code {server.proc.returncode} during startup; "
                f"log {server.log_path}:\n{server.log_tail()}")
        try:
            status, _ = _request(server.url + "/object_info", timeout=5.0)
            if status == 200:
                return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if time.monotonic() > deadline:
            raise ComfyUIError(
                f"ComfyUI did not answer on {server.url} within {timeout:.0f}s; "
                f"log {server.log_path}:\n{server.log_tail()}")
        time.sleep(0.25)


# --------------------------------------------------------------------------- prompts


def queue_prompt(url: str, prompt: dict, client_id: str | None = None, timeout: float = 30.0) -> str:
    """POST an API-format prompt; returns its prompt_id. Raises with ``node_errors`` when rejected."""
    payload = {"prompt": prompt, "client_id": client_id or uuid.uuid4().hex}
    status, body = _request(url.rstrip("/") + "/prompt", data=json.dumps(payload).encode(),
                            headers={"Content-Type": "application/json"}, timeout=timeout)
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if status != 200 or not isinstance(data, dict) or "prompt_id" not in data:
        raise ComfyUIError(f"prompt rejected (HTTP {status}): {body[:4000].decode('utf-8', 'replace')}")
    if data.get("node_errors"):
        raise ComfyUIError(f"prompt has node errors: {json.dumps(data['node_errors'])[:4000]}")
    return data["prompt_id"]


def wait_history(url: str, prompt_id: str, timeout: float = 300.0, *, server: ComfyUIServer | None = None,
                 poll: float = 0.25) -> dict:
    """Poll ``/history/<id>`` until the prompt finished; returns its history entry.

    Raises :class:`ComfyUIError` (with the server log tail when ``server`` is given) when the prompt
    failed, the server died, or ``timeout`` seconds passed.
    """
    def fail(msg: str) -> ComfyUIError:
        tail = f"\n--- server log {server.log_path} ---\n{server.log_tail()}" if server else ""
        return ComfyUIError(msg + tail)

    deadline = time.monotonic() + timeout
    while True:
        if server is not None and not server.alive():
            raise fail(f"ComfyUI exited (code {server.proc.returncode}) while running prompt {prompt_id}")
        try:
            hist = get_json(url, "/history/" + urllib.parse.quote(prompt_id), timeout=10.0)
        except (urllib.error.URLError, ConnectionError, OSError, ValueError):
            hist = {}
        entry = hist.get(prompt_id) if isinstance(hist, dict) else None
        if entry:
            status = entry.get("status") or {}
            if status.get("status_str") == "error":
                errors = [m for m in status.get("messages", []) if m and m[0] == "execution_error"]
                detail = json.dumps(errors or status, indent=1)[:6000]
                raise fail(f"prompt {prompt_id} failed:\n{detail}")
            if status.get("completed") or status.get("status_str") == "success":
                return entry
        if time.monotonic() > deadline:
            raise fail(f"prompt {prompt_id} did not finish within {timeout:.0f}s")
        time.sleep(poll)


@dataclass
class OutputImage:
    node_id: str
    filename: str
    subfolder: str
    type: str
    data: bytes

    def to_pil(self):
        import io

        from PIL import Image

        img = Image.open(io.BytesIO(self.data))
        img.load()
        return img


def get_output_images(url: str, history: dict, types: Iterable[str] = ("output",),
                      node_ids: Iterable[str] | None = None, timeout: float = 30.0) -> list[OutputImage]:
    """Fetch the images a finished prompt saved (``history`` = the entry from :func:`wait_history`)
    through ``/view``; ordered by node id, then as listed."""
    wanted_types = set(types)
    wanted_nodes = None if node_ids is None else {str(n) for n in node_ids}
    out: list[OutputImage] = []
    outputs = history.get("outputs", {})
    for node_id in sorted(outputs, key=lambda k: (len(k), k)):
        if wanted_nodes is not None and node_id not in wanted_nodes:
            continue
        for img in outputs[node_id].get("images", []) or []:
            if img.get("type", "output") not in wanted_types:
                continue
            query = urllib.parse.urlencode({
                "filename": img["filename"], "subfolder": img.get("subfolder", ""),
                "type": img.get("type", "output")})
            status, body = _request(url.rstrip("/") + "/view?" + query, timeout=timeout)
            if status != 200:
                raise ComfyUIError(f"GET /view?{query} -> HTTP {status}")
            out.append(OutputImage(node_id, img["filename"], img.get("subfolder", ""),
                                   img.get("type", "output"), body))
    return out
