"""The package as ROS users get it: colcon build in a workspace, and pip install in a venv."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import REPO

COLCON = Path(sys.executable).parent / "colcon"


def test_package_xml_is_format_3_ament_python():
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "mosaico_bridge"
    assert root.find("export/build_type").text == "ament_python"
    assert (REPO / "resource" / "mosaico_bridge").exists()


@pytest.mark.skipif(not COLCON.exists(), reason="colcon-core not installed (test extra)")
def test_colcon_build_installs_scripts_where_ros2_run_looks(tmp_path):
    src = tmp_path / "ws" / "src" / "mosaico_bridge"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "install", "log",
                                                              "__pycache__", "*.egg-info", "mosaico_data"))
    ws = tmp_path / "ws"
    out = subprocess.run([str(COLCON), "build"], cwd=ws, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    prefix = ws / "install" / "mosaico_bridge"
    for script in ("bag_import", "bridge_node", "mosaico_server", "spool_upload"):
        assert (prefix / "lib" / "mosaico_bridge" / script).exists(), script
    share = prefix / "share" / "mosaico_bridge"
    assert (share / "package.xml").exists()
    assert (share / "launch" / "bridge.launch.py").exists()
    assert (share / "config" / "bridge.yaml").exists()
    assert (share / "config" / "large_shm_fastdds.xml").exists()
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "mosaico_bridge").exists()
    # the installed console script runs from the install space
    site = next(prefix.glob("lib/python3*/site-packages"))
    env = dict(os.environ, PYTHONPATH=f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    help_out = subprocess.run([sys.executable, str(prefix / "lib" / "mosaico_bridge" / "bag_import"), "--help"],
                              capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path, check=False)
    assert help_out.returncode == 0 and "--sequence" in help_out.stdout


def test_pip_install_put_share_files_in_the_ament_prefix():
    """scripts/setup.sh uses `pip install .` (not -e), so the ament index finds the package."""
    ament = pytest.importorskip("ament_index_python.packages")
    if not os.environ.get("AMENT_PREFIX_PATH"):
        pytest.skip("AMENT_PREFIX_PATH not set (scripts/test.sh sets it)")
    share = Path(ament.get_package_share_directory("mosaico_bridge"))
    assert (share / "config" / "bridge.yaml").exists()
    assert (share / "config" / "large_shm_fastdds.xml").exists()
    assert (share / "launch" / "bridge.launch.py").exists()
