"""`python -m bench.decode_speed`: how long `frame_decode` takes to refuse deep nesting.

The three 60 KB frames of the protocol fuzz test (`tests/unit/realtime/protocol/
test_protocol_fuzz.py`, nesting as deep as fits in 60 KB): msgspec gives up near the top, so
each refusal should take well under 0.1 s. Prints, per frame, the median [min–max] of
`--repeat` timings (at least 3) in milliseconds. A measurement, not a test: nothing fails.
"""

import argparse
import os
import statistics
import time

FRAMES = {
    "arrays-30000-deep-closed-60KB": "[" * 30_000 + "]" * 30_000,
    "arrays-60000-deep-unclosed-60KB": "[" * 60_000,
    "objects-9999-deep-60KB": '{"a":' * 9_999 + "0" + "}" * 9_999,
}


def refusal_seconds(text: str, schemas: dict) -> float:
    """Seconds `frame_decode` takes to raise ProtocolError on `text`."""
    from realtime.protocol.frames import ProtocolError, frame_decode

    started = time.perf_counter()
    try:
        frame_decode(text, schemas)
    except ProtocolError:
        return time.perf_counter() - started
    raise AssertionError("frame_decode accepted a frame nested too deeply")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="timings per frame (>= 3)")
    args = parser.parse_args()
    repeat = max(3, args.repeat)

    # The consumer's own schemas, as in the test (the parser refuses before it looks them up).
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DJANGO_DEBUG", "1")
    import django

    django.setup()
    from realtime.session.consumer import SessionConsumer

    print(f"frame_decode refusing deep nesting, {repeat} timings each: median [min–max] ms")
    for name, text in FRAMES.items():
        timings = [refusal_seconds(text, SessionConsumer.schemas) * 1000 for _ in range(repeat)]
        print(
            f"  {name:34} {statistics.median(timings):8.3f} [{min(timings):.3f}–{max(timings):.3f}]"
        )


if __name__ == "__main__":
    main()
