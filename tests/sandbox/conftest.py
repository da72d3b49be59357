from __future__ import annotations

import requests

from local.cobalt_sandbox import CobaltSandbox

AUTH = {"client_id": "ci_test_docdrop", "client_secret": "cs_test_docdrop", "access_token": "at_test_clinic_main"}
PDF = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32


def upload(
    sandbox: CobaltSandbox,
    content: bytes = PDF,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
    **fields: str | None,
) -> requests.Response:
    data = {"folder_name": "MedicalRecords", "patient_mrn": "100001", **fields}
    data = {k: v for k, v in data.items() if v is not None}
    return requests.post(
        f"{sandbox.base_url}/documents",
        headers=headers or AUTH,
        data=data,
        files={"document": ("scan.pdf", content, "application/pdf")},
        timeout=timeout,
    )


def register(sandbox: CobaltSandbox, url: str) -> str:
    answer = requests.post(f"{sandbox.base_url}/webhook", headers=AUTH, json={"webhook_url": url}, timeout=5)
    answer.raise_for_status()
    return str(answer.json()["webhook_secret_key"])
