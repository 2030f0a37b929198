"""A process's own peak memory, for progress reports and benchmarks."""

from __future__ import annotations

import sys


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB.

    Linux's VmHWM, the high-water mark of this process image. `getrusage().ru_maxrss` is not that:
    it keeps the peak of the process image an exec replaced, and a child spawned with vfork + exec
    (Python's subprocess) starts from its parent's peak. A benchmark child of a 1.1 GB parent then
    reported 1,171 MB while its own peak was 341 MB.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    import resource  # elsewhere: the best there is (bytes on macOS, kB on the other Unixes)

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)
