"""peak_rss_mb: a process's own peak, not its parent's (the figure progress.json and the
benchmarks report)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emo_annotate.memory import peak_rss_mb

CHILD = "from emo_annotate.memory import peak_rss_mb; print(peak_rss_mb())"


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="Linux's /proc")
def test_a_child_of_a_large_process_reports_its_own_peak():
    """On Linux, getrusage's ru_maxrss of such a child says at least 512 MB: vfork + exec (or fork
    + exec) carries the parent's high-water mark over. The child itself holds far less."""
    held = np.ones(64 * 1024 * 1024)  # 512 MB, touched: this process's resident memory
    assert peak_rss_mb() > 512
    child = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True)
    del held
    assert float(child.stdout) < 400  # the child imports the package and numpy, nothing else
