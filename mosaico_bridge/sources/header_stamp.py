"""``header.stamp`` read straight from a serialized message, without deserializing it.

For a message type whose first field is a ``std_msgs/msg/Header`` the stamp sits at a
fixed place at the start of the serialized message:

* ROS 2 (CDR, ``encoding="cdr"``): a 4-byte encapsulation header (byte 1 is the
  representation: even = big endian, odd = little endian; plain CDR only), then the
  Header, whose first field ``stamp`` is a ``builtin_interfaces/msg/Time``:
  ``int32 sec, uint32 nanosec`` at offsets 4 and 8 (aligned, as CDR aligns each
  primitive to its size from the end of the encapsulation header).
* ROS 1 (``encoding="ros1"``): little endian, the Header is ``uint32 seq`` then
  ``time stamp`` = ``uint32 secs, uint32 nsecs``, at offsets 4 and 8.

Timestamps are nanoseconds since the Unix epoch (or since whatever clock the publisher
stamped with, e.g. simulation time).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from rosbags.interfaces import Nodetype

HEADER = "std_msgs/msg/Header"
TIME = "builtin_interfaces/msg/Time"

#: Plain CDR representations (byte 1 of the encapsulation header): CDR_BE, CDR_LE.
_PLAIN_CDR = {0x00: ">", 0x01: "<"}
_CDR_BE = struct.Struct(">iI")
_CDR_LE = struct.Struct("<iI")
_ROS1 = struct.Struct("<II")


class HeaderStampError(Exception):
    """A serialized message whose ``header.stamp`` cannot be read; names the reason."""


def _field(typestore: Any, msgtype: str, index: int) -> tuple[str, Any] | None:
    fields = typestore.fielddefs.get(msgtype, ((), ()))[1]
    return fields[index] if len(fields) > index else None


def _is_name(field: tuple[str, Any] | None, name: str, msgtype: str) -> bool:
    return field is not None and field[0] == name and field[1][0] == Nodetype.NAME and field[1][1] == msgtype


def _is_base(field: tuple[str, Any] | None, name: str, base: str) -> bool:
    return field is not None and field[0] == name and field[1][0] == Nodetype.BASE and field[1][1][0] == base


def has_header(msgtype: str, typestore: Any, encoding: str) -> bool:
    """True if ``msgtype``'s first field is a Header laid out as the module docstring says
    (checked against the definitions in ``typestore``, which come from the bag)."""
    if not _is_name(_field(typestore, msgtype, 0), "header", HEADER):
        return False
    stamp_at = 1 if encoding == "ros1" else 0
    if encoding == "ros1" and not _is_base(_field(typestore, HEADER, 0), "seq", "uint32"):
        return False
    if not _is_name(_field(typestore, HEADER, stamp_at), "stamp", TIME):
        return False
    # rosbags describes ROS 1 ``time`` as builtin_interfaces/msg/Time too (int32 sec); its
    # wire form is still two uint32
    return _is_base(_field(typestore, TIME, 0), "sec", "int32") and _is_base(_field(typestore, TIME, 1), "nanosec", "uint32")


def header_stamp_reader(msgtype: str, typestore: Any, encoding: str) -> Callable[[bytes | memoryview], int] | None:
    """A function ``serialized message -> header.stamp in ns`` for ``msgtype``, or None if
    its first field is not a Header (see :func:`has_header`).

    The returned function raises :class:`HeaderStampError` for a message too short to
    hold a stamp or (CDR) with an encapsulation other than plain CDR.
    """
    if not has_header(msgtype, typestore, encoding):
        return None
    if encoding == "ros1":
        def ros1(data: bytes | memoryview) -> int:
            try:
                sec, nsec = _ROS1.unpack_from(data, 4)
            except struct.error:
                raise HeaderStampError(f"{msgtype}: {len(data)} bytes, too short for a header.stamp") from None
            return sec * 1_000_000_000 + nsec

        return ros1

    def cdr(data: bytes | memoryview) -> int:
        if len(data) < 12:
            raise HeaderStampError(f"{msgtype}: {len(data)} bytes, too short for a header.stamp")
        order = _PLAIN_CDR.get(data[1])
        if order is None:
            raise HeaderStampError(f"{msgtype}: CDR representation 0x{data[1]:02x} is not plain CDR")
        sec, nsec = (_CDR_LE if order == "<" else _CDR_BE).unpack_from(data, 4)
        return sec * 1_000_000_000 + nsec

    return cdr
