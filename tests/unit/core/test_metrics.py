"""core.metrics: `label` keeps values to a fixed set; `labelled` gives one child per label
values, counting into the registry."""

from prometheus_client import REGISTRY

from core.metrics import label, labelled
from realtime.metrics import WS_SENT


def sent(kind: str) -> float:
    labels = {"endpoint": "session", "type": kind}
    return REGISTRY.get_sample_value("switchboard_ws_messages_sent_total", labels) or 0.0


def test_the_same_label_values_give_the_same_child_and_count_in_the_registry():
    before = sent("pong")

    first = labelled(WS_SENT, "session", "pong")
    first.inc()
    labelled(WS_SENT, "session", "pong").inc(2)

    assert labelled(WS_SENT, "session", "pong") is first
    assert first is WS_SENT.labels("session", "pong")
    assert sent("pong") == before + 3


def test_a_value_outside_the_allowed_set_is_labelled_other():
    assert label(4001, {"4001", "4003"}) == "4001"
    assert label("../../etc", {"echo", "session"}) == "other"
    assert label("x", {"echo"}, other="unknown") == "unknown"
