"""moto's server in a process of its own: `python -m local.moto_process PORT`, on 127.0.0.1. Local only.

Its own process (under local.guard) keeps moto's work off the stack's interpreter lock, and its request lines, which
name object keys, out of every log: werkzeug logs errors only.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from local.dynamodb_local import DynamoDBLocalUnavailable, free_port, wait_until_ready
from local.guard import guarded


class MotoUnavailable(RuntimeError):
    """moto's server would not start."""


@contextlib.contextmanager
def running_moto_server() -> Iterator[str]:
    """moto's server in its own process (ended with this one, even if this one is killed); its endpoint URL."""
    port = free_port()
    with (
        tempfile.TemporaryFile() as output,
        guarded([sys.executable, "-m", "local.moto_process", str(port)], output) as process,
    ):
        endpoint = f"http://127.0.0.1:{port}"
        try:
            wait_until_ready(endpoint, process, output, what="moto server")
        except DynamoDBLocalUnavailable as exc:
            raise MotoUnavailable(str(exc)) from None
        yield endpoint


_calls = threading.local()


def tag_events_only_from_put_object_tagging() -> None:
    """moto sends ObjectTagging:Put for every PutObject and CopyObject (tags or not); S3 sends it only for
    PutObjectTagging. Without this, every document would reach the ingest queue twice."""
    from moto.s3 import notifications
    from moto.s3.responses import S3Response

    send_event = notifications.send_event

    def send_unless_inside_a_put(account_id: str, event_name: Any, *args: Any, **kwargs: Any) -> None:
        if (
            getattr(_calls, "putting", False)
            and event_name is notifications.S3NotificationEvent.OBJECT_TAGGING_PUT_EVENT
        ):
            return
        send_event(account_id, event_name, *args, **kwargs)

    def inside_a_put(method: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            _calls.putting = True
            try:
                return method(*args, **kwargs)
            finally:
                _calls.putting = False

        return wrapped

    notifications.send_event = send_unless_inside_a_put
    S3Response.put_object = inside_a_put(S3Response.put_object)  # type: ignore[method-assign]
    S3Response.copy_object = inside_a_put(S3Response.copy_object)  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    tag_events_only_from_put_object_tagging()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(argv[0]), verbose=False)
    server.start()
    stopped = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the stack stops it, after its functions
    stopped.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
