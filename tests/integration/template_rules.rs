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
//!   attributes, and a filter on an attribute drops every message without it);
//! - default cron times exist once every day in any time zone (none between 00:00 and 04:00, where clocks move);
//! - age alarms fire on two of three hours and do not count missing data as an old backup, and an alarm of its
//!   own fires when the monitor stops running;
//! - scratch instance classes come from a list, and the CPU-bound functions get two vCPUs by default;
//! - every function and the state machine log to a group the stack declares with a retention (a group Lambda
//!   creates on its own keeps logs for ever);
//! - replication reports its failures (metrics on, an alarm on OperationsFailedReplication), and Object Lock
//!   with replication, which the replica cannot take, is refused;
//! - every Lambda task of the drill state machine has a timeout and retries a crashed invocation
//!   (`Lambda.Unknown`) instead of abandoning the drills at once;
//! - a sweep of scratch servers that keeps failing alarms (on the metric the verify job emits);
//! - the drill loop is bounded by elapsed time, with room left to abandon before the execution times out;
//! - no function's environment carries the targets' JSON (Lambda allows 4 KB for all variables together): each
//!   reads the SSM parameter, and may read that one only;
//! - a replica in another account: replicas handed to that account, its policies trusting the one named
//!   replication role (not the account), which may write replicas and nothing else, delete markers included;
//! - docs/deploy.md describes every parameter of both stacks.

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
        assert!(
            hard_coded.is_empty(),
            "{path}: use arn:${{AWS::Partition}}: (or a DefinitionSubstitutions entry) in {hard_coded:?}"
        );
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
            assert_eq!(
                e["Properties"]["OmitName"].as_bool(),
                Some(true),
                "{name:?} {event:?}: OmitName: true, so two stacks can live in one account and region"
            );
            assert!(e["Properties"]["Name"].is_null(), "{name:?} {event:?}: a fixed schedule name");
        }
    }
    assert_eq!(schedules, 5, "backup, sweep, verify, purge and monitor schedules");
}

#[test]
fn the_bucket_refuses_puts_under_another_key() {
    let template = template();
    let statements =
        template["Resources"]["BackupBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"].as_sequence().unwrap();
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
                    !condition["StringEquals"]["aws:SourceAccount"].is_null()
                        && !condition["ArnLike"]["aws:SourceArn"].is_null(),
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
    for parameter in [
        "DatabaseSecretArns",
        "PitrSourceInstanceArns",
        "PitrSourceKmsKeyArns",
        "ReplicaBucketArn",
        "ReplicaKmsKeyArn",
        "SlackWebhookSecretArn",
        "PgClientLayerArn",
    ] {
        let pattern = template["Parameters"][parameter]["AllowedPattern"]
            .as_str()
            .unwrap_or_else(|| panic!("{parameter} has no AllowedPattern"));
        // Every one of them ends up in an IAM Resource: a pattern that lets `*` through lets a wildcard grant in.
        let class_with_star =
            pattern.split('[').skip(1).any(|class| class.split(']').next().unwrap_or_default().contains('*'));
        let lets_star_in = pattern.contains(".*") || pattern.contains(".+") || class_with_star;
        let whole_arn = pattern.starts_with("^$|^arn:aws") && pattern.ends_with('$');
        assert!(whole_arn, "{parameter}: {pattern}");
        assert!(!lets_star_in, "{parameter}: a wildcard ARN would become an IAM wildcard: {pattern}");
    }
    let rule = format!("{:?}", template["Rules"]["ReplicaBucketAndKeyTogether"]);
    assert!(
        rule.contains("ReplicaBucketArn") && rule.contains("ReplicaKmsKeyArn"),
        "a rule refuses one without the other: {rule}"
    );
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
        for (at, _) in text
            .match_indices("FilterPolicy")
            .chain(text.match_indices("{\"severity\": ["))
            .chain(text.match_indices("{\"target\": ["))
        {
            let policy: String = text[at..].chars().take_while(|c| *c != '}' && *c != '\n').collect();
            let rest = &text[at..(at + 200).min(text.len())];
            assert!(
                rest.contains("exists"),
                "{doc}: a documented filter policy that drops CloudWatch alarms: {policy}…"
            );
            policies.push(policy);
        }
    }
    assert!(policies.len() >= 4, "the template's and the docs' filter policies were seen: {policies:?}");
}

#[test]
fn default_cron_times_exist_once_every_day_in_every_time_zone() {
    let template = template();
    let mut crons = 0;
    for (name, parameter) in template["Parameters"].as_mapping().unwrap() {
        let Some(default) = parameter["Default"].as_str().and_then(|d| d.strip_prefix("cron(")) else { continue };
        crons += 1;
        let fields: Vec<&str> = default.trim_end_matches(')').split_whitespace().collect();
        let hours: Vec<u32> = fields[1]
            .split(',')
            .map(|h| h.parse().unwrap_or_else(|_| panic!("{name:?}: hour field {:?}: use fixed hours", fields[1])))
            .collect();
        assert!(hours.iter().all(|h| (4..24).contains(h)), "{name:?} = cron({default}: an hour between 00 and 03 is skipped or repeated on a DST change day in many zones");
    }
    assert!(crons >= 3, "backup, verify and purge default to cron expressions");
}

#[test]
fn age_alarms_tolerate_one_late_hour_and_a_stopped_monitor_has_its_own_alarm() {
    let template = template();
    let resources = &template["Resources"];
    for alarm in ["BackupAgeAlarm", "VerifiedAgeAlarm"] {
        let p = &resources[alarm]["Properties"];
        let (n, m) = (p["EvaluationPeriods"].as_u64().unwrap(), p["DatapointsToAlarm"].as_u64().unwrap_or(0));
        assert!(m >= 2 && n >= m, "{alarm}: {m} of {n} periods");
        assert_ne!(
            p["TreatMissingData"].as_str(),
            Some("breaching"),
            "{alarm}: missing data would fire it from the deploy until the first backup"
        );
    }
    let monitor = &resources["MonitorNotRunningAlarm"]["Properties"];
    assert_eq!(
        (monitor["Namespace"].as_str(), monitor["MetricName"].as_str()),
        (Some("AWS/Lambda"), Some("Invocations"))
    );
    assert_eq!(monitor["TreatMissingData"].as_str(), Some("breaching"), "no invocation reports no data");
}

#[test]
fn scratch_classes_come_from_a_list_and_cpu_bound_functions_get_two_vcpus() {
    let template = template();
    let classes =
        template["Parameters"]["ScratchInstanceClass"]["AllowedValues"].as_sequence().expect("an allowed list");
    assert!(classes.iter().all(|c| c.as_str().is_some_and(|c| c.starts_with("db."))));
    for (function, parameter) in [("BackupFunction", "BackupMemoryMB"), ("VerifyFunction", "VerifyMemoryMB")] {
        let memory = &template["Resources"][function]["Properties"]["MemorySize"];
        assert!(
            matches!(memory, Value::Tagged(t) if t.tag == "Ref" && t.value.as_str() == Some(parameter)),
            "{function}: MemorySize from {parameter}"
        );
        let default = template["Parameters"][parameter]["Default"].as_u64().unwrap();
        // Lambda grants one vCPU per 1769 MB; the stream needs about a vCPU and a half (docs/benchmarks.md).
        assert!(default >= 2 * 1769, "{parameter} = {default} MB is under two vCPUs");
    }
}

/// The log group a `!Ref NAME` or `!GetAtt NAME.Arn` names, checked for a retention from the parameter.
fn assert_retained(template: &Value, reference: &Value, owner: &str) {
    let name = match reference {
        Value::Tagged(t) if t.tag == "Ref" => t.value.as_str().unwrap().to_string(),
        Value::Tagged(t) if t.tag == "GetAtt" => t.value.as_str().unwrap().trim_end_matches(".Arn").to_string(),
        other => panic!("{owner}: its log group is not one of the stack's: {other:?}"),
    };
    let group = &template["Resources"][name.as_str()];
    assert_eq!(group["Type"].as_str(), Some("AWS::Logs::LogGroup"), "{owner} logs to {name}");
    assert!(
        matches!(&group["Properties"]["RetentionInDays"], Value::Tagged(t) if t.tag == "Ref" && t.value.as_str() == Some("LogRetentionDays")),
        "{name} keeps logs for LogRetentionDays"
    );
}

#[test]
fn every_function_and_the_state_machine_log_to_a_group_with_a_retention() {
    let template = template();
    let mut owners = 0;
    for (name, resource) in template["Resources"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        match resource["Type"].as_str() {
            Some("AWS::Serverless::Function") => {
                owners += 1;
                assert_retained(&template, &resource["Properties"]["LoggingConfig"]["LogGroup"], name);
            }
            Some("AWS::Serverless::StateMachine") => {
                owners += 1;
                let destination =
                    &resource["Properties"]["Logging"]["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"];
                assert_retained(&template, destination, name);
            }
            _ => {}
        }
    }
    assert_eq!(owners, 7, "five functions, the backup state machine and the drill state machine");
}

#[test]
fn replication_failures_alarm_and_object_lock_with_replication_is_refused() {
    let template = template();
    let rule = format!("{:?}", template["Resources"]["BackupBucket"]["Properties"]["ReplicationConfiguration"]);
    assert!(rule.contains("Metrics") && rule.contains("Enabled"), "replication metrics on: {rule}");
    let alarm = &template["Resources"]["ReplicationFailedAlarm"];
    assert_eq!(alarm["Condition"].as_str(), Some("Replicate"));
    assert_eq!(alarm["Properties"]["MetricName"].as_str(), Some("OperationsFailedReplication"));
    assert!(
        format!("{:?}", alarm["Properties"]["Dimensions"]).contains("DisasterRecoveryCopy"),
        "the alarm reads the replication rule's own metric"
    );
    let refused = format!("{:?}", template["Rules"]["NoObjectLockWithReplication"]);
    assert!(refused.contains("ObjectLockDays") && refused.contains("ReplicaBucketArn"), "{refused}");
}

/// The verify state machine's parts: its definition, the Lambda loop's states, and the states of one Fargate drill.
fn verify_machine(template: &Value) -> (&Value, &Value, &Value) {
    let definition = &template["Resources"]["VerifyStateMachine"]["Properties"]["Definition"];
    let branches = definition["States"]["Drills"]["Branches"].as_sequence().expect("Drills is a Parallel state");
    let lambda_loop = &branches[0]["States"];
    let fargate = &branches[1]["States"]["DrillEachOnFargate"]["ItemProcessor"]["States"];
    (definition, lambda_loop, fargate)
}

#[test]
fn drill_tasks_time_out_and_retry_crashed_invocations() {
    let template = template();
    let (definition, lambda_loop, fargate) = verify_machine(&template);
    let invocations: Vec<(String, &Value)> = [lambda_loop, fargate]
        .iter()
        .flat_map(|states| states.as_mapping().unwrap().iter())
        .filter(|(_, s)| {
            s["Type"].as_str() == Some("Task") && s["Resource"].as_str().unwrap().contains("lambda:invoke")
        })
        .map(|(name, state)| (name.as_str().unwrap().to_string(), state))
        .collect();
    for (name, state) in &invocations {
        let timeout = state["TimeoutSeconds"].as_u64().unwrap_or_else(|| panic!("{name:?} has no TimeoutSeconds: a hung invocation would hold the execution until its own timeout, with no Catch"));
        assert!((901..=1200).contains(&timeout), "{name:?}: {timeout} s, just past the function's 900 s");
        let retries = format!("{:?}", state["Retry"]);
        assert!(
            retries.contains("Lambda.Unknown") && retries.contains("States.Timeout"),
            "{name:?} abandons the drills at a crash: {retries}"
        );
    }
    let names: Vec<&str> = invocations.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names.len(), 4, "StartDrills, ResumeDrills, Abandon and AbandonFargateDrill: {names:?}");
    // The plan only reads the catalog: a short bound, and retried while the catalog cannot be read.
    let plan = &definition["States"]["PlanDrills"];
    assert!(plan["TimeoutSeconds"].as_u64().unwrap() <= 300);
    assert!(format!("{:?}", plan["Retry"]).contains("Retryable"));
    // Every way out of a Fargate drill that failed goes through the function's abandon.
    let task = &fargate["DrillOnFargate"];
    assert_eq!(task["Catch"][0]["Next"].as_str(), Some("AbandonFargateDrill"));
    assert!(format!("{:?}", fargate["AbandonFargateDrill"]["Retry"]).contains("LeaseHeld"));
    // No branch ends in a Fail: one side failing must not cancel the other's drills mid-restore.
    for states in [lambda_loop, fargate] {
        for (name, state) in states.as_mapping().unwrap() {
            assert_ne!(state["Type"].as_str(), Some("Fail"), "{name:?} would cancel the other branch");
        }
    }
}

#[test]
fn a_sweep_that_keeps_failing_alarms() {
    let template = template();
    let alarm = &template["Resources"]["SweepFailingAlarm"]["Properties"];
    assert_eq!((alarm["Namespace"].as_str(), alarm["MetricName"].as_str()), (Some("Backstop"), Some("SweepFailures")));
    assert!(alarm["Dimensions"].is_null(), "the roll-up across dimensions, as the job emits it");
    // The name the verify job emits (tests/integration/verify.rs sees it emitted).
    let source = std::fs::read_to_string(backstop_tests::repo_root().join("shared/src/jobs/verify/mod.rs")).unwrap();
    assert!(source.contains("\"SweepFailures\""), "the verify job emits SweepFailures");
}

/// The seconds a task can take with every retry its crash and timeout retriers allow, each attempt running to the
/// task's timeout.
fn hung_task_seconds(task: &Value) -> u64 {
    let timeout = task["TimeoutSeconds"].as_u64().unwrap();
    let mut total = timeout;
    for retrier in task["Retry"].as_sequence().unwrap() {
        if !format!("{:?}", retrier["ErrorEquals"]).contains("States.Timeout") {
            continue;
        }
        let mut interval = retrier["IntervalSeconds"].as_f64().unwrap();
        for _ in 0..retrier["MaxAttempts"].as_u64().unwrap() {
            total += interval as u64 + timeout;
            interval *= retrier["BackoffRate"].as_f64().unwrap_or(2.0);
        }
    }
    total
}

#[test]
fn the_drill_loop_is_bounded_by_elapsed_time_and_leaves_room_to_abandon() {
    let template = template();
    let (definition, states, fargate) = verify_machine(&template);
    let text = format!("{definition:?}");
    assert!(
        !text.contains("polls") && !text.contains("MathAdd"),
        "a count of polls stretches with every retry: bound the loop on time"
    );

    // The Choice that gives up compares the time it is entered with the execution's start.
    let choices = states["AllDone"]["Choices"].as_sequence().unwrap();
    let give_up =
        choices.iter().find(|c| c["Next"].as_str() == Some("Abandon")).expect("AllDone gives up into Abandon");
    assert_eq!(states["AllDone"]["QueryLanguage"].as_str(), Some("JSONata"));
    let condition = give_up["Condition"].as_str().unwrap();
    assert!(
        condition.contains(
            "$toMillis($states.context.State.EnteredTime) - $toMillis($states.context.Execution.StartTime) >="
        ),
        "{condition}"
    );
    let bound_ms: u64 = condition.rsplit(">=").next().unwrap().trim().trim_end_matches("%}").trim().parse().unwrap();

    // After the bound: one more wait and poll (hung, retried to the end), then Abandon's own invocation; all of
    // it before the execution's timeout, which runs no Catch.
    let wait = states["WaitForScratch"]["Seconds"].as_u64().unwrap();
    let worst = bound_ms / 1000
        + wait
        + hung_task_seconds(&states["ResumeDrills"])
        + states["Abandon"]["TimeoutSeconds"].as_u64().unwrap();
    // The Lambda loop's drills' scratch servers live the function's scratch lifetime (the default 6 h: the
    // function does not set it), past which the sweep deletes them: the loop must be done by then.
    let variables = &template["Resources"]["VerifyFunction"]["Properties"]["Environment"]["Variables"];
    assert!(variables.get("BACKSTOP_SCRATCH_LIFETIME_SECONDS").is_none(), "the loop's bound assumes the 6 h default");
    assert!(worst <= 6 * 3600, "giving up at {} s leaves Abandon no room: {worst} s > 6 h", bound_ms / 1000);
    // A Fargate drill has its task's bound, then its abandon: it waits out the stopped task's verify lease
    // (LeaseHeld, a minute apart) and may hang and be retried. All of it before the execution's timeout, and
    // the task's scratch instances outlive the task.
    let execution = definition["TimeoutSeconds"].as_u64().unwrap();
    let task = fargate["DrillOnFargate"]["TimeoutSeconds"].as_u64().unwrap();
    let abandon = &fargate["AbandonFargateDrill"];
    let lease_waits = abandon["Retry"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|r| format!("{:?}", r["ErrorEquals"]).contains("LeaseHeld"))
        .map(|r| r["IntervalSeconds"].as_u64().unwrap() * r["MaxAttempts"].as_u64().unwrap())
        .unwrap();
    let worst = task + lease_waits + hung_task_seconds(abandon);
    assert!(
        worst <= execution,
        "a Fargate drill stopped at {task} s leaves its abandon no room: {worst} s > {execution} s"
    );
    let container = &template["Resources"]["VerifyTaskDefinition"]["Properties"]["ContainerDefinitions"][0];
    let lifetime: u64 = container["Environment"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|pair| pair["Name"].as_str() == Some("BACKSTOP_SCRATCH_LIFETIME_SECONDS"))
        .and_then(|pair| pair["Value"].as_str())
        .expect("the drill task sets its scratch instances' lifetime")
        .parse()
        .unwrap();
    assert!(
        lifetime >= worst,
        "the sweep could delete a Fargate drill's instance ({lifetime} s) before its abandon ends ({worst} s)"
    );
}

#[test]
fn targets_reach_the_functions_through_a_parameter_not_their_environment() {
    let template = template();
    let mut strings_at = Vec::new();
    strings(&template["Resources"], "Resources".into(), &mut strings_at);
    let uses: Vec<&String> = strings_at.iter().filter(|(_, s)| *s == "Targets").map(|(at, _)| at).collect();
    assert_eq!(uses.len(), 1, "the Targets JSON is referred to once, by the parameter the stack keeps: {uses:?}");
    assert!(uses[0].starts_with("Resources.TargetsParameter.Properties.Value"), "{uses:?}");
    let parameter = &template["Resources"]["TargetsParameter"]["Properties"];
    assert_eq!(parameter["Type"].as_str(), Some("String"));

    let mut readers = 0;
    for (name, resource) in template["Resources"].as_mapping().unwrap() {
        let variables = &resource["Properties"]["Environment"]["Variables"];
        assert!(variables["BACKSTOP_TARGETS"].is_null(), "{name:?} carries the targets in its environment");
        let Some(source) = variables.get("BACKSTOP_TARGETS_PARAMETER") else { continue };
        readers += 1;
        // The statement that lets it read names the same parameter, and nothing else.
        let policies = format!("{:?}", resource["Properties"]["Policies"]);
        // Inline, or a managed policy the function names by !Ref.
        let policy = match &resource["Properties"]["Policies"][0] {
            Value::Tagged(managed) => {
                &template["Resources"][managed.value.as_str().unwrap()]["Properties"]["PolicyDocument"]
            }
            inline => inline,
        };
        let statement = policy["Statement"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|s| s["Sid"].as_str() == Some("ReadTargets"))
            .unwrap_or_else(|| panic!("{name:?} cannot read its targets: {policies}"));
        assert_eq!(statement["Action"].as_str(), Some("ssm:GetParameter"));
        let resource_arn = format!("{:?}", statement["Resource"]);
        assert!(
            resource_arn.contains(":parameter${Name}") && resource_arn.contains(&format!("{source:?}")),
            "{name:?}: {resource_arn}"
        );
    }
    assert_eq!(readers, 4, "backup, verify, purge and monitor");
    let rule = format!("{:?}", template["Rules"]["TargetsFromOnePlace"]);
    assert!(rule.contains("TargetsParameterName") && rule.contains("Targets"), "{rule}");
}

/// The statements of a policy document, each `!If [cond, statement, AWS::NoValue]` taken as its statement.
fn statements(document: &Value) -> Vec<&Value> {
    document["Statement"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|s| match s {
            Value::Tagged(tagged) if tagged.tag == "!If" => &tagged.value[1],
            plain => plain,
        })
        .collect()
}

#[test]
fn a_replica_in_another_account_trusts_only_the_named_replication_role_and_only_to_write() {
    let template = template();
    let destination = format!("{:?}", template["Resources"]["BackupBucket"]["Properties"]["ReplicationConfiguration"]);
    for part in ["ReplicaAccountId", "AccessControlTranslation", "Destination", "CrossAccountReplica"] {
        assert!(destination.contains(part), "the replication rule lacks {part}: {destination}");
    }
    assert!(destination.contains("DeleteMarkerReplication") && destination.contains("Disabled"), "{destination}");
    let role = &template["Resources"]["ReplicationRole"]["Properties"];
    assert!(
        format!("{:?}", role["RoleName"]).contains("ReplicationRoleName"),
        "the replica's policies name the role: it needs a fixed name"
    );
    let ownership = &template["Resources"]["ReplicaOwnershipPolicy"];
    assert_eq!(ownership["Condition"].as_str(), Some("CrossAccountReplica"));
    assert!(format!("{:?}", ownership["Properties"]).contains("s3:ObjectOwnerOverrideToBucketOwner"));
    let rule = format!("{:?}", template["Rules"]["ReplicaAccountNeedsReplicationAndRoleName"]);
    assert!(rule.contains("ReplicationRoleName") && rule.contains("ReplicaBucketArn"), "{rule}");

    // Neither side lets replication hide a replica behind a delete marker.
    let replica = load("infra/replica.yaml");
    for (name, text) in [("template.yaml", format!("{template:?}")), ("infra/replica.yaml", format!("{replica:?}"))] {
        assert!(!text.contains("s3:ReplicateDelete"), "{name} grants s3:ReplicateDelete");
    }

    // The replica's side: the source account's principal, held to the named role by aws:PrincipalArn.
    let role_arn = "arn:${AWS::Partition}:iam::${SourceAccountId}:role/${SourceReplicationRoleName}";
    let bucket_policy = &replica["Resources"]["ReplicaBucketPolicy"]["Properties"]["PolicyDocument"];
    let key_policy = &replica["Resources"]["ReplicaKey"]["Properties"]["KeyPolicy"];
    let mut granted = Vec::new();
    for statement in statements(bucket_policy).into_iter().chain(statements(key_policy)) {
        let principal = format!("{:?}", statement["Principal"]);
        if statement["Effect"].as_str() != Some("Allow") || !principal.contains("SourceAccountId") {
            continue;
        }
        let condition = format!("{:?}", statement["Condition"]["ArnEquals"]["aws:PrincipalArn"]);
        assert!(condition.contains(role_arn), "{:?} trusts the whole source account: {condition}", statement["Sid"]);
        match &statement["Action"] {
            Value::String(one) => granted.push(one.clone()),
            Value::Sequence(many) => granted.extend(many.iter().map(|a| a.as_str().unwrap().to_string())),
            other => panic!("{other:?}"),
        }
    }
    granted.sort();
    assert_eq!(
        granted,
        [
            "kms:Encrypt",
            "s3:GetBucketVersioning",
            "s3:ObjectOwnerOverrideToBucketOwner",
            "s3:ReplicateObject",
            "s3:ReplicateTags"
        ],
        "the source's role writes and encrypts replicas, and nothing more"
    );
    let ownership = format!("{:?}", replica["Resources"]["ReplicaBucket"]["Properties"]["OwnershipControls"]);
    assert!(ownership.contains("BucketOwnerEnforced"), "{ownership}");
    assert!(format!("{:?}", replica["Rules"]["SourceAccountAndRoleTogether"]).contains("SourceReplicationRoleName"));
}

#[test]
fn the_deploy_guide_describes_every_parameter_of_both_stacks() {
    let guide = std::fs::read_to_string(backstop_tests::repo_root().join("docs/deploy.md")).unwrap();
    // First cells of the guide's tables: "| `A`, `B` | …".
    let documented: std::collections::BTreeSet<String> = guide
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .flat_map(|rest| {
            rest.split(" |")
                .next()
                .unwrap()
                .split(", ")
                .map(|name| name.trim_matches('`').to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    for path in ["template.yaml", "infra/replica.yaml"] {
        let template = load(path);
        for name in template["Parameters"].as_mapping().unwrap().keys().map(|k| k.as_str().unwrap()) {
            assert!(documented.contains(name), "docs/deploy.md does not describe {path}'s parameter {name}");
        }
    }
}

/// The runner decision counts on one Lambda invocation giving a backup its 900 s less the cleanup margin; a
/// longer or shorter timeout in the template would make it send targets to the wrong runner.
#[test]
fn the_runner_decisions_lambda_budget_is_the_backup_functions_timeout_less_its_cleanup_margin() {
    let template = template();
    let timeout = template["Resources"]["BackupFunction"]["Properties"]["Timeout"].as_u64().unwrap();
    let margin = backstop::app::CLEANUP_MARGIN.as_secs();
    assert_eq!((timeout - margin) as f64, backstop::jobs::backup::LAMBDA_BUDGET_SECONDS);
}
