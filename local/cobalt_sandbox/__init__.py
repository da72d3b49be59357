"""A local stand-in for Cobalt's API that behaves as its documentation says (see ../shared/cobalt-api.md)."""

from local.cobalt_sandbox.server import CobaltSandbox, FaultSettings, SandboxConfig

__all__ = ["CobaltSandbox", "FaultSettings", "SandboxConfig"]
