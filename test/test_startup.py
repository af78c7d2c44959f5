"""Start-up of the data-path processes: pandas stays out (``common/imports.py``), and
``bag_import`` still reads YAML metadata and bags that store no message definitions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, shared_bag

pytest.importorskip("pandas")  # the behaviour under test needs pandas installed (the SDK brings it)


def run_python(code: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_pyarrow_takes_pandas_as_absent_once_it_is_kept_out():
    out = run_python(
        "import json, sys\n"
        "from mosaico_bridge.common.imports import keep_pandas_out\n"
        "first, again = keep_pandas_out(), keep_pandas_out()\n"
        "import pyarrow as pa\n"
        "n = len(pa.array([1, 2, 3])) + pa.table({'a': ['x']}).num_rows\n"
        "try:\n"
        "    import pandas\n"
        "    refused = ''\n"
        "except ModuleNotFoundError as exc:\n"
        "    refused = str(exc)\n"
        "try:\n"
        "    pa.table({'a': [1]}).to_pandas()\n"
        "    to_pandas = 'worked'\n"
        "except ModuleNotFoundError:\n"
        "    to_pandas = 'refused'\n"
        "print(json.dumps({'first': first, 'again': again, 'n': n, 'loaded': 'pandas' in sys.modules,\n"
        "                  'refused': refused, 'to_pandas': to_pandas}))\n"
    )
    assert out == {"first": True, "again": True, "n": 4, "loaded": False,
                   "refused": "pandas is not imported by mosaico_bridge's data path", "to_pandas": "refused"}


def test_a_process_that_already_imported_pandas_keeps_it():
    out = run_python(
        "import json, sys, pandas\n"
        "from mosaico_bridge.common.imports import keep_pandas_out\n"
        "kept_out = keep_pandas_out()\n"
        "import pyarrow as pa\n"
        "frame = pa.table({'a': [1, 2]}).to_pandas()\n"
        "print(json.dumps({'kept_out': kept_out, 'rows': len(frame)}))\n"
    )
    assert out == {"kept_out": False, "rows": 2}


def test_bag_import_runs_without_pandas_on_yaml_metadata_and_a_bag_without_definitions(tmp_path):
    meta = tmp_path / "meta.yaml"
    meta.write_text("robot: husky\nrun: 3\n")
    bag = shared_bag("ros2_sqlite3_split_wbag/wbag")  # old rosbag2 metadata: no message definitions
    out = run_python(
        "import json, sys\n"
        "from mosaico_bridge.cli.bag_import import main\n"
        f"rc = main([{str(bag)!r}, '-s', 'nopandas', '--root', {str(tmp_path / 'root')!r}, '--metadata',\n"
        f"           {str(meta)!r}, '--no-progress'])\n"
        "print(json.dumps({'rc': rc, 'pandas': 'pandas' in sys.modules,\n"
        "                  'humble': 'rosbags.typesys.stores.ros2_humble' in sys.modules}))\n"
    )
    # the Humble definitions were loaded because this bag needs them
    assert out == {"rc": 0, "pandas": False, "humble": True}
    from mosaico_bridge.client import MosaicoClient
    from mosaico_bridge.server import MosaicoServer

    with (MosaicoServer.start_background(tmp_path / "root", host="127.0.0.1", port=0) as srv,
          MosaicoClient.connect("127.0.0.1", srv.port) as c):
        assert c.sequence_handler("nopandas").user_metadata == {"robot": "husky", "run": 3}


def test_bag_import_of_a_bag_with_definitions_loads_no_typestore(tmp_path):
    bag = shared_bag("ros2_mcap_nav2_turtlebot/nav2_turtlebot.mcap")
    out = run_python(
        "import json, sys\n"
        "from mosaico_bridge.cli.bag_import import main\n"
        f"rc = main([{str(bag)!r}, '-s', 'defs', '--root', {str(tmp_path / 'root')!r}, '--no-progress'])\n"
        "print(json.dumps({'rc': rc, 'stores': sorted(m for m in sys.modules if m.startswith('rosbags.typesys.stores.ros'))}))\n"
    )
    assert out == {"rc": 0, "stores": []}


def test_mosaico_server_process_takes_puts_and_queries_without_pandas(tmp_path):
    """A fresh ``mosaico_server`` imported pandas at the first record batch a client sent
    (~0.25 s in which every DoPut stream waited); the process never maps pandas now."""
    from conftest import ServerProcess
    from mosaicolabs import MosaicoClient as SdkClient
    from test_server import check_read_back, write_run

    from mosaico_bridge.client import MosaicoClient
    from mosaico_bridge.client.query import QuerySequence

    server = ServerProcess(tmp_path / "store")
    try:
        with SdkClient.connect("127.0.0.1", server.port, timeout=10) as sdk:
            expected = write_run(sdk, "nopandas_put")
            check_read_back(sdk, "nopandas_put", expected)
        with MosaicoClient.connect("127.0.0.1", server.port) as ours:
            found = ours.query(QuerySequence().with_user_metadata("driver", eq="ada"))
            assert found is not None and [s.sequence.name for s in found] == ["nopandas_put"]
        maps = Path(f"/proc/{server.proc.pid}/maps").read_text()
        assert server.alive() and "/pandas/" not in maps
    finally:
        server.stop()
