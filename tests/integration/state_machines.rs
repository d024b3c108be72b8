//! The backup state machine, walked state by state against the function it invokes: each Task's `Parameters`
//! are evaluated as Step Functions would (the JSONPath subset the definition uses: `$`, `$.a.b`, `$.a[0].b`,
//! `$$.Execution.StartTime`, `States.StringToJson`), the payload goes to the real backup handler (the
//! production job on in-memory fakes: a scripted pg_dump, S3 and DynamoDB in memory), and its answer goes
//! through the state's `ResultSelector` to the next state. So every payload the machine sends is one the
//! function accepts, every field it reads from an answer is one the function gives, and the fan-out runs one
//! backup per target, each failure its own. The verify machine likewise: its plan, the Lambda loop's payloads
//! and the Fargate drills' commands and abandons. (moto cannot execute a state machine that invokes Lambda.)

use std::collections::BTreeMap;
use std::sync::Arc;

use backstop::adapters::memory::*;
use backstop::app::{handle_backup_event, handle_verify_event, ErrorType};
use backstop::config::Config;
use backstop::domain::BackupStatus;
use backstop::jobs::backup::{BackupDeps, BackupJob};
use backstop::jobs::verify::{VerifyDeps, VerifyJob};
use backstop::metrics::NoMetrics;
use backstop::passwords::PasswordResolver;
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};

const SQL: &[u8] = b"--\n-- Dumped from database version 15.18\n-- Dumped by pg_dump version 15.18\n\
CREATE TABLE public.t (id int);\nCOPY public.t (id) FROM stdin;\n1\n\\.\n\n--\n-- PostgreSQL database dump complete\n--\n\n";

fn template() -> serde_norway::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
    serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The definition as JSON, with the template's `DefinitionSubstitutions` made: the function's ARN stands for
/// itself, the concurrency is the parameter's default.
fn backup_definition() -> Value {
    let template = template();
    let machine = &template["Resources"]["BackupStateMachine"]["Properties"];
    let substitutions = &machine["DefinitionSubstitutions"];
    assert_eq!(
        format!("{:?}", substitutions["BackupFunctionArn"]),
        format!("{:?}", serde_norway::from_str::<serde_norway::Value>("!GetAtt BackupFunction.Arn").unwrap()),
        "the machine invokes the backup function"
    );
    assert!(format!("{:?}", machine["Policies"]).contains("\"BackupFunction\""), "and may invoke it");
    let concurrency = template["Parameters"]["BackupConcurrency"]["Default"].as_u64().unwrap();
    let text = serde_json::to_string(&machine["Definition"]).unwrap();
    let text = text
        .replace("${BackupFunctionArn}", "backup-function")
        .replace("${BackupConcurrency}", &concurrency.to_string())
        .replace("${BackupClusterArn}", "backup-cluster")
        .replace("${BackupTaskDefinitionArn}", "backup-task")
        .replace("${SubnetIds}", "subnet-a,subnet-b")
        .replace("${SecurityGroupIds}", "sg-1")
        .replace("${Partition}", "aws");
    serde_json::from_str(&text).unwrap()
}

/// The verify machine's definition, with its substitutions made as [`backup_definition`] does.
fn verify_definition() -> Value {
    let template = template();
    let machine = &template["Resources"]["VerifyStateMachine"]["Properties"];
    assert!(format!("{:?}", machine["Policies"]).contains("\"VerifyFunction\""), "the machine may invoke it");
    let concurrency = template["Parameters"]["DrillConcurrency"]["Default"].as_u64().unwrap();
    let text = serde_json::to_string(&machine["Definition"]).unwrap();
    let text = text
        .replace("${VerifyFunctionArn}", "verify-function")
        .replace("${DrillConcurrency}", &concurrency.to_string())
        .replace("${BackupClusterArn}", "backup-cluster")
        .replace("${VerifyTaskDefinitionArn}", "verify-task")
        .replace("${SubnetIds}", "subnet-a,subnet-b")
        .replace("${SecurityGroupIds}", "sg-1")
        .replace("${Partition}", "aws");
    serde_json::from_str(&text).unwrap()
}

/// A JSONPath of the subset the definition uses, against the state's input and the context object.
fn path(expression: &str, input: &Value, context: &Value) -> Value {
    let (mut at, rest) = match expression.strip_prefix("$$") {
        Some(rest) => (context.clone(), rest),
        None => (input.clone(), expression.strip_prefix('$').expect("a path")),
    };
    for part in rest.split('.').filter(|p| !p.is_empty()) {
        let (name, index) = match part.split_once('[') {
            Some((name, index)) => (name, Some(index.trim_end_matches(']').parse::<usize>().unwrap())),
            None => (part, None),
        };
        at = at.get(name).cloned().unwrap_or_else(|| panic!("{expression}: no {name} in {at}"));
        if let Some(i) = index {
            at = at[i].clone();
        }
    }
    at
}

/// `Parameters` or `ResultSelector` evaluated: `key.$` fields are paths (or `States.StringToJson`).
fn evaluate(template: &Value, input: &Value, context: &Value) -> Value {
    match template {
        Value::Object(fields) => {
            let mut out = serde_json::Map::new();
            for (key, value) in fields {
                match key.strip_suffix(".$") {
                    Some(key) => {
                        let expression = value.as_str().unwrap();
                        let evaluated = intrinsic(expression, input, context);
                        out.insert(key.to_string(), evaluated);
                    }
                    None => {
                        out.insert(key.clone(), evaluate(value, input, context));
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => items.iter().map(|item| evaluate(item, input, context)).collect(),
        other => other.clone(),
    }
}

/// A `.$` field's expression: a path, or one of the intrinsic functions the definition uses
/// (`States.StringToJson('…')`, `States.StringSplit('…', ',')`, `States.Array(…)` of literals and paths).
fn intrinsic(expression: &str, input: &Value, context: &Value) -> Value {
    let arguments = |call: &str| -> Vec<String> {
        let inner = expression.strip_prefix(call).unwrap().strip_suffix(')').unwrap();
        inner.split(", ").map(str::to_string).collect()
    };
    let argument = |text: &str| match text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
        Some(literal) => Value::String(literal.to_string()),
        None => path(text, input, context),
    };
    if expression.starts_with("States.StringToJson(") {
        let text = arguments("States.StringToJson(")[0].clone();
        serde_json::from_str(argument(&text).as_str().unwrap()).unwrap()
    } else if expression.starts_with("States.StringSplit(") {
        let parts = arguments("States.StringSplit(");
        let (text, separator) = (argument(&parts[0]), argument(&parts[1]));
        text.as_str().unwrap().split(separator.as_str().unwrap()).map(|p| json!(p)).collect()
    } else if expression.starts_with("States.Array(") {
        arguments("States.Array(").iter().map(|a| argument(a)).collect()
    } else {
        path(expression, input, context)
    }
}

/// A state's `Parameters.Payload` (or `Payload.$`) for `input`: what Lambda receives.
fn payload(state: &Value, input: &Value, context: &Value) -> Value {
    assert_eq!(state["Resource"], "arn:aws:states:::lambda:invoke", "{state}");
    let function = state["Parameters"]["FunctionName"].as_str().unwrap();
    assert!(["backup-function", "verify-function"].contains(&function), "{state}");
    let parameters = evaluate(&state["Parameters"], input, context);
    parameters["Payload"].clone()
}

struct Fakes {
    catalog: MemoryCatalog,
    alerts: RecordingAlerts,
    dumper: ScriptedDumper,
    job: BackupJob,
    config: Arc<Config>,
    deps: BackupDeps,
}

/// The production backup job on in-memory fakes, with three targets (without the Fargate runner).
fn fakes() -> Fakes {
    fakes_with(false, json!({}))
}

/// With the Fargate runner deployed or not, and `archive` (a fourth target) configured as `archive_settings`.
fn fakes_with(fargate: bool, archive_settings: Value) -> Fakes {
    let mut targets: Vec<Value> = ["orders", "billing", "audit"]
        .map(|name| json!({ "name": name, "host": "db.internal", "database": name, "user": "backstop", "password": {"env": "PW"} }))
        .to_vec();
    if archive_settings.as_object().is_some_and(|o| !o.is_empty()) {
        let mut archive = json!({ "name": "archive", "host": "db.internal", "database": "archive", "user": "backstop", "password": {"env": "PW"} });
        archive.as_object_mut().unwrap().extend(archive_settings.as_object().unwrap().clone());
        targets.push(archive);
    }
    let env: BTreeMap<String, String> = [
        ("BACKSTOP_BUCKET", "bucket".to_string()),
        ("BACKSTOP_TABLE", "table".to_string()),
        ("BACKSTOP_TOPIC_ARN", "arn:aws:sns:eu-west-1:123456789012:alerts".to_string()),
        ("BACKSTOP_TARGETS", Value::Array(targets).to_string()),
        ("BACKSTOP_FARGATE", fargate.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let config = Config::load(&env, None).unwrap();
    let (catalog, alerts) = (MemoryCatalog::default(), RecordingAlerts::default());
    let dumper = ScriptedDumper::new(ScriptedDump::succeeding(SQL));
    let passwords = [("PW".to_string(), "secret".to_string())].into_iter().collect();
    let deps = BackupDeps {
        store: Arc::new(MemoryStore::default()),
        catalog: Arc::new(catalog.clone()),
        alerts: Arc::new(alerts.clone()),
        dumper: Arc::new(dumper.clone()),
        passwords: Arc::new(PasswordResolver::new(Arc::new(MemorySecrets::default()), passwords)),
        clock: Arc::new(FixedClock::at(Utc.with_ymd_and_hms(2026, 12, 3, 4, 15, 0).unwrap())),
        metrics: Arc::new(NoMetrics),
    };
    let config = Arc::new(config);
    Fakes { catalog, alerts, dumper, job: BackupJob::new(config.clone(), deps.clone()), config, deps }
}

fn states(definition: &Value) -> &serde_json::Map<String, Value> {
    definition["States"].as_object().unwrap()
}

/// The items the Map runs, from the first state, for an execution `input`.
async fn list(f: &Fakes, definition: &Value, input: &Value, context: &Value) -> Result<Value, ErrorType> {
    assert_eq!(definition["StartAt"], "ListTargets");
    let state = &states(definition)["ListTargets"];
    let answer =
        handle_backup_event(&f.job, &payload(state, input, context), "list", None).await.map_err(|e| e.error_type)?;
    Ok(evaluate(&state["ResultSelector"], &json!({ "Payload": answer }), context))
}

#[tokio::test]
async fn the_backup_state_machine_backs_up_each_target_in_its_own_invocation_with_the_executions_key() {
    let definition = backup_definition();
    let f = fakes();
    let context = json!({ "Execution": { "StartTime": "2026-12-03T04:15:00Z" } });
    let input = json!({ "trigger": "schedule", "idempotency_key": "tick-1" });
    let listed = list(&f, &definition, &input, &context).await.unwrap();
    assert_eq!(listed["concurrency"], json!(4), "the Map's concurrency is a number: {listed}");

    let map = &states(&definition)["BackUpEachTarget"];
    assert_eq!(map["Type"], "Map");
    assert_eq!(map["MaxConcurrencyPath"], "$.concurrency");
    let items = path(map["ItemsPath"].as_str().unwrap(), &listed, &context);
    let items = items.as_array().unwrap();
    assert_eq!(items.len(), 3, "one item per target: {items:?}");
    let processor = &map["ItemProcessor"];
    // Each is a Lambda unit (nothing says otherwise yet): the first state chooses the function.
    let choose = &processor["States"][processor["StartAt"].as_str().unwrap()];
    assert!(items.iter().all(|item| item["runner"] == "lambda"), "{items:?}");
    let back_up = &processor["States"][choose["Default"].as_str().unwrap()];
    for item in items {
        let event = payload(back_up, item, &context);
        let answer = handle_backup_event(&f.job, &event, "run", None).await.expect("the backup succeeds");
        let result = evaluate(&back_up["ResultSelector"], &json!({ "Payload": answer }), &context);
        assert_eq!(result, json!({ "target": item["target"], "outcome": "completed" }));
    }
    let records = f.catalog.backups();
    assert_eq!(records.len(), 3, "three backups, one each");
    assert!(records.iter().all(|r| r.status == BackupStatus::Completed && r.trigger.as_str() == "schedule"));

    // A redelivered tick (the same execution key): every target's run is a duplicate; nothing is dumped again.
    let dumps = f.dumper.dumps_started.load(std::sync::atomic::Ordering::SeqCst);
    for item in items {
        let answer = handle_backup_event(&f.job, &payload(back_up, item, &context), "again", None).await.unwrap();
        assert_eq!(answer["targets"][0]["outcome"], "skipped_duplicate", "{answer}");
    }
    assert_eq!(f.dumper.dumps_started.load(std::sync::atomic::Ordering::SeqCst), dumps);
}

#[tokio::test]
async fn a_manual_execution_names_its_targets_and_an_unknown_one_is_refused() {
    let definition = backup_definition();
    let f = fakes();
    let context = json!({ "Execution": { "StartTime": "2026-12-03T09:00:00Z" } });
    let listed = list(&f, &definition, &json!({ "targets": ["billing"] }), &context).await.unwrap();
    let unit = &listed["targets"][0];
    assert_eq!(listed["targets"].as_array().unwrap().len(), 1);
    assert_eq!(
        (&unit["target"], &unit["trigger"], &unit["runner"]),
        (&json!("billing"), &json!("console"), &json!("lambda"))
    );
    // No key in the input: one for the execution, so a retried unit is still the same delivery.
    assert!(unit["idempotency_key"].as_str().unwrap().starts_with("execution-"), "{unit}");
    assert!(unit["runner_reasons"][0].as_str().unwrap().contains("no finished backup to measure"), "{unit}");
    let listed = list(&f, &definition, &json!({}), &context).await.unwrap();
    assert_eq!(listed["targets"].as_array().unwrap().len(), 3, "no names: every target");
    assert_eq!(list(&f, &definition, &json!({ "targets": ["nope"] }), &context).await, Err(ErrorType::InvalidEvent));
    assert_eq!(list(&f, &definition, &json!({ "target": "orders" }), &context).await, Err(ErrorType::InvalidEvent));
}

#[tokio::test]
async fn a_target_whose_invocation_dies_is_failed_by_its_own_branch_and_the_execution_says_so() {
    let definition = backup_definition();
    let f = fakes();
    let context = json!({ "Execution": { "StartTime": "2026-12-03T04:15:00Z" } });
    let processor = &states(&definition)["BackUpEachTarget"]["ItemProcessor"];
    let back_up = &processor["States"]["BackUp"];

    // Only a death goes to FailStopped; a failure the function recorded and alerted ends the branch.
    let catches = back_up["Catch"].as_array().unwrap();
    assert_eq!(catches[0]["Next"], "TargetFailed");
    assert!(catches[0]["ErrorEquals"].as_array().unwrap().contains(&json!(ErrorType::BackupFailed.as_str())));
    assert_eq!(
        (catches.last().unwrap()["ErrorEquals"].clone(), catches.last().unwrap()["Next"].clone()),
        (json!(["States.ALL"]), json!("FailStopped"))
    );

    // The invocation for `audit` timed out before it recorded anything: the Catch puts Step Functions' error
    // beside the item, and FailStopped sends it to the function.
    let caught = json!({
        "target": "audit", "trigger": "schedule", "idempotency_key": "tick-1",
        "error": { "Error": "States.Timeout", "Cause": "The task timed out after 960 seconds" }
    });
    let fail_stopped = &processor["States"]["FailStopped"];
    let event = payload(fail_stopped, &caught, &context);
    let answer = handle_backup_event(&f.job, &event, "fail", None).await.expect("the failure path runs");
    assert_eq!(answer["nothing_recorded"], json!(true), "{answer}");
    let alerts = f.alerts.sent();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].subject.contains("audit") && alerts[0].body.contains("States.Timeout"), "{}", alerts[0].body);
    assert_eq!(fail_stopped["Retry"][0]["ErrorEquals"], json!([ErrorType::LeaseHeld.as_str()]));

    // The branch ends with the target failed, and the execution fails when any branch did.
    let after = evaluate(&processor["States"]["TargetFailed"]["Parameters"], &caught, &context);
    assert_eq!(after, json!({ "target": "audit", "outcome": "failed" }));
    let any_failed = &states(&definition)["AnyFailed"];
    assert_eq!(any_failed["QueryLanguage"], "JSONata");
    assert_eq!(any_failed["Choices"][0]["Condition"], "{% 'failed' in $states.input.results.outcome %}");
    assert_eq!(states(&definition)[any_failed["Choices"][0]["Next"].as_str().unwrap()]["Type"], "Fail");
}

#[tokio::test]
async fn a_target_too_large_for_lambda_runs_as_the_fargate_task_and_a_killed_task_is_failed_and_alerted() {
    let definition = backup_definition();
    let template = template();
    let f = fakes_with(true, json!({ "size_gb": 500 }));
    let context = json!({ "Execution": { "StartTime": "2026-12-03T04:15:00Z" } });
    let input = json!({ "trigger": "schedule", "idempotency_key": "tick-9" });
    let listed = list(&f, &definition, &input, &context).await.unwrap();
    let items = listed["targets"].as_array().unwrap();
    let runner_of = |name: &str| items.iter().find(|i| i["target"] == name).unwrap()["runner"].clone();
    assert_eq!((runner_of("orders"), runner_of("archive")), (json!("lambda"), json!("fargate")), "{items:?}");
    let archive = items.iter().find(|i| i["target"] == "archive").unwrap();
    assert!(archive["runner_reasons"].to_string().contains("more than 50%"), "{archive}");

    // The Choice sends it to the task; the others to the function.
    let processor = &states(&definition)["BackUpEachTarget"]["ItemProcessor"];
    let choose = &processor["States"][processor["StartAt"].as_str().unwrap()];
    let next = |item: &Value| {
        let choice = &choose["Choices"][0];
        let chosen = path(choice["Variable"].as_str().unwrap(), item, &context) == choice["StringEquals"];
        if chosen {
            choice["Next"].clone()
        } else {
            choose["Default"].clone()
        }
    };
    assert_eq!(next(archive), json!("BackUpOnFargate"));
    assert_eq!(next(&items[0]), json!("BackUp"));

    // The task it runs: the template's cluster and task definition, the functions' network, and the CLI's
    // backup command for this target with the execution's trigger and key.
    let task = &processor["States"]["BackUpOnFargate"];
    assert_eq!(task["Resource"], "arn:aws:states:::ecs:runTask.sync");
    let parameters = evaluate(&task["Parameters"], archive, &context);
    assert_eq!(
        (&parameters["Cluster"], &parameters["TaskDefinition"]),
        (&json!("backup-cluster"), &json!("backup-task"))
    );
    assert_eq!(parameters["LaunchType"], "FARGATE");
    let network = &parameters["NetworkConfiguration"]["AwsvpcConfiguration"];
    assert_eq!((&network["Subnets"], &network["SecurityGroups"]), (&json!(["subnet-a", "subnet-b"]), &json!(["sg-1"])));
    let overrides = &parameters["Overrides"]["ContainerOverrides"][0];
    let containers = &template["Resources"]["BackupTaskDefinition"]["Properties"]["ContainerDefinitions"];
    assert_eq!(overrides["Name"].as_str(), containers[0]["Name"].as_str(), "the override names the task's container");
    assert_eq!(
        overrides["Command"],
        json!(["backup", "--target", "archive", "--trigger", "schedule", "--idempotency-key", "tick-9", "--emf"])
    );

    // The task was stopped (out of memory) before it recorded anything: the Catch sends ECS's description of
    // the task to FailStopped, which alerts once, saying why it stopped.
    let catches = task["Catch"].as_array().unwrap();
    assert_eq!(
        (catches[0]["ErrorEquals"].clone(), catches[0]["Next"].clone()),
        (json!(["States.ALL"]), json!("FailStopped"))
    );
    let described = json!({
        "StoppedReason": "OutOfMemoryError: Container killed due to memory usage",
        "Containers": [{ "Name": "backstop", "ExitCode": 137, "Reason": "OutOfMemoryError" }],
    });
    let mut caught = archive.clone();
    caught["error"] = json!({ "Error": "States.TaskFailed", "Cause": described.to_string() });
    let event = payload(&processor["States"]["FailStopped"], &caught, &context);
    let answer = handle_backup_event(&f.job, &event, "fail", None).await.expect("the failure path runs");
    assert_eq!(answer["nothing_recorded"], json!(true), "{answer}");
    let alerts = f.alerts.sent();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(
        alerts[0].body.contains("the task stopped: OutOfMemoryError: Container killed due to memory usage; its program exited with code 137"),
        "{}",
        alerts[0].body
    );
}

#[tokio::test]
async fn without_the_fargate_runner_a_large_target_runs_on_lambda_and_says_why() {
    let definition = backup_definition();
    let f = fakes_with(false, json!({ "size_gb": 500 }));
    let context = json!({ "Execution": { "StartTime": "2026-12-03T04:15:00Z" } });
    let listed = list(&f, &definition, &json!({ "targets": ["archive"] }), &context).await.unwrap();
    let unit = &listed["targets"][0];
    assert_eq!(unit["runner"], "lambda", "{unit}");
    assert!(unit["runner_reasons"].to_string().contains("the Fargate runner is not deployed"), "{unit}");
}

/// The verify job on the same fakes as `f`'s backups, scratch servers and restores in memory.
fn verify_job(f: &Fakes) -> VerifyJob {
    let deps = VerifyDeps {
        store: f.deps.store.clone(),
        catalog: f.deps.catalog.clone(),
        alerts: f.deps.alerts.clone(),
        scratch: Arc::new(MemoryScratch::default()),
        restorer: Arc::new(ScriptedRestorer::default()),
        point_in_time: None,
        passwords: f.deps.passwords.clone(),
        clock: f.deps.clock.clone(),
        metrics: Arc::new(NoMetrics),
    };
    VerifyJob::new(f.config.clone(), deps)
}

#[tokio::test]
async fn the_verify_state_machine_plans_loops_the_lambda_drills_and_gives_each_fargate_drill_its_command() {
    let definition = verify_definition();
    let f = fakes_with(true, json!({ "runner": "fargate" }));
    let backups = backstop::jobs::backup::BackupRequest {
        target: None,
        dry_run: false,
        trigger: backstop::domain::Trigger::Schedule,
        request_id: "backups".into(),
        idempotency_key: None,
        deadline: None,
    };
    assert_eq!(f.job.run(&backups).await.unwrap().outcome, "succeeded");
    let verify = verify_job(&f);
    let context = json!({ "Execution": { "StartTime": "2026-12-06T06:00:00Z" } });

    // PlanDrills: its answer, through the ResultSelector, lands at $.plan of the execution's input.
    assert_eq!(definition["StartAt"], "PlanDrills");
    let plan_state = &states(&definition)["PlanDrills"];
    let mut state = json!({ "trigger": "schedule" });
    let answer = handle_verify_event(&verify, &payload(plan_state, &state, &context), "plan", None).await.unwrap();
    assert_eq!(plan_state["ResultPath"], "$.plan");
    state["plan"] = evaluate(&plan_state["ResultSelector"], &json!({ "Payload": answer }), &context);
    assert_eq!(state["plan"]["concurrency"], json!(2), "{state}");

    let branches = states(&definition)["Drills"]["Branches"].as_array().unwrap();
    // The Lambda loop: StartDrills, then ResumeDrills until done, each payload from the plan.
    let lambda = &branches[0]["States"];
    let mut step = "StartDrills";
    for _ in 0..20 {
        let task = &lambda[step];
        let answer = handle_verify_event(&verify, &payload(task, &state, &context), step, None).await.unwrap();
        let result = evaluate(&task["ResultSelector"], &json!({ "Payload": answer }), &context);
        if result["done"] == true {
            break;
        }
        step = "ResumeDrills";
    }
    let drilled: std::collections::BTreeSet<String> = f.catalog.drills().into_iter().map(|d| d.target).collect();
    assert_eq!(drilled.into_iter().collect::<Vec<_>>(), ["audit", "billing", "orders"], "archive is Fargate's");
    // Abandon's payload is one the function takes, and leaves the Fargate target alone too.
    let abandon = payload(&lambda["Abandon"], &state, &context);
    assert_eq!(abandon["exclude"], json!(["archive"]));
    handle_verify_event(&verify, &abandon, "abandon", None).await.unwrap();

    // The Fargate side: one item per Fargate target, its task's command the plan's, its abandon the function's.
    let map = &branches[1]["States"]["DrillEachOnFargate"];
    let items = path(map["ItemsPath"].as_str().unwrap(), &state, &context);
    assert_eq!(path(map["MaxConcurrencyPath"].as_str().unwrap(), &state, &context), json!(2));
    let items = items.as_array().unwrap();
    assert_eq!(items.len(), 1, "{items:?}");
    let processor = &map["ItemProcessor"]["States"];
    let task = evaluate(&processor["DrillOnFargate"]["Parameters"], &items[0], &context);
    assert_eq!(task["TaskDefinition"], "verify-task");
    assert_eq!(task["NetworkConfiguration"]["AwsvpcConfiguration"]["Subnets"], json!(["subnet-a", "subnet-b"]));
    assert_eq!(
        task["Overrides"]["ContainerOverrides"][0]["Command"],
        json!(["verify", "--target", "archive", "--trigger", "schedule", "--emf"])
    );
    let abandon = payload(&processor["AbandonFargateDrill"], &items[0], &context);
    let answer = handle_verify_event(&verify, &abandon, "abandon-archive", None).await.unwrap();
    assert_eq!(answer["done"], true, "nothing of archive's was left unfinished: {answer}");
    let failed = evaluate(&processor["FargateDrillFailed"]["Parameters"], &items[0], &context);
    assert_eq!(failed, json!({ "target": "archive", "failed": "FargateDrillFailed" }));
}
