"""Execute the docs: README.md's two commands are the Makefile's and CI's, and every curl example in it runs against a
real server and gets a prediction."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from deploy import ROOT
from tests.images import jpeg

pytestmark = pytest.mark.integration


def readme_curl_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = block.replace("\\\n", " ")
        commands += [line.strip() for line in joined.splitlines() if line.strip().startswith("curl ")]
    return commands


def test_readme_two_commands_are_the_makefiles_and_ci_runs_the_test_one():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first = re.findall(r"```bash\n(.*?)```", text, flags=re.S)[0]
    commands = [line.split("#")[0].strip() for line in first.splitlines()]
    assert commands == ["make serve", "make test"], f"README's first block should be the two commands: {commands}"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^serve:", makefile, re.M) and re.search(r"^test:", makefile, re.M), "Makefile lacks serve/test"
    assert "\nmake test\n" in (ROOT / ".ci" / "run").read_text(encoding="utf-8"), ".ci/run does not run make test"


def test_readme_has_the_three_encodings():
    commands = readme_curl_commands()
    assert len(commands) >= 3, f"README curl examples: {commands}"
    assert any("--data-binary" in c for c in commands) and any("-F" in c for c in commands), (
        f"README lacks a raw-body or a multipart example: {commands}"
    )
    assert any("application/json" in c for c in commands), f"README lacks a JSON example: {commands}"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("command", readme_curl_commands())
def test_readme_curl_example_works(command, ts_server, tmp_path):
    (tmp_path / "art.jpg").write_bytes(jpeg(seed=4))
    command = command.replace("http://127.0.0.1:8080", ts_server.inference_url)
    out = subprocess.run(["bash", "-c", command + " -sS"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"{command}\n{out.stderr}"
    body = json.loads(out.stdout)
    assert body.get("model") == "art-category" and "label" in body, f"{command}\n-> {out.stdout}"
