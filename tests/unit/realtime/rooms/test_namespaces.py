"""REALTIME_NAMESPACES: parsed once per setting, every mistake stopping startup with its fix."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from realtime.rooms.namespaces import NO_NAMESPACE, Namespace, namespace_of, namespaces_parse


def test_a_namespace_gets_its_options_and_the_defaults_for_the_rest():
    parsed = namespaces_parse({"chat": {"history_size": 100, "history_ttl": 300}})

    assert parsed == {
        "chat": Namespace(
            name="chat",
            history_size=100,
            history_ttl=300,
            presence=True,
            join_leave=False,
            publish="subscribers",
        )
    }


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "REALTIME_NAMESPACES must be a JSON object"),
        (
            {"chat": {"histroy_size": 5}},
            "REALTIME_NAMESPACES['chat']: Object contains unknown field `histroy_size`",
        ),
        ({"chat": {"history_size": "5"}}, "REALTIME_NAMESPACES['chat']: Expected `int`, got `str`"),
        (
            {"chat": {"publish": "anyone"}},
            "REALTIME_NAMESPACES['chat']: Invalid enum value 'anyone' - at `$.publish`",
        ),
        ({"chat": {"history_size": 5}}, "a namespace with history_size needs history_ttl"),
        ({"chat": {"history_size": 10_001, "history_ttl": 5}}, "history_size must be between 0"),
        ({"chat": {"join_leave": True, "presence": False}}, "join_leave needs presence"),
        ({"chat.x": {}}, "is not a namespace name"),
        ({"": {}}, "is not a namespace name"),
    ],
)
def test_a_bad_entry_is_refused_naming_the_fix(raw, message):
    with pytest.raises(ImproperlyConfigured) as refused:
        namespaces_parse(raw)

    assert message in str(refused.value)


def test_a_rooms_namespace_is_the_part_before_its_first_dot(settings):
    settings.REALTIME_NAMESPACES = {"chat": {"history_size": 10, "history_ttl": 60}}

    assert namespace_of("chat.lobby.x").name == "chat"
    assert namespace_of("chat.lobby").history_size == 10
    assert namespace_of("chat") is NO_NAMESPACE  # no dot: no namespace
    assert namespace_of("Chat.lobby") is NO_NAMESPACE
    assert namespace_of("news.today") is NO_NAMESPACE
    assert NO_NAMESPACE.publish is None and NO_NAMESPACE.presence and not NO_NAMESPACE.history


def test_a_bad_setting_stops_the_app_from_starting(settings):
    from django.apps import apps

    settings.REALTIME_NAMESPACES = {"chat": {"presence": "yes"}}

    with pytest.raises(ImproperlyConfigured, match="Expected `bool`, got `str`"):
        apps.get_app_config("realtime").ready()
