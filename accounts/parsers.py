"""The API's JSON body parser: DRF's, with JSON nested too deeply answered as a parse error."""

from collections.abc import Mapping
from typing import IO, Any

from rest_framework import exceptions, parsers

NESTED_TOO_DEEPLY = "JSON nested too deeply"


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser; a body nested deeper than Python's recursion limit (about 1000
    levels) is a 400 `parse_error` instead of a 500.

    DRF turns only ValueError into ParseError; the json decoder raises RecursionError for
    deep nesting. It stops at the limit, so the work done is bounded by the body's length.
    """

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as e:
            raise exceptions.ParseError(NESTED_TOO_DEEPLY, code="parse_error") from e
