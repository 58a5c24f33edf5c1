"""The browser console: one page at `/`, everything else in its static ES modules."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import get_script_prefix
from django.views.decorators.http import require_safe

from console.csp import console_csp


@require_safe
def console_page(request: HttpRequest) -> HttpResponse:
    """The console's HTML, with its Content-Security-Policy. It holds no token or user data:
    the scripts log in over REST and keep the tokens in memory."""
    response = render(request, "console/index.html", {"base": get_script_prefix()})
    response["Content-Security-Policy"] = console_csp(request)
    return response
