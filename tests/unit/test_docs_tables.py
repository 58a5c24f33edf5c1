"""The documents' tables stay equal to the code, and their links lead somewhere.

- docs/CONFIGURATION.md: one row per environment variable config/settings.py reads (and
  PROMETHEUS_MULTIPROC_DIR, which prometheus-client reads), each also in .env.example;
- docs/PROTOCOL.md: the close-code table is `realtime.protocol.frames.CloseCode` with its
  reasons, the error-code table `ErrorCode` with its messages, and every error frame it
  quotes says what the server says;
- docs/OPERATIONS.md: the metrics table is the metrics the code defines;
- docs/DEPLOYMENT.md: the `check --deploy` table is the checks `operations/deploy_checks.py` has,
  and "Which server" quotes deploy/servers.py's command lines, one per server;
- README.md and docs/*.md: every relative link names a file (and heading) that exists;
- README.md stays a front door: at most 220 lines.

Each comparison runs both ways: a row the code lacks fails as surely as code the table lacks.
"""

import ast
import json
import re
import shlex
from pathlib import Path

import pytest

from deploy.servers import SERVERS, SUPPORTED
from realtime.edge.connect_rate import REFUSED_MESSAGE
from realtime.protocol.codes import CloseCode, ErrorCode

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SETTINGS = ROOT / "config" / "settings.py"
ENV_EXAMPLE = ROOT / ".env.example"
README_MAX_LINES = 220

# Variables read outside config/settings.py that the configuration table must list too.
READ_ELSEWHERE = {
    "PROMETHEUS_MULTIPROC_DIR": "read by prometheus-client itself (and operations/metrics.py)",
}
# Variables settings.py reads that .env.example deliberately leaves out, with the reason.
# (Empty today: .env.example lists every one, the optional ones commented out.)
NOT_IN_ENV_EXAMPLE: dict[str, str] = {}

VARIABLE = re.compile(r"`([A-Z][A-Z0-9_]+)`")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


# ---------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------
def heading_slug(text: str) -> str:
    """GitHub's anchor for a heading: its text without markup, lower case, punctuation
    dropped, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def headings(markdown: str) -> list[tuple[int, str]]:
    """(level, text) of every heading outside fenced code."""
    return [
        (len(m.group(1)), m.group(2))
        for m in re.finditer(r"^(#{1,6}) +(.+?) *$", FENCE.sub("", markdown), re.M)
    ]


def anchors(markdown: str) -> set[str]:
    """Every heading's anchor, with GitHub's -1, -2 … for repeated ones."""
    seen: dict[str, int] = {}
    result = set()
    for _, text in headings(markdown):
        slug = heading_slug(text)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def table_cells(line: str) -> list[str]:
    """The cells of one table row; a `|` inside a code span does not split."""
    cells, cell, in_code = [], "", False
    for char in line.strip().strip("|"):
        if char == "`":
            in_code = not in_code
        if char == "|" and not in_code:
            cells.append(cell.strip())
            cell = ""
        else:
            cell += char
    return [*cells, cell.strip()]


def section_table(markdown: str, heading: str) -> list[list[str]]:
    """The rows (header and separator left out) of the first table under the heading whose
    anchor is `heading`, before the next heading."""
    lines = markdown.splitlines()
    start = next(
        (
            i
            for i, line in enumerate(lines)
            if (m := re.match(r"^#{1,6} +(.+?) *$", line)) and heading_slug(m.group(1)) == heading
        ),
        None,
    )
    assert start is not None, f"no heading #{heading}"
    rows: list[list[str]] = []
    for line in lines[start + 1 :]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            rows.append(table_cells(line))
        elif rows:
            break
    assert len(rows) > 2, f"no table under #{heading}"
    assert set(rows[1]) <= {"---", ":---", "---:", ":---:"}, rows[1]
    return rows[2:]


def code_span(cell: str) -> str:
    """The one code span a cell consists of: `` `x` `` → `x`."""
    m = re.fullmatch(r"`([^`]*)`", cell)
    assert m, f"expected one code span, got {cell!r}"
    return m.group(1)


# ---------------------------------------------------------------------------
# (a) Configuration variables
# ---------------------------------------------------------------------------
def _literal(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _env_reader(call: ast.Call) -> bool:
    """`env(...)` or `env.<cast>(...)` (django-environ); not `env.read_env(...)`."""
    func = call.func
    if isinstance(func, ast.Name):
        return func.id == "env"
    return (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id == "env"
        and func.attr != "read_env"
    )


def _os_reader(call: ast.Call) -> bool:
    """`os.getenv(...)`, `os.environ.get(...)`."""
    return ast.unparse(call.func) in {"os.getenv", "os.environ.get"}


def settings_variables(source: str) -> set[str]:
    """Every environment variable `source` (config/settings.py) reads: `env(...)`,
    `env.str/int/bool/float/list/db/…(...)`, `os.getenv`/`os.environ[...]`, and a helper
    function that passes its parameter on to one of those (then each call of the helper with
    a literal name counts). A read whose name cannot be told fails here, so that nobody
    can add one this test does not see."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found: set[str] = set()
    helpers: dict[str, int] = {}  # function name → index of the parameter it reads
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            name = _literal(node.slice)
            assert name, f"settings.py reads os.environ[{ast.unparse(node.slice)}]"
            found.add(name)
        if not (isinstance(node, ast.Call) and (_env_reader(node) or _os_reader(node))):
            continue
        assert node.args, f"settings.py calls {ast.unparse(node)} without a variable name"
        name = _literal(node.args[0])
        if name is not None:
            found.add(name)
            continue
        function = parents.get(node)
        while function is not None and not isinstance(function, ast.FunctionDef):
            function = parents.get(function)
        params = [a.arg for a in function.args.args] if function is not None else []
        arg = node.args[0]
        assert isinstance(arg, ast.Name) and arg.id in params, (
            f"settings.py reads a variable whose name it computes: {ast.unparse(node)}"
        )
        helpers[function.name] = params.index(arg.id)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            index = helpers.get(node.func.id)
            if index is None or len(node.args) <= index:
                continue
            name = _literal(node.args[index])
            assert name, f"settings.py calls {ast.unparse(node)} with a computed name"
            found.add(name)
    return found


def read_variables() -> set[str]:
    return settings_variables(SETTINGS.read_text()) | set(READ_ELSEWHERE)


def configuration_rows() -> list[list[str]]:
    """The variables each row of docs/CONFIGURATION.md's table names (first column)."""
    text = (DOCS / "CONFIGURATION.md").read_text()
    return [VARIABLE.findall(row[0]) for row in section_table(text, "configuration")]


def env_example_variables() -> set[str]:
    """Every `NAME=` line of .env.example, set or commented out (`# NAME=`)."""
    return set(re.findall(r"^#? *([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M))


def test_the_settings_parser_sees_every_way_of_reading():
    source = (
        "env = environ.Env()\n"
        'A = env("A1")\nB = env.int("B1", default=1)\nC = env.db("C1")\n'
        'D = os.environ.get("D1")\nE = os.environ["E1"]\nenv.read_env("x")\n'
        "def f(variable, path=None):\n    return env.str(variable, default='')\n"
        'F = f("F1")\nG = f("G1", "p")\n'
    )
    assert settings_variables(source) == {"A1", "B1", "C1", "D1", "E1", "F1", "G1"}
    with pytest.raises(AssertionError, match="computes"):
        settings_variables('name = "X"\nA = env(name)\n')


def test_settings_reads_the_variables_everyone_knows():
    read = settings_variables(SETTINGS.read_text())
    assert {"DJANGO_SECRET_KEY", "REDIS_URL", "REDIS_MAX_CONNECTIONS", "REDIS_POOL_TIMEOUT"} <= read
    # Read through the `_key_file` helper, not by an env call with a literal.
    assert {"JWT_PRIVATE_KEY_FILE", "JWT_PUBLIC_KEY_FILE"} <= read


def test_every_variable_settings_reads_is_a_row_of_the_configuration_table():
    documented = {name for row in configuration_rows() for name in row}
    assert sorted(read_variables() - documented) == []


def test_every_configuration_row_names_only_variables_that_are_read():
    rows = configuration_rows()
    assert all(rows), "a row names no `VARIABLE` in its first column"
    documented = [name for row in rows for name in row]
    assert sorted(set(documented) - read_variables()) == []
    assert len(documented) == len(set(documented)), "a variable has two rows"


def test_every_variable_is_in_env_example_and_every_entry_there_is_read():
    listed = env_example_variables()
    read = read_variables()
    assert sorted(read - listed - set(NOT_IN_ENV_EXAMPLE)) == []
    assert sorted(listed - read) == []
    assert sorted(set(NOT_IN_ENV_EXAMPLE) & listed) == []  # an exception no longer needed


# ---------------------------------------------------------------------------
# (b) Close codes and error codes
# ---------------------------------------------------------------------------
PROTOCOL = (DOCS / "PROTOCOL.md").read_text()


def test_the_close_code_table_is_closecode_with_its_reasons():
    documented = {int(row[0]): code_span(row[1]) for row in section_table(PROTOCOL, "close-codes")}
    assert documented == {int(code): code.reason for code in CloseCode}


def test_the_close_code_tables_client_should_column_says_reconnect_exactly_when_it_may():
    """ "reconnect" (or "then reconnect") in the `client should` column iff `code.reconnect`."""
    advice = {int(row[0]): row[3] for row in section_table(PROTOCOL, "close-codes")}
    assert {
        code: "reconnect" in advice[code] and "do not" not in advice[code] for code in advice
    } == {int(code): code.reconnect for code in CloseCode}


def test_the_close_code_table_has_each_code_once():
    codes = [row[0] for row in section_table(PROTOCOL, "close-codes")]
    assert len(codes) == len(set(codes))


def test_the_error_code_table_is_errorcode_with_its_messages():
    rows = section_table(PROTOCOL, "error-codes")
    documented = {code_span(row[0]): code_span(row[1]) for row in rows}
    assert len(rows) == len(documented), "an error code has two rows"
    assert documented == {str(code): code.message for code in ErrorCode}


def test_every_quoted_error_frame_says_what_the_server_says():
    frames = re.findall(r'\{"type":"error","code":"(\w+)","message":"([^"]*)"\}', PROTOCOL)
    assert len(frames) >= 5
    for code, message in frames:
        expected = {ErrorCode(code).message}
        if code == ErrorCode.RATE_LIMITED:
            expected.add(REFUSED_MESSAGE)  # the handshake's refusal says more
        assert message in expected, (code, message)


# ---------------------------------------------------------------------------
# Metrics and deploy checks
# ---------------------------------------------------------------------------
METRIC_SOURCES = ("accounts", "config", "core", "operations", "realtime")


def defined_metrics() -> set[str]:
    """The exposed name of every Counter, Gauge and Histogram the server's code creates
    (prometheus-client adds `_total` to a counter's)."""
    names = set()
    for folder in METRIC_SOURCES:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call) or not node.args:
                    continue
                kind = ast.unparse(node.func).rsplit(".", 1)[-1]
                name = _literal(node.args[0])
                if kind in {"Counter", "Gauge", "Histogram", "Summary"} and name:
                    total = kind == "Counter" and not name.endswith("_total")
                    names.add(name + "_total" if total else name)
    return names


def test_the_metrics_table_is_the_metrics_the_code_defines():
    text = (DOCS / "OPERATIONS.md").read_text()
    rows = section_table(text, "metrics")
    documented = [name for row in rows for name in re.findall(r"`(switchboard_\w+)`", row[0])]
    assert len(documented) == len(set(documented))
    assert set(documented) == defined_metrics()


def test_the_deploy_check_table_is_the_checks_the_code_has():
    source = (ROOT / "operations" / "deploy_checks.py").read_text()
    ids = set(re.findall(r"switchboard\.[EW]\d{3}", source))
    rows = section_table((DOCS / "DEPLOYMENT.md").read_text(), "check---deploy-findings")
    documented = [code_span(row[0]) for row in rows]
    assert len(documented) == len(set(documented))
    assert set(documented) == ids


def test_which_server_quotes_the_command_line_of_deploy_servers_for_each_server():
    text = (DOCS / "DEPLOYMENT.md").read_text()
    block = re.search(r"^## Which server\n.*?^```sh\n(.*?)^```", text, re.M | re.S)
    assert block, "no sh block under ## Which server"
    lines = block.group(1).replace("\\\n", " ").splitlines()
    quoted = [shlex.split(line) for line in lines if not line.startswith("#")]

    assert quoted == [
        SERVERS[name].argv(host="127.0.0.1", port="PORT", max_message_bytes=65536)
        for name in SUPPORTED
    ]


# ---------------------------------------------------------------------------
# (c) Links, (d) the README's length
# ---------------------------------------------------------------------------
DOCUMENTS = [ROOT / "README.md", *sorted(DOCS.glob("*.md")), *sorted(DOCS.glob("*/*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def relative_links(markdown: str) -> list[str]:
    """Link targets outside fenced code and code spans that are not absolute URLs."""
    prose = re.sub(r"`[^`\n]*`", "", FENCE.sub("", markdown))
    return [t for t in LINK.findall(prose) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_an_existing_file_and_heading(document):
    broken = []
    for target in relative_links(document.read_text()):
        path, _, anchor = target.partition("#")
        file = (document.parent / path).resolve() if path else document
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
            broken.append(target)
    assert broken == []


def test_the_link_checker_sees_links_and_anchors():
    assert relative_links("[a](b.md) [c](https://x) `[d](e.md)` [f](#g)") == ["b.md", "#g"]
    assert heading_slug("Try it locally: `make cluster`") == "try-it-locally-make-cluster"
    assert heading_slug("The handshake's answer") == "the-handshakes-answer"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n") == {"a", "a-1"}


def test_the_readme_links_every_document():
    readme = (ROOT / "README.md").read_text()
    linked = {Path(t.partition("#")[0]).name for t in relative_links(readme)}
    assert sorted({p.name for p in DOCS.glob("*.md")} - linked) == []


def test_the_readme_stays_a_front_door():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES


# ---------------------------------------------------------------------------
# docs/LAYOUT.md: one row per module of the service
# ---------------------------------------------------------------------------
LAYOUT = (DOCS / "LAYOUT.md").read_text()
SERVICE_PACKAGES = ("config", "core", "accounts", "realtime", "operations", "console")


def service_modules() -> set[str]:
    """Every hand-written module of the service's packages (not `__init__`, not migrations)."""
    return {
        str(path.relative_to(ROOT))
        for package in SERVICE_PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if path.name != "__init__.py" and "migrations" not in path.parts
    }


def test_the_layout_page_has_one_row_per_module_of_the_service():
    rows = re.findall(r"^\| `([a-z_/]+\.py)` \| (.+) \|$", LAYOUT, flags=re.M)
    listed = [path for path, _ in rows]
    assert sorted(listed) == sorted(service_modules())
    assert len(listed) == len(set(listed))
    assert all(job.strip() for _, job in rows)


def test_the_which_server_table_is_the_committed_benchmark_runs_medians():
    rows = json.loads((DOCS / "benchmarks.json").read_text())["rows"]
    median = {(r["scenario"], r["server"]): r for r in rows}

    def figure(scenario: str, server: str, key: str, scale: float = 1) -> str:
        value = median[(scenario, server)][key]["median"] / scale
        return f"{value:,.0f}" if scale == 1 and key != "kb_per_connection" else f"{value:,}"

    expected = [
        [
            f"{server} (not supported)" if server not in SUPPORTED else server,
            figure("echo", server, "round_trips_per_s"),
            figure("session echo", server, "round_trips_per_s"),
            figure("handshakes", server, "handshakes_per_s"),
            f"{median[('handshakes', server)]['cpu_us_per_op']['median'] / 1000:.2f}",
            figure("idle", server, "kb_per_connection"),
        ]
        for server in ("daphne", "uvicorn", "granian")
    ]
    lines = (DOCS / "DEPLOYMENT.md").read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| server | echo round"))
    assert [table_cells(line) for line in lines[header + 2 : header + 5]] == expected
