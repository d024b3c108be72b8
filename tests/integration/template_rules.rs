//! Rules for `template.yaml` and `infra/replica.yaml` that linters do not know, each from AWS's documented
//! behaviour, so a mistake a real deploy would reject cannot come back:
//!
//! - no ARN hard-codes the `aws` partition (China and GovCloud stacks are `aws-cn`, `aws-us-gov`);
//! - no S3 lifecycle rule sets `ExpiredObjectDeleteMarker` beside an expiration by days or date (S3 refuses the
//!   whole configuration);
//! - schedules get generated names (a fixed one is unique per account and region: a second stack fails);
//! - the bucket refuses puts under any key but Backstop's;
//! - key policy statements for AWS services hold for this account's resources only (confused deputy);
//! - ARN parameters that become IAM resources accept whole ARNs only, and the replica's bucket and key are
//!   given together or not at all;
//! - every SNS filter policy, in the template or the docs, lets CloudWatch alarms through (they carry no message
//!   attributes, and a filter on an attribute drops every message without it).

use serde_norway::Value;

fn load(path: &str) -> Value {
    let file = backstop_tests::repo_root().join(path);
    serde_norway::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every string in `value` with where it sits, skipping descriptions (examples for people).
fn strings<'a>(value: &'a Value, at: String, out: &mut Vec<(String, &'a str)>) {
    match value {
        Value::String(s) => out.push((at, s)),
        Value::Sequence(items) => items.iter().enumerate().for_each(|(i, v)| strings(v, format!("{at}[{i}]"), out)),
        Value::Mapping(map) => {
            for (k, v) in map {
                let key = k.as_str().unwrap_or_default();
                if key == "Description" || key == "ConstraintDescription" {
                    continue;
                }
                strings(v, format!("{at}.{key}"), out);
            }
        }
        Value::Tagged(tagged) => strings(&tagged.value, format!("{at}!{}", tagged.tag), out),
        _ => {}
    }
}

#[test]
fn no_arn_hard_codes_the_aws_partition() {
    for path in ["template.yaml", "infra/replica.yaml"] {
        let template = load(path);
        let mut found = Vec::new();
        strings(&template, String::new(), &mut found);
        let hard_coded: Vec<_> = found.iter().filter(|(_, s)| s.contains("arn:aws:")).collect();
        assert!(hard_coded.is_empty(), "{path}: use arn:${{AWS::Partition}}: (or a DefinitionSubstitutions entry) in {hard_coded:?}");
        assert!(found.len() > 20, "{path}: the walk saw the template's strings");
    }
}

#[test]
fn no_lifecycle_rule_sets_expired_delete_markers_beside_an_expiration() {
    let mut rules_seen = 0;
    for path in ["template.yaml", "infra/replica.yaml"] {
        let template = load(path);
        for (name, resource) in template["Resources"].as_mapping().unwrap() {
            let Some(rules) = resource["Properties"]["LifecycleConfiguration"]["Rules"].as_sequence() else { continue };
            for rule in rules {
                rules_seen += 1;
                let marker = !rule["ExpiredObjectDeleteMarker"].is_null();
                let expires = !rule["ExpirationInDays"].is_null() || !rule["ExpirationDate"].is_null();
                assert!(
                    !(marker && expires),
                    "{path} {name:?} rule {:?}: S3 refuses ExpiredObjectDeleteMarker beside ExpirationInDays/ExpirationDate; give it a rule of its own",
                    rule["Id"]
                );
            }
        }
    }
    assert!(rules_seen >= 3, "the bucket and the replica have lifecycle rules");
}

fn template() -> Value {
    load("template.yaml")
}

#[test]
fn every_schedule_gets_a_generated_name() {
    let template = template();
    let mut schedules = 0;
    for (name, resource) in template["Resources"].as_mapping().unwrap() {
        let Some(events) = resource["Properties"]["Events"].as_mapping() else { continue };
        for (event, e) in events.iter().filter(|(_, e)| e["Type"].as_str() == Some("ScheduleV2")) {
            schedules += 1;
            assert_eq!(e["Properties"]["OmitName"].as_bool(), Some(true), "{name:?} {event:?}: OmitName: true, so two stacks can live in one account and region");
            assert!(e["Properties"]["Name"].is_null(), "{name:?} {event:?}: a fixed schedule name");
        }
    }
    assert_eq!(schedules, 5, "backup, sweep, verify, purge and monitor schedules");
}

#[test]
fn the_bucket_refuses_puts_under_another_key() {
    let template = template();
    let statements = template["Resources"]["BackupBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"].as_sequence().unwrap();
    let pinned = statements.iter().any(|s| {
        let key = &s["Condition"]["StringNotEqualsIfExists"]["s3:x-amz-server-side-encryption-aws-kms-key-id"];
        s["Effect"].as_str() == Some("Deny")
            && s["Action"].as_str() == Some("s3:PutObject")
            && matches!(key, Value::Tagged(t) if t.tag == "GetAtt" && t.value.as_str() == Some("BackupKey.Arn"))
    });
    assert!(pinned, "BackupBucketPolicy must deny a PutObject that names any key but BackupKey's ARN: {statements:?}");
}

#[test]
fn key_policy_service_statements_hold_for_this_account_only() {
    let mut services = 0;
    for path in ["template.yaml", "infra/replica.yaml"] {
        let template = load(path);
        for (name, resource) in template["Resources"].as_mapping().unwrap() {
            let Some(statements) = resource["Properties"]["KeyPolicy"]["Statement"].as_sequence() else { continue };
            for statement in statements.iter().filter(|s| !s["Principal"]["Service"].is_null()) {
                services += 1;
                let condition = &statement["Condition"];
                assert!(
                    !condition["StringEquals"]["aws:SourceAccount"].is_null() && !condition["ArnLike"]["aws:SourceArn"].is_null(),
                    "{path} {name:?} {:?}: a service principal without aws:SourceAccount and aws:SourceArn conditions",
                    statement["Sid"]
                );
            }
        }
    }
    assert!(services >= 1, "the alert topic's key names the services that publish to it");
}

#[test]
fn arn_parameters_take_whole_arns_and_the_replica_comes_whole() {
    let template = template();
    for parameter in ["DatabaseSecretArns", "PitrSourceInstanceArns", "ReplicaBucketArn", "ReplicaKmsKeyArn", "SlackWebhookSecretArn", "PgClientLayerArn"] {
        let pattern = template["Parameters"][parameter]["AllowedPattern"].as_str().unwrap_or_else(|| panic!("{parameter} has no AllowedPattern"));
        // Every one of them ends up in an IAM Resource: a pattern that lets `*` through lets a wildcard grant in.
        let class_with_star = pattern.split('[').skip(1).any(|class| class.split(']').next().unwrap_or_default().contains('*'));
        let lets_star_in = pattern.contains(".*") || pattern.contains(".+") || class_with_star;
        let whole_arn = pattern.starts_with("^$|^arn:aws") && pattern.ends_with('$');
        assert!(whole_arn, "{parameter}: {pattern}");
        assert!(!lets_star_in, "{parameter}: a wildcard ARN would become an IAM wildcard: {pattern}");
    }
    let rule = format!("{:?}", template["Rules"]["ReplicaBucketAndKeyTogether"]);
    assert!(rule.contains("ReplicaBucketArn") && rule.contains("ReplicaKmsKeyArn"), "a rule refuses one without the other: {rule}");
}

#[test]
fn every_filter_policy_lets_the_alarms_through() {
    let template = template();
    let mut policies = Vec::new();
    let mut found = Vec::new();
    strings(&template, String::new(), &mut found);
    for (name, resource) in template["Resources"].as_mapping().unwrap() {
        let Some(events) = resource["Properties"]["Events"].as_mapping() else { continue };
        for e in events.values().filter(|e| e["Type"].as_str() == Some("SNS")) {
            let policy = format!("{:?}", e["Properties"]["FilterPolicy"]);
            if policy.contains("severity") || policy.contains("target") || policy.contains("job") {
                assert!(policy.contains("exists"), "{name:?}: a filter policy that drops CloudWatch alarms: {policy}");
                policies.push(policy);
            }
        }
    }
    for doc in ["docs/deploy.md", "docs/operations.md", "docs/configuration.md"] {
        let text = std::fs::read_to_string(backstop_tests::repo_root().join(doc)).unwrap();
        for (at, _) in text.match_indices("FilterPolicy").chain(text.match_indices("{\"severity\": [")).chain(text.match_indices("{\"target\": [")) {
            let policy: String = text[at..].chars().take_while(|c| *c != '}' && *c != '\n').collect();
            let rest = &text[at..(at + 200).min(text.len())];
            assert!(rest.contains("exists"), "{doc}: a documented filter policy that drops CloudWatch alarms: {policy}…");
            policies.push(policy);
        }
    }
    assert!(policies.len() >= 4, "the template's and the docs' filter policies were seen: {policies:?}");
}
