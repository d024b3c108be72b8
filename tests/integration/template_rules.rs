//! Rules for `template.yaml` and `infra/replica.yaml` that linters do not know, each from AWS's documented
//! behaviour, so a mistake a real deploy would reject cannot come back:
//!
//! - no ARN hard-codes the `aws` partition (China and GovCloud stacks are `aws-cn`, `aws-us-gov`);
//! - no S3 lifecycle rule sets `ExpiredObjectDeleteMarker` beside an expiration by days or date (S3 refuses the
//!   whole configuration).

use serde_norway::Value;

fn load(path: &str) -> Value {
    let file = backstop_tests::repo_root().join(path);
    serde_norway::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every string in `value` with where it sits, skipping parameters' descriptions (examples for people).
fn strings<'a>(value: &'a Value, at: String, out: &mut Vec<(String, &'a str)>) {
    match value {
        Value::String(s) => out.push((at, s)),
        Value::Sequence(items) => items.iter().enumerate().for_each(|(i, v)| strings(v, format!("{at}[{i}]"), out)),
        Value::Mapping(map) => {
            for (k, v) in map {
                let key = k.as_str().unwrap_or_default();
                if key == "Description" {
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
