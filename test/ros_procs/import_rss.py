#!/usr/bin/env python3
"""Run ``bag_import`` in this process and print its memory as JSON (for the import memory test).

    import_rss.py BAG_IMPORT_ARGS...

Prints ``{"rc": exit code, "rss_start_mib": VmRSS after the imports bag_import needs,
"hwm_mib": VmHWM at the end}`` as the last line of standard output.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's mosaico_bridge


def _status(field: str) -> float:
    m = re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(m.group(1)) / 1024 if m else 0.0


def main() -> int:
    import pyarrow.flight  # noqa: F401 - what an import loads before its first message
    import rosbags.highlevel  # noqa: F401

    from mosaico_bridge.cli import bag_import
    from mosaico_bridge.recorder import warm_imports
    from mosaico_bridge.server import MosaicoServer  # noqa: F401

    warm_imports()
    start = _status("VmRSS")
    rc = bag_import.main(sys.argv[1:])
    print(json.dumps({"rc": rc, "rss_start_mib": start, "hwm_mib": _status("VmHWM")}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
