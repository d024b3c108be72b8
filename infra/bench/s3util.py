"""boto3 helpers of the benchmark runner, run as separate processes so the runner itself stays small (its RSS is
what every process it spawns starts from) and so an upload can be measured as a process of its own.

    s3util.py setup BUCKET                          create the bench bucket (idempotent)
    s3util.py upload BUCKET KEY FILE KMS_KEY_ID     print "ready", wait for a line on stdin, upload_file, print seconds
    s3util.py download BUCKET KEY VERSION FILE      download_file of one version (VERSION '-': the current one)
    s3util.py cleanup BUCKET [--prefix P] [--delete-bucket] [--table T --target NAME]
                                                    delete every version under P (and the bucket); delete the
                                                    catalog items of target NAME and the run records naming only it

The AWS_* variables (from .local/env) point boto3 at the local stack's emulator.
"""

from __future__ import annotations

import sys
import time


def client(name):
    import boto3

    return boto3.session.Session().client(name)


def setup(bucket: str) -> None:
    s3 = client("s3")
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception:  # noqa: BLE001 - absent (moto answers 404)
        s3.create_bucket(Bucket=bucket)


def upload(bucket: str, key: str, path: str, kms_key_id: str) -> None:
    s3 = client("s3")
    extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id} if kms_key_id else {}
    # Touch the endpoint once so connection set-up is not counted.
    s3.head_bucket(Bucket=bucket)
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.monotonic()
    s3.upload_file(path, bucket, key, ExtraArgs=extra)  # boto3's default TransferConfig (8 MiB parts, 10 threads)
    print(f"{time.monotonic() - t0:.6f}", flush=True)


def download(bucket: str, key: str, version: str, path: str) -> None:
    # What an operator following the runbook does (`aws s3api get-object --version-id …`): one transfer to a file.
    extra = {"VersionId": version} if version != "-" else {}
    client("s3").download_file(bucket, key, path, ExtraArgs=extra)


def cleanup(argv: list[str]) -> None:
    bucket = argv[0]
    opts = {"--prefix": "", "--table": None, "--target": None}
    delete_bucket = "--delete-bucket" in argv
    for i, a in enumerate(argv):
        if a in opts:
            opts[a] = argv[i + 1]
    s3 = client("s3")
    deleted = 0
    try:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=opts["--prefix"]):
            objects = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
            for i in range(0, len(objects), 1000):
                s3.delete_objects(Bucket=bucket, Delete={"Objects": objects[i:i + 1000], "Quiet": True})
                deleted += len(objects[i:i + 1000])
        if delete_bucket:
            s3.delete_bucket(Bucket=bucket)
    except s3.exceptions.NoSuchBucket:
        pass
    items = 0
    if opts["--table"] and opts["--target"]:
        ddb = client("dynamodb")
        table, target = opts["--table"], opts["--target"]

        def delete(item):
            ddb.delete_item(TableName=table, Key={"pk": item["pk"], "sk": item["sk"]})

        for page in ddb.get_paginator("query").paginate(
                TableName=table, KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": f"TARGET#{target}"}}):
            for item in page["Items"]:
                delete(item)
                items += 1
        for job in ("backup", "verify"):
            for page in ddb.get_paginator("query").paginate(
                    TableName=table, KeyConditionExpression="pk = :pk",
                    ExpressionAttributeValues={":pk": {"S": f"RUN#{job}"}}):
                for item in page["Items"]:
                    names = {t.get("M", {}).get("target", {}).get("S") for t in item.get("targets", {}).get("L", [])}
                    if names == {target}:
                        delete(item)
                        items += 1
    print(f"deleted {deleted} object versions and {items} catalog items", flush=True)


def main() -> int:
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "setup":
        setup(args[0])
    elif cmd == "upload":
        upload(*args)
    elif cmd == "download":
        download(*args)
    elif cmd == "cleanup":
        cleanup(args)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
