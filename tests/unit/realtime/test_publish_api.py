"""Server-side publishing: POST /api/realtime/publish/ (staff) and `manage.py publish`."""

import pytest
from asgiref.sync import sync_to_async
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from tests.conftest import UserFactory, access_for


async def subscriber(connect, channel: str):
    user = await sync_to_async(UserFactory)()
    socket = await connect(f"/ws/session/?token={access_for(user)}")
    assert (await socket.receive_json_from())["type"] == "welcome"
    await socket.send_json_to({"type": "subscribe", "channel": channel})
    assert await socket.receive_json_from() == {"type": "subscribed", "channel": channel}
    return socket


def api_post(user, body, content_type="json"):
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_for(user)}")
    return client.post("/api/realtime/publish/", body, format=content_type)


async def test_staff_publish_reaches_subscribers_from_null(connect):
    socket = await subscriber(connect, "news")
    staff = await sync_to_async(UserFactory)(is_staff=True)
    response = await sync_to_async(api_post)(staff, {"channel": "news", "data": {"n": [1, 2]}})
    assert (response.status_code, response.json()) == (202, {"channel": "news"})
    frame = await socket.receive_json_from()
    assert frame.pop("ts").endswith("Z")
    assert frame == {"type": "message", "channel": "news", "data": {"n": [1, 2]}, "from": None}


@pytest.mark.django_db
def test_publish_refuses_non_staff_with_403_and_anonymous_with_401():
    member = UserFactory()
    assert api_post(member, {"channel": "news", "data": 1}).status_code == 403
    response = api_post(None, {"channel": "news", "data": 1})
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (
            {"channel": "no spaces", "data": 1},
            {"channel": ["Channel names are 1-80 characters of A-Z a-z 0-9 _ . -"]},
        ),
        (
            {"channel": "x" * 81, "data": 1},
            {"channel": ["Ensure this field has no more than 80 characters."]},
        ),
        ({"channel": "news"}, {"data": ["This field is required."]}),
    ],
)
def test_publish_answers_400_per_field_for_a_bad_body(body, errors):
    response = api_post(UserFactory(is_staff=True), body)
    assert (response.status_code, response.json()) == (400, errors)


async def test_the_publish_command_reaches_subscribers(connect):
    socket = await subscriber(connect, "cron.jobs")
    await sync_to_async(call_command)("publish", "cron.jobs", '{"done": true}')
    frame = await socket.receive_json_from()
    assert (frame["channel"], frame["data"], frame["from"]) == ("cron.jobs", {"done": True}, None)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bad name", "1"], "channel names are 1-80 characters of A-Z a-z 0-9 _ . -"),
        (["news", "{not json"], "data is not valid JSON"),
    ],
)
def test_the_publish_command_refuses_bad_arguments(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("publish", *args)
