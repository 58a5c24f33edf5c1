"""operations.metrics.labelled: one child per label values, counting into the registry."""

from prometheus_client import REGISTRY

from operations import metrics


def sent(kind: str) -> float:
    labels = {"endpoint": "session", "type": kind}
    return REGISTRY.get_sample_value("switchboard_ws_messages_sent_total", labels) or 0.0


def test_the_same_label_values_give_the_same_child_and_count_in_the_registry():
    before = sent("pong")

    first = metrics.labelled(metrics.WS_SENT, "session", "pong")
    first.inc()
    metrics.labelled(metrics.WS_SENT, "session", "pong").inc(2)

    assert metrics.labelled(metrics.WS_SENT, "session", "pong") is first
    assert first is metrics.WS_SENT.labels("session", "pong")
    assert sent("pong") == before + 3
