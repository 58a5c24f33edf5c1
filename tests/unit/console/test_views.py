"""The console page at `/`: served, locked down by its CSP, free of secrets, and its static
files resolved through the manifest with DEBUG off."""

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client

from tests.conftest import UserFactory

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'; "
    "connect-src 'self' ws://testserver"
)


class Tags(HTMLParser):
    """Every start tag of a page with its attributes, and the text inside script/style tags."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline: list[str] = []
        self._open: str | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._open = tag

    def handle_data(self, data):
        if self._open in ("script", "style") and data.strip():
            self.inline.append(data)

    def handle_endtag(self, tag):
        self._open = None


def page_tags(html: str) -> Tags:
    parser = Tags()
    parser.feed(html)
    return parser


def test_the_console_is_served_at_the_root(plain_static_files):
    response = Client().get("/")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert "<title>Switchboard console</title>" in response.text


def test_the_console_sends_a_strict_content_security_policy(plain_static_files):
    response = Client().get("/")

    assert response["Content-Security-Policy"] == CSP


def test_the_policy_names_wss_for_a_page_served_over_https(plain_static_files):
    response = Client().get("/", secure=True)

    assert response["Content-Security-Policy"].endswith("connect-src 'self' wss://testserver")


def test_the_console_keeps_the_other_security_headers(plain_static_files):
    response = Client().get("/")

    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


def test_the_page_has_no_inline_script_style_or_event_handler(plain_static_files):
    parsed = page_tags(Client().get("/").text)

    scripts = [attrs for tag, attrs in parsed.tags if tag == "script"]
    assert scripts == [{"type": "module", "src": "/static/console/app.js"}]
    assert parsed.inline == []
    assert not [tag for tag, _ in parsed.tags if tag == "style"]
    for tag, attrs in parsed.tags:
        assert "style" not in attrs, tag
        assert not [name for name in attrs if name.startswith("on")], tag


def test_the_page_holds_no_token_and_is_the_same_for_a_logged_in_admin(plain_static_files, db):
    anonymous = Client().get("/").content
    staff = Client()
    staff.force_login(UserFactory(is_staff=True, is_superuser=True))

    assert staff.get("/").content == anonymous
    assert b"eyJ" not in anonymous  # the start of every JWT
    assert b"csrfmiddlewaretoken" not in anonymous
    assert b"localStorage" not in anonymous


def test_the_admin_link_starts_hidden(plain_static_files):
    parsed = page_tags(Client().get("/").text)

    links = [attrs for tag, attrs in parsed.tags if attrs.get("data-testid") == "admin-link"]
    assert links == [{"data-testid": "admin-link", "href": "/admin/", "hidden": None}]


def test_the_console_answers_get_and_head_only(plain_static_files):
    assert Client().head("/").status_code == 200
    assert Client().post("/").status_code == 405


def test_with_debug_off_the_page_and_its_modules_resolve_through_the_manifest(settings, tmp_path):
    settings.STATIC_ROOT = tmp_path / "static"
    call_command("collectstatic", interactive=False, verbosity=0)
    client = Client()  # whitenoise reads STATIC_ROOT when the first request builds it

    page = client.get("/")

    assert page.status_code == 200
    urls = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
    assert sorted(re.sub(r"\.[0-9a-f]{12}\.", ".HASH.", url) for url in urls) == [
        "/static/console/app.HASH.js",
        "/static/console/console.HASH.css",
        "/static/console/favicon.HASH.svg",
    ]
    for url in urls:
        served = client.get(url)
        assert served.status_code == 200, url
        assert "immutable" in served["Cache-Control"], url
    # The modules import each other by hashed name too (ManifestStaticFilesStorage).
    console = Path(settings.STATIC_ROOT) / "console"
    imports = set()
    for module in console.glob("*.????????????.js"):
        imports |= set(re.findall(r'from "\./([^"]+)"', module.read_text()))
    assert sorted(name.split(".")[0] for name in imports) == [
        "api",
        "backoff",
        "closecodes",
        "log",
        "recovery",
        "session",
        "socket",
        "states",
    ]
    for name in imports:
        assert re.fullmatch(r"\w+\.[0-9a-f]{12}\.js", name), name
        assert client.get(f"/static/console/{name}").status_code == 200, name


@pytest.mark.parametrize(
    "name",
    ["api", "app", "backoff", "closecodes", "log", "recovery", "session", "socket", "states"],
)
def test_no_module_stores_anything_in_the_browser(name):
    source = (Path(__file__).resolve().parents[3] / f"console/static/console/{name}.js").read_text()

    for storage in ("localStorage", "sessionStorage", "document.cookie", "indexedDB"):
        assert storage not in source, f"{name}.js uses {storage}"
