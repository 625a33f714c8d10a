"""`make gpu-check` on the CPU: benchmarks/gpu_check.py --tiny runs every part of the check."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_check_runs_on_the_cpu(tmp_path):
    out = tmp_path / "gpu-check.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--tiny", "--device", "cpu",
                           "--rows", "8", "--new-tokens", "16", "--steps", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    for params in ("lora", "prompt"):  # TRICE trained end to end: every step done, tokens sampled, rows scored
        run = report[f"train_{params}"]
        assert run["steps_done"] == 2 and run["tokens_sampled"] > 0 and run["sequences_scored"] > 0
    assert report["sampled_tokens_per_s"] > 0 and report["generate_tokens_per_s"] > 0
    assert report["compiled_sampler_tokens_per_s"] > 0 and report["compiled_first_call_seconds"]["compiled"] > 0
    assert 0 < report["scoring_mfu"] < 1.5 and report["matmul_peak_flops_per_s"] > 0
    assert report["peak_host_rss_gib"] > 0
