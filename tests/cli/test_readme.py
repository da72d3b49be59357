"""Every shell block of the README and of docs/ runs as written: `aws` commands against the local stack (only the
endpoint and the bucket's name substituted), `make` targets as far as they go without an AWS account (expanded)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from docdrop.ledger import ObjectRef

from local.samples import pdf_bytes
from tests.cli.conftest import CliStack

REPO = Path(__file__).resolve().parents[2]
AWS = str(Path(sys.executable).with_name("aws"))
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def every_shell_block() -> list[str]:
    return [block for path in DOCUMENTS for block in shell_blocks(path.read_text(encoding="utf-8"))]


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"```(?:sh|bash|shell)\n(.*?)```", text, re.S)


def commands(block: str) -> list[str]:
    """One string per command: continuation lines joined, comments and blank lines left out."""
    joined = re.sub(r"\\\n\s*", " ", block)
    lines = (line.split("  #")[0].strip() for line in joined.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_the_readme_has_shell_blocks_and_each_command_is_of_a_kind_this_test_runs() -> None:
    found = [c for block in every_shell_block() for c in commands(block)]
    assert len(found) >= 3
    assert all(c.startswith(("aws ", "make ")) for c in found), found


def test_every_shell_block_in_the_readme_runs_as_written_against_the_local_stack(
    cli_stack: CliStack, tmp_path: Path
) -> None:
    stack = cli_stack
    (tmp_path / "referral.pdf").write_bytes(pdf_bytes("README referral"))
    (tmp_path / "labs.pdf").write_bytes(pdf_bytes("README labs"))
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": stack.info.region,
    }
    ran = []
    for block in every_shell_block():
        for command in commands(block):
            if command.startswith("make "):
                line = "make -n " + command.removeprefix("make ")  # deploying needs an AWS account: expand only
                cwd = REPO
            else:
                line = command.replace("<InboxBucketName>", stack.info.bucket)
                line = f"{AWS} --endpoint-url {stack.info.aws_endpoint_url} " + line.removeprefix("aws ")
                cwd = tmp_path
            run = subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
            assert run.returncode == 0, (command, run.stderr[-2000:])
            ran.append(command)
    assert any(c.startswith("aws s3api put-object ") for c in ran)

    sent = {}
    for name in ("referral.pdf", "labs.pdf"):
        key = f"inbox/fax/2025-11-23/{name}"
        version = stack.client("s3").head_object(Bucket=stack.info.bucket, Key=key)["VersionId"]
        ref = ObjectRef(stack.info.bucket, key, version)
        assert stack.wait_status(ref, "UPLOADED", "SUBMITTED") in ("UPLOADED", "SUBMITTED")
        [sent[name]] = [d["fields"] for d in stack.sandbox._public_documents() if d["filename"] == name]
    assert sent["referral.pdf"]["notes"] == "Referral from cardiology, 5 pages"
    assert (sent["referral.pdf"]["folder_name"], sent["referral.pdf"]["patient_mrn"]) == (
        "MedicalRecords/Referrals",
        "100001",
    )
    # the object put without tags waited for them and went with the ones added later
    assert (sent["labs.pdf"]["folder_name"], sent["labs.pdf"]["patient_mrn"]) == ("MedicalRecords/LabResults", "100002")


def test_no_document_puts_a_secret_on_a_command_line_that_shell_history_keeps() -> None:
    texts = {p.name: p.read_text(encoding="utf-8") for p in DOCUMENTS}
    for name, text in texts.items():
        inline = re.findall(r"--secret-string\s+(?!file://)\S+", text)
        assert not inline, f"{name} writes a secret from the command line: {inline}"
    assert any("--secret-string file://" in text for text in texts.values())  # the way shown (docs/deploying.md)
