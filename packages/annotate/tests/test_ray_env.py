"""`ray_env.init_ray` under `uv run`: Ray must not turn the working directory into a runtime_env
(uploaded to every worker, refused above 512 MB), even when `ray` was imported first."""

from __future__ import annotations

import json
import subprocess
import sys

DRIVER = """
import json, ray  # imported before init_ray, as the runner does
from emo_annotate.ray_env import init_ray
init_ray(num_cpus=1)
print(json.dumps(ray.get_runtime_context().runtime_env))
ray.shutdown()
"""


def test_a_driver_started_by_uv_run_ships_no_working_directory(tmp_path, monkeypatch):
    # Ray recognises `uv run` by an ancestor process whose command line is `uv run ...`: this
    # driver's parent is a Python process named so (argv[0] "uv", running the script "run")
    (tmp_path / "run").write_text(f"import subprocess\nsubprocess.run([{sys.executable!r}, '-c', {DRIVER!r}], check=True)\n")
    monkeypatch.delenv("RAY_ENABLE_UV_RUN_RUNTIME_ENV", raising=False)
    out = subprocess.run(["uv", "run"], executable=sys.executable, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    runtime_env = json.loads(out.stdout.strip().splitlines()[-1])
    assert "working_dir" not in runtime_env and "py_executable" not in runtime_env, runtime_env
