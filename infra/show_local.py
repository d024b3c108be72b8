"""Shows what Backstop left in the local stack: objects in the bucket (with versions and encryption), the
newest manifest's summary, and the alerts waiting in the SQS inbox subscribed to the alert topic.

Run by infra/local-cycle.sh with the environment from .local/env.

With `--expect TARGET=STATUS ...` it checks instead that each target's newest backup, in the output of
`backstop status --json` on standard input, has that status, and exits 1 naming each one that has not.
"""

import json
import os
import sys

import boto3

STATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".local", "state.json")


def client(service):
    return boto3.client(service, endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")


def main():
    s3 = client("s3")
    bucket = "backstop-local"
    versions = s3.list_object_versions(Bucket=bucket).get("Versions", [])
    print(f"s3://{bucket}/  ({len(versions)} object versions; the newest backup's objects:)")
    newest_id = max((v["Key"].rsplit("/", 1)[-1].split(".")[0] for v in versions), default="")
    for v in sorted((v for v in versions if newest_id and newest_id in v["Key"]), key=lambda v: v["Key"]):
        head = s3.head_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
        print(f"  {v['Key']:<70} {v['Size']:>10} B  version {v['VersionId'][:8]}…  {head.get('ServerSideEncryption', 'none')}")
    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    print(f"  open multipart uploads: {len(uploads)}")

    manifests = sorted((v for v in versions if v["Key"].endswith(".manifest.json")), key=lambda v: v["LastModified"])
    if manifests:
        newest = manifests[-1]["Key"]
        m = json.loads(s3.get_object(Bucket=bucket, Key=newest)["Body"].read())
        print(f"\nNewest manifest: {newest}")
        print(f"  backup {m['backup_id']} of {m['target']['name']} (PostgreSQL {m['server_version']}, {m['tool']})")
        print(f"  {m['raw_bytes']} B of SQL → {m['dump']['size']} B {m['codec']}, sha256 {m['dump']['sha256'][:16]}…")
        print(f"  fingerprint: {len(m['fingerprint']['tables'])} tables, schema digest {m['fingerprint']['schema_digest'][:16]}…")
        for t in m["fingerprint"]["tables"]:
            name = f"{t['schema']}.{t['name']}"
            print(f"    {name:<32} {t['rows']:>8} rows  digest {t['digest'][:12]}…")
        print(f"  restore: {m['restore_hint']}")

    state = json.load(open(STATE)) if os.path.exists(STATE) else {}
    queue = state.get("queue_url")
    if queue:
        sqs = client("sqs")
        messages = []
        while True:  # SQS hands out at most 10 at a time
            batch = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
            if not batch:
                break
            messages += batch
        print(f"\nAlert inbox: {len(messages)} new message(s) (failures alert; success notices are off by default)")
        for msg in messages:
            body = json.loads(msg["Body"])
            print(f"  {body.get('Subject')}")


def expect(wanted: list[str]) -> int:
    newest = {entry["target"]: (entry["backups"] or [{}])[0].get("status", "no backup") for entry in json.load(sys.stdin)}
    wrong = 0
    for pair in wanted:
        target, status = pair.split("=", 1)
        found = newest.get(target, "not configured")
        print(f"  {target:<16} newest backup {found:<10} expected {status:<10} {'ok' if found == status else 'WRONG'}")
        wrong += found != status
    return 1 if wrong else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--expect"]:
        sys.exit(expect(sys.argv[2:]))
    main()
