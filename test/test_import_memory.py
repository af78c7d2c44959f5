"""Import memory: peak RSS of ``bag_import`` does not grow with the bag (issue: import data path).

A camera + lidar bag (``bench/make_bags.py`` ``large``: 1080p rgb8 images of 6,220,800
bytes at 30 Hz, 1 MiB point clouds at 10 Hz, Imu, TF) is imported with a small
``--max-inflight-bytes`` into the embedded server, in a process of its own
(``test/ros_procs/import_rss.py``). Its peak RSS growth over the RSS it had once its
modules were imported stays under the budget plus :data:`MARGIN_MIB`, the fixed
overhead documented in the README (record batches being converted and written, Arrow's
memory pool, the embedded server's writer); and a bag three times as long peaks within
:data:`SIZE_SLACK_MIB` of the short one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

BUDGET = 32 * 2**20
MARGIN_MIB = 192  # measured 135-171 MiB on a quiet 2-core machine (budgets 8, 32, 128 MiB)
SIZE_SLACK_MIB = 48  # measured 3-32 MiB


def _import(bag: Path, root: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, str(REPO / "test" / "ros_procs" / "import_rss.py"), str(bag), "--sequence", bag.stem,
         "--root", str(root), "--max-inflight-bytes", str(BUDGET), "--max-batch-bytes", str(8 * 2**20)],
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL, cwd=REPO, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["rc"] == 0, proc.stderr[-2000:]
    return out


@pytest.mark.timeout(900)
def test_peak_rss_bounded_by_budget_not_bag_size(tmp_path):
    from make_bags import write_large_bag

    short = write_large_bag(tmp_path / "short", seconds=1.0)
    long = write_large_bag(tmp_path / "long", seconds=3.0)
    assert long.stat().st_size > 2.5 * short.stat().st_size
    a = _import(short, tmp_path / "store")
    b = _import(long, tmp_path / "store")
    growth_long = b["hwm_mib"] - b["rss_start_mib"]
    assert growth_long <= BUDGET / 2**20 + MARGIN_MIB, b
    assert b["hwm_mib"] - a["hwm_mib"] <= SIZE_SLACK_MIB, (a, b)
