"""The operator CLI installs on its own, as an operator would install it (`pip install ./cli`), with only what it
runs with, and works from anywhere against a local stack."""

from __future__ import annotations

import json
import shutil
import subprocess
import venv
from pathlib import Path

from tests.cli.conftest import CliStack

REPO = Path(__file__).resolve().parents[2]
DEV_ONLY = ("moto", "mypy", "pytest", "ruff", "hypothesis", "werkzeug", "aws-lambda-powertools")


def test_the_cli_package_installs_alone_into_a_fresh_virtualenv_and_reads_a_local_stack(
    cli_stack: CliStack, tmp_path: Path
) -> None:
    # From a copy of what the package is made of, so that the build leaves nothing in the repository and needs
    # nothing else from it.
    source = tmp_path / "source"
    shutil.copytree(REPO / "cli", source / "cli", ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    shutil.copytree(REPO / "layers" / "docdrop" / "docdrop", source / "layers" / "docdrop" / "docdrop")
    environment = tmp_path / "venv"
    # Linked, as `python -m venv` does: a copied interpreter can still be open for writing in a child another thread
    # forked meanwhile (the stack's workers), and its first run then fails with "Text file busy".
    venv.EnvBuilder(with_pip=True, symlinks=True).create(environment)
    python, docdrop = environment / "bin" / "python", environment / "bin" / "docdrop"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(source / "cli")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    installed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format", "json"], capture_output=True, text=True, check=True
    )
    names = {p["name"].lower() for p in json.loads(installed.stdout)}
    assert {"docdrop-cli", "boto3", "requests", "rich"} <= names
    assert not names & set(DEV_ONLY), names & set(DEV_ONLY)
    local = subprocess.run([str(python), "-c", "import local"], capture_output=True, text=True, cwd=tmp_path)
    assert local.returncode != 0  # the local stack and the sandbox stay out

    help_ = subprocess.run([str(docdrop), "--help"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert help_.returncode == 0 and "Exit codes" in help_.stdout
    for name in ("status", "retry", "redrive", "backfill", "reconcile", "register-webhook", "doctor", "review"):
        assert name in help_.stdout

    status = subprocess.run(
        [str(docdrop), "status", "--json", "--local", str(cli_stack.state_dir)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    assert isinstance(json.loads(status.stdout), list)
    for command in (["doctor"], ["review"], ["reconcile"]):  # every import the commands make is installed
        run = subprocess.run(
            [str(docdrop), *command, "--json", "--local", str(cli_stack.state_dir)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
        )
        assert run.returncode == 0, (command, run.stderr)
        json.loads(run.stdout)
