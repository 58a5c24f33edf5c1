"""The REST API fuzzed from its own OpenAPI schema by schemathesis, against a real daphne."""

import re
import subprocess
import sys
from pathlib import Path

from tests.system.conftest import user_register

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)


def test_fuzzing_from_the_schema_finds_no_500_and_no_response_outside_the_schema(
    start_worker, tmp_path
):
    worker = start_worker(redis=True)
    user = user_register(worker)
    schemathesis = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [
            str(schemathesis),
            "run",
            f"{worker.http}/api/schema/",
            "--checks",
            CHECKS,
            "--max-examples",
            "25",
            "--header",
            f"Authorization: Bearer {user['access']}",
            "--no-color",
        ],
        cwd=tmp_path,  # its example database goes there, not into the repository
        capture_output=True,
        text=True,
        timeout=240,
    )
    summary = result.stdout[-3000:]
    assert result.returncode == 0, summary
    assert "Tested: 11" in summary, summary
    assert re.search(r"Test cases:\s+(\d+) generated, \1 passed", summary), summary
    assert "Internal Server Error" not in worker.output()
