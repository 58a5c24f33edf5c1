"""bench/processes.py starts every supported server as production starts it: deploy/servers.py's
command line, with quieter logs the only addition."""

import sys

from bench.cores import CLIENT_CORE, SERVER_CORE
from bench.processes import (
    QUIET_ARGS,
    SWITCHBOARD_SERVERS,
    Server,
    loadgen_command,
    switchboard_command,
)
from deploy.servers import SERVER_NAMES, SERVERS

LOG_OPTIONS = {"--log-level", "warning", "--no-access-log"}


def test_the_bench_measures_every_supported_server():
    assert SWITCHBOARD_SERVERS == SERVER_NAMES


def test_each_server_runs_the_command_line_of_deploy_servers_with_only_quieter_logs():
    for name in SERVER_NAMES:
        command = switchboard_command(name, {"WS_MAX_MESSAGE_BYTES": "4096"})

        assert set(QUIET_ARGS[name]) <= LOG_OPTIONS, name
        assert command == [
            sys.executable,
            "-m",
            *SERVERS[name].argv(
                host="127.0.0.1", port="{port}", max_message_bytes="4096", extra=QUIET_ARGS[name]
            ),
        ], name


def test_uvicorn_runs_the_lifespan_and_the_message_cap_of_production():
    command = switchboard_command("uvicorn", {})

    assert command.count("--lifespan") == 1
    assert command[command.index("--lifespan") + 1] == "on"
    assert command[command.index("--ws-max-size") + 1] == "65536"


def test_servers_start_on_the_server_core_and_the_load_generator_on_the_other(tmp_path):
    server = Server("peer", ["python", "-m", "bench.peer", "{port}", "echo"], {}, tmp_path)

    command = loadgen_command("pingpong", ["ws://127.0.0.1:1/"], clients=2, cpu_pid=[7, 8])

    assert server.core == SERVER_CORE != CLIENT_CORE
    assert command[:3] == ["taskset", "-c", str(CLIENT_CORE)]
    assert command[command.index("pingpong") :] == [
        "pingpong", "--url", "ws://127.0.0.1:1/", "--clients", "2",
        "--cpu-pid", "7", "--cpu-pid", "8",
    ]  # fmt: skip
