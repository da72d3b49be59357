"""`make test` runs `sam build` first; its output must be what Lambda (python3.13, arm64) runs, with .pyc shipped."""

from __future__ import annotations

from pathlib import Path

BUILD = Path(__file__).resolve().parents[2] / ".aws-sam" / "build"


def _require_build() -> None:
    assert (BUILD / "template.yaml").exists(), "no .aws-sam/build: run `make build` (make test does it first)"


def test_layer_has_the_domain_and_dependencies_built_for_arm64_python313() -> None:
    _require_build()
    python = BUILD / "DocDropLayer" / "python"
    for package in ("docdrop", "aws_lambda_powertools", "requests"):
        assert (python / package).is_dir(), package
    native = list(python.rglob("*.so"))
    assert native, "expected compiled wheels (charset_normalizer) in the layer"
    assert all("cpython-313-aarch64-linux-gnu" in so.name for so in native), [so.name for so in native]
    for so in native:
        header = so.read_bytes()[:20]
        assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 183, so.name  # EM_AARCH64


def test_functions_ship_only_their_handler_with_python313_bytecode() -> None:
    _require_build()
    for function in ("UploaderFunction", "WebhookFunction"):
        files = sorted(p.relative_to(BUILD / function).as_posix() for p in (BUILD / function).rglob("*") if p.is_file())
        assert files == ["__pycache__/app.cpython-313.pyc", "app.py"], files


def test_the_domain_ships_with_python313_bytecode() -> None:
    _require_build()
    domain = BUILD / "DocDropLayer" / "python" / "docdrop"
    modules = {p.stem for p in domain.glob("*.py")}
    compiled = {p.name.split(".")[0] for p in (domain / "__pycache__").glob("*.cpython-313.pyc")}
    assert modules and modules == compiled
