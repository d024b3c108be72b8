"""Shows what Backstop left in the local stack: objects in the bucket (with versions and encryption), the
newest manifest's summary, and the alerts waiting in the SQS inbox subscribed to the alert topic.

Run by infra/local-cycle.sh with the environment from .local/env.

With `--expect TARGET=STATUS ...` it checks instead that each target's newest backup, in the output of
`backstop status --json` on standard input, has that status, and that each verified one has its drill's
evidence document in the bucket, agreeing with the record; it exits 1 naming each one that has not.
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
    # Backups' keys are <target>/<yyyy>/<mm>/<dd>/<backup id>.<what>; reports/ holds the monitor's page.
    backup_keys = [v["Key"] for v in versions if not v["Key"].startswith("reports/")]
    newest_id = max((k.rsplit("/", 1)[-1].split(".")[0] for k in backup_keys), default="")
    for v in sorted((v for v in versions if newest_id and newest_id in v["Key"]), key=lambda v: v["Key"]):
        head = s3.head_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
        print(f"  {v['Key']:<70} {v['Size']:>10} B  version {v['VersionId'][:8]}…  {head.get('ServerSideEncryption', 'none')}")
    evidence = [v for v in versions if v["Key"].endswith(".evidence.json")]
    print(f"  drill evidence documents: {len(evidence)} in all (each beside the backup it proves)")
    pages = [v for v in versions if v["Key"] == "reports/index.html"]
    if pages:
        print(f"  reports/index.html: {pages[0]['Size']} B, rewritten by each monitor run (backstop report --url)")
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


def evidence_problem(backup: dict) -> str:
    """What is wrong with the evidence of a verified backup's drill ("" when it is there and agrees)."""
    verification = backup.get("verification") or {}
    drill_id = verification.get("drill_id")
    if not drill_id:
        return "the record names no drill"
    prefix = backup["dump"]["key"].rsplit(".", 2)[0]  # <...>/<backup id>.sql.zst -> <...>/<backup id>
    key = f"{prefix}.drill-{drill_id}.evidence.json"
    try:
        doc = json.loads(client("s3").get_object(Bucket="backstop-local", Key=key)["Body"].read())
    except Exception as e:  # noqa: BLE001 - any failure to read it is the finding
        return f"no evidence at {key} ({e})"
    for field, recorded in (("backup_id", backup["backup_id"]), ("drill_id", drill_id),
                            ("passed", verification.get("passed")), ("rto_seconds", verification.get("rto_seconds"))):
        if doc.get(field) != recorded:
            return f"{key}: {field} is {doc.get(field)!r}, the record says {recorded!r}"
    return ""


def expect(wanted: list[str]) -> int:
    newest = {entry["target"]: (entry["backups"] or [{}])[0] for entry in json.load(sys.stdin)}
    wrong = 0
    for pair in wanted:
        target, status = pair.split("=", 1)
        backup = newest.get(target, {})
        found = backup.get("status", "no backup") if target in newest else "not configured"
        problem = evidence_problem(backup) if found == "verified" else ""
        verdict = "ok" if found == status and not problem else "WRONG"
        evidence = "evidence ok" if found == "verified" and not problem else problem
        print(f"  {target:<16} newest backup {found:<10} expected {status:<10} {verdict}  {evidence}".rstrip())
        wrong += verdict != "ok"
    return 1 if wrong else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--expect"]:
        sys.exit(expect(sys.argv[2:]))
    main()
