"""The Django admin renders with its CSS under daphne, DEBUG on and off."""

import re

import pytest

from tests.system.conftest import http_client
from tests.system.stack import Worker


@pytest.fixture(scope="module", params=["1", "0"], ids=["debug-on", "debug-off"])
def admin_worker(request, start_module_worker, collected_static, tmp_path_factory) -> Worker:
    """DEBUG on: files found in the apps (nothing collected); DEBUG off: collected files."""
    debug = request.param
    static_root = collected_static if debug == "0" else tmp_path_factory.mktemp("not-collected")
    return start_module_worker(DJANGO_DEBUG=debug, DJANGO_STATIC_ROOT=str(static_root))


def test_admin_login_page_renders_and_links_css_that_is_served(admin_worker):
    with http_client(admin_worker) as client:
        page = client.get("/admin/login/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        stylesheets = re.findall(r'<link rel="stylesheet" href="([^"]+\.css)"', page.text)
        assert any("/static/admin/css/base" in href for href in stylesheets), stylesheets
        for href in stylesheets:
            css = client.get(href)
            assert css.status_code == 200, href
            assert css.headers["content-type"].startswith("text/css"), href


def test_admin_base_css_is_served_as_css(admin_worker):
    with http_client(admin_worker) as client:
        css = client.get("/static/admin/css/base.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert "body" in css.text
