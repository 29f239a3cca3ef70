"""A TCP fault proxy for the fault tests: listens on a free loopback port and forwards every
connection to a loopback target port, misbehaving on demand.

Modes (set_mode, applied to open connections and to new ones at once):
  pass       bytes are forwarded both ways as they come
  latency    every chunk is held for `delay_s` before it is forwarded (order kept per direction)
  blackhole  a network partition: connections are still accepted, and whatever arrives from
             either side is read and dropped; nothing is forwarded and nothing is closed. When the
             mode changes back, every connection that dropped bytes is reset, because TCP never
             delivers a stream with a hole in it: a client of a healed partition sees a timeout
             and then a reset, never a corrupted protocol stream
  reset      every open connection is closed with a TCP RST (SO_LINGER 0), and so is every new
             one right after it is accepted

Only 127.0.0.1 is used on both sides. One thread accepts; each connection has one thread per
direction. close() stops everything and resets whatever is still open."""
import select
import socket
import struct
import threading
import time

from conftest import free_port

MODES = ("pass", "latency", "blackhole", "reset")
CHUNK = 65536


def _reset(sock):
    """Closes sock with an RST instead of a FIN (SO_LINGER on with a zero timeout)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _Conn:
    def __init__(self, proxy, client, upstream):
        self.proxy, self.client, self.upstream = proxy, client, upstream
        self.tainted = False  # bytes were dropped: the stream cannot be resumed
        self.closed = False
        self.lock = threading.Lock()

    def start(self):
        for src, dst in ((self.client, self.upstream), (self.upstream, self.client)):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def reset(self):
        with self.lock:
            if self.closed:
                return
            self.closed = True
        _reset(self.client)
        _reset(self.upstream)
        self.proxy._forget(self)

    def _pump(self, src, dst):
        while not self.closed:
            try:
                ready, _, _ = select.select([src], [], [], 0.1)
                if not ready:
                    continue
                data = src.recv(CHUNK)
            except (OSError, ValueError):
                break
            if not data:  # orderly close by one side: pass it on
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            mode, delay = self.proxy.mode, self.proxy.delay_s
            if mode == "blackhole":
                self.tainted = True
                continue
            if mode == "reset":
                break
            if mode == "latency":
                time.sleep(delay)
            try:
                dst.sendall(data)
            except OSError:
                break
        self.reset()


class FaultProxy:
    """proxy = FaultProxy(target_port); point the client at proxy.port."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.mode, self.delay_s = "pass", 0.0
        self.conns = set()
        self.accepted = 0
        self.lock = threading.Lock()
        self.stopping = False
        self.listener = None
        for _ in range(3):  # the port from free_port() may be taken meanwhile
            self.port = free_port()
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", self.port))
            except OSError:
                s.close()
                continue
            self.listener = s
            break
        assert self.listener is not None, "fault proxy: no free loopback port"
        self.listener.listen(64)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def set_mode(self, mode, delay_s=0.0):
        """Switches mode (see the module comment); delay_s is for latency."""
        assert mode in MODES, mode
        with self.lock:
            previous, self.mode, self.delay_s = self.mode, mode, delay_s
            conns = list(self.conns)
        if mode == "reset" or (previous == "blackhole" and mode != "blackhole"):
            for c in conns:
                if mode == "reset" or c.tainted:
                    c.reset()

    def open_connections(self):
        with self.lock:
            return len(self.conns)

    def _forget(self, conn):
        with self.lock:
            self.conns.discard(conn)

    def _accept(self):
        while not self.stopping:
            try:
                ready, _, _ = select.select([self.listener], [], [], 0.1)
                if not ready:
                    continue
                client, _ = self.listener.accept()
            except (OSError, ValueError):
                return
            self.accepted += 1
            if self.mode == "reset":
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
                upstream.settimeout(None)
            except OSError:  # the real server is down: the client sees a reset, as it would
                _reset(client)
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(self, client, upstream)
            with self.lock:
                self.conns.add(conn)
            if self.mode == "blackhole":
                conn.tainted = True
            conn.start()

    def close(self):
        self.stopping = True
        try:
            self.listener.close()
        except OSError:
            pass
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            c.reset()
        self.thread.join(timeout=2)
