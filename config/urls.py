"""HTTP routes: the browser console, operator endpoints, the admin and the JSON API (JSON
errors, 404 included)."""

from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from console.views import console_page
from operations import views as operations


@csrf_exempt  # answers every method with a JSON 404, never with the CSRF failure page
def api_not_found(request: HttpRequest, *args: object, **kwargs: object) -> JsonResponse:
    return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)


urlpatterns = [
    path("", console_page, name="console"),
    path("healthz", operations.healthz),
    path("readyz", operations.readyz),
    path("metrics", operations.metrics),
    path("admin/", admin.site.urls),
    path("api/auth/", include("accounts.urls")),
    path("api/realtime/", include("realtime.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    re_path(r"^api/", api_not_found),
]
