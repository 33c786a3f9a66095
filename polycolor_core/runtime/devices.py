"""The one device resolver, the one list of inference backends, and joining a torchrun/accelerate job.

``resolve_device("auto" | "cpu" | "cuda" | "cuda:1" | "mps", backend="torch")`` -> a concrete device string:
``auto`` is CUDA when the backend can use a GPU (torch: ``torch.cuda.is_available()``; onnx: onnxruntime has
a CUDA/TensorRT provider), else the CPU. An explicit ``cuda`` without a GPU is a clear error. The ComfyUI
loader maps ``auto`` to ComfyUI's own device before calling this. ``setup_distributed()`` joins the process group
when a launcher started several processes (training's DDP and sharded inference both call it).
"""

from __future__ import annotations

BACKENDS = ("auto", "onnx", "torch")  # the inference backends: the CLI, the Colorizer and the node list these
DEVICES = ("auto", "cpu", "cuda")  # what the node's dropdown offers; resolve_device also takes cuda:N and mps


def check_backend(backend: str) -> str:
    b = str(backend or "auto").strip().lower()
    if b not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)} (got {backend!r})")
    return b


def ort_has_gpu() -> bool:
    """Whether the installed onnxruntime build has a CUDA or TensorRT provider."""
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return bool({"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(ort.get_available_providers()))


def resolve_device(device: str = "auto", backend: str = "torch") -> str:
    """A concrete device for ``backend`` (see the module docstring); raises ValueError for a bad name."""
    d = str(device or "auto").strip().lower()
    kind = d.split(":", 1)[0]
    if kind not in ("auto", "cpu", "cuda", "mps"):
        raise ValueError(f"device must be one of {', '.join(DEVICES)} (or cuda:N, mps), got {device!r}")
    if backend == "onnx":
        if d == "auto":
            return "cuda" if ort_has_gpu() else "cpu"
        return "cuda" if kind == "cuda" else "cpu"  # onnxruntime knows cpu/cuda only
    import torch

    if d == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {d!r} was chosen but torch sees no CUDA GPU; choose 'cpu' or 'auto'")
    return d


def dist_info() -> tuple[int, int]:
    """(rank, world size) of the joined process group; (0, 1) outside one."""
    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def setup_distributed(backend: str | None = None, timeout_s: float | None = None) -> tuple[int, int]:
    """Join the process group when launched by torchrun/accelerate (``WORLD_SIZE`` > 1), once; returns
    ``dist_info()``. ``backend``: nccl where CUDA is available, else gloo, unless given (inference needs only
    barriers and object exchange: gloo). ``timeout_s``: how long a collective waits (torch's default if None)."""
    import datetime
    import os

    import torch

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        kw = {"timeout": datetime.timedelta(seconds=timeout_s)} if timeout_s else {}
        torch.distributed.init_process_group(backend or ("nccl" if torch.cuda.is_available() else "gloo"), **kw)
    return dist_info()
