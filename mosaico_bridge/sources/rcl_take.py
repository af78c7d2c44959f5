"""Subscriptions taken on a thread of their own, through rcl, without the GIL.

rclpy's executor takes a serialized message with ``rcl_take_serialized_message`` into a
buffer of its own, then copies it into a new Python ``bytes``, both while it holds the GIL.
For a 6.2 MB camera frame that is two copies, and every other Python thread of the node
(conversion, upload) waits for them (``docs/live-path.md`` § Steps and copies).

A :class:`RclTaker` makes its subscriptions with ``rcl_subscription_init`` on the node's rcl
handle, so rclpy's executor does not know them, and takes them on one thread (OS name
``mb-take``) that waits on an rcl wait set of its own. ``rcl_wait`` and
``rcl_take_serialized_message`` are foreign calls through ctypes, so the GIL is released
while they run. A large message (at least :data:`HANDOVER_BYTES`) is taken into a buffer
from ``malloc`` that then becomes the message: a ``pyarrow.Buffer`` that frees it when the
last reference goes. One copy (the middleware's history into that buffer), and the GIL is
held only to stamp the message and hand it to the sink. A small message is copied out into
``bytes``, which costs less than a buffer of its own.

The layouts below are those of rcl and rmw in ROS 2 Kilted (x86-64 and aarch64 alike;
``test/test_rcl_take.py`` compares them with the installed headers when a C compiler is
present). :func:`available` says whether the libraries and symbols are there; when they are
not, :class:`~mosaico_bridge.sources.live.LiveSource` subscribes through rclpy instead.
"""

from __future__ import annotations

import ctypes
import logging
import re
import threading
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from ..common.memory import libc
from ..common.threads import name_os_thread, set_realtime_priority

log = logging.getLogger("mosaico_bridge.sources")

#: A message of at least this many bytes is handed over in the buffer it was taken into;
#: a smaller one is copied into ``bytes``.
HANDOVER_BYTES = 64 << 10

#: A handed-over buffer more than this many bytes larger than its message is shrunk to it.
SLACK_BYTES = 1 << 20

#: Messages taken from one subscription per wake-up before the others get their turn.
TAKE_BURST = 32

#: ``rcl_wait`` timeout in ns; changes wake the thread through a guard condition before.
WAIT_NS = 1_000_000_000

RCL_RET_OK = 0
RCL_RET_TIMEOUT = 2
RCL_RET_SUBSCRIPTION_TAKE_FAILED = 401


class _Allocator(ctypes.Structure):
    _fields_ = [("allocate", ctypes.c_void_p), ("deallocate", ctypes.c_void_p),
                ("reallocate", ctypes.c_void_p), ("zero_allocate", ctypes.c_void_p),
                ("state", ctypes.c_void_p)]


class _Time(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_uint64), ("nsec", ctypes.c_uint64)]


class _Qos(ctypes.Structure):
    """rmw_qos_profile_t"""

    _fields_ = [("history", ctypes.c_int), ("depth", ctypes.c_size_t), ("reliability", ctypes.c_int),
                ("durability", ctypes.c_int), ("deadline", _Time), ("lifespan", _Time),
                ("liveliness", ctypes.c_int), ("liveliness_lease_duration", _Time),
                ("avoid_ros_namespace_conventions", ctypes.c_bool)]


class _SubscriptionOptions(ctypes.Structure):
    """rcl_subscription_options_t (160 bytes in Kilted), read and written only in its qos;
    the tail is room for the rest, with a margin."""

    _fields_ = [("qos", _Qos), ("rest", ctypes.c_ubyte * 256)]


class _Subscription(ctypes.Structure):
    _fields_ = [("impl", ctypes.c_void_p)]


class _GuardCondition(ctypes.Structure):
    _fields_ = [("context", ctypes.c_void_p), ("impl", ctypes.c_void_p)]


class _GuardConditionOptions(ctypes.Structure):
    _fields_ = [("allocator", _Allocator)]


class _WaitSet(ctypes.Structure):
    """rcl_wait_set_t (104 bytes in Kilted): the ready subscriptions are read from its first
    two fields."""

    _fields_ = [("subscriptions", ctypes.POINTER(ctypes.c_void_p)), ("size_of_subscriptions", ctypes.c_size_t),
                ("rest", ctypes.c_ubyte * 256)]


class _SerializedMessage(ctypes.Structure):
    """rcl_serialized_message_t (rcutils_uint8_array_t)"""

    _fields_ = [("buffer", ctypes.c_void_p), ("buffer_length", ctypes.c_size_t),
                ("buffer_capacity", ctypes.c_size_t), ("allocator", _Allocator)]


class _ErrorString(ctypes.Structure):
    _fields_ = [("str", ctypes.c_char * 1024)]


_MessageInfo = ctypes.c_ubyte * 256  # rmw_message_info_t is 64 bytes in Kilted


class _Lib:
    """rcl and rcutils functions, typed, and glibc's allocator (``common/memory.py``)."""

    def __init__(self) -> None:
        paths = _loaded_libraries()
        self.rcl = ctypes.CDLL(paths["rcl"])
        self.rcutils = ctypes.CDLL(paths["rcutils"])
        lib = libc()
        if lib is None:
            raise OSError("glibc's malloc is needed to hand message buffers over")
        self.malloc, self.realloc, self.free = lib.malloc, lib.realloc, lib.free
        vp, sz, ret = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int32

        def fn(lib, name, restype, *argtypes):
            f = getattr(lib, name)
            f.restype = restype
            f.argtypes = list(argtypes)
            setattr(self, name, f)

        fn(self.rcutils, "rcutils_get_default_allocator", _Allocator)
        fn(self.rcutils, "rcutils_get_error_string", _ErrorString)
        fn(self.rcutils, "rcutils_reset_error", None)
        fn(self.rcl, "rcl_subscription_get_default_options", _SubscriptionOptions)
        fn(self.rcl, "rcl_subscription_init", ret, ctypes.POINTER(_Subscription), vp, vp, ctypes.c_char_p,
           ctypes.POINTER(_SubscriptionOptions))
        fn(self.rcl, "rcl_subscription_fini", ret, ctypes.POINTER(_Subscription), vp)
        fn(self.rcl, "rcl_take_serialized_message", ret, ctypes.POINTER(_Subscription),
           ctypes.POINTER(_SerializedMessage), ctypes.POINTER(_MessageInfo), vp)
        fn(self.rcl, "rcl_guard_condition_get_default_options", _GuardConditionOptions)
        fn(self.rcl, "rcl_guard_condition_init", ret, ctypes.POINTER(_GuardCondition), vp, _GuardConditionOptions)
        fn(self.rcl, "rcl_guard_condition_fini", ret, ctypes.POINTER(_GuardCondition))
        fn(self.rcl, "rcl_trigger_guard_condition", ret, ctypes.POINTER(_GuardCondition))
        fn(self.rcl, "rcl_wait_set_init", ret, ctypes.POINTER(_WaitSet), sz, sz, sz, sz, sz, sz, vp, _Allocator)
        fn(self.rcl, "rcl_wait_set_fini", ret, ctypes.POINTER(_WaitSet))
        fn(self.rcl, "rcl_wait_set_clear", ret, ctypes.POINTER(_WaitSet))
        fn(self.rcl, "rcl_wait_set_add_subscription", ret, ctypes.POINTER(_WaitSet), ctypes.POINTER(_Subscription),
           ctypes.POINTER(sz))
        fn(self.rcl, "rcl_wait_set_add_guard_condition", ret, ctypes.POINTER(_WaitSet),
           ctypes.POINTER(_GuardCondition), ctypes.POINTER(sz))
        fn(self.rcl, "rcl_wait", ret, ctypes.POINTER(_WaitSet), ctypes.c_int64)
        self.PyCapsule_GetPointer = ctypes.pythonapi.PyCapsule_GetPointer
        self.PyCapsule_GetPointer.restype = vp
        self.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
        self.allocator = self.rcutils_get_default_allocator()

    def error(self, what: str, ret: int) -> RuntimeError:
        """The rcl error of a failed call (and reset it), as a one-line RuntimeError."""
        detail = self.rcutils_get_error_string().str.decode(errors="replace")
        self.rcutils_reset_error()
        return RuntimeError(f"{what} failed (rcl {ret}): {detail}")


def _loaded_libraries() -> dict[str, str]:
    """Paths of librcl and librcutils as this process has mapped them (rclpy loads them)."""
    import rclpy.node  # noqa: F401 - maps librcl

    found: dict[str, str] = {}
    with open("/proc/self/maps", encoding="utf-8") as maps:
        for line in maps:
            m = re.search(r"(/\S*/lib(rcl|rcutils)\.so[.\d]*)$", line.strip())
            if m:
                found.setdefault(m.group(2), m.group(1))
    missing = {"rcl", "rcutils"} - set(found)
    if missing:
        raise OSError(f"lib{', lib'.join(sorted(missing))}.so not mapped in this process")
    return found


_lib: _Lib | None = None
_lib_error: str | None = None


def available() -> str | None:
    """None if rcl can be reached through ctypes here, else why not (one line)."""
    global _lib, _lib_error
    if _lib is None and _lib_error is None:
        try:
            _lib = _Lib()
        except (OSError, AttributeError) as exc:
            _lib_error = f"{type(exc).__name__}: {exc}"
    return _lib_error


class _Owner:
    """Frees a malloc'd message buffer when the last Arrow buffer over it goes."""

    __slots__ = ("address",)

    def __init__(self, address: int) -> None:
        self.address = address

    def __del__(self) -> None:
        _lib.free(self.address)  # type: ignore[union-attr]


class _Entry:
    """One subscription: its rcl handle, its take buffer, what to call per message."""

    def __init__(self, topic: str, callback: Callable[[Any], None]) -> None:
        self.topic = topic
        self.callback = callback
        self.handle = _Subscription()
        self.message = _SerializedMessage()
        self.message.allocator = _lib.allocator  # type: ignore[union-attr]


class RclTaker:
    """Serialized-message subscriptions of ``node``, taken on the ``mb-take`` thread.

    Args:
        node: the rclpy node whose rcl handle the subscriptions belong to. Every
            subscription must be removed (:meth:`close`) before the node is destroyed.
        on_error: called on the take thread with an exception the take loop or a callback
            raised; the loop goes on.
        realtime_priority: 1..99: the take thread runs under SCHED_FIFO at this priority
            (``common/threads.py`` ``set_realtime_priority``; refused, it says so through
            ``on_error`` and runs at normal priority); 0: normal priority.

    Raises:
        RuntimeError: if :func:`available` says rcl cannot be reached, or the guard
            condition cannot be made.
    """

    def __init__(self, node: Any, on_error: Callable[[BaseException], None], realtime_priority: int = 0) -> None:
        why = available()
        if why is not None:
            raise RuntimeError(f"rcl through ctypes is not available: {why}")
        self._lib = lib = _lib
        assert lib is not None
        self._node = node
        self._node_ptr = node.handle.pointer
        self._context_ptr = node.context.handle.pointer
        self._on_error = on_error
        self._realtime_priority = realtime_priority
        self._guard = _GuardCondition()
        ret = lib.rcl_guard_condition_init(ctypes.byref(self._guard), self._context_ptr,
                                           lib.rcl_guard_condition_get_default_options())
        if ret != RCL_RET_OK:
            raise lib.error("rcl_guard_condition_init", ret)
        self._cond = threading.Condition()
        self._entries: list[_Entry] = []
        self._generation = 0  # bumped at every change of _entries
        self._seen = 0  # the generation the take thread's wait set was last built for
        self._stop = False
        self._calls: list[Callable[[], object]] = []  # run on the take thread (call_soon)
        self._thread = threading.Thread(target=self._run, name="mosaico-take", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ control (any thread)
    def subscribe(self, topic: str, msg_class: type, qos: Any, callback: Callable[[Any], None]) -> _Entry:
        """Subscribe to ``topic`` (absolute name) with the rclpy QoS profile ``qos``;
        ``callback(serialized)`` is called on the take thread with each message, a
        ``bytes`` or a ``pyarrow.Buffer``.

        Raises:
            RuntimeError: naming the topic, if rcl refuses the subscription.
        """
        lib = self._lib
        msg_class.__class__.__import_type_support__()
        support = lib.PyCapsule_GetPointer(msg_class._TYPE_SUPPORT, None)
        options = lib.rcl_subscription_get_default_options()
        options.qos.history = int(qos.history.value)
        options.qos.depth = int(qos.depth)
        options.qos.reliability = int(qos.reliability.value)
        options.qos.durability = int(qos.durability.value)
        entry = _Entry(topic, callback)
        ret = lib.rcl_subscription_init(ctypes.byref(entry.handle), self._node_ptr, support,
                                        topic.encode(), ctypes.byref(options))
        if ret != RCL_RET_OK:
            raise lib.error(f"subscribing to {topic}", ret)
        with self._cond:
            self._entries.append(entry)
            self._generation += 1
        lib.rcl_trigger_guard_condition(ctypes.byref(self._guard))
        return entry

    def call_soon(self, fn: Callable[[], object]) -> None:
        """Run ``fn()`` on the take thread before its next wait (its errors go to on_error).
        The take thread allocates the large messages, so this is where
        ``common/memory.py`` ``warm_heap`` warms the right heap."""
        with self._cond:
            self._calls.append(fn)
        self._lib.rcl_trigger_guard_condition(ctypes.byref(self._guard))

    def unsubscribe(self, entries: list[_Entry]) -> None:
        """Remove subscriptions: no callback of theirs runs after this returns."""
        if not entries:
            return
        with self._cond:
            self._entries = [e for e in self._entries if e not in entries]
            self._generation += 1
            target = self._generation
        self._sync(target)
        for entry in entries:
            self._fini(entry)

    def close(self) -> None:
        """Remove every subscription and stop the take thread."""
        with self._cond:
            entries, self._entries = self._entries, []
            self._stop = True
            self._generation += 1
        self._lib.rcl_trigger_guard_condition(ctypes.byref(self._guard))
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        for entry in entries:
            self._fini(entry)
        if self._guard.impl:
            self._lib.rcl_guard_condition_fini(ctypes.byref(self._guard))

    def _sync(self, target: int) -> None:
        """Wait until the take thread no longer uses what was removed before ``target``."""
        self._lib.rcl_trigger_guard_condition(ctypes.byref(self._guard))
        if threading.current_thread() is self._thread:
            return  # a callback removing subscriptions: the loop rebuilds before its next wait
        with self._cond:
            while self._seen < target and self._thread.is_alive():
                self._cond.wait(0.5)

    def _fini(self, entry: _Entry) -> None:
        lib = self._lib
        if entry.handle.impl:
            ret = lib.rcl_subscription_fini(ctypes.byref(entry.handle), self._node_ptr)
            if ret != RCL_RET_OK:
                log.warning("%s", lib.error(f"unsubscribing from {entry.topic}", ret))
        if entry.message.buffer:
            lib.free(entry.message.buffer)
            entry.message.buffer = None
            entry.message.buffer_capacity = 0

    # ------------------------------------------------------------ the take thread
    def _run(self) -> None:
        name_os_thread()
        if self._realtime_priority:
            try:
                set_realtime_priority(0, self._realtime_priority)
            except OSError as exc:
                self._on_error(RuntimeError(f"realtime_priority {self._realtime_priority} refused for the "
                                            f"mb-take thread: {exc}"))
        lib = self._lib
        wait_set = _WaitSet()
        built = False
        entries: list[_Entry] = []
        info = _MessageInfo()
        try:
            while True:
                with self._cond:
                    if self._stop:
                        break
                    calls, self._calls = self._calls, []
                    if not built or self._seen != self._generation:
                        entries = list(self._entries)
                        generation = self._generation
                        rebuild = True
                    else:
                        rebuild = False
                for call in calls:
                    try:
                        call()
                    except Exception as exc:  # noqa: BLE001
                        self._on_error(exc)
                if rebuild:
                    if built:
                        lib.rcl_wait_set_fini(ctypes.byref(wait_set))
                        built = False
                    ret = lib.rcl_wait_set_init(ctypes.byref(wait_set), len(entries), 1, 0, 0, 0, 0,
                                                self._context_ptr, lib.allocator)
                    if ret != RCL_RET_OK:
                        raise lib.error("rcl_wait_set_init", ret)
                    built = True
                    with self._cond:
                        self._seen = generation
                        self._cond.notify_all()
                lib.rcl_wait_set_clear(ctypes.byref(wait_set))
                lib.rcl_wait_set_add_guard_condition(ctypes.byref(wait_set), ctypes.byref(self._guard), None)
                for entry in entries:
                    lib.rcl_wait_set_add_subscription(ctypes.byref(wait_set), ctypes.byref(entry.handle), None)
                ret = lib.rcl_wait(ctypes.byref(wait_set), WAIT_NS)
                if ret == RCL_RET_TIMEOUT:
                    continue
                if ret != RCL_RET_OK:
                    raise lib.error("rcl_wait", ret)
                ready = wait_set.subscriptions
                for i, entry in enumerate(entries):
                    if ready[i]:
                        self._take(entry, info)
        except BaseException as exc:  # noqa: BLE001 - reported, the node decides
            self._on_error(exc)
        finally:
            if built:
                lib.rcl_wait_set_fini(ctypes.byref(wait_set))
            with self._cond:
                self._seen = self._generation
                self._cond.notify_all()

    def _take(self, entry: _Entry, info: Any) -> None:
        """Take up to :data:`TAKE_BURST` messages of ``entry`` and call its callback with each."""
        lib = self._lib
        message = entry.message
        handle = ctypes.byref(entry.handle)
        byref_message, byref_info = ctypes.byref(message), ctypes.byref(info)
        for _ in range(TAKE_BURST):
            if not entry.handle.impl:
                return  # a callback on this thread unsubscribed it (unsubscribe finalized it)
            ret = lib.rcl_take_serialized_message(handle, byref_message, byref_info, None)
            if ret == RCL_RET_SUBSCRIPTION_TAKE_FAILED:
                return
            if ret != RCL_RET_OK:
                self._on_error(lib.error(f"taking a message of {entry.topic}", ret))
                return
            n = message.buffer_length
            if n < HANDOVER_BYTES:
                serialized: Any = ctypes.string_at(message.buffer, n)
            else:
                address, capacity = message.buffer, message.buffer_capacity
                if capacity - n > SLACK_BYTES:
                    address = lib.realloc(address, n) or address
                    capacity = n
                serialized = pa.foreign_buffer(address, n, base=_Owner(address))
                message.buffer = lib.malloc(capacity)  # the next message of this size needs no resize
                message.buffer_capacity = capacity if message.buffer else 0
                message.buffer_length = 0
            try:
                entry.callback(serialized)
            except Exception as exc:  # noqa: BLE001
                self._on_error(exc)

