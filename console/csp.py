"""The console page's Content-Security-Policy (Django 5.2 has no CSP support of its own)."""

from django.http import HttpRequest

# Everything the page loads comes from this site: its module scripts and stylesheet (no
# inline script or style, no eval), REST calls, and WebSockets to this very host.
_POLICY = (
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
)


def console_csp(request: HttpRequest) -> str:
    """The policy for `request`: connect-src names the same-origin ws:// or wss:// URL
    explicitly, for browsers whose 'self' does not cover WebSockets."""
    # get_host() has already been checked against ALLOWED_HOSTS, so it is safe to echo.
    scheme = "wss" if request.is_secure() else "ws"
    connect = f"connect-src 'self' {scheme}://{request.get_host()}"
    return "; ".join((*_POLICY, connect))
