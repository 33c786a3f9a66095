"""Test harness: the command line of a two-rank ``torchrun`` job on a free local port (the multi-rank tests)."""

from __future__ import annotations

import socket
import sys


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it), for torchrun's rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_cli(*args: str, nproc: int = 2) -> list[str]:
    """``python -m torch.distributed.run ... -m polycolor.cli ARGS`` on 127.0.0.1 and a free port."""
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr",
            "127.0.0.1", "--master_port", str(free_port()), "-m", "polycolor.cli", *args]
