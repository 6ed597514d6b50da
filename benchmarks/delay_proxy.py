"""A TCP proxy that delays every chunk by a fixed time in each direction: the database
"on another host" for the cost model (docs/benchmarks.md).

    python benchmarks/delay_proxy.py --listen 13306 --target 127.0.0.1:3306 --rtt-ms 0.5

Threads, not an event loop: event-loop timers have a 1 ms resolution (epoll), too coarse
for a 0.25 ms one-way delay; ``time.sleep`` then a short spin is precise to a few
microseconds. Each
direction of each connection has a reader thread (stamps every chunk with its due time)
and a writer thread (sends it when due), so the delay does not grow with the traffic.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import socket
import threading
import time

SPIN = 0.0001


def _pipe(src: socket.socket, dst: socket.socket, delay: float) -> None:
    queue: collections.deque[tuple[float, bytes]] = collections.deque()
    ready = threading.Condition()
    done = False

    def reader() -> None:
        nonlocal done
        try:
            while data := src.recv(65536):
                with ready:
                    queue.append((time.perf_counter() + delay, data))
                    ready.notify()
        except OSError:
            pass
        with ready:
            done = True
            ready.notify()

    def writer() -> None:
        try:
            while True:
                with ready:
                    while not queue and not done:
                        ready.wait()
                    if not queue:
                        break
                    due, data = queue.popleft()
                left = due - time.perf_counter()
                if left > SPIN:
                    time.sleep(left - SPIN)  # wakes up to ~80 µs late: spin the rest
                while time.perf_counter() < due:
                    pass
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    threading.Thread(target=reader, daemon=True).start()
    threading.Thread(target=writer, daemon=True).start()


def serve(listen: int, target: tuple[str, int], rtt: float) -> None:
    server = socket.create_server(("127.0.0.1", listen), reuse_port=False)
    print(f"delay proxy :{listen} -> {target[0]}:{target[1]}, RTT +{rtt * 1e3:.2f} ms", flush=True)
    while True:
        client, _ = server.accept()
        upstream = socket.create_connection(target)
        for s in (client, upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _pipe(client, upstream, rtt / 2)
        _pipe(upstream, client, rtt / 2)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--listen", type=int, default=13306)
    p.add_argument("--target", default="127.0.0.1:3306")
    p.add_argument("--rtt-ms", type=float, default=0.5)
    a = p.parse_args()
    host, _, port = a.target.rpartition(":")
    serve(a.listen, (host, int(port)), a.rtt_ms / 1e3)
