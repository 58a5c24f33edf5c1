"""Protocol fuzzing of `/ws/session/` through the real consumer: whatever a client sends (any
JSON, deep nesting, huge numbers, odd unicode, wrong types in every field, random text or
bytes), the server answers with a documented frame or closes with a documented code, never
fails, never closes 1011, and a session it keeps open still answers a ping.

Each example opens its own socket on config.asgi.application (the `connect` fixture lives
for a whole test, hypothesis runs many examples in one), so no limit carries over between
examples; the user, token and settings are shared by every example of a test.
"""

import dataclasses
import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import hypothesis
import msgspec
import pytest
import yaml
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from accounts.models import User
from config.asgi import application as asgi_application
from realtime.protocol.codes import CloseCode, ErrorCode
from realtime.protocol.frames import ProtocolError, frame_decode
from realtime.session.consumer import SessionConsumer
from tests.conftest import access_for, forge, valid_claims

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[4]
DOC = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())

# {server frame type: validator of its documented payload}; `$ref`s resolve in the document.
SERVER_FRAMES = {
    message["payload"]["properties"]["type"]["const"]: Draft202012Validator(
        {**message["payload"], "components": {"schemas": DOC["components"]["schemas"]}}
    )
    for message in DOC["components"]["messages"].values()
    if message.get("x-direction") == "server"
}
CLOSE_REASONS = {int(code): entry["reason"] for code, entry in DOC["x-close-codes"].items()}
# {error code: the close code it comes with} for errors documented as "closed <code>"; errors
# documented as "open" keep the session open.
ERROR_CLOSES = {
    code: int(match[1])
    for code, entry in DOC["x-error-codes"].items()
    if (match := re.fullmatch(r"closed (\d+)", entry["connection"]))
}
ERROR_KEEPS_OPEN = {
    code for code, entry in DOC["x-error-codes"].items() if entry["connection"] == "open"
}

# Frames the server sends on its own, not in reply to the frame just sent.
PUSHED = {"message", "expiring"}
PING_AFTER = {"type": "ping", "id": "after"}
PONG_AFTER = {"type": "pong", "id": "after"}
WAIT = 5  # seconds for any one reply: a refresh waits on the database
EXAMPLES = 150

fuzz = hypothesis.settings(
    max_examples=EXAMPLES,
    deadline=None,
    # The user, token and settings fixtures are shared by every example on purpose; each
    # example opens and closes its own socket.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


# -- strategies ---------------------------------------------------------------------------

# Characters that break naive text handling: controls, zero-width, bidi overrides, line and
# paragraph separators, BOM, noncharacters, astral, combining.
ODD_CHARACTERS = (
    "\x00\x1f\x7f\x85\xa0\xad\u0301\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d"
    "\u202e\u2066\u2067\u2068\u2069\u2028\u2029\ufeff\ufffd\uffff\U0001f600\U0010ffff"
)
LONE_SURROGATES = "\ud800\udbff\udc00\udfff"

characters = st.one_of(st.characters(codec="utf-8"), st.sampled_from(ODD_CHARACTERS))
any_characters = st.one_of(characters, st.sampled_from(LONE_SURROGATES))
strict_strings = st.text(characters, max_size=20)  # UTF-8 encodable
any_strings = st.text(any_characters, max_size=20)


def json_string(text: str, ascii_only: bool) -> str:
    """`text` as a JSON string literal; escaped (`\\ud800`) or raw when not ASCII-only."""
    return json.dumps(text, ensure_ascii=ascii_only)


strict_string_literals = st.builds(json_string, strict_strings, st.booleans())
string_literals = st.one_of(
    st.builds(json_string, any_strings, st.booleans()),
    st.sampled_from(
        [
            r'"\ud800"',  # lone high surrogate, escaped
            r'"\udc00\ud800"',  # reversed pair
            r'"\ud83d\ude00"',  # a valid pair
            r'"\u0000"',
            r'"\x41"',  # not a JSON escape
            r'"\u12"',  # short escape
            '"\t"',  # raw control character
            '"unterminated',
        ]
    ),
)

int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
number_literals = st.one_of(
    int64.map(str),
    st.integers().map(str),
    st.integers(min_value=1, max_value=5_000).map(lambda digits: "9" * digits),
    # The longest integers msgspec decodes (4,300 characters), and one character more.
    st.sampled_from(["9" * 4_300, "-" + "9" * 4_299, "1" + "0" * 4_300, "-" + "9" * 4_300]),
    st.just(str(10**400)),
    st.floats().map(json.dumps),  # NaN, Infinity and -Infinity are not JSON
    st.sampled_from(
        [
            "1e400",
            "-1e400",
            "1e-400",
            "1E+999999999",
            "-0",
            "-0.0",
            "0e0",
            "2.5e-324",
            "9007199254740993",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775809",
            "0." + "1" * 5_000,
            "01",
            "1.",
            ".5",
            "+1",
            "0x10",
            "1_000",
        ]
    ),
)


def array_text(items: list[str]) -> str:
    return "[" + ",".join(items) + "]"


def object_text(members: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{key}:{value}" for key, value in members) + "}"


def json_texts(scalars: st.SearchStrategy[str], keys: st.SearchStrategy[str]):
    """JSON-shaped text: arrays and objects (duplicate keys included) of `scalars`."""
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=5).map(array_text),
            st.lists(st.tuples(keys, children), max_size=5).map(object_text),
        ),
        max_leaves=40,
    )


# Valid JSON that msgspec decodes: int64 numbers, finite floats, encodable strings.
strict_json = json_texts(
    st.one_of(
        st.sampled_from(["null", "true", "false"]),
        int64.map(str),
        finite_floats.map(json.dumps),
        strict_string_literals,
    ),
    strict_string_literals,
)
# Anything JSON-shaped: also huge numbers, NaN, lone surrogates and broken literals.
any_json = json_texts(
    st.one_of(
        st.sampled_from(["null", "true", "false", "nul", "True", "undefined", ""]),
        number_literals,
        string_literals,
    ),
    st.one_of(string_literals, st.sampled_from(["a", "1", "null", "[]"])),
)
# Leading and trailing text a JSON parser must or must not skip (BOM and NBSP are not JSON
# whitespace).
wrappers = st.sampled_from(["", " ", "\n", "\t\r\n ", "\ufeff", "\xa0", "\x00", ",", "]"])


@st.composite
def nested_texts(draw) -> str:
    """Nesting up to as deep as fits in 60 KB, closed or not, arrays, objects or both."""
    opener, closer = draw(
        st.sampled_from([("[", "]"), ('{"a":', "}"), ('[{"":', "}]"), ('{"type":', "}")])
    )
    deepest = 60_000 // (len(opener) + len(closer))
    depth = draw(st.one_of(st.integers(0, deepest), st.integers(900, 1_100)))
    inner = draw(st.sampled_from(["0", "null", "[]", "{}", '"x"', ""]))
    closed = draw(st.booleans())
    nested = opener * depth + inner + (closer * depth if closed else "")
    return draw(st.sampled_from(["{}", '{{"type":"echo","id":"deep","data":{}}}'])).format(nested)


# `id` values: (what the reply must carry, its JSON text). A string or an integer is copied
# into the reply; any other type (or null) is not.
valid_ids = st.one_of(
    st.builds(lambda s, a: (s, json_string(s, a)), strict_strings, st.booleans()),
    # msgspec decodes integers written in up to 4,300 characters, sign included (Python's
    # int_max_str_digits); longer ones are invalid_message, with no id.
    st.one_of(
        st.integers(min_value=-(2**63), max_value=2**64 - 1),
        st.integers(min_value=-(10**4299 - 1), max_value=10**4300 - 1),
        st.sampled_from([-(10**4299 - 1), 10**4300 - 1]),
    ).map(lambda i: (i, str(i))),
)
ids = st.one_of(
    valid_ids,
    st.sampled_from(["null", "true", "false", "1.0", "1e3", "[]", "{}", '["a"]', '{"id":1}']).map(
        lambda text: (None, text)
    ),
    finite_floats.map(lambda f: (None, json.dumps(f))),
)

# One value of every JSON type (and then some), for fields that should have another.
every_type = st.one_of(
    st.sampled_from(["null", "true", "false", "0", "-1", "1.5", '""', "[]", "{}"]),
    strict_json,
)

b64_segments = st.text(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/", max_size=40
)
jwt_shaped = st.lists(b64_segments, min_size=1, max_size=4).map(".".join)
python_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), strict_strings),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(strict_strings, children, max_size=3)
    ),
    max_leaves=12,
)


@st.composite
def forged_tokens(draw, user: User) -> str:
    """Signed with the real key: `user`'s good claims, each kept, dropped or given a value of
    any type; sometimes expired. All kept: a token that refreshes the session."""
    claims = valid_claims(user)
    for name in draw(st.lists(st.sampled_from(sorted(claims)), unique=True, max_size=3)):
        if draw(st.booleans()):
            del claims[name]
        else:
            claims[name] = draw(strict_strings if name == "iss" else python_json)
    if draw(st.integers(0, 5)) == 0:
        claims["exp"] = int(time.time()) - 10
    return forge(claims)


channels = st.one_of(
    st.sampled_from(["lobby", "news"]),  # often the same rooms: a session's frames interact
    st.sampled_from(["user.1", "staff.ops", "Staff.ops", "a" * 80, "a" * 81, "", ".", "lobby\n"]),
    st.from_regex(r"[A-Za-z0-9_.-]{1,80}", fullmatch=True),
    strict_strings,
)
FIELDS = [
    (kind, field.name)
    for kind, schema in sorted(SessionConsumer.schemas.items())
    for field in msgspec.structs.fields(schema)
]
FIELD_NAMES = {name for _, name in FIELDS}


@dataclass(frozen=True)
class TypedFrame:
    text: str
    reply_id: str | int | None  # the id every reply to it must carry


@st.composite
def typed_frames(draw, user: User) -> TypedFrame:
    """A message of one of SessionConsumer.schemas from `user`: one field (or none) given a
    value of any type, the others right-typed; maybe a required field left out, maybe
    unknown fields added."""
    right_typed = {  # `type` and `id` aside
        "data": strict_json,
        "token": st.one_of(
            strict_strings, jwt_shaped, forged_tokens(user), st.just("x" * 5_000)
        ).map(json.dumps),
        "channel": channels.map(json.dumps),
        "limit": st.integers(-3, 10**7).map(json.dumps),
        "since": st.fixed_dictionaries(
            {"offset": st.integers(-3, 10**7), "epoch": st.text(max_size=70)}
        ).map(json.dumps),
    }
    # Half the examples have every field right-typed, so that they reach the handlers.
    kind, wrong = draw(
        st.one_of(
            st.sampled_from(FIELDS),
            st.sampled_from(sorted(SessionConsumer.schemas)).map(lambda k: (k, None)),
        )
    )
    schema = SessionConsumer.schemas[kind]
    reply_id, id_text = draw(valid_ids if wrong != "id" else ids)
    members: list[tuple[str, str]] = []
    for field in msgspec.structs.fields(schema):
        if field.name == "id":
            if wrong != "id" and draw(st.booleans()):
                reply_id = None
                continue
            value = id_text
        elif field.name == wrong:
            value = draw(every_type)
        elif field.name == "type":
            value = json.dumps(kind)
        elif field.required and draw(st.integers(0, 9)) == 0:
            continue  # a required field missing
        else:
            value = draw(right_typed[field.name])
        members.append((json.dumps(field.name), value))
    if draw(st.integers(0, 3)) == 0:
        extra_keys = st.text(max_size=10).filter(lambda k: k not in FIELD_NAMES)
        members += draw(
            st.lists(st.tuples(extra_keys.map(json.dumps), strict_json), min_size=1, max_size=2)
        )
    return TypedFrame(object_text(draw(st.permutations(members))), reply_id)


@st.composite
def lobby_frames(draw) -> TypedFrame:
    """A right message about the room `lobby`: in a sequence, subscribing and publishing
    there brings the session's own published messages back to it."""
    kind = draw(st.sampled_from(["subscribe", "publish", "unsubscribe", "presence"]))
    reply_id, id_text = draw(valid_ids)
    members = [('"type"', json.dumps(kind)), ('"channel"', '"lobby"'), ('"id"', id_text)]
    if kind == "publish":
        members.append(('"data"', draw(strict_json)))
    return TypedFrame(object_text(members), reply_id)


# -- one frame, one socket ----------------------------------------------------------------


@dataclass
class Answer:
    frames: list[dict]  # what the server sent in reply to the frame, in order
    close: tuple[int, str] | None  # (code, reason) when it closed, else None: ping answered
    # Room messages (of a room this session publishes to) that arrived meanwhile.
    pushed: list[dict] = dataclasses.field(default_factory=list)


async def answer_read(socket: WebsocketCommunicator) -> Answer:
    """Read what the server sends for one frame; once it has replied, ping, and read until
    the pong (the session lives on) or the close."""
    answer = Answer([], None)
    pinged = False
    while True:
        try:
            output = await socket.receive_output(WAIT)
        except TimeoutError:
            pytest.fail(f"no reply and no close within {WAIT} s (so far: {answer})")
        if output["type"] == "websocket.close":
            answer.close = (output.get("code"), output.get("reason"))
            return answer
        assert output["type"] == "websocket.send", output
        assert output.get("bytes") is None, output  # the session speaks text only
        frame = json.loads(output["text"])
        if pinged and frame == PONG_AFTER:
            return answer
        (answer.pushed if frame.get("type") in PUSHED else answer.frames).append(frame)
        if answer.frames and not pinged:
            await socket.send_json_to(PING_AFTER)
            pinged = True


async def exchange(token: str, frames: list[str | bytes]) -> list[Answer]:
    """Open an authenticated session, send `frames` one by one, each after the answer to the
    one before, until the server closes; close."""
    socket = WebsocketCommunicator(asgi_application, f"/ws/session/?token={token}")
    answers: list[Answer] = []
    try:
        accepted, _ = await socket.connect(WAIT)
        assert accepted
        assert (await socket.receive_json_from(WAIT))["type"] == "welcome"
        for frame in frames:
            # send_input, not send_to: an empty frame is a frame too.
            key = "bytes" if isinstance(frame, bytes) else "text"
            await socket.send_input({"type": "websocket.receive", key: frame})
            answers.append(await answer_read(socket))
            if answers[-1].close is not None:
                break
    finally:
        await socket.disconnect(WAIT)  # raises what the consumer raised, if it failed
    return answers


def assert_documented(answer: Answer) -> None:
    """One documented reply, or a documented close (after at most one error frame)."""
    assert answer.frames or answer.close, "no reply and no close"
    assert len(answer.frames) <= 1, answer
    for frame in answer.frames + answer.pushed:
        assert frame.get("type") in SERVER_FRAMES, frame
        SERVER_FRAMES[frame["type"]].validate(frame)
        if frame["type"] == "error":
            assert frame["code"] in set(ErrorCode), frame
            assert isinstance(frame["message"], str), frame
            if frame["code"] in ERROR_KEEPS_OPEN:
                assert answer.close is None, answer
            if frame["code"] in ERROR_CLOSES:
                assert answer.close is not None, answer
                assert answer.close[0] == ERROR_CLOSES[frame["code"]], answer
    if answer.close is not None:
        code, reason = answer.close
        assert code != CloseCode.INTERNAL_ERROR, answer
        assert code in set(CloseCode) and code in CLOSE_REASONS, answer
        assert reason == CLOSE_REASONS[code], answer


def assert_no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [f"{r.name}: {r.getMessage()}" for r in errors]


def outcome_record(answer: Answer) -> None:
    """Count what the examples hit (pytest --hypothesis-show-statistics)."""
    if hypothesis.currently_in_test_context():
        replies = [f"{frame['type']} {frame.get('code', '')}".strip() for frame in answer.frames]
        end = f"close {answer.close[0]}" if answer.close else "pong"
        hypothesis.event(" then ".join([*replies, end]))
        for frame in answer.pushed:
            hypothesis.event(f"pushed {frame['type']}")


@pytest.fixture
def token(user, settings) -> str:
    """An access token for alice that outlives the test, with no limit in the way."""
    settings.WS_MESSAGES_PER_SECOND = 1_000_000.0
    settings.WS_MESSAGE_BURST = 1_000_000
    settings.WS_MAX_PROTOCOL_ERRORS = 1_000_000
    settings.WS_CONNECTS_PER_MINUTE = 1_000_000
    settings.WS_MAX_SESSIONS_PER_USER = 1_000_000
    return str(access_for(user, lifetime=timedelta(hours=1)))


async def fuzz_session(token: str, frames: list[str | bytes], caplog) -> list[Answer]:
    """Send frames on a fresh session: each answer is documented, and nothing failed."""
    caplog.clear()
    answers = await exchange(token, frames)
    for answer in answers:
        assert_documented(answer)
        outcome_record(answer)
    assert_no_errors_logged(caplog)
    return answers


async def fuzz_one(token: str, frame: str | bytes, caplog) -> Answer:
    """Send one frame on a fresh session: its answer is documented, and nothing failed."""
    [answer] = await fuzz_session(token, [frame], caplog)
    return answer


# -- fuzz tests ---------------------------------------------------------------------------


@fuzz
@given(text=st.one_of(any_json, strict_json), before=wrappers, after=wrappers)
async def test_any_json_text_gets_a_documented_answer(token, caplog, text, before, after):
    await fuzz_one(token, before + text + after, caplog)


@fuzz
@given(text=st.text(any_characters, max_size=200))
async def test_any_text_gets_a_documented_answer(token, caplog, text):
    await fuzz_one(token, text, caplog)


@fuzz
@given(text=nested_texts())
async def test_nesting_as_deep_as_fits_in_60_kb_gets_a_documented_answer(token, caplog, text):
    await fuzz_one(token, text, caplog)


@hypothesis.settings(fuzz, max_examples=300)
@given(data=st.data())
async def test_any_value_in_any_field_of_any_message_gets_a_documented_answer_with_its_id(
    user, token, caplog, data
):
    frame = data.draw(typed_frames(user))

    answer = await fuzz_one(token, frame.text, caplog)

    assert [reply.get("id") for reply in answer.frames] == [frame.reply_id] * len(answer.frames)


@hypothesis.settings(fuzz, max_examples=100)
@given(data=st.data())
async def test_any_sequence_of_messages_on_one_session_gets_documented_answers_with_their_ids(
    user, token, caplog, data
):
    frames = data.draw(
        st.lists(st.one_of(typed_frames(user), lobby_frames()), min_size=2, max_size=8)
    )

    answers = await fuzz_session(token, [frame.text for frame in frames], caplog)

    for frame, answer in zip(frames, answers, strict=False):  # fewer answers after a close
        assert [reply.get("id") for reply in answer.frames] == [frame.reply_id] * len(answer.frames)


@fuzz
@given(data=st.binary(max_size=200))
async def test_any_binary_frame_is_closed_1003(token, caplog, data):
    answer = await fuzz_one(token, data, caplog)

    assert answer == Answer([], (1003, "binary frames are not supported"))


@fuzz
@given(character=st.sampled_from("aé€😀"), slack=st.integers(-8, 8))
async def test_frames_around_the_size_limit_are_echoed_or_closed_1009(
    token, caplog, character, slack
):
    limit = django_settings.WS_MAX_MESSAGE_BYTES
    envelope = '{"type":"echo","data":""}'
    count = (limit - len(envelope) + slack) // len(character.encode())
    text = envelope[:-2] + character * count + '"}'

    answer = await fuzz_one(token, text, caplog)

    if len(text.encode()) > limit:
        assert answer == Answer([], (1009, "message too big"))
    else:
        assert answer == Answer([{"type": "echo", "data": character * count}], None)


# -- deterministic: nesting depth and number size ------------------------------------------

INVALID_MESSAGE_TOO_DEEP = {
    "type": "error",
    "code": "invalid_message",
    "message": "Message is nested too deeply",
}


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("[" * 30_000 + "]" * 30_000, id="arrays-30000-deep-closed-60KB"),
        pytest.param("[" * 60_000, id="arrays-60000-deep-unclosed-60KB"),
        pytest.param('{"a":' * 9_999 + "0" + "}" * 9_999, id="objects-9999-deep-60KB"),
    ],
)
async def test_nesting_as_deep_as_fits_in_60_kb_is_invalid_message_and_the_session_lives_on(
    token, caplog, text
):
    assert len(text.encode()) <= 60_000

    answer = await fuzz_one(token, text, caplog)

    assert answer == Answer([INVALID_MESSAGE_TOO_DEEP], None)
    # How fast the parser gives up (near the top): `python -m bench.decode_speed`.
    with pytest.raises(ProtocolError):
        frame_decode(text, SessionConsumer.schemas)


async def test_nesting_100000_deep_is_too_big_to_parse_and_closed_1009(token, caplog):
    answer = await fuzz_one(token, "[" * 100_000 + "]" * 100_000, caplog)

    assert answer == Answer([], (1009, "message too big"))


@pytest.mark.parametrize(
    "number",
    [
        pytest.param("1e400", id="1e400"),
        pytest.param("-1e400", id="minus-1e400"),
        pytest.param(str(10**400), id="10**400"),
        pytest.param("9" * 4_300, id="4300-digit-integer"),
        pytest.param("9" * 5_000, id="5000-digit-integer"),
        pytest.param("0." + "1" * 5_000, id="5000-digit-fraction"),
    ],
)
@pytest.mark.parametrize("field", ["data", "id"])
async def test_huge_numbers_get_a_documented_answer_and_the_session_lives_on(
    token, caplog, number, field
):
    members = {"type": '"echo"', "data": "0", "id": '"n"'} | {field: number}
    text = object_text([(json.dumps(name), value) for name, value in members.items()])

    answer = await fuzz_one(token, text, caplog)

    assert answer.close is None
    [reply] = answer.frames
    if reply["type"] == "echo":  # parsed: the number comes back as sent (or its nearest float)
        assert reply[field] == json.loads(number)
    else:  # valid JSON, but a number out of range (or a float id): the message is refused
        assert reply["code"] == ErrorCode.INVALID_MESSAGE, reply
        if field == "data":
            assert reply["message"] == "A number is out of range", reply
