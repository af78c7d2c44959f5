"""Control layer: one dedicated Flight connection for DoAction, GetFlightInfo, ListFlights.

Metadata traffic (create, finalize, delete, list, notifications) never queues behind
bulk data: the data layer has connections of its own (seed document "Control Layer").
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Iterator, Optional

import pyarrow as pa
import pyarrow.flight as flight

from . import wire
from .errors import AuthenticationError, translate
from .security import SecurityConfig, tls_failure

log = logging.getLogger("mosaico_bridge.client")


class ControlConnection:
    """The single control connection of a client.

    Args:
        host, port: the server.
        security: TLS trust and credentials.
        timeout: seconds each call may take before it fails with ConnectionError.
    """

    def __init__(self, host: str, port: int, security: SecurityConfig, timeout: float) -> None:
        self.host = host
        self.port = port
        self.timeout = float(timeout)
        self._security = security
        self._client = security.new_flight_client(host, port)
        self._lock = threading.Lock()
        self._closed = False

    @property
    def options(self) -> flight.FlightCallOptions:
        return flight.FlightCallOptions(timeout=self.timeout)

    def do_action(self, name: str, payload: dict[str, Any]) -> Optional[dict[str, Any]]:
        """Run the DoAction ``name`` with a JSON body; return the reply's ``response`` (§2).

        Raises:
            ServerRefusedError (or a subclass): the server answered with an error.
            ConnectionError: the server is unreachable or the call timed out.
            wire.WireError: the reply is malformed.
        """
        log.debug("DoAction %s", name)
        try:
            bodies = [r.body.to_pybytes() for r in self._client.do_action(wire.action(name, payload), self.options)]
        except Exception as exc:  # pyarrow raises several unrelated classes
            raise translate(name, exc) from None
        return wire.parse_response(name, bodies)

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        """Poll ``info`` until the server answers or ``timeout`` seconds pass (§1).

        Returns:
            the ``info`` response.
        Raises:
            AuthenticationError: at once if the server refuses the credentials.
            ConnectionError: if no answer came in time, naming the server and the last
                cause; at once if the TLS handshake fails (certificate not trusted, server
                without TLS), and after 1 s of closed connections for a plaintext client
                (a TLS server closes them).
        """
        start = time.monotonic()
        deadline = start + timeout
        where = wire.location(self.host, self.port, False).split("://", 1)[1]
        last: BaseException | None = None
        closed_since: float | None = None
        while True:
            try:
                info = self.do_action(wire.Action.INFO, wire.info_request())
                return wire.require(info, wire.Action.INFO, "version", "config")
            except AuthenticationError:
                raise
            except Exception as exc:  # any other failure means "not yet"
                last = exc
            now = time.monotonic()
            problem = tls_failure(last, self._security.tls, self._security.tls_cert_path)
            if problem is not None:
                permanent, why = problem
                closed_since = closed_since if closed_since is not None else now
                if permanent or now - closed_since >= 1.0 or now >= deadline:
                    raise ConnectionError(f"cannot connect to the Mosaico server at {where}: {why}")
            else:
                closed_since = None
            if now >= deadline:
                cause = str(last) if last else "no answer"
                raise ConnectionError(f"Mosaico server at {where} did not answer within {timeout:g} s ({cause})")
            time.sleep(0.025)

    def get_flight_info(self, descriptor: flight.FlightDescriptor, call: str = "GetFlightInfo") -> flight.FlightInfo:
        try:
            return self._client.get_flight_info(descriptor, self.options)
        except Exception as exc:
            raise translate(call, exc) from None

    def get_schema(self, descriptor: flight.FlightDescriptor) -> pa.Schema:
        try:
            return self._client.get_schema(descriptor, self.options).schema
        except Exception as exc:
            raise translate("GetSchema", exc) from None

    def list_flights(self) -> Iterator[flight.FlightInfo]:
        try:
            return iter(list(self._client.list_flights(b"", self.options)))
        except Exception as exc:
            raise translate("ListFlights", exc) from None

    def do_get(self, ticket: flight.Ticket) -> flight.FlightStreamReader:
        """Open a DoGet stream (no deadline: a read may be long)."""
        try:
            return self._client.do_get(ticket)
        except Exception as exc:
            raise translate("DoGet", exc) from None

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._client.close()
