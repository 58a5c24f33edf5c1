"""Switchboard's version, defined here only.

pyproject.toml reads it (`[tool.setuptools.dynamic]`), the OpenAPI document reports it
(SPECTACULAR_SETTINGS), and tests/unit/test_packaging.py keeps docs/asyncapi.yaml,
CHANGELOG.md and the client's version equal to it. A plain string, so that setuptools reads it
without importing Django, and a clone that was never installed reports the same number.
"""

__version__ = "1.0.0"
