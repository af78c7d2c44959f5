"""Control layer: one dedicated Flight connection for DoAction, GetFlightInfo, ListFlights.

Metadata traffic (create, finalize, delete, list, notifications) never queues behind
bulk data: the data layer has connections of its own (the client design's control layer, ``docs/client.md``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa
from pyarrow import flight

from ..protocol import messages as msg
from ..protocol.errors import AuthenticationError, MalformedMessageError
from ..protocol.names import location
from .errors import translate
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

    def request(self, request: msg.Request) -> dict[str, Any] | None:
        """Send a typed request (DoAction ``request.ACTION``); return the reply's
        ``response`` object, or None when the server sent none (``docs/protocol.md`` § DoAction).

        Raises:
            MosaicoError (a subclass per ErrorKind): the server refused the call.
            ConnectionError: the server is unreachable or the call timed out.
            MalformedMessageError: the reply is malformed.
        """
        return self.do_action(request.ACTION, request.body())

    def do_action(self, name: str, body: bytes) -> dict[str, Any] | None:
        """Run the DoAction ``name`` with a JSON ``body``; return the reply's ``response``.

        Raises: as :meth:`request`.
        """
        log.debug("DoAction %s", name)
        try:
            bodies = [r.body.to_pybytes() for r in self._client.do_action(flight.Action(name, body), self.options)]
        except (flight.FlightError, pa.ArrowException, OSError) as exc:
            raise translate(name, exc) from None
        return msg.parse_response(name, bodies)

    def result_bodies(self, name: str, payload: Mapping[str, Any]) -> list[bytes]:
        """Run the DoAction ``name`` with a JSON ``payload``; return the raw Result bodies
        (for paged replies, one envelope per Result).

        Raises: as :meth:`request`.
        """
        log.debug("DoAction %s (paged)", name)
        try:
            results = self._client.do_action(flight.Action(name, msg.encode_body(payload)), self.options)
            return [r.body.to_pybytes() for r in results]
        except (flight.FlightError, pa.ArrowException, OSError) as exc:
            raise translate(name, exc) from None

    def wait_ready(self, timeout: float) -> msg.InfoResponse:
        """Poll ``info`` until the server answers or ``timeout`` seconds pass.

        Returns:
            the ``info`` reply.
        Raises:
            AuthenticationError: at once if the server refuses the credentials.
            ConnectionError: if no answer came in time, naming the server and the last
                cause; at once if the TLS handshake fails (certificate not trusted, server
                without TLS), and after 1 s of closed connections for a plaintext client
                (a TLS server closes them).
        """
        start = time.monotonic()
        deadline = start + timeout
        where = location(self.host, self.port, False).split("://", 1)[1]
        last: BaseException | None = None
        closed_since: float | None = None
        while True:
            try:
                return msg.InfoResponse.from_dict(self.request(msg.InfoRequest()))
            except AuthenticationError:
                raise
            except (ConnectionError, MalformedMessageError, OSError, flight.FlightError) as exc:
                last = exc  # not yet
            except Exception as exc:  # noqa: BLE001 - any other refusal also means "not ready yet"
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
        except (flight.FlightError, pa.ArrowException, OSError) as exc:
            raise translate(call, exc) from None

    def get_schema(self, descriptor: flight.FlightDescriptor) -> pa.Schema:
        """The schema of a topic (GetSchema).

        pyarrow's client raises a plain OSError, without the gRPC status class, for a
        refused GetSchema; the refusal is then classified by asking GetFlightInfo for
        the same descriptor, which fails the same way with a proper status.
        """
        try:
            return self._client.get_schema(descriptor, self.options).schema
        except flight.FlightError as exc:
            raise translate("GetSchema", exc) from None
        except (pa.ArrowException, OSError) as exc:
            self.get_flight_info(descriptor, "GetSchema")
            raise translate("GetSchema", exc) from None

    def list_flights(self) -> Iterator[flight.FlightInfo]:
        try:
            return iter(list(self._client.list_flights(b"", self.options)))
        except (flight.FlightError, pa.ArrowException, OSError) as exc:
            raise translate("ListFlights", exc) from None

    def do_get(self, ticket: flight.Ticket) -> flight.FlightStreamReader:
        """Open a DoGet stream (no deadline: a read may be long)."""
        try:
            return self._client.do_get(ticket)
        except (flight.FlightError, pa.ArrowException, OSError) as exc:
            raise translate("DoGet", exc) from None

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._client.close()
