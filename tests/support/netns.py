"""A network namespace with only loopback up, entered by the calling thread for a while.

Ray binds the host's non-loopback address whatever it is told; inside a namespace whose only
interface is `lo` it uses 127.0.0.1, so a test cluster stays on this machine. The namespace is
entered with setns(2) by the calling thread (the network namespace is per thread): sockets it
opens, and threads and processes it starts afterwards, live there. Unix sockets (the embedded
PostgreSQL) are files and reach across; TCP services the test needs (Redis) must be started
inside. Leaving restores the thread's namespace and deletes this one.

    if (reason := unavailable()) is None:
        with loopback_namespace("strata-test"):
            ...

Needs root and `ip` (iproute2); `unavailable()` says why not, for a skip.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

CLONE_NEWNET = 0x40000000


def unavailable() -> str | None:
    """Why a loopback-only namespace cannot be made here, or None."""
    if os.geteuid() != 0:
        return "creating a network namespace needs root"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"`ip netns` does not work here: {probe.stderr.strip()}"
    return None


@contextmanager
def loopback_namespace(name: str) -> Iterator[None]:
    """Create namespace `name` with lo up, enter it in this thread, and undo both after."""
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        subprocess.run(
            ["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
            check=True,
            capture_output=True,
        )
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            _setns(f"/run/netns/{name}")
            try:
                yield
            finally:
                _setns_fd(home)
        finally:
            os.close(home)
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)


def _setns(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        _setns_fd(fd)
    finally:
        os.close(fd)


def _setns_fd(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")
