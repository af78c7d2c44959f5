"""``bag_import`` refuses a recording given twice (it would be imported twice): one
line, exit 2, nothing created. The library refuses it too (BagSource)."""

from __future__ import annotations

import os

import pytest
from conftest import run_cli, shared_bag
from test_bag_import_cli import CLI, imu_bag, one_error_line

SPLIT = "ros2_mcap_split_wbag/wbag"
ROS1 = "ros1_tf_lz4/tf_example.bag"


def refused(tmp_path, *bags: str) -> str:
    root = tmp_path / "r"
    proc = run_cli(CLI, *bags, "--sequence", "twice", "--root", str(root))
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert "bag given twice" in line, line
    assert not root.exists()  # refused before the store was touched
    return line


def test_same_path_twice(tmp_path):
    bag = str(shared_bag(ROS1))
    assert bag in refused(tmp_path, bag, bag)


def test_same_directory_spelled_differently(tmp_path):
    bag = shared_bag(SPLIT)
    link = tmp_path / "alias"
    link.symlink_to(bag)
    refused(tmp_path, str(bag), str(bag.parent / "." / bag.name) + "/")
    line = refused(tmp_path, str(bag), str(link))
    assert str(link) in line


def test_hard_link_of_a_file(tmp_path):
    bag = imu_bag(tmp_path / "imu", count=5)
    db = next(bag.glob("*.db3"))
    copy = tmp_path / "other"
    copy.mkdir()
    os.link(db, copy / db.name)
    refused(tmp_path, str(db), str(copy / db.name))


@pytest.mark.parametrize("order", ["dir-first", "file-first"])
def test_split_directory_and_one_of_its_files(tmp_path, order):
    bag = shared_bag(SPLIT)
    part = str(bag / "wbag_1.mcap")
    args = [str(bag), part] if order == "dir-first" else [part, str(bag)]
    line = refused(tmp_path, *args)
    assert "inside the bag directory" in line and part in line


def test_distinct_bags_still_import(tmp_path):
    """Two different recordings of the same generation are one sequence, as before."""
    a = imu_bag(tmp_path / "a", count=5)
    b = imu_bag(tmp_path / "b", count=7)
    proc = run_cli(CLI, str(a), str(b), "--sequence", "both", "--root", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr


def test_library_refuses_too(tmp_path):
    from mosaico_bridge.sources import BagSource, BagSourceError

    bag = shared_bag(SPLIT)
    with pytest.raises(BagSourceError, match="bag given twice"):
        BagSource([bag, bag / "wbag_0.mcap"]).open()
