"""The network side of ``handoff listen``: a SIP probe on UDP and TCP that never accepts a call.

An integrator points a test trunk of the SBC at it and places a call; the probe reports each
INVITE as it arrived (the caller of :class:`Probe` prints the headers and the decision) and
answers with a final failure (480 by default), so the test call ends at once. What it answers to
what is :func:`shared.core.sip.reply_code`; the responses are built by ``sip.response``.

One thread and one selector serve the UDP socket, the TCP listener and every TCP connection, so
reports never interleave and nothing outlives :meth:`Probe.serve`, which stops after ``count``
INVITEs (then waits briefly for their ACKs) or after ``timeout`` seconds.

Where answers go: over UDP to the address and port the request came from (RFC 3581 §4, what
``rport`` asks for and what NATed SBCs need), over TCP on the connection it came on (RFC 3261
§18.2.2). Never to an address named inside a message, so a request cannot make the probe send
anything to a third host.
"""

from __future__ import annotations

import contextlib
import secrets
import selectors
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.core import sip

#: Largest UDP datagram read (the IP limit); bigger SIP messages must use TCP (RFC 3261 §18.1.1).
DATAGRAM_MAX = 65535
#: Open TCP connections served at once; more are closed on arrival.
MAX_CONNECTIONS = 32
#: Responses kept for retransmitted requests (RFC 3261 §17.2.1: a retransmitted INVITE gets the
#: same final response again; a lost response is recovered this way rather than by Timer G).
REMEMBERED = 256
#: After the last INVITE the probe was asked for, how long it waits for the ACKs (§17.2.1 Timer I
#: is 5 s on UDP; the ACK on loopback or a LAN comes within milliseconds).
ACK_GRACE_S = 2.0


@dataclass(frozen=True)
class Arrival:
    """A request the probe answered (or, for ACK, absorbed)."""

    message: sip.SipMessage
    transport: str  # "udp" | "tcp"
    peer: tuple[str, int]
    code: int | None  # the final response sent, None for an ACK


@dataclass
class _Connection:
    peer: tuple[str, int]
    buffer: bytearray = field(default_factory=bytearray)


class Probe:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        invite_reply: int,
        on_request: Callable[[Arrival], None],
        on_note: Callable[[str], None],
    ) -> None:
        self.host = host
        self.port = port
        self.invite_reply = invite_reply
        self.on_request = on_request
        self.on_note = on_note
        self.invites = 0
        self._selector = selectors.DefaultSelector()
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._connections: dict[socket.socket, _Connection] = {}
        self._answered: OrderedDict[tuple[str, str, str, str], bytes] = OrderedDict()
        self._awaiting_ack: set[tuple[str, str]] = set()

    # ---- sockets -------------------------------------------------------------------------------

    def open(self) -> tuple[str, int]:
        """Bind UDP and TCP to the same port (port 0: a free one); OSError when that fails."""
        family = socket.getaddrinfo(self.host, None, type=socket.SOCK_DGRAM)[0][0]
        for _ in range(20):
            udp = socket.socket(family, socket.SOCK_DGRAM)
            tcp = socket.socket(family, socket.SOCK_STREAM)
            try:
                udp.bind((self.host, self.port))
                port = udp.getsockname()[1]
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                tcp.bind((self.host, port))
                tcp.listen(16)
            except OSError:
                udp.close()
                tcp.close()
                if self.port == 0:
                    continue  # the free UDP port was taken for TCP: try another
                raise
            udp.setblocking(False)
            tcp.setblocking(False)
            self._udp, self._tcp = udp, tcp
            self._selector.register(udp, selectors.EVENT_READ, "udp")
            self._selector.register(tcp, selectors.EVENT_READ, "listener")
            return udp.getsockname()[0], port
        raise OSError(0, "no port was free for both UDP and TCP")

    def close(self) -> None:
        for conn in list(self._connections):
            self._drop(conn)
        for sock in (self._udp, self._tcp):
            if sock is not None:
                self._selector.unregister(sock)
                sock.close()
        self._udp = self._tcp = None
        self._selector.close()

    # ---- the loop ------------------------------------------------------------------------------

    def serve(self, *, count: int | None = None, timeout: float | None = None) -> int:
        """Answer requests until ``count`` INVITEs were answered (and their ACKs came, or
        ``ACK_GRACE_S`` passed) or ``timeout`` seconds passed. Returns the INVITEs answered."""
        deadline = None if timeout is None else time.monotonic() + timeout
        grace_until: float | None = None
        while True:
            now = time.monotonic()
            if count is not None and self.invites >= count:
                grace_until = grace_until or now + ACK_GRACE_S
                if not self._awaiting_ack or now >= grace_until:
                    break
            ends = [t for t in (deadline, grace_until) if t is not None]
            if ends and now >= min(ends):
                break
            wait = min(ends) - now if ends else None
            for key, _ in self._selector.select(wait):
                if key.data == "udp":
                    self._read_datagram()
                elif key.data == "listener":
                    self._accept()
                else:
                    self._read_stream(key.fileobj)  # type: ignore[arg-type]
        return self.invites

    def _read_datagram(self) -> None:
        assert self._udp is not None
        try:
            data, address = self._udp.recvfrom(DATAGRAM_MAX)
        except OSError:
            return  # e.g. an ICMP error from an earlier send, reported on this socket
        peer = (address[0], address[1])
        udp = self._udp

        def send(payload: bytes) -> None:
            try:
                udp.sendto(payload, address)
            except OSError as exc:
                self.on_note(f"udp: cannot answer {_show(peer)}: {exc.strerror}")

        self._handle(data, "udp", peer, send)

    def _accept(self) -> None:
        assert self._tcp is not None
        try:
            conn, address = self._tcp.accept()
        except OSError:
            return
        peer = (address[0], address[1])
        if len(self._connections) >= MAX_CONNECTIONS:
            self.on_note(f"tcp: {_show(peer)} closed: {MAX_CONNECTIONS} connections are open already")
            conn.close()
            return
        conn.settimeout(2.0)  # sendall of a response waits at most this long
        self._connections[conn] = _Connection(peer)
        self._selector.register(conn, selectors.EVENT_READ, "tcp")

    def _read_stream(self, conn: socket.socket) -> None:
        state = self._connections[conn]
        try:
            chunk = conn.recv(65536)
        except OSError:
            chunk = b""
        if not chunk:
            self._drop(conn)
            return
        state.buffer += chunk

        def send(payload: bytes) -> None:
            try:
                conn.sendall(payload)
            except OSError as exc:
                self.on_note(f"tcp: cannot answer {_show(state.peer)}: {exc.strerror}")

        while conn in self._connections:
            try:
                message, used = sip.frame(bytes(state.buffer))
            except sip.FramingError as exc:
                self.on_note(f"tcp: {_show(state.peer)} closed: {exc}")
                self._drop(conn)
                return
            del state.buffer[:used]
            if message is None:
                return
            self._handle(message, "tcp", state.peer, send)

    def _drop(self, conn: socket.socket) -> None:
        self._connections.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(conn)  # already gone with the selector
        conn.close()

    # ---- one message ---------------------------------------------------------------------------

    def _handle(self, data: bytes, transport: str, peer: tuple[str, int], send: Callable[[bytes], None]) -> None:
        if not data.strip(b"\r\n"):
            return  # a keep-alive (RFC 5626 §3.5.1 CRLFs, also sent over UDP): nothing to answer
        # RFC 3261 §7 and §25: SIP messages are UTF-8 text; bytes that are not stay visible as
        # escapes (the printer shows lone surrogates as \udcXX) instead of failing the message.
        text = data.decode("utf-8", "surrogateescape")
        try:
            message = sip.parse(text)
        except sip.SipError as exc:
            self.on_note(f"{transport}: {len(data)} bytes from {_show(peer)} ignored: not a SIP message ({exc})")
            return
        if message.method is None:
            # §18.1.2: a response that matches no client transaction is discarded (the probe has none).
            self.on_note(
                f"{transport}: a {message.status} response from {_show(peer)} ignored: the probe sends no requests"
            )
            return
        missing = sip.missing_for_response(message)
        if missing:
            # A response copies these (§8.2.6.2); without them it could not reach the client's transaction.
            self.on_note(
                f"{transport}: {message.method} from {_show(peer)} ignored: no {', '.join(missing)}, "
                "so no response could be matched to it"
            )
            return
        branch, call_id, cseq = sip.transaction_key(message)
        if message.method == "ACK":
            # §17.1.1.3: the ACK to a non-2xx response carries the INVITE's Call-ID and CSeq number.
            self._awaiting_ack.discard((call_id, cseq))
            self.on_request(Arrival(message, transport, peer, None))
            return
        key = (message.method, branch, call_id, cseq)
        if key in self._answered:
            # §17.2.1 / §17.2.2: a retransmission gets the same response again, and is not a new call.
            send(self._answered[key])
            self.on_note(
                f"{transport}: {message.method} from {_show(peer)} retransmitted (Call-ID {call_id}); answered again"
            )
            return
        short_body = transport == "udp" and sip.datagram_body_short(data)
        if short_body:
            # §18.3: a datagram that ends before its Content-Length says is an error; a request gets 400.
            code: int | None = 400
        else:
            invite_key = ("INVITE", branch, call_id, cseq)
            code = sip.reply_code(message.method, self.invite_reply, known_transaction=invite_key in self._answered)
        if code is None:
            return
        payload = sip.response(message, code, to_tag=secrets.token_hex(6), source=peer).encode(
            "utf-8", "surrogateescape"
        )
        self.on_request(Arrival(message, transport, peer, code))  # reported before the answer leaves
        send(payload)
        self._answered[key] = payload
        while len(self._answered) > REMEMBERED:
            self._answered.popitem(last=False)
        if message.method == "INVITE" and not short_body:
            self.invites += 1
            self._awaiting_ack.add((call_id, cseq))
            if len(self._awaiting_ack) > REMEMBERED:  # INVITEs never ACKed: forget one, stay bounded
                self._awaiting_ack.pop()


def _show(peer: tuple[str, int]) -> str:
    host, port = peer
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
