"""The baseline uploader: what a team writes in a day, as AWS's S3-trigger samples do. S3 invokes it once per object;
it reads the tags and the file, posts them to Cobalt, and puts the answer in a table. No claim, no retry, no review:
a repeated event sends the document again, and an unanswered POST is simply an error. Kept only to be measured against.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from typing import Any

import boto3
import requests

s3 = boto3.client("s3")
table = boto3.resource("dynamodb").Table(os.environ["NAIVE_TABLE"])
credentials = json.loads(
    boto3.client("secretsmanager").get_secret_value(SecretId=os.environ["COBALT_CREDENTIALS_SECRET"])["SecretString"]
)
COBALT_URL = os.environ["COBALT_BASE_URL"].rstrip("/") + "/documents"


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    for record in event["Records"]:
        bucket = record["s3"]["bucket"]["name"]
        key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])
        version = record["s3"]["object"].get("versionId")
        tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        response = requests.post(
            COBALT_URL,
            headers={
                "client_id": credentials["client_id"],
                "client_secret": credentials["client_secret"],
                "access_token": credentials["access_token"],
            },
            data={"patient_mrn": tags["patient_mrn"], "folder_name": tags["folder_name"]},
            files={"document": (key.rsplit("/", 1)[-1], body, "application/pdf")},
            timeout=30,
        )
        response.raise_for_status()
        document_id = response.json()["document_id"]
        table.put_item(
            Item={"pk": document_id, "bucket": bucket, "key": key, "version_id": version, "status": "SUBMITTED"}
        )
        print(json.dumps({"message": "uploaded", "document_id": document_id}))
    return {"statusCode": 200}
