"""depth_ros.ros.memory: large buffers come from the heap once a node has raised glibc's
thresholds; the user's own malloc settings win. Probes run in fresh interpreters: the
thresholds are process-wide."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

import pytest

from depth_ros.ros.memory import keep_large_buffers

# In a fresh interpreter: how many blocks glibc has mmapped while a 6 MiB block is held.
PROBE = r"""
import ctypes, json, sys
from depth_ros.ros.memory import keep_large_buffers

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
reason = keep_large_buffers() if sys.argv[1] == "tuned" else "not asked"
before = libc.mallinfo2().hblks
block = libc.malloc(6 * 1024 * 1024)
held = libc.mallinfo2().hblks
libc.free(block)
print(json.dumps({"reason": reason, "mmapped": held - before}))
"""


def probe(mode: str, **env: str) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True,
                            text=True, check=True, env={**os.environ, **env})
    return json.loads(result.stdout)


def has_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


glibc_only = pytest.mark.skipif(not has_mallinfo2(), reason="needs glibc ≥ 2.33 (mallinfo2)")


@glibc_only
def test_a_point_cloud_sized_block_comes_from_the_heap_once_tuned():
    default = probe("default")
    assert default["mmapped"] == 1, "glibc's default serves 6 MiB from a fresh mmap"
    tuned = probe("tuned")
    assert tuned["reason"] is None
    assert tuned["mmapped"] == 0, "after keep_large_buffers the block comes from the heap"


@glibc_only
def test_the_users_own_malloc_settings_win():
    # GLIBC_TUNABLES is read when the process starts: the probe's own malloc obeys it.
    set_by_user = probe("tuned", GLIBC_TUNABLES="glibc.malloc.mmap_threshold=1048576")
    assert set_by_user["reason"] == "GLIBC_TUNABLES sets the malloc thresholds"
    assert set_by_user["mmapped"] == 1
    opted_out = probe("tuned", DEPTH_ROS_MALLOC_TUNING="0")
    assert opted_out["reason"] == "DEPTH_ROS_MALLOC_TUNING=0"
    assert opted_out["mmapped"] == 1


def test_without_glibc_nothing_changes_and_the_reason_is_given(monkeypatch):
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.delenv("DEPTH_ROS_MALLOC_TUNING", raising=False)
    monkeypatch.setattr(sys, "platform", "darwin")
    assert keep_large_buffers() == "not glibc (darwin)"
    monkeypatch.setattr(sys, "platform", "linux")

    def no_libc(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)  # e.g. musl (Alpine)
    assert keep_large_buffers() == (
        "no glibc mallopt: libc.so.6: cannot open shared object file")
