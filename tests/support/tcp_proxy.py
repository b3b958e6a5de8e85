"""A small threaded TCP proxy on 127.0.0.1, for cutting one service off the broker.

Fault tests must never stop the shared RabbitMQ or close other people's
connections. Instead they point the service's ``RABBITMQ_PORT`` at a proxy and
take the proxy away:

* ``open()``: accept connections and forward them to the target (5672);
* ``close()``: stop accepting *and* cut every live connection at once, as if
  the broker had died or the network had partitioned. While closed, the
  listening socket stays bound (so the port cannot be taken by anybody else)
  but every new connection is reset at once, so a client's connect attempt
  fails fast, like a refused connection, instead of hanging;
* ``freeze()`` / ``thaw()``: a silent partition. Connections stay open but no
  byte goes through either way until ``thaw()``, neither on live connections
  nor on new ones; nobody sees a reset, so only heartbeats and timeouts can
  tell.

One thread accepts; each forwarded connection has two pump threads (one per
direction). A cut shuts the sockets down, which wakes the pumps' blocking
``recv`` at once; the pumps then close the sockets with ``SO_LINGER`` 0, so
both the client and the broker see a reset, not a polite goodbye.
"""

from __future__ import annotations

import socket
import struct
import threading
from typing import Optional

_LINGER_RESET = struct.pack("ii", 1, 0)  # l_onoff=1, l_linger=0: close() sends RST
_CHUNK = 65536


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` abruptly (RST); never raises."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def _shutdown(sock: socket.socket) -> None:
    """Wake any thread blocked in ``recv`` on ``sock``; never raises."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class TcpProxy:
    """Forward 127.0.0.1:<free port> to ``target``; see the module docstring.

    Use as a context manager, or call :meth:`stop` at teardown. Created closed
    unless ``start_open`` is true.
    """

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5672),
                 start_open: bool = True) -> None:
        self.target = target
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._accepting = start_open
        self._stopped = False
        self._live: set[socket.socket] = set()
        self._flowing = threading.Event()
        self._flowing.set()
        self._threads: set[threading.Thread] = set()
        self.accepted = 0   # connections forwarded since creation
        self.refused = 0    # connections reset because the proxy was closed
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"proxy-{self.port}",
                                          daemon=True)
        self._acceptor.start()

    # -- control ------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._accepting

    @property
    def live_connections(self) -> int:
        """How many client connections are forwarded right now."""
        with self._lock:
            return len(self._live) // 2

    def open(self) -> None:
        """Accept and forward new connections."""
        with self._lock:
            self._accepting = True

    def close(self) -> None:
        """Stop accepting and cut every live connection at once."""
        with self._lock:
            self._accepting = False
            live, self._live = self._live, set()
        for sock in live:
            _shutdown(sock)

    def freeze(self) -> None:
        """Hold every byte in both directions, silently, until :meth:`thaw`."""
        self._flowing.clear()

    def thaw(self) -> None:
        """Let bytes through again (what was held is delivered)."""
        self._flowing.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Cut everything, stop the accept thread and wait for every thread."""
        self.thaw()
        self.close()
        with self._lock:
            self._stopped = True
        # shutdown() wakes the blocking accept() on Linux; close() alone would not.
        _shutdown(self._listener)
        self._acceptor.join(timeout)
        self._listener.close()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)

    def __enter__(self) -> "TcpProxy":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- threads --------------------------------------------------------------

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _address = self._listener.accept()
            except OSError:
                return  # the listener was shut down by stop()
            with self._lock:
                if self._stopped:
                    _reset(client)
                    return
                if not self._accepting:
                    self.refused += 1
                    _reset(client)
                    continue
                self._live.add(client)
                self.accepted += 1
            self._spawn(self._connect_upstream, client)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=self._run_tracked, args=(target, *args), daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def _run_tracked(self, target: object, *args: object) -> None:
        try:
            target(*args)  # type: ignore[operator]
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _connect_upstream(self, client: socket.socket) -> None:
        try:
            upstream: Optional[socket.socket] = socket.create_connection(self.target, timeout=5)
        except OSError:
            upstream = None
        with self._lock:
            # A cut may have happened while we were connecting: then it must win.
            alive = upstream is not None and client in self._live
            if alive:
                assert upstream is not None
                self._live.add(upstream)
            else:
                self._live.discard(client)
        if not alive:
            _reset(client)
            if upstream is not None:
                _reset(upstream)
            return
        assert upstream is not None
        upstream.settimeout(None)
        self._spawn(self._pump, client, upstream)
        self._spawn(self._pump, upstream, client)

    def _wait_flowing(self, sock: socket.socket) -> bool:
        """Block while frozen; False when the connection was cut meanwhile."""
        while not self._flowing.wait(0.1):
            with self._lock:
                if sock not in self._live:
                    return False
        return True

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        """Copy bytes one way until either side ends; then end the other side too."""
        try:
            while True:
                data = source.recv(_CHUNK)
                if not data or not self._wait_flowing(source):
                    break
                sink.sendall(data)
        except OSError:
            pass
        with self._lock:
            self._live.discard(source)
            self._live.discard(sink)
        # Whichever pump ends first shuts both down; the other wakes up and returns.
        _shutdown(sink)
        _shutdown(source)
        _reset(source)
