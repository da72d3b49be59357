"""A forged flood of the local webhook: POSTs with a wrong signature, paced at a rate, from a few threads, until
stopped; what each got back is counted. Local only (tests/cli/test_webhook_path.py and bench/flood_run.py)."""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter

import requests

FORGED_BODY = b'{"id":"forged","object":"event","type":"document.uploaded","data":{"document_id":"1"}}'


class Flood:
    """`rate` requests a second in all, spread over `threads`, each to the next of `urls` in turn."""

    def __init__(self, urls: list[str], rate: float, threads: int = 8) -> None:
        self.urls, self.rate, self.threads = urls, rate, threads
        self.answers: Counter[str] = Counter()  # by status code, or the exception's name
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]
        self._started = self._stopped = 0.0

    def __enter__(self) -> Flood:
        self._started = time.monotonic()
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join()
        self._stopped = time.monotonic()

    @property
    def sent(self) -> int:
        return sum(self.answers.values())

    @property
    def achieved_rate(self) -> float:
        return self.sent / max(1e-9, (self._stopped or time.monotonic()) - self._started)

    def _run(self, index: int) -> None:
        headers = {"content-type": "application/json", "cobalt-verification": "0" * 64, "webhook-attempt": "1"}
        n = index
        with requests.Session() as http:
            while not self._stop.is_set():
                due = self._started + n / self.rate  # request n leaves at its time, whatever the answers took
                wait = due - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    return
                try:
                    status = str(
                        http.post(
                            self.urls[n % len(self.urls)],
                            data=FORGED_BODY,
                            headers={**headers, "webhook-id": secrets.token_hex(8)},
                            timeout=5,
                        ).status_code
                    )
                except requests.RequestException as exc:
                    status = type(exc).__name__
                with self._lock:
                    self.answers[status] += 1
                n += self.threads
