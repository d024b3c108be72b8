//! `template.yaml` against the code it deploys: every job's function has its schedule (verify's through the
//! state machine), sets only variables its configuration reads and every one a Lambda must set, and its IAM
//! policy allows every AWS call the job was seen to make against moto, and nothing else but the permissions
//! AWS checks on the function's behalf (listed below, each with its reason).
//!
//! The calls are recorded by an interceptor on the production clients while each job runs its paths: a backup
//! whose password is in Secrets Manager, a local drill, the RDS scratch and point-in-time adapters, a purge
//! that deletes and aborts, a monitor run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use aws_sdk_s3::config::{Intercept, SharedInterceptor};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use backstop::adapters::memory::FixedClock;
use backstop::adapters::ssm::SsmParameters;
use backstop::app::{self, AwsClients};
use backstop::config::{PasswordSource, ScratchSettings, VARIABLES};
use backstop::domain::{BackupStatus, Job, TargetOutcome, Trigger};
use backstop::jobs::monitor::MonitorRequest;
use backstop::jobs::purge::{PurgeDeps, PurgeJob, PurgeRequest};
use backstop::jobs::verify::VerifyRequest;
use backstop::metrics::NoMetrics;
use backstop::ports::{ObjectStore, PointInTimeRestores, ScratchDatabases};
use backstop_tests::aws::AwsFixture;
use backstop_tests::pg::{PgCluster, BACKSTOP_PASSWORD};
use chrono::{Duration as Span, Utc};
use secrecy::SecretString;
use serde_norway::Value;

use crate::common::*;

/// One AWS request as IAM sees it: the service, the operation, and whether it named an object version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Call {
    service: String,
    operation: String,
    versioned: bool,
}

#[derive(Debug, Clone, Default)]
struct CallLog(Arc<Mutex<BTreeSet<Call>>>);

impl Intercept for CallLog {
    fn name(&self) -> &'static str {
        "CallLog"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_s3::config::RuntimeComponents,
        cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let metadata = cfg.load::<Metadata>().expect("every operation carries its name");
        let call = Call {
            service: metadata.service().to_ascii_lowercase().replace(' ', ""),
            operation: metadata.name().to_string(),
            versioned: context.request().uri().contains("versionId="),
        };
        self.0.lock().unwrap().insert(call);
        Ok(())
    }
}

impl CallLog {
    fn clients(&self, aws: &AwsFixture) -> AwsClients {
        AwsClients::with_interceptors(&aws.sdk, true, &[SharedInterceptor::new(self.clone())])
    }

    /// The IAM actions the recorded calls need.
    fn actions(&self) -> BTreeSet<String> {
        self.0.lock().unwrap().iter().map(iam_action).collect()
    }
}

/// The IAM action that authorizes `call`. S3's differ from its operation names; the other services' do not.
fn iam_action(call: &Call) -> String {
    let action = match (call.service.as_str(), call.operation.as_str(), call.versioned) {
        ("s3", "PutObject" | "CreateMultipartUpload" | "UploadPart" | "CompleteMultipartUpload", _) => "PutObject",
        ("s3", "GetObject" | "HeadObject", false) => "GetObject",
        ("s3", "GetObject" | "HeadObject", true) => "GetObjectVersion",
        ("s3", "DeleteObject", false) => "DeleteObject",
        ("s3", "DeleteObject", true) => "DeleteObjectVersion",
        ("s3", "ListObjectVersions", _) => "ListBucketVersions",
        ("s3", "ListObjectsV2", _) => "ListBucket",
        ("s3", "ListMultipartUploads", _) => "ListBucketMultipartUploads",
        ("s3", "AbortMultipartUpload", _) => "AbortMultipartUpload",
        ("s3", other, _) => panic!("no IAM mapping for s3:{other}: add it here"),
        (_, operation, _) => operation,
    };
    format!("{}:{action}", call.service)
}

/// Permissions a function needs that no call recorded here names: AWS checks them on the function's behalf, or
/// they serve paths other tests drive (failures, contention).
fn implied(job: Job) -> BTreeMap<&'static str, &'static str> {
    let mut implied = BTreeMap::from([
        ("kms:GenerateDataKey", "S3 asks KMS for a data key when the function writes an SSE-KMS object (and SNS when it publishes to the KMS-encrypted topic)"),
        ("kms:Decrypt", "S3 decrypts SSE-KMS objects the function reads, and the parts of its multipart uploads"),
    ]);
    match job {
        Job::Backup => {
            // Failure paths, which the fail_closed tests drive; this test runs the good one.
            implied.insert(
                "s3:AbortMultipartUpload",
                "a failed dump's upload is aborted, so no half-written object stays",
            );
            implied.insert("s3:DeleteObjectVersion", "a failed attempt's object versions are removed");
            implied
                .insert("s3:ListBucketVersions", "the versions of a failed attempt's keys are listed to remove them");
        }
        Job::Verify => {
            implied.insert(
                "kms:DescribeKey",
                "RDS describes the customer key it encrypts a scratch instance's storage with",
            );
            implied
                .insert("kms:CreateGrant", "RDS holds a grant on the key while the encrypted scratch instance exists");
            implied.insert(
                "rds:AddTagsToResource",
                "CreateDBInstance and RestoreDBInstanceToPointInTime with Tags need it",
            );
            implied
                .insert("secretsmanager:CreateSecret", "RDS creates the managed master-password secret as the caller");
            implied.insert("secretsmanager:TagResource", "RDS tags the managed secret it creates as the caller");
            implied.insert(
                "rds:ModifyDBInstance",
                "an instance that refuses deletion has deletion protection turned off first",
            );
            implied.insert(
                "rds:DescribeDBEngineVersions",
                "the newest minor of the source's major; moto has no such API, so the adapter falls back",
            );
        }
        Job::Purge => {
            implied.insert(
                "dynamodb:GetItem",
                "a purge lease another run holds is read to say whose it is and until when (the concurrency tests)",
            );
        }
        Job::Monitor => {}
    }
    implied
}

fn template() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
    serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A value under CloudFormation's short-form tags (`!If [cond, a, b]` gives both branches).
fn untagged(value: &Value) -> Vec<&Value> {
    match value {
        Value::Tagged(tagged) if tagged.tag == "If" => {
            tagged.value.as_sequence().unwrap()[1..].iter().flat_map(untagged).collect()
        }
        Value::Tagged(tagged) if tagged.tag == "Ref" && tagged.value.as_str() == Some("AWS::NoValue") => vec![],
        other => vec![other],
    }
}

fn function_of(template: &Value, job: Job) -> (&str, &Value) {
    let binary = job.as_str();
    let resources = template["Resources"].as_mapping().unwrap();
    let found = resources.iter().find(|(_, r)| {
        r["Type"].as_str() == Some("AWS::Serverless::Function")
            && r["Metadata"]["BuildProperties"]["Binary"].as_str() == Some(binary)
    });
    let (name, resource) = found.unwrap_or_else(|| panic!("template.yaml has no function for the {binary} binary"));
    (name.as_str().unwrap(), resource)
}

/// The default expressions of a resource's ScheduleV2 events (each a `!Ref` to a template parameter).
fn schedules(template: &Value, resource: &Value) -> Vec<String> {
    let Some(events) = resource["Properties"]["Events"].as_mapping() else { return vec![] };
    let default_of = |expression: &Value| {
        let parameter = match expression {
            Value::Tagged(tagged) if tagged.tag == "Ref" => tagged.value.as_str().unwrap(),
            other => panic!("a schedule fixed in the template ({other:?}): make it a parameter"),
        };
        let default = template["Parameters"][parameter]["Default"].as_str();
        default.unwrap_or_else(|| panic!("parameter {parameter} has no default")).to_string()
    };
    events
        .values()
        .filter(|e| e["Type"].as_str() == Some("ScheduleV2"))
        .map(|e| default_of(&e["Properties"]["ScheduleExpression"]))
        .collect()
}

fn environment(template: &Value, function: &Value) -> BTreeSet<String> {
    let global = template["Globals"]["Function"]["Environment"]["Variables"].as_mapping().cloned().unwrap_or_default();
    let own = function["Properties"]["Environment"]["Variables"].as_mapping().cloned().unwrap_or_default();
    global.keys().chain(own.keys()).map(|k| k.as_str().unwrap().to_string()).collect()
}

/// The policy documents a function (`Policies`: documents, or `!Ref` to a managed policy) or an IAM role
/// (`Policies` with a `PolicyDocument` each, and `ManagedPolicyArns`) holds.
fn policy_documents<'a>(template: &'a Value, holder: &'a Value) -> Vec<&'a Value> {
    let managed = |reference: &'a Value| -> &'a Value {
        let Value::Tagged(tagged) = reference else { panic!("a managed policy that is not a !Ref: {reference:?}") };
        let resource = &template["Resources"][tagged.value.as_str().unwrap()];
        assert_eq!(resource["Type"].as_str(), Some("AWS::IAM::ManagedPolicy"), "{reference:?}");
        &resource["Properties"]["PolicyDocument"]
    };
    let properties = &holder["Properties"];
    let mut documents = Vec::new();
    for policy in properties["Policies"].as_sequence().into_iter().flatten() {
        match policy {
            Value::Tagged(_) => documents.push(managed(policy)),
            _ if policy.get("PolicyDocument").is_some() => documents.push(&policy["PolicyDocument"]),
            _ => documents.push(policy),
        }
    }
    documents.extend(properties["ManagedPolicyArns"].as_sequence().into_iter().flatten().map(managed));
    documents
}

fn allowed_actions(template: &Value, holder: &Value) -> BTreeSet<String> {
    let mut actions = BTreeSet::new();
    for policy in policy_documents(template, holder) {
        for statement in policy["Statement"].as_sequence().into_iter().flatten().flat_map(untagged) {
            assert_eq!(statement["Effect"].as_str(), Some("Allow"), "{statement:?}");
            match &statement["Action"] {
                Value::String(one) => {
                    actions.insert(one.clone());
                }
                Value::Sequence(many) => actions.extend(many.iter().map(|a| a.as_str().unwrap().to_string())),
                other => panic!("an Action that is neither a string nor a list: {other:?}"),
            }
        }
    }
    actions
}

/// The variables, schedules and policy of `job`'s function, held to the calls `log` saw.
fn check_function(template: &Value, job: Job, log: &CallLog) {
    let (name, function) = function_of(template, job);

    check_variables(name, job, &environment(template, function));
    check_policy(template, name, function, job, log);
}

/// `name` (a function or a task definition) sets only variables `job` reads, and every one it needs deployed.
fn check_variables(name: &str, job: Job, set: &BTreeSet<String>) {
    for variable in set {
        let known = VARIABLES.iter().find(|v| v.name == variable);
        assert!(
            known.is_some_and(|v| v.jobs.contains(&job)),
            "{name} sets {variable}, which the {job:?} configuration does not read"
        );
    }
    for required in VARIABLES.iter().filter(|v| v.required_in_lambda && v.jobs.contains(&job)) {
        assert!(
            set.contains(required.name),
            "{name} does not set {}, which the {job:?} job needs deployed",
            required.name
        );
    }
}

/// The task definition that runs `job`'s program on Fargate: its variables and its task role, as a function's.
fn check_task(template: &Value, job: Job, log: &CallLog) {
    let resources = template["Resources"].as_mapping().unwrap();
    let family = format!("${{AWS::StackName}}-{}", job.as_str());
    let (name, task) = resources
        .iter()
        .find(|(_, r)| {
            r["Type"].as_str() == Some("AWS::ECS::TaskDefinition")
                && matches!(&r["Properties"]["Family"], Value::Tagged(t) if t.value.as_str() == Some(family.as_str()))
        })
        .unwrap_or_else(|| panic!("template.yaml has no task definition of family {family}"));
    let name = name.as_str().unwrap();
    let container = &task["Properties"]["ContainerDefinitions"][0];
    let set: BTreeSet<String> = container["Environment"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|pair| pair["Name"].as_str().unwrap().to_string())
        .collect();
    check_variables(name, job, &set);
    let role_name = match &task["Properties"]["TaskRoleArn"] {
        Value::Tagged(t) if t.tag == "GetAtt" => t.value.as_str().unwrap().trim_end_matches(".Arn").to_string(),
        other => panic!("{name}'s TaskRoleArn is not the !GetAtt of a role in the template: {other:?}"),
    };
    let role = &template["Resources"][role_name.as_str()];
    assert_eq!(role["Type"].as_str(), Some("AWS::IAM::Role"), "{role_name}");
    check_policy(template, &role_name, role, job, log);
}

/// The actions `holder`'s policies allow are exactly those `log` saw the job call, and those `implied` says why.
fn check_policy(template: &Value, name: &str, holder: &Value, job: Job, log: &CallLog) {
    let allowed = allowed_actions(template, holder);
    let needed = log.actions();
    let missing: Vec<_> = needed.difference(&allowed).collect();
    assert!(missing.is_empty(), "{name}'s policy lacks {missing:?} (calls seen: {:?})", log.0.lock().unwrap());
    let implied = implied(job);
    let unused: Vec<_> = allowed.iter().filter(|a| !needed.contains(*a) && !implied.contains_key(a.as_str())).collect();
    assert!(unused.is_empty(), "{name}'s policy allows {unused:?}, which the {job:?} job was not seen to need: remove them, or say why in `implied`");
}

#[test]
fn every_job_runs_on_its_schedule() {
    let template = template();
    for (job, default) in [(Job::Purge, "cron(45 5 * * ? *)"), (Job::Monitor, "rate(1 hour)")] {
        let (name, function) = function_of(&template, job);
        assert_eq!(schedules(&template, function), [default], "{name}'s schedule");
    }
    // The one state machine that invokes a function.
    let machine_of = |function: &str| {
        let resources = template["Resources"].as_mapping().unwrap();
        let driving: Vec<&Value> = resources
            .values()
            .filter(|r| r["Type"].as_str() == Some("AWS::Serverless::StateMachine"))
            .filter(|m| format!("{:?}", m["Properties"]["Policies"]).contains(&format!("\"{function}\"")))
            .collect();
        assert_eq!(driving.len(), 1, "one state machine invokes {function}");
        driving[0]
    };

    // Backup: no schedule of its own; the state machine that runs it once per target has it.
    let (backup, function) = function_of(&template, Job::Backup);
    assert_eq!(schedules(&template, function), Vec::<String>::new(), "{backup} runs through its state machine");
    assert_eq!(schedules(&template, machine_of(backup)), ["cron(15 4 * * ? *)"], "daily backups");

    // Verify: the sweep on the function itself, drills through the state machine that loops it.
    let (verify, function) = function_of(&template, Job::Verify);
    assert_eq!(schedules(&template, function), ["rate(1 hour)"], "{verify}'s sweep");
    assert_eq!(schedules(&template, machine_of(verify)), ["cron(0 6 ? * SUN *)"], "weekly drills");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_function_may_make_the_calls_its_job_makes_and_no_others() {
    let template = template();

    // Backup, with the database password in Secrets Manager.
    let source = PgCluster::start();
    source.psql("postgres", "CREATE DATABASE app");
    source.psql("app", "CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 200) g;");
    source.create_backup_role();
    let aws = AwsFixture::new().await;
    let secret = serde_json::json!({ "username": "backstop", "password": BACKSTOP_PASSWORD }).to_string();
    let secret_arn = aws
        .clients
        .secrets
        .create_secret()
        .name(format!("db-{}", aws.table))
        .secret_string(secret)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut target = source.target("app", "app", BACKSTOP_PASSWORD, dir.path());
    target.password = PasswordSource::SecretId(secret_arn);
    // Never backed up: the monitor alerts about it.
    let mut never = target.clone();
    never.name = "never-backed-up".into();
    let mut config = aws.config(vec![target, never]);
    // Success notices too, so the backup and the drill both publish.
    config.notify_success = true;
    let scratch_dir = tempfile::tempdir().unwrap();
    config.verify.scratch = ScratchSettings::Local { dir: Some(scratch_dir.path().to_path_buf()) };
    let config = Arc::new(config);

    let backup_log = CallLog::default();
    let backup = app::backup_job(config.clone(), &backup_log.clients(&aws), Arc::new(NoMetrics));
    let run = backup.run(&request("app", Some("tick-1"))).await.unwrap();
    assert_eq!(run.targets[0].outcome, TargetOutcome::Completed, "{}", run.targets[0].message);
    // A redelivered schedule tick: answered from the first run's claim.
    backup.run(&request("app", Some("tick-1"))).await.unwrap();
    // A run killed mid-backup left its record in progress and an upload open: the next run fails it and
    // removes what it wrote.
    let abandoned = leave_an_abandoned_backup(&aws, &config, "app").await;
    // A second backup, so the monitor compares two manifests.
    let second = backup.run(&request("app", Some("tick-2"))).await.unwrap();
    assert_eq!(second.targets[0].outcome, TargetOutcome::Completed, "{}", second.targets[0].message);
    let failed = records(&aws, "app").await.into_iter().find(|b| b.backup_id == abandoned).expect("its record");
    assert_eq!(failed.status, BackupStatus::Failed, "{failed:?}");
    read_targets_as_deployed(&aws, &backup_log).await;
    check_function(&template, Job::Backup, &backup_log);
    // The Fargate task runs the same job with the same program: held to the same calls.
    check_task(&template, Job::Backup, &backup_log);

    // Verify: a local drill of that backup, then the RDS adapters the deployed function drills with.
    let verify_log = CallLog::default();
    let request = VerifyRequest {
        target: Some("app".into()),
        backup_id: None,
        trigger: Trigger::Cli,
        request_id: "wiring".into(),
        deadline: None,
        max_steps: None,
        resume_only: false,
        abandon: None,
        sweep_only: false,
        exclude: Vec::new(),
    };
    let drill =
        app::verify_job(config.clone(), &verify_log.clients(&aws), Arc::new(NoMetrics)).run(&request).await.unwrap();
    assert!(drill.done, "{drill:?}");
    assert!(records(&aws, "app").await.iter().any(|b| b.status == BackupStatus::Verified));
    // The verify state machine's plan: where each target's next drill runs.
    let units =
        app::verify_job(config.clone(), &verify_log.clients(&aws), Arc::new(NoMetrics)).plan(None).await.unwrap();
    assert_eq!(units.len(), 2, "{units:?}");
    rds_paths(&verify_log).await;
    read_targets_as_deployed(&aws, &verify_log).await;
    check_function(&template, Job::Verify, &verify_log);
    // The Fargate drill task runs the same job with the same program: held to the same calls.
    check_task(&template, Job::Verify, &verify_log);

    // Monitor: the ages of that backup and its drill.
    let monitor_log = CallLog::default();
    let reports = app::monitor_job(config.clone(), &monitor_log.clients(&aws), Arc::new(NoMetrics))
        .run(&MonitorRequest { target: None, alert: true })
        .await
        .unwrap();
    assert_eq!(reports.len(), 2);
    assert!(aws
        .alerts(1, std::time::Duration::from_secs(10))
        .await
        .iter()
        .any(|a| a.message.contains("never-backed-up")));
    // The hourly report page, written by the same function.
    let monitor = app::monitor_job(config.clone(), &monitor_log.clients(&aws), Arc::new(NoMetrics));
    let key = monitor.refresh_report(reports).await.unwrap();
    assert!(String::from_utf8(aws.object(&key).await).unwrap().contains("never-backed-up"));
    read_targets_as_deployed(&aws, &monitor_log).await;
    check_function(&template, Job::Monitor, &monitor_log);

    // Purge: backups past their retention deleted, a day-old upload aborted.
    purge_paths(&template).await;
}

/// What a deployed function does before its job runs: read its targets from the SSM parameter the template
/// names (`BACKSTOP_TARGETS_PARAMETER`), on the job's own clients.
/// What a backup killed mid-stream leaves (on the fixture's own clients, not the job's): its record in progress
/// and an open upload with a part in it; its lease has lapsed.
async fn leave_an_abandoned_backup(
    aws: &AwsFixture,
    config: &backstop::config::Config,
    target: &str,
) -> backstop::domain::BackupId {
    use backstop::adapters::{dynamodb::DynamoCatalog, s3::S3Store};
    use backstop::domain::backup::ObjectKeys;
    use backstop::domain::{BackupId, BackupRecord};
    use backstop::ports::{Backups, PartToUpload};
    use sha2::Digest;
    let started_at = chrono::Utc::now() - chrono::Duration::minutes(1);
    let id = BackupId::new(started_at);
    let record =
        BackupRecord::in_progress(target, id.clone(), Trigger::Schedule, "killed-run", started_at, config.codec);
    DynamoCatalog::new(aws.clients.dynamodb.clone(), aws.table.clone()).create_backup(&record).await.unwrap();
    let keys = ObjectKeys::new(&config.key_prefix, target, &id, started_at, config.codec);
    let store = S3Store::new(aws.clients.s3.clone(), aws.bucket.clone(), Some(aws.kms_key_arn.clone()));
    let upload = store.create_multipart(&keys.dump, config.codec.content_type()).await.unwrap();
    let body = bytes::Bytes::from(vec![7u8; 1024]);
    let sha256 = sha2::Sha256::digest(&body).into();
    upload.upload_part(PartToUpload { number: 1, body, sha256 }).await.unwrap();
    id
}

async fn read_targets_as_deployed(aws: &AwsFixture, log: &CallLog) {
    let name = format!("/backstop/{}/targets", aws.table);
    let targets =
        r#"[{"name":"app","host":"127.0.0.1","database":"app","user":"backstop","password":{"env":"PGPASSWORD"}}]"#;
    // Written by the stack (or the operator), not by the function: on clients that record nothing.
    let setup = AwsClients::from_sdk_config(&aws.sdk, true);
    setup.ssm.put_parameter().name(&name).value(targets).r#type("String".into()).overwrite(true).send().await.unwrap();
    let env = BTreeMap::from([
        ("BACKSTOP_BUCKET".to_string(), aws.bucket.clone()),
        ("BACKSTOP_TABLE".to_string(), aws.table.clone()),
        ("BACKSTOP_TARGETS_PARAMETER".to_string(), name),
    ]);
    let config = app::load_config(&env, None, &SsmParameters::new(log.clients(aws).ssm)).await.unwrap();
    assert_eq!(config.target_names(), ["app"]);
}

/// Create, wait for and delete a scratch instance; restore a source to a point in time, reach it, delete it.
async fn rds_paths(log: &CallLog) {
    let net = crate::rds_scratch::Net::new().await;
    let clients = log.clients(&net.aws);
    let scratch =
        backstop::adapters::rds::RdsScratch::new(clients.rds.clone(), clients.secrets.clone(), net.settings());

    let handle = scratch
        .create(&crate::rds_scratch::spec(&net.drill("wiring"), crate::rds_scratch::in_an_hour()))
        .await
        .unwrap();
    crate::rds_scratch::until_ready(|| ScratchDatabases::poll(&scratch, &handle)).await;
    ScratchDatabases::destroy(&scratch, &handle).await.unwrap();
    // The sweep makes the same calls (DescribeDBInstances, DeleteDBInstance); it is not run here, because it would
    // delete other tests' expired instances on the shared emulator while they look for them.

    let source = format!("orders-{}", net.drill("pitr"));
    net.foreign_instance(&source, &[]).await;
    let at = PointInTimeRestores::latest_restorable_time(&scratch, &source).await.unwrap().unwrap_or_else(Utc::now);
    let copy = scratch.restore(&source, at, &net.drill("pitr"), crate::rds_scratch::in_an_hour()).await.unwrap();
    // Polled until Ready, or the test fails: the calls of the ready path must be among those recorded.
    crate::rds_scratch::until_ready(|| {
        PointInTimeRestores::poll(&scratch, &copy, "app", SecretString::from("source-password"))
    })
    .await;
    PointInTimeRestores::destroy(&scratch, &copy).await.unwrap();
}

async fn purge_paths(template: &Value) {
    let f = crate::purge::Fixture::new().await;
    for days_ago in [5, 4, 3, 2, 1] {
        f.backup(days_ago).await;
    }
    let abandoned = f
        .store
        .create_multipart(&format!("{}/2026/11/01/abandoned.sql.zst", crate::purge::TARGET), "application/zstd")
        .await
        .unwrap();
    let log = CallLog::default();
    let config = Arc::new(f.config.clone());
    let deps = app::backup_deps(&config, &log.clients(&f.aws), Arc::new(NoMetrics));
    let clock = Arc::new(FixedClock::at(Utc::now() + Span::hours(25)));
    let job = PurgeJob::new(
        config,
        PurgeDeps {
            store: deps.store,
            catalog: deps.catalog,
            alerts: deps.alerts,
            clock,
            metrics: Arc::new(NoMetrics),
        },
    );
    // Three of five past the deletion-fraction rail: refused with an alert, then forced.
    let mut request =
        PurgeRequest { target: None, force: false, dry_run: false, trigger: Trigger::Cli, request_id: "wiring".into() };
    let refused = job.run(&request).await.unwrap();
    assert!(refused[0].refused.is_some(), "{refused:?}");
    assert_eq!(f.aws.alerts(1, std::time::Duration::from_secs(10)).await.len(), 1, "the rail's refusal alerts");
    request.force = true;
    let purged = job.run(&request).await.unwrap();
    let actions: Vec<&str> = refused[0].steps.iter().chain(&purged[0].steps).map(|s| s.action.as_str()).collect();
    assert!(actions.contains(&"delete") && actions.contains(&"abort_upload"), "{refused:?} {purged:?}");
    assert!(f.store.open_uploads("").await.unwrap().iter().all(|u| u.key != abandoned.key()));
    read_targets_as_deployed(&f.aws, &log).await;
    check_function(template, Job::Purge, &log);
}

#[test]
fn the_slack_notifier_is_given_only_its_webhook_source() {
    use backstop::notify::webhook_url::{PARAMETER_VAR, SECRET_ID_VAR};
    let template = template();
    let resources = template["Resources"].as_mapping().unwrap();
    let notifier = resources
        .values()
        .find(|r| r["Metadata"]["BuildProperties"]["Binary"].as_str() == Some("notifier"))
        .expect("a notifier function");
    assert_eq!(
        environment(&template, notifier),
        BTreeSet::from([PARAMETER_VAR.to_string(), SECRET_ID_VAR.to_string()])
    );
    let events: Vec<_> =
        notifier["Properties"]["Events"].as_mapping().unwrap().values().map(|e| e["Type"].as_str().unwrap()).collect();
    assert_eq!(events, ["SNS"], "it is invoked by the alert topic");
}

/// A `!Sub` (or plain) string as written in the template.
fn text_of(value: &Value) -> String {
    match value {
        Value::Tagged(tagged) if tagged.tag == "Sub" => {
            tagged.value.as_str().map(str::to_string).unwrap_or_else(|| format!("{:?}", tagged.value))
        }
        Value::String(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

/// No role may read secrets through a wildcard unless a condition pins whose they are: every RDS-managed
/// secret is named `rds!db-…`, production instances' master passwords included, so `rds!db-*` alone would
/// hand the verify function every database's master password in the region.
#[test]
fn no_role_reads_secrets_by_wildcard_without_pinning_their_owner() {
    let template = template();
    let resources = template["Resources"].as_mapping().unwrap();
    let mut checked = 0;
    for (name, resource) in resources {
        let policies = resource["Properties"]["Policies"].as_sequence().into_iter().flatten();
        let inline = resource["Properties"]["Policies"]
            .as_sequence()
            .is_none()
            .then(|| &resource["Properties"]["PolicyDocument"]);
        let documents: Vec<&Value> = policies.chain(inline).collect();
        // A SAM function's policy is a document; an IAM role's holds one under PolicyDocument.
        let statements: Vec<&Value> = documents
            .iter()
            .flat_map(|p| {
                p["Statement"].as_sequence().or(p["PolicyDocument"]["Statement"].as_sequence()).into_iter().flatten()
            })
            .collect();
        for statement in statements.into_iter().flat_map(untagged) {
            let actions: Vec<String> = match &statement["Action"] {
                Value::String(one) => vec![one.clone()],
                Value::Sequence(many) => many.iter().filter_map(|a| a.as_str().map(str::to_string)).collect(),
                _ => vec![],
            };
            if !actions.iter().any(|a| a == "secretsmanager:GetSecretValue" || a == "secretsmanager:*") {
                continue;
            }
            let resources: Vec<String> = match &statement["Resource"] {
                Value::Sequence(many) => many.iter().map(text_of).collect(),
                one => vec![text_of(one)],
            };
            for resource in resources.iter().filter(|r| r.contains('*')) {
                checked += 1;
                let owner =
                    &statement["Condition"]["StringLike"]["secretsmanager:ResourceTag/aws:rds:primaryDBInstanceArn"];
                assert!(
                    text_of(owner).ends_with(":db:backstop-drill-*"),
                    "{name:?} reads secrets {resource} without a condition that pins them to Backstop's scratch instances: {statement:?}"
                );
            }
        }
    }
    assert!(
        checked >= 1,
        "the verify function reads its scratch instances' secrets by wildcard; the rule must have seen it"
    );
}

/// Every error name the template's retry and catch rules match is one a handler can answer with (or one Step
/// Functions or Lambda raises): a rule on a misspelt or renamed type would never fire.
#[test]
fn every_error_the_template_matches_is_one_a_handler_raises() {
    fn error_names(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Mapping(map) => {
                for (key, item) in map {
                    if key.as_str() == Some("ErrorEquals") {
                        out.extend(item.as_sequence().unwrap().iter().map(|e| e.as_str().unwrap().to_string()));
                    } else {
                        error_names(item, out);
                    }
                }
            }
            Value::Sequence(items) => items.iter().for_each(|item| error_names(item, out)),
            Value::Tagged(tagged) => error_names(&tagged.value, out),
            _ => {}
        }
    }
    let mut names = Vec::new();
    error_names(&template()["Resources"], &mut names);
    assert!(names.len() >= 10, "{names:?}");
    let ours: Vec<&str> = app::ErrorType::ALL.iter().map(|t| t.as_str()).collect();
    for name in &names {
        // ECS.*: RunTask's own exceptions; AmazonECS.Unknown: a task .sync could not place (documented by Step
        // Functions for its ECS integration).
        let builtin = ["States.", "Lambda.", "ECS.", "AmazonECS."].iter().any(|prefix| name.starts_with(prefix));
        assert!(
            builtin || ours.contains(&name.as_str()),
            "template.yaml matches {name:?}, which no handler raises (app::ErrorType: {ours:?})"
        );
    }
    for needed in ["Retryable", "LeaseHeld"] {
        assert!(names.iter().any(|n| n == needed), "the drill loop retries {needed}");
    }
}
