"""Run the Lambda handlers locally exactly as deployed: the module from functions/, a Lambda-like context."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"


def load_handler_module(function: str) -> ModuleType:
    """Import functions/<function>/app.py afresh; like Lambda, it reads its settings at import."""
    return load_module(FUNCTIONS / function / "app.py", f"docdrop_function_{function}")


def load_module(path: Path, prefix: str = "handler") -> ModuleType:
    """Import a handler file afresh, under a name of its own: a cold container's import."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@dataclasses.dataclass
class LocalLambdaContext:
    """The parts of Lambda's context object that handlers and Powertools read."""

    function_name: str
    timeout_seconds: float = 90.0
    memory_limit_in_mb: int = 512
    aws_request_id: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = "local"
    log_stream_name: str = "local"
    _started: float = dataclasses.field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:000000000000:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self._started)) * 1000))
