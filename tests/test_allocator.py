"""The agent's C-allocator tuning: fewer arenas, free pages returned (glibc)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from edge.allocator import _glibc, limit_arenas, release_free

REPO = Path(__file__).resolve().parents[1]

glibc_only = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="the tuning is for glibc's allocator"
)

_FRAGMENT = """
import json, sys
from edge.allocator import release_free

def rss_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])

# 60 MB of 60 KB buffers (below glibc's mmap threshold: they come from the heap), every
# 50th kept, the way long-lived state ends up between short-lived buffers in an agent.
blocks = [bytearray(60_000) for _ in range(1000)]
kept = blocks[::50]
del blocks
before = rss_kb()
released = release_free()
after = rss_kb()
print(json.dumps({"before": before, "after": after, "released": released}))
"""


@glibc_only
def test_free_pages_between_live_blocks_go_back_to_the_system() -> None:
    out = subprocess.run([sys.executable, "-c", _FRAGMENT], cwd=REPO, capture_output=True,
                         text=True, check=True, timeout=60).stdout
    r = json.loads(out)
    assert r["released"] is True
    # Nearly all of the 60 MB was free but resident; at least 40 MB must have gone back.
    assert r["before"] - r["after"] > 40_000, r


@glibc_only
def test_arena_limit_is_accepted_and_checked() -> None:
    assert _glibc() is not None
    assert limit_arenas(8) is True  # the process-wide default of a small box: harmless here
    with pytest.raises(ValueError, match="at least 1"):
        limit_arenas(0)


def test_release_is_harmless_to_call_often() -> None:
    for _ in range(3):
        assert release_free() in (True, False)
