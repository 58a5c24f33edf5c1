"""django.contrib.admin with Switchboard's site as `admin.site` (see accounts/admin_site.py).

Its own module: INSTALLED_APPS imports it before the apps are ready, so it must not import
anything that needs models (the site module does; Django imports it later, by name).
"""

from django.contrib.admin.apps import AdminConfig


class SwitchboardAdminConfig(AdminConfig):
    default_site = "accounts.admin_site.SwitchboardAdminSite"
