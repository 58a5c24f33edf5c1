"""Static files storage with DEBUG off: whitenoise's, with ES module imports hashed too."""

from whitenoise.storage import CompressedManifestStaticFilesStorage


# whitenoise ships no types, so its class is Any to mypy.
class ManifestStaticFilesStorage(CompressedManifestStaticFilesStorage):  # type: ignore[misc]
    """Compressed, content-hashed files (whitenoise) whose `import … from "./x.js"` lines are
    rewritten to the hashed names as well."""

    # Django leaves this off by default. Without it the console's modules (hashed) would import
    # unhashed siblings: a deploy could mix old and new modules for their 60 s cache lifetime.
    support_js_module_import_aggregation = True
