"""Starting or joining Ray from any of the project's CLIs (annotate here; train can reuse it).

Under `uv run` (any ancestor process), Ray (2.x) would start every worker through `uv run` too,
shipping the working directory as a runtime_env (refused above 512 MB, and a checkout with data or
checkpoints is bigger); the workers already run in the same environment as the driver, so that is
turned off. Ray reads `RAY_ENABLE_UV_RUN_RUNTIME_ENV` once, when `ray` is first imported, so the
switch is set in the environment and, for a `ray` imported earlier, on Ray's constant too. An
explicit `RAY_ENABLE_UV_RUN_RUNTIME_ENV=1` is left alone.
"""

from __future__ import annotations

import os

OBJECT_STORE_BYTES = 256 * 1024 * 1024  # a local run passes file names and small results, not arrays


def init_ray(address: str | None = None, num_cpus: int = 1, object_store_bytes: int = OBJECT_STORE_BYTES) -> None:
    """Join the cluster at `address` (`"auto"`, `"ray://host:port"`, ...), or with none start a
    Ray of this process's own with `num_cpus` CPUs: never a cluster someone else started on this
    machine. Quiet: worker logs stay in Ray's session directory."""
    uv_runtime_env = os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    import ray
    from ray._private import ray_constants

    ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV = uv_runtime_env.lower() in ("1", "true")
    if address:
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    else:
        ray.init(
            address="local",
            num_cpus=max(1, num_cpus),
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
            object_store_memory=object_store_bytes,
        )
