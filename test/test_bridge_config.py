"""Parameters of the bridge node, checked without ROS: qos_overrides and the sequence-name template."""

from __future__ import annotations

import time

import pytest

from mosaico_bridge.bridge_config import (
    PARAMETERS,
    BridgeConfig,
    QosOverride,
    parse_qos_overrides,
)
from mosaico_bridge.protocol import validate_sequence_name


def _values(**over):
    values = {name: default for name, (default, _desc) in PARAMETERS.items()}
    values.update(over)
    return values


def test_qos_overrides_parse_every_key():
    got = parse_qos_overrides(
        '{"/camera": {"reliability": "best_effort", "durability": "volatile", "depth": 5},'
        ' "/tf_static": {"durability": "transient_local"}}'
    )
    assert got == {
        "/camera": QosOverride("best_effort", "volatile", 5),
        "/tf_static": QosOverride(None, "transient_local", None),
    }
    assert parse_qos_overrides("") == {} and parse_qos_overrides("{}") == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "parameter 'qos_overrides': not valid JSON"),
        ("[]", "parameter 'qos_overrides': must be a JSON object"),
        ('{"/a": 3}', "parameter 'qos_overrides': /a: must be an object"),
        ('{"/a": {"history": "keep_all"}}', "parameter 'qos_overrides': /a: unknown key 'history'"),
        ('{"/a": {"reliability": "sometimes"}}', "parameter 'qos_overrides': /a: reliability must be one of"),
        ('{"/a": {"durability": "forever"}}', "parameter 'qos_overrides': /a: durability must be one of"),
        ('{"/a": {"depth": 0}}', "parameter 'qos_overrides': /a: depth must be an integer >= 1"),
        ('{"/a": {"depth": "5"}}', "parameter 'qos_overrides': /a: depth must be an integer >= 1"),
    ],
)
def test_qos_overrides_refuse_bad_input_naming_the_topic(text, message):
    with pytest.raises(ValueError) as info:
        parse_qos_overrides(text)
    assert str(info.value).startswith(message)


def test_sequence_name_template_fields_and_sanitising():
    cfg = BridgeConfig.from_values(
        _values(sequence_name="{robot}-{node}_{namespace}_{date}_{time}", robot="rover 7"), env={}
    )
    stamp = time.mktime((2026, 3, 4, 5, 6, 7, 0, 0, -1))
    name = cfg.sequence_name("mosaico_bridge", "/fleet/a", now=stamp)
    # the space of the robot name and the '/' of the namespace become '_'
    assert name == "rover_7-mosaico_bridge_fleet_a_20260304_050607"
    assert validate_sequence_name(name) == name
    assert cfg.sequence_name("n", "/", now=stamp).endswith("_root_20260304_050607")


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{robot}_{unknown}", "parameter 'sequence_name': bad template field"),
        ("{0}", "parameter 'sequence_name': bad template field"),
        ("_{robot}", "parameter 'sequence_name': template '_{robot}' does not give a valid sequence name"),
    ],
)
def test_sequence_name_template_refused_at_configure(template, message):
    with pytest.raises(ValueError) as info:
        BridgeConfig.from_values(_values(sequence_name=template), env={})
    assert str(info.value).startswith(message)


def test_default_template_gives_a_valid_name():
    cfg = BridgeConfig.from_values(_values(), env={})
    name = cfg.sequence_name("mosaico_bridge", "/")
    assert validate_sequence_name(name) == name


@pytest.mark.parametrize("nice", [-1, 20, True, "5", 2.0])
def test_worker_nice_outside_0_to_19_refused_at_configure(nice):
    with pytest.raises(ValueError) as info:
        BridgeConfig.from_values(_values(worker_nice=nice), env={})
    assert str(info.value) == f"parameter 'worker_nice': must be an integer in 0..19, got {nice!r}"


@pytest.mark.parametrize("priority", [-1, 100, True, "5", 2.0])
def test_realtime_priority_outside_0_to_99_refused_at_configure(priority):
    with pytest.raises(ValueError) as info:
        BridgeConfig.from_values(_values(realtime_priority=priority), env={})
    assert str(info.value) == f"parameter 'realtime_priority': must be an integer in 0..99, got {priority!r}"


def test_realtime_priority_needs_the_take_thread():
    with pytest.raises(ValueError) as info:
        BridgeConfig.from_values(_values(realtime_priority=5, receive_thread=False), env={})
    assert str(info.value).startswith("parameter 'realtime_priority': needs receive_thread: true")
    assert BridgeConfig.from_values(_values(realtime_priority=0, receive_thread=False), env={}).realtime_priority == 0


def test_realtime_priority_defaults_to_off_and_takes_1_to_99():
    assert BridgeConfig.from_values(_values(), env={}).realtime_priority == 0
    for priority in (1, 50, 99):
        assert BridgeConfig.from_values(_values(realtime_priority=priority), env={}).realtime_priority == priority


@pytest.mark.parametrize("flag", ["warm_memory", "receive_thread"])
@pytest.mark.parametrize("value", [1, 0, "true", None])
def test_bool_flags_must_be_bools(flag, value):
    with pytest.raises(ValueError) as info:
        BridgeConfig.from_values(_values(**{flag: value}), env={})
    assert str(info.value) == f"parameter '{flag}': must be true or false, got {value!r}"


@pytest.mark.parametrize("flag", ["warm_memory", "receive_thread"])
def test_bool_flags_default_to_true(flag):
    assert getattr(BridgeConfig.from_values(_values(), env={}), flag) is True
    assert getattr(BridgeConfig.from_values(_values(**{flag: False}), env={}), flag) is False


def test_worker_nice_defaults_to_0_and_takes_0_to_19_with_either_server():
    assert BridgeConfig.from_values(_values(), env={}).worker_nice == 0
    for nice in (0, 7, 19):
        assert BridgeConfig.from_values(_values(worker_nice=nice), env={}).worker_nice == nice
        assert BridgeConfig.from_values(_values(worker_nice=nice, host="mosaico.local"), env={}).worker_nice == nice
