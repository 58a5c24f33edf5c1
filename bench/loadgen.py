"""The load generator: picows clients on uvloop, run as their own process.

`python -m bench.loadgen SCENARIO [options]` prints one JSON object (the figures) as its last
line. Every loop is bounded in time; only 127.0.0.1 URLs are used.

Scenarios:
- `pingpong`: N clients each send a 32-byte frame, wait for the answer, repeat (round trips/s,
  p50/p99 ms). `--session` speaks `/ws/session/` JSON echo after the welcome.
- `handshakes`: C concurrent loops of connect (+ welcome with `--session`) and close.
- `idle`: open N sessions, print `{"ready": N}`, hold them `--hold` seconds, close.
- `fanout`: S subscribers (split over `--url`s), one publisher; closed loop: publish one
  message, wait until every subscriber has it, publish the next (deliveries/s, p50/p99 of
  publish-to-delivery). `--session` speaks the rooms protocol; without it, the peer
  broadcaster.

With `--cpu-pid PID` (repeatable), the figures add the CPU % of those processes' trees (the
server) and of this process during the recording window: `server_cpu_pct`, `loadgen_cpu_pct`,
`window_s`.
"""

import argparse
import asyncio
import json
import sys
import time

import msgspec
import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench.cores import cpu_seconds, process_tree

PAYLOAD = "x" * 32
WARMUP = 1.0


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def latency_summary(seconds: list[float]) -> dict:
    return {
        "p50_ms": round(percentile(seconds, 0.50) * 1000, 2),
        "p99_ms": round(percentile(seconds, 0.99) * 1000, 2),
    }


class Clock:
    """Recording window: after `warmup` (WARMUP unless given), for `seconds`."""

    def __init__(self, seconds: float, warmup: float = WARMUP) -> None:
        self.start = time.perf_counter() + warmup
        self.end = self.start + seconds

    def recording(self, now: float) -> bool:
        return self.start <= now < self.end

    def running(self, now: float) -> bool:
        return now < self.end


async def cpu_window(pids: list[int], start: float, end: float) -> dict:
    """CPU % of the trees of `pids` and of this process between `start` and `end`
    (`time.perf_counter()` instants)."""
    await asyncio.sleep(max(0.0, start - time.perf_counter()))
    tree = [member for pid in pids for member in process_tree(pid)]
    wall, server, client = time.perf_counter(), cpu_seconds(tree), time.process_time()
    await asyncio.sleep(max(0.0, end - time.perf_counter()))
    wall = time.perf_counter() - wall
    return {
        "server_cpu_pct": round(100 * (cpu_seconds(tree) - server) / wall, 1),
        "loadgen_cpu_pct": round(100 * (time.process_time() - client) / wall, 1),
        "window_s": round(wall, 2),
    }


def cpu_measure(args, start: float, end: float) -> "asyncio.Task[dict] | None":
    """The CPU window as a task when `--cpu-pid` was given."""
    if not args.cpu_pid:
        return None
    return asyncio.get_running_loop().create_task(cpu_window(args.cpu_pid, start, end))


async def cpu_figures(task: "asyncio.Task[dict] | None") -> dict:
    return await task if task is not None else {}


class PingPong(WSListener):
    def __init__(self, clock: Clock, rtts: list[float], session: bool) -> None:
        self.clock, self.rtts, self.session = clock, rtts, session
        self.message = (
            msgspec.json.encode({"type": "echo", "data": PAYLOAD}) if session else PAYLOAD.encode()
        )
        self.welcomed = not session
        self.sent_at = 0.0
        self.done = asyncio.get_running_loop().create_future()

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        if self.welcomed:
            self.send()

    def send(self) -> None:
        self.sent_at = time.perf_counter()
        self.transport.send(WSMsgType.TEXT, self.message)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.disconnect()
            return
        if frame.msg_type != WSMsgType.TEXT:
            return
        if not self.welcomed:
            self.welcomed = True
            self.send()
            return
        now = time.perf_counter()
        if self.clock.recording(now):
            self.rtts.append(now - self.sent_at)
        if self.clock.running(now):
            self.send()
        elif not self.done.done():
            self.done.set_result(None)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def connect_all(factory, urls: list[str], count: int, concurrency: int = 50) -> list:
    """Open `count` connections round-robin over `urls`, at most `concurrency` at once;
    (transport, listener) pairs, without the connections the server refused or timed out."""
    limit = asyncio.Semaphore(concurrency)

    async def one(index: int):
        made = []

        def make() -> WSListener:
            made.append(factory())
            return made[-1]

        async with limit:
            try:
                transport, _ = await ws_connect(
                    make,
                    urls[index % len(urls)],
                    max_frame_size=2**20,
                    websocket_handshake_timeout=60,
                )
            except Exception:
                return None
        return (transport, made[-1]) if made else None

    pairs = await asyncio.gather(*(one(i) for i in range(count)))
    return [pair for pair in pairs if pair is not None]


async def pingpong(args) -> dict:
    clock = Clock(args.seconds, args.warmup)
    rtts: list[float] = []
    pairs = await connect_all(lambda: PingPong(clock, rtts, args.session), args.url, args.clients)
    # Measure from now on: connecting 500 clients can take longer than the warm-up.
    clock.start = time.perf_counter() + args.warmup
    clock.end = clock.start + args.seconds
    cpu = cpu_measure(args, clock.start, clock.end)
    await asyncio.wait_for(
        asyncio.gather(*(listener.done for _, listener in pairs)), args.warmup + args.seconds + 30
    )
    for transport, _ in pairs:
        transport.disconnect()
    return {
        "round_trips_per_s": round(len(rtts) / args.seconds),
        **latency_summary(rtts),
        **await cpu_figures(cpu),
    }


class FirstFrame(WSListener):
    def __init__(self) -> None:
        self.first = asyncio.get_running_loop().create_future()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if not self.first.done():
            self.first.set_result(frame.get_payload_as_bytes())

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.first.done():
            self.first.set_result(b"")


async def handshakes(args) -> dict:
    clock = Clock(args.seconds, args.warmup)
    times: list[float] = []
    failures = 0

    async def loop(index: int) -> None:
        nonlocal failures
        url = args.url[index % len(args.url)]
        while clock.running(time.perf_counter()):
            started = time.perf_counter()
            transport, listener = await ws_connect(FirstFrame, url)
            if args.session:
                first = await asyncio.wait_for(listener.first, 10)
                if not first.startswith(b'{"type":"welcome"'):
                    failures += 1
            now = time.perf_counter()
            if clock.recording(now):
                times.append(now - started)
            transport.send_close()
            transport.disconnect()

    cpu = cpu_measure(args, clock.start, clock.end)
    await asyncio.wait_for(
        asyncio.gather(*(loop(i) for i in range(args.clients))), args.warmup + args.seconds + 60
    )
    return {
        "handshakes_per_s": round(len(times) / args.seconds),
        "failures": failures,
        **latency_summary(times),
        **await cpu_figures(cpu),
    }


async def idle(args) -> dict:
    pairs = await connect_all(FirstFrame, args.url, args.clients)
    if args.session:
        welcomes = await asyncio.gather(*(listener.first for _, listener in pairs))
        ready = sum(1 for w in welcomes if w.startswith(b'{"type":"welcome"'))
    else:
        ready = len(pairs)
    print(json.dumps({"ready": ready}), flush=True)
    await asyncio.sleep(args.hold)
    for transport, _ in pairs:
        transport.disconnect()
    return {"connections": ready, "refused": args.clients - ready}


class Deliveries:
    """Deliveries per message, and an event set when the current one reached everybody."""

    def __init__(self, subscribers: int) -> None:
        self.subscribers = subscribers
        self.seen: dict[int, int] = {}
        self.current = 0
        self.complete = asyncio.Event()
        self.total = 0
        self.expected: int | None = None  # open loop: every delivery owed, once known
        self.all_in = asyncio.Event()

    def delivered(self, seq: int) -> None:
        self.seen[seq] = self.seen.get(seq, 0) + 1
        self.total += 1
        if seq == self.current and self.seen[seq] >= self.subscribers:
            self.complete.set()
        if self.expected is not None and self.total >= self.expected:
            self.all_in.set()


class Subscriber(WSListener):
    def __init__(
        self, session: bool, latencies: list[float], deliveries: Deliveries, channel: str
    ) -> None:
        self.session, self.latencies, self.deliveries = session, latencies, deliveries
        self.channel = channel
        self.ready = asyncio.get_running_loop().create_future()
        self.welcomed = not session

    def on_ws_connected(self, transport: WSTransport) -> None:
        if not self.session:
            self.ready.set_result(None)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != WSMsgType.TEXT:
            return
        now = time.perf_counter()
        body = msgspec.json.decode(frame.get_payload_as_bytes())
        if self.session:
            kind = body.get("type")
            if kind == "welcome":
                transport.send(WSMsgType.TEXT, subscribe_frame(self.channel))
                return
            if kind == "subscribed":
                self.ready.set_result(None)
                return
            if kind != "message":
                return
            body = body["data"]
        self.latencies.append(now - body["t"])
        self.deliveries.delivered(body["seq"])


def subscribe_frame(channel: str) -> bytes:
    return msgspec.json.encode({"type": "subscribe", "channel": channel})


def publish_frame(args, seq: int) -> bytes:
    data = {"seq": seq, "t": time.perf_counter()}
    message = {"type": "publish", "channel": args.channel, "data": data} if args.session else data
    return msgspec.json.encode(message)


async def publish_in_turn(publisher, args, deliveries: Deliveries) -> tuple[int, int, int]:
    """Saturating: each message once the previous one reached every subscriber (or 2 s)."""
    seq, delivered, lost = 0, 0, 0
    deadline = time.perf_counter() + args.seconds
    while time.perf_counter() < deadline:
        seq += 1
        deliveries.current = seq
        deliveries.complete.clear()
        publisher.send(WSMsgType.TEXT, publish_frame(args, seq))
        try:
            await asyncio.wait_for(deliveries.complete.wait(), 2.0)
        except TimeoutError:
            pass  # counted as lost below
        got = deliveries.seen.get(seq, 0)
        delivered += got
        lost += args.clients - got
    return seq, delivered, lost


async def publish_at_rate(publisher, args, deliveries: Deliveries) -> int:
    """Open loop: `args.rate` messages per second whatever the deliveries do, then 2 s for
    the last ones to arrive; how many were published."""
    started, seq = time.perf_counter(), 0
    while (now := time.perf_counter()) < started + args.seconds:
        due = int((now - started) * args.rate) + 1
        while seq < due:
            seq += 1
            publisher.send(WSMsgType.TEXT, publish_frame(args, seq))
        await asyncio.sleep(min(0.005, 1 / args.rate))
    deliveries.expected = seq * args.clients
    if deliveries.total >= deliveries.expected:
        deliveries.all_in.set()
    try:
        await asyncio.wait_for(deliveries.all_in.wait(), 2.0)
    except TimeoutError:
        pass  # counted as lost by the caller
    return seq


async def fanout(args) -> dict:
    latencies: list[float] = []
    deliveries = Deliveries(args.clients)
    subscribers = await connect_all(
        lambda: Subscriber(args.session, latencies, deliveries, args.channel),
        args.url,
        args.clients,
    )
    await asyncio.wait_for(asyncio.gather(*(s.ready for _, s in subscribers)), 60)
    publisher, _ = await ws_connect(FirstFrame, args.url[0])
    if args.session:  # a namespace's "subscribers" rule: the publisher subscribes too
        publisher.send(WSMsgType.TEXT, subscribe_frame(args.channel))
    await asyncio.sleep(0.5)
    latencies.clear()
    now = time.perf_counter()
    cpu = cpu_measure(args, now, now + args.seconds)
    if args.rate:
        seq = await publish_at_rate(publisher, args, deliveries)
        delivered = sum(deliveries.seen.values())
        lost = seq * args.clients - delivered
    else:
        seq, delivered, lost = await publish_in_turn(publisher, args, deliveries)
    for transport, _ in [*subscribers, (publisher, None)]:
        transport.disconnect()
    return {
        "deliveries_per_s": round(delivered / args.seconds),
        "messages": seq,
        "lost": lost,
        **latency_summary(latencies),
        **await cpu_figures(cpu),
    }


SCENARIOS = {"pingpong": pingpong, "handshakes": handshakes, "idle": idle, "fanout": fanout}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--url", action="append", required=True)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--hold", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=WARMUP, help="before the window (s)")
    parser.add_argument("--session", action="store_true")
    parser.add_argument("--rate", type=float, default=0, help="fanout: publishes/s (open loop)")
    parser.add_argument("--channel", default="bench", help="fanout: the room (session)")
    parser.add_argument(
        "--cpu-pid", type=int, action="append", default=[], help="a server process to time"
    )
    args = parser.parse_args()
    if any(not url.startswith("ws://127.0.0.1:") for url in args.url):
        sys.exit("loopback URLs only")
    result = uvloop.run(SCENARIOS[args.scenario](args))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
