"""Unknown API paths: a JSON 404 for every method."""

import pytest
from django.test import Client


@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete"])
def test_an_unknown_api_path_is_a_json_404_for_every_method(method, db):
    client = Client(enforce_csrf_checks=True)

    response = getattr(client, method)("/api/realtime/sessions/not-a-uuid/")

    assert response.status_code == 404
    assert response.json() == {"detail": "Not found.", "code": "not_found"}
