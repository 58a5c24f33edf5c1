"""The README's "A first session", pasted as a newcomer would: its shell blocks and its script,
in order, in a fresh shell in the repository, against the real `make run` (on a free port
instead of 8000): register, log in, a ticket, the script's welcome and echo, a refresh, and
logout-all closing the script's session with 4501."""

import re
import subprocess

from tests.system.stack import ROOT
from tests.system.test_front_door import make_run  # noqa: F401  (the fixture)

README = (ROOT / "README.md").read_text()
SECTION = README.split("## A first session", 1)[1].split("\n## ", 1)[0]
BLOCK = re.compile(r"```(sh|python)\n(.*?)```", re.S)


def blocks() -> list[tuple[str, str]]:
    return BLOCK.findall(SECTION)


def test_the_first_session_has_the_blocks_this_test_pastes():
    assert [kind for kind, _ in blocks()] == ["sh", "python", "sh", "sh"]
    assert "first_session.py" in SECTION
    assert "?token=" not in SECTION  # tickets or the header, never a token in a URL


def test_the_first_session_works_pasted_into_a_fresh_shell(make_run, tmp_path):  # noqa: F811
    (login, script, refresh, logout_all) = [text for _, text in blocks()]
    script_path = tmp_path / "first_session.py"

    def pasted(text: str) -> str:
        text = text.replace("http://127.0.0.1:8000", make_run.base)
        text = text.replace("ws://127.0.0.1:8000", make_run.base.replace("http", "ws"))
        # Another test of this module registered alice already.
        text = text.replace("alice", "readme-alice")
        return text.replace("first_session.py", str(script_path))

    script_path.write_text(pasted(script))
    shell = "\n".join(
        [
            "set -e",
            pasted(login),
            'echo "ACCESS-1 ${ACCESS:0:3}"',
            pasted(refresh),
            'echo "ACCESS-2 ${ACCESS:0:3}"',
            pasted(logout_all),
            "wait",  # for the script in the background
        ]
    )
    done = subprocess.run(
        ["bash", "-c", shell],
        cwd=ROOT,
        env=make_run.env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    out = done.stdout
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"username":"readme-alice"' in out.replace(" ", "")
    assert '"expires_in":30' in out.replace(" ", "")
    assert out.count("ACCESS-1 eyJ") == 1 and out.count("ACCESS-2 eyJ") == 1
    assert '"type":"welcome"' in out and '"message":"Authenticated!"' in out
    assert '{"type":"echo","data":{"hello":"world"},"id":1}' in out
    assert out.rstrip().endswith("4501 session revoked")
