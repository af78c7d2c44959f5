"""Raw request bodies for tests that speak Flight directly (no client): each helper returns
the JSON object that the protocol's typed request puts on the wire."""

from __future__ import annotations

from typing import Any

from pyarrow import flight

from mosaico_bridge.protocol import ErrorKind, descriptors, errors, names
from mosaico_bridge.protocol import messages as msg
from mosaico_bridge.protocol.messages import Action

read_descriptor = descriptors.read_descriptor
doput_descriptor = descriptors.doput_descriptor
topic_locator = names.topic_locator
error_kind = errors.kind_of
parse_response = msg.parse_response

__all__ = ["Action", "ErrorKind"]


def action(name: str, payload: dict[str, Any]) -> flight.Action:
    return flight.Action(name, msg.encode_body(payload))


def sequence_create_request(sequence: str, user_metadata: dict[str, Any]) -> dict[str, Any]:
    return msg.SequenceCreateRequest(names.sequence_locator(sequence), user_metadata).to_dict()


def session_create_request(sequence: str) -> dict[str, Any]:
    return msg.SessionCreateRequest(names.sequence_locator(sequence)).to_dict()


def session_finalize_request(session_uuid: str) -> dict[str, Any]:
    return msg.SessionFinalizeRequest(session_uuid).to_dict()


def session_delete_request(session_locator: str) -> dict[str, Any]:
    return msg.SessionDeleteRequest(session_locator).to_dict()


def sequence_delete_request(sequence: str) -> dict[str, Any]:
    return msg.SequenceDeleteRequest(names.sequence_locator(sequence)).to_dict()


def topic_create_request(
    session_uuid: str, sequence: str, topic: str, fmt: str, tag: str, user_metadata: dict[str, Any]
) -> dict[str, Any]:
    return msg.TopicCreateRequest(session_uuid, names.topic_locator(sequence, topic), fmt, tag, user_metadata).to_dict()


def topic_delete_request(sequence: str, topic: str) -> dict[str, Any]:
    return msg.TopicDeleteRequest(names.topic_locator(sequence, topic)).to_dict()


def notification_create_request(locator: str, text: str) -> dict[str, Any]:
    return msg.NotificationCreateRequest(locator, text).to_dict()


def locator_request(locator: str) -> dict[str, Any]:
    return {"locator": locator}


def api_key_create_request(permission: str, description: str, expires_at_ns: int | None) -> dict[str, Any]:
    return msg.ApiKeyCreateRequest(permission, description, expires_at_ns).to_dict()


def api_key_fingerprint_request(fingerprint: str) -> dict[str, Any]:
    return msg.ApiKeyStatusRequest(fingerprint).to_dict()
