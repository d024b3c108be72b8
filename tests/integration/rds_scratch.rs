//! The RDS scratch adapter (`adapters::rds`) against moto: what it asks RDS for (placement, encryption,
//! tags), idempotent resume, the sweeper's restraint, the refusals, and PITR restores; and the verify job's
//! point-in-time drill driving it, phase by phase.
//!
//! moto makes instances available and deletes them at once, so these tests show the requests and the
//! bookkeeping, not RDS's timing. Each test makes its own VPC, subnets, subnet group and security group; the
//! sweeper lists every instance on the shared moto server, so no other test may leave an expired scratch
//! instance behind. moto drops some settings (a restore's `false` and `0` values, for one), so the adapter's
//! requests are also recorded as sent and checked directly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_rds::types::Tag;
use backstop::adapters::rds::{
    RdsScratch, RdsScratchSettings, KIND_RDS, KIND_RDS_PITR, TAG_DRILL_ID, TAG_EXPIRES_AT, TAG_PITR_SOURCE, TAG_SCRATCH,
};
use backstop::adapters::secrets::SecretsManager;
use backstop::config::{PasswordSource, ScratchSettings, TargetConfig, UserCheck};
use backstop::domain::drill::DrillPhase;
use backstop::domain::{BackupStatus, Trigger};
use backstop::jobs::verify::{VerifyDeps, VerifyJob, VerifyRequest, VerifyRun};
use backstop::metrics::NoMetrics;
use backstop::passwords::PasswordResolver;
use backstop::ports::{
    ObjectStore, RestoreError, Restorer, ScratchDatabases, ScratchEndpoint, ScratchError, ScratchHandle, ScratchSpec,
    ScratchState, SystemClock,
};
use backstop_tests::aws::AwsFixture;
use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::{ExposeSecret, SecretString};

/// Every RDS request the adapter sent, as its form-encoded parameters.
#[derive(Debug, Clone, Default)]
struct Recorder(Arc<Mutex<Vec<HashMap<String, String>>>>);

impl aws_sdk_rds::config::Intercept for Recorder {
    fn name(&self) -> &'static str {
        "Recorder"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_rds::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_rds::config::RuntimeComponents,
        _: &mut aws_sdk_rds::config::ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let body = String::from_utf8_lossy(context.request().body().bytes().unwrap_or_default()).into_owned();
        let params = body
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.0.lock().unwrap().push(params);
        Ok(())
    }
}

impl Recorder {
    /// The parameters of each `action` request so far.
    fn sent(&self, action: &str) -> Vec<HashMap<String, String>> {
        self.0.lock().unwrap().iter().filter(|p| p.get("Action").map(String::as_str) == Some(action)).cloned().collect()
    }
}

/// A network of the test's own for scratch instances, and the clients to look at what was made.
pub(crate) struct Net {
    pub(crate) aws: AwsFixture,
    /// For the test's own requests (not recorded).
    rds: aws_sdk_rds::Client,
    recorder: Recorder,
    subnet_group: String,
    security_group: String,
    parameter_group: String,
    id: String,
}

impl Net {
    pub(crate) async fn new() -> Net {
        let aws = AwsFixture::new().await;
        let rds = aws_sdk_rds::Client::new(&aws.sdk);
        let ec2 = aws_sdk_ec2::Client::new(&aws.sdk);
        let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();

        let vpc = ec2.create_vpc().cidr_block("10.20.0.0/16").send().await.unwrap().vpc.unwrap().vpc_id.unwrap();
        let mut subnets = Vec::new();
        // RDS wants a subnet group spanning two availability zones.
        for (n, az) in ["us-east-1a", "us-east-1b"].iter().enumerate() {
            let subnet = ec2
                .create_subnet()
                .vpc_id(&vpc)
                .cidr_block(format!("10.20.{n}.0/24"))
                .availability_zone(*az)
                .send()
                .await
                .unwrap();
            subnets.push(subnet.subnet.unwrap().subnet_id.unwrap());
        }
        let security_group = ec2
            .create_security_group()
            .group_name(format!("drill-{id}"))
            .description("restore drills")
            .vpc_id(&vpc)
            .send()
            .await
            .unwrap()
            .group_id
            .unwrap();
        let subnet_group = format!("drill-{id}");
        rds.create_db_subnet_group()
            .db_subnet_group_name(&subnet_group)
            .db_subnet_group_description("restore drills")
            .set_subnet_ids(Some(subnets))
            .send()
            .await
            .unwrap();
        let parameter_group = format!("drill-{id}");
        rds.create_db_parameter_group()
            .db_parameter_group_name(&parameter_group)
            .db_parameter_group_family("postgres16")
            .description("restore drills")
            .send()
            .await
            .unwrap();
        Net { aws, rds, recorder: Recorder::default(), subnet_group, security_group, parameter_group, id }
    }

    pub(crate) fn settings(&self) -> RdsScratchSettings {
        let mut settings =
            RdsScratchSettings::new("db.t4g.micro", &self.subnet_group, vec![self.security_group.clone()]);
        settings.parameter_group = Some(self.parameter_group.clone());
        settings.kms_key_id = Some(self.aws.kms_key_arn.clone());
        settings
    }

    /// The adapter, on an RDS client whose requests are recorded.
    fn scratch(&self, settings: RdsScratchSettings) -> RdsScratch {
        let config = aws_sdk_rds::config::Builder::from(&self.aws.sdk).interceptor(self.recorder.clone()).build();
        RdsScratch::new(aws_sdk_rds::Client::from_conf(config), self.aws.clients.secrets.clone(), settings)
    }

    /// A drill id unique to this test.
    pub(crate) fn drill(&self, name: &str) -> String {
        format!("{name}-{}", self.id)
    }

    async fn describe(&self, id: &str) -> Option<aws_sdk_rds::types::DbInstance> {
        match self.rds.describe_db_instances().db_instance_identifier(id).send().await {
            Ok(out) => out.db_instances.unwrap_or_default().into_iter().next(),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_db_instance_not_found_fault()) => None,
            Err(e) => panic!("describe {id}: {e:?}"),
        }
    }

    /// An instance made without Backstop, as a production database would be.
    pub(crate) async fn foreign_instance(&self, id: &str, tags: &[(&str, &str)]) {
        self.rds
            .create_db_instance()
            .db_instance_identifier(id)
            .engine("postgres")
            .engine_version("16.3")
            .db_instance_class("db.t4g.micro")
            .allocated_storage(30)
            .master_username("app")
            .master_user_password("source-password")
            .backup_retention_period(7)
            .set_tags(Some(tags.iter().map(|(k, v)| Tag::builder().key(*k).value(*v).build()).collect()))
            .send()
            .await
            .unwrap();
    }
}

pub(crate) fn spec(drill_id: &str, expires_at: DateTime<Utc>) -> ScratchSpec {
    ScratchSpec { drill_id: drill_id.into(), engine_major: 16, storage_gib: 5, expires_at }
}

pub(crate) fn in_an_hour() -> DateTime<Utc> {
    Utc::now() + chrono::Duration::hours(1)
}

fn tags(instance: &aws_sdk_rds::types::DbInstance) -> std::collections::HashMap<String, String> {
    instance
        .tag_list()
        .iter()
        .map(|t| (t.key().unwrap().to_string(), t.value().unwrap_or_default().to_string()))
        .collect()
}

pub(crate) async fn until_ready(poll: impl AsyncFn() -> Result<ScratchState, ScratchError>) -> ScratchEndpoint {
    for _ in 0..60 {
        match poll().await.unwrap() {
            ScratchState::Ready(endpoint) => return endpoint,
            ScratchState::Creating { .. } => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    panic!("the scratch instance did not become ready");
}

#[tokio::test(flavor = "multi_thread")]
async fn rds_scratch_is_private_encrypted_tagged_ready_and_destroyed() {
    let net = Net::new().await;
    let scratch = net.scratch(net.settings());
    let drill = net.drill("drill");
    let expires = in_an_hour();

    let handle = scratch.create(&spec(&drill, expires)).await.unwrap();
    assert_eq!(handle, ScratchHandle { kind: KIND_RDS.into(), id: format!("backstop-drill-{drill}") });

    let endpoint = until_ready(|| scratch.poll(&handle)).await;
    assert!(endpoint.host.starts_with(&handle.id), "{}", endpoint.host);
    assert_eq!(endpoint.port, 5432);
    assert_eq!(endpoint.user, "backstop_drill");
    assert!(!endpoint.password.expose_secret().is_empty());
    assert_eq!((endpoint.maintenance_db.as_str(), endpoint.sslmode.as_str()), ("postgres", "require"));

    let instance = net.describe(&handle.id).await.expect("the instance exists");
    let tags = tags(&instance);
    assert_eq!(tags.get(TAG_SCRATCH).map(String::as_str), Some("true"));
    assert_eq!(tags.get(TAG_DRILL_ID), Some(&drill));
    assert_eq!(tags.get(TAG_EXPIRES_AT), Some(&expires.to_rfc3339_opts(SecondsFormat::Secs, true)));
    assert_eq!(instance.engine(), Some("postgres"));
    // moto has no DescribeDBEngineVersions: the adapter falls back to the major alone.
    assert_eq!(instance.engine_version(), Some("16"));
    assert_eq!(instance.db_instance_class(), Some("db.t4g.micro"));
    assert_eq!(instance.allocated_storage(), Some(20), "at least RDS's 20 GiB minimum");
    assert_eq!(instance.storage_encrypted(), Some(true));
    assert_eq!(instance.kms_key_id(), Some(net.aws.kms_key_arn.as_str()));
    assert_eq!(instance.publicly_accessible(), Some(false));
    assert_eq!(instance.deletion_protection(), Some(false));
    assert_eq!(instance.backup_retention_period(), Some(0));
    assert_eq!(instance.db_subnet_group().and_then(|g| g.db_subnet_group_name()), Some(net.subnet_group.as_str()));
    let groups: Vec<_> = instance.vpc_security_groups().iter().filter_map(|g| g.vpc_security_group_id()).collect();
    assert_eq!(groups, [net.security_group.as_str()]);
    let parameter_groups: Vec<_> =
        instance.db_parameter_groups().iter().filter_map(|g| g.db_parameter_group_name()).collect();
    assert_eq!(parameter_groups, [net.parameter_group.as_str()]);
    let sent = net.recorder.sent("CreateDBInstance");
    let sent = sent.last().expect("a CreateDBInstance request");
    for (key, value) in [
        ("Engine", "postgres"),
        ("EngineVersion", "16"),
        ("AllocatedStorage", "20"),
        ("StorageType", "gp3"),
        ("StorageEncrypted", "true"),
        ("PubliclyAccessible", "false"),
        ("MultiAZ", "false"),
        ("DeletionProtection", "false"),
        ("BackupRetentionPeriod", "0"),
        ("CopyTagsToSnapshot", "false"),
        ("MasterUsername", "backstop_drill"),
        ("ManageMasterUserPassword", "true"),
    ] {
        assert_eq!(sent.get(key).map(String::as_str), Some(value), "{key} in {sent:?}");
    }
    assert!(!sent.keys().any(|k| k == "MasterUserPassword"), "Backstop never chooses the password");
    let secret_arn = instance
        .master_user_secret()
        .and_then(|s| s.secret_arn())
        .expect("RDS manages the master password")
        .to_string();

    scratch.destroy(&handle).await.unwrap();
    assert!(net.describe(&handle.id).await.is_none(), "the instance is gone");
    let deleted = net.recorder.sent("DeleteDBInstance");
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].get("SkipFinalSnapshot").map(String::as_str), Some("true"));
    assert_eq!(deleted[0].get("DeleteAutomatedBackups").map(String::as_str), Some("true"));
    assert!(
        net.aws.clients.secrets.get_secret_value().secret_id(&secret_arn).send().await.is_err(),
        "RDS deleted its secret with the instance"
    );
    scratch.destroy(&handle).await.expect("destroying what is gone is not an error");
    assert!(matches!(scratch.poll(&handle).await, Err(ScratchError::Failed { .. })));
}

#[tokio::test(flavor = "multi_thread")]
async fn rds_scratch_create_twice_resumes_and_never_adopts_a_foreign_instance() {
    let net = Net::new().await;
    let scratch = net.scratch(net.settings());
    let drill = net.drill("resume");

    let first = scratch.create(&spec(&drill, in_an_hour())).await.unwrap();
    let second = scratch.create(&spec(&drill, in_an_hour())).await.unwrap();
    assert_eq!(first, second);
    until_ready(|| scratch.poll(&second)).await;

    // A database that happens to have the name a drill would use is not a scratch server.
    let foreign_drill = net.drill("foreign");
    let foreign_id = scratch.identifier(&foreign_drill).unwrap();
    net.foreign_instance(&foreign_id, &[]).await;
    let err = scratch.create(&spec(&foreign_drill, in_an_hour())).await.unwrap_err();
    assert!(err.to_string().contains("refusing"), "{err}");
    let err = scratch.destroy(&ScratchHandle { kind: KIND_RDS.into(), id: foreign_id.clone() }).await.unwrap_err();
    assert!(err.to_string().contains("refusing"), "{err}");
    assert!(net.describe(&foreign_id).await.is_some(), "the foreign instance is untouched");

    scratch.destroy(&first).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn rds_scratch_sweep_destroys_only_expired_scratch_instances() {
    let net = Net::new().await;
    let scratch = net.scratch(net.settings());
    let an_hour_ago = Utc::now() - chrono::Duration::hours(1);

    let expired = scratch.create(&spec(&net.drill("expired"), an_hour_ago)).await.unwrap();
    let current = scratch.create(&spec(&net.drill("current"), in_an_hour())).await.unwrap();
    // Not a scratch instance, though its name and expiry tag look like one.
    let foreign_id = scratch.identifier(&net.drill("lookalike")).unwrap();
    let stale = an_hour_ago.to_rfc3339_opts(SecondsFormat::Secs, true);
    net.foreign_instance(&foreign_id, &[(TAG_EXPIRES_AT, &stale), (TAG_SCRATCH, "false")]).await;

    let swept = scratch.sweep_expired(Utc::now()).await.unwrap();
    // Drills of other tests sweep the same emulator and may have deleted it first; gone it must be.
    assert!(swept.contains(&expired) || net.describe(&expired.id).await.is_none(), "{swept:?}");
    assert!(!swept.iter().any(|h| h.id == current.id || h.id == foreign_id), "{swept:?}");
    assert!(net.describe(&expired.id).await.is_none());
    assert!(net.describe(&current.id).await.is_some());
    assert!(net.describe(&foreign_id).await.is_some());

    scratch.destroy(&current).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn rds_scratch_refuses_to_create_without_subnet_group_or_security_groups() {
    let net = Net::new().await;
    let drill = net.drill("nowhere");

    let mut no_subnets = net.settings();
    no_subnets.subnet_group = String::new();
    let scratch = net.scratch(no_subnets);
    let err = scratch.create(&spec(&drill, in_an_hour())).await.unwrap_err();
    assert!(err.to_string().contains("without a DB subnet group"), "{err}");
    let err = scratch.restore_to_point_in_time("any-source", None, &drill, in_an_hour()).await.unwrap_err();
    assert!(err.to_string().contains("without a DB subnet group"), "{err}");

    let mut no_groups = net.settings();
    no_groups.security_group_ids.clear();
    let scratch = net.scratch(no_groups);
    let err = scratch.create(&spec(&drill, in_an_hour())).await.unwrap_err();
    assert!(err.to_string().contains("without VPC security group ids"), "{err}");

    assert!(net.describe(&scratch.identifier(&drill).unwrap()).await.is_none(), "nothing was created");
}

#[tokio::test(flavor = "multi_thread")]
async fn rds_scratch_point_in_time_restore_uses_the_drill_network_and_tags() {
    let net = Net::new().await;
    let scratch = net.scratch(net.settings());
    let source = format!("orders-{}", net.id);
    net.foreign_instance(&source, &[("team", "orders")]).await;

    let restorable =
        scratch.latest_restorable_time(&source).await.unwrap().expect("moto reports a latest restorable time");
    assert!(restorable <= Utc::now() + chrono::Duration::seconds(5), "{restorable}");
    let drill = net.drill("pitr");
    let expires = in_an_hour();

    let handle = scratch.restore_to_point_in_time(&source, Some(restorable), &drill, expires).await.unwrap();
    assert_eq!(handle.kind, KIND_RDS_PITR);
    assert_eq!(
        scratch.restore_to_point_in_time(&source, Some(restorable), &drill, expires).await.unwrap(),
        handle,
        "idempotent"
    );
    let err = scratch.create(&spec(&drill, expires)).await.unwrap_err();
    assert!(
        err.to_string().contains("point-in-time restore"),
        "the same drill id cannot turn a PITR copy into a plain scratch: {err}"
    );

    let instance = net.describe(&handle.id).await.expect("the restored instance exists");
    let tags = tags(&instance);
    assert_eq!(tags.get(TAG_SCRATCH).map(String::as_str), Some("true"));
    assert_eq!(tags.get(TAG_DRILL_ID), Some(&drill));
    assert_eq!(tags.get(TAG_EXPIRES_AT), Some(&expires.to_rfc3339_opts(SecondsFormat::Secs, true)));
    assert_eq!(tags.get(TAG_PITR_SOURCE), Some(&source));
    assert_eq!(tags.get("team"), None, "the source's tags are not copied");
    assert_eq!(instance.db_subnet_group().and_then(|g| g.db_subnet_group_name()), Some(net.subnet_group.as_str()));
    let groups: Vec<_> = instance.vpc_security_groups().iter().filter_map(|g| g.vpc_security_group_id()).collect();
    assert_eq!(groups, [net.security_group.as_str()]);
    let parameter_groups: Vec<_> =
        instance.db_parameter_groups().iter().filter_map(|g| g.db_parameter_group_name()).collect();
    assert_eq!(parameter_groups, [net.parameter_group.as_str()]);
    assert_eq!(instance.db_instance_class(), Some("db.t4g.micro"));
    // moto's restore ignores settings that are false or 0 (it keeps the source's): check what was sent.
    let sent = net.recorder.sent("RestoreDBInstanceToPointInTime");
    let sent = sent.first().expect("a RestoreDBInstanceToPointInTime request");
    for (key, value) in [
        ("SourceDBInstanceIdentifier", source.as_str()),
        ("TargetDBInstanceIdentifier", handle.id.as_str()),
        ("DBInstanceClass", "db.t4g.micro"),
        ("DBSubnetGroupName", net.subnet_group.as_str()),
        ("VpcSecurityGroupIds.VpcSecurityGroupId.1", net.security_group.as_str()),
        ("DBParameterGroupName", net.parameter_group.as_str()),
        ("PubliclyAccessible", "false"),
        ("MultiAZ", "false"),
        ("DeletionProtection", "false"),
        ("BackupRetentionPeriod", "0"),
        ("CopyTagsToSnapshot", "false"),
    ] {
        assert_eq!(sent.get(key).map(String::as_str), Some(value), "{key} in {sent:?}");
    }
    assert!(sent.contains_key("RestoreTime") && !sent.contains_key("UseLatestRestorableTime"), "{sent:?}");

    // The copy's password is the source's: the caller supplies it.
    let err = scratch.poll(&handle).await.unwrap_err();
    assert!(err.to_string().contains("poll_with_credentials"), "{err}");
    let given =
        until_ready(|| scratch.poll_with_credentials(&handle, "app", SecretString::from("source-password"))).await;
    assert_eq!((given.user.as_str(), given.password.expose_secret()), ("app", "source-password"));

    // Restoring to the latest restorable time.
    let latest = scratch.restore_to_point_in_time(&source, None, &net.drill("latest"), expires).await.unwrap();
    assert!(net.describe(&latest.id).await.is_some());
    let sent = net.recorder.sent("RestoreDBInstanceToPointInTime");
    let sent = sent.last().unwrap();
    assert_eq!(sent.get("UseLatestRestorableTime").map(String::as_str), Some("true"));
    assert!(!sent.contains_key("RestoreTime"), "{sent:?}");

    scratch.destroy(&handle).await.unwrap();
    scratch.destroy(&latest).await.unwrap();
    assert!(net.describe(&handle.id).await.is_none());
    assert!(net.describe(&latest.id).await.is_none());
    assert!(net.describe(&source).await.is_some(), "the source is untouched");
    let err = scratch.destroy(&ScratchHandle { kind: KIND_RDS_PITR.into(), id: source.clone() }).await.unwrap_err();
    assert!(err.to_string().contains("refusing"), "{err}");
}

/// Stands in for psql against a point-in-time copy: moto's instances are not real servers. It records who
/// connected where and answers each check from `answers` (true when the SQL is not listed).
#[derive(Default)]
struct RecordingRestorer {
    checks: Mutex<Vec<(String, String, String, String)>>,
    answers: HashMap<String, bool>,
}

#[async_trait::async_trait]
impl Restorer for RecordingRestorer {
    async fn client_major(&self) -> Result<u32, RestoreError> {
        Ok(16)
    }
    async fn restore_roles(&self, _: &ScratchEndpoint, _: &[u8]) -> Result<Vec<String>, RestoreError> {
        panic!("a point-in-time drill restores no roles")
    }
    async fn apply_database_settings(
        &self,
        _: &ScratchEndpoint,
        _: &str,
        _: &[String],
    ) -> Result<Vec<String>, RestoreError> {
        panic!("a point-in-time drill restores no dump")
    }
    async fn apply_database_properties(
        &self,
        _: &ScratchEndpoint,
        _: &str,
        _: &backstop::domain::database_properties::DatabaseProperties,
    ) -> Result<Vec<String>, RestoreError> {
        panic!("a point-in-time drill restores no dump")
    }
    async fn create_tablespaces(&self, _: &ScratchEndpoint, _: &[String]) -> Result<Vec<String>, RestoreError> {
        panic!("a point-in-time drill restores no dump")
    }
    async fn recreate_database(
        &self,
        _: &ScratchEndpoint,
        _: &str,
        _: Option<&backstop::domain::manifest::DumpSession>,
    ) -> Result<Option<String>, RestoreError> {
        panic!("a point-in-time drill must never drop a database")
    }
    async fn restore_sql(
        &self,
        _: &ScratchEndpoint,
        _: &str,
        _: Box<dyn std::io::Read + Send>,
    ) -> Result<(), RestoreError> {
        panic!("a point-in-time drill restores no dump")
    }
    async fn fingerprint(
        &self,
        _: &ScratchEndpoint,
        _: &str,
        _: &str,
        _: Option<&backstop::domain::manifest::DumpSession>,
    ) -> Result<backstop::domain::fingerprint::DumpSummary, RestoreError> {
        panic!("a point-in-time drill has no fingerprint to compare")
    }
    async fn restore_framed(
        &self,
        _: Arc<dyn backstop::ports::ObjectStore>,
        _: &ScratchEndpoint,
        _: &str,
        _: backstop::ports::FramedDump<'_>,
    ) -> Result<backstop::ports::FramedRestoreReport, RestoreError> {
        panic!("a point-in-time drill restores no dump")
    }
    async fn server_version(&self, _: &ScratchEndpoint) -> Result<String, RestoreError> {
        panic!("a point-in-time drill asks no version")
    }
    async fn physical_check(
        &self,
        _: &ScratchEndpoint,
        _: &str,
    ) -> Result<backstop::ports::PhysicalCheckReport, RestoreError> {
        panic!("a point-in-time drill has no physical check")
    }
    async fn restore_tables(
        &self,
        _: Arc<dyn ObjectStore>,
        _: &ScratchEndpoint,
        _: &str,
        _: backstop::ports::TableLoad<'_>,
        _: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<backstop::ports::TableLoadReport, RestoreError> {
        panic!("a point-in-time drill restores no tables")
    }
    async fn read_back(
        &self,
        _: &ScratchEndpoint,
        _: &str,
        _: &backstop::domain::Manifest,
        _: backstop::domain::verification::RowCheck,
        _: Option<Arc<dyn backstop::ports::ReadBackUnderway>>,
    ) -> Result<backstop::domain::fingerprint::Fingerprint, RestoreError> {
        panic!("a point-in-time drill has no fingerprint to compare")
    }
    async fn check(
        &self,
        server: &ScratchEndpoint,
        database: &str,
        sql: &str,
        _: Duration,
    ) -> Result<bool, RestoreError> {
        let who = format!("{}:{}", server.user, server.password.expose_secret());
        self.checks.lock().unwrap().push((server.host.clone(), who, database.to_string(), sql.to_string()));
        Ok(self.answers.get(sql).copied().unwrap_or(true))
    }
}

/// The verify job's point-in-time drill on moto: one phase per invocation, as a Lambda cut off between phases
/// would run it; the copy is reached with the target's own credentials, checked, and deleted.
async fn point_in_time_drill(
    net: &Net,
    restorer: Arc<RecordingRestorer>,
) -> (Vec<VerifyRun>, String, backstop::domain::drill::DrillRecord) {
    let source = format!("orders-{}", net.id);
    net.foreign_instance(&source, &[]).await;
    let target = TargetConfig {
        name: "orders".into(),
        host: "orders.example.invalid".into(),
        port: 5432,
        database: "orders".into(),
        user: "app".into(),
        password: PasswordSource::Env("ORDERS_PASSWORD".into()),
        sslmode: Some("require".into()),
        sslrootcert: None,
        checks: vec![UserCheck { name: "has orders".into(), sql: "SELECT count(*) > 0 FROM orders".into() }],
        pitr_source_instance: Some(source.clone()),
        retention: Default::default(),
        runner: Default::default(),
        size_gb: None,
        databases: Vec::new(),
        exclude_databases: Vec::new(),
    };
    let mut config = net.aws.config(vec![target]);
    let settings = net.settings();
    config.verify.scratch = ScratchSettings::Rds {
        instance_class: settings.instance_class.clone(),
        subnet_group: settings.subnet_group.clone(),
        security_group_ids: settings.security_group_ids.clone(),
        parameter_group: settings.parameter_group.clone(),
    };
    config.verify.rpo_budget = Some(Duration::from_secs(7 * 86400));
    let config = Arc::new(config);
    let backup = backstop::app::backup_deps(&config, &net.aws.clients, Arc::new(NoMetrics));
    let rds = Arc::new(net.scratch(settings));
    let env: backstop::config::Env =
        [("ORDERS_PASSWORD".to_string(), "source-password".to_string())].into_iter().collect();
    let deps = VerifyDeps {
        store: backup.store,
        catalog: backup.catalog.clone(),
        alerts: backup.alerts,
        scratch: rds.clone(),
        restorer: restorer.clone(),
        point_in_time: Some(rds.clone()),
        passwords: Arc::new(PasswordResolver::new(Arc::new(SecretsManager::new(net.aws.clients.secrets.clone())), env)),
        clock: Arc::new(SystemClock),
        metrics: Arc::new(NoMetrics),
    };
    let job = VerifyJob::new(config, deps);
    let mut runs = Vec::new();
    for pass in 0..20 {
        let request = VerifyRequest {
            target: Some("orders".into()),
            backup_id: None,
            trigger: Trigger::Cli,
            request_id: format!("pass-{pass}"),
            deadline: None,
            max_steps: Some(1),
            resume_only: pass > 0,
            abandon: None,
            sweep_only: false,
            exclude: Vec::new(),
        };
        let run = job.run(&request).await.unwrap();
        let done = run.done;
        runs.push(run);
        if done {
            break;
        }
    }
    let drills = backup.catalog.recent_drills("orders", 5).await.unwrap();
    assert_eq!(drills.len(), 1, "one point-in-time drill (no dumps to drill): {drills:?}");
    (runs, source, drills.into_iter().next().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn point_in_time_drill_restores_the_source_checks_the_copy_and_deletes_it() {
    let net = Net::new().await;
    let restorer = Arc::new(RecordingRestorer::default());
    let (runs, source, drill) = point_in_time_drill(&net, restorer.clone()).await;

    assert!(runs.last().unwrap().done, "the drill finished: {runs:?}");
    let phases: Vec<DrillPhase> = runs.iter().map(|r| r.drills[0].phase).collect();
    assert_eq!(phases.first(), Some(&DrillPhase::Checking), "the copy is ready after one step on moto: {phases:?}");
    assert!(phases.contains(&DrillPhase::Cleaning) && phases.last() == Some(&DrillPhase::Done), "{phases:?}");
    assert_eq!(runs.last().unwrap().drills[0].outcome, Some(BackupStatus::Verified), "{:?}", runs.last());

    assert_eq!(drill.phase, DrillPhase::Done);
    assert!(drill.report.passed(), "{:?}", drill.report);
    let pitr = drill.point_in_time.as_ref().expect("a point-in-time drill");
    assert_eq!(pitr.source_instance, source);
    let restore_time = pitr.restore_time.expect("the restore time is recorded");
    let rpo = drill.report.timings.rpo_seconds.expect("RPO against the latest restorable time");
    assert!(
        (rpo - (drill.started_at - restore_time).num_milliseconds() as f64 / 1000.0).abs() < 0.01,
        "{rpo} vs {restore_time}"
    );
    assert!(drill.report.timings.rto_seconds.is_some());

    let handle = drill.scratch.as_ref().expect("the copy's handle is kept in the record");
    assert_eq!(handle.kind, KIND_RDS_PITR);
    let sent = net.recorder.sent("RestoreDBInstanceToPointInTime");
    assert_eq!(sent.len(), 1, "one restore request: {sent:?}");
    assert_eq!(sent[0].get("SourceDBInstanceIdentifier"), Some(&source));
    assert!(sent[0].contains_key("RestoreTime"), "an explicit time, the one recorded: {:?}", sent[0]);
    assert!(net.describe(&handle.id).await.is_none(), "the copy is deleted");
    assert!(net.describe(&source).await.is_some(), "the source is untouched");

    let checks = restorer.checks.lock().unwrap().clone();
    let sqls: Vec<&str> = checks.iter().map(|c| c.3.as_str()).collect();
    assert_eq!(sqls, ["SELECT true", "SELECT count(*) > 0 FROM orders"]);
    for (host, who, database, _) in &checks {
        assert!(host.contains(&handle.id), "checks ran on the copy, not the source: {host}");
        assert_eq!(who, "app:source-password", "the copy answers to the source's credentials");
        assert_eq!(database, "orders");
    }
    assert!(net.aws.alerts_until_now().await.is_empty(), "a passing drill is quiet");
}

#[tokio::test(flavor = "multi_thread")]
async fn point_in_time_drill_with_a_failing_check_alerts_and_still_deletes_the_copy() {
    let net = Net::new().await;
    let restorer = Arc::new(RecordingRestorer {
        answers: [("SELECT count(*) > 0 FROM orders".to_string(), false)].into_iter().collect(),
        ..Default::default()
    });
    let (runs, source, drill) = point_in_time_drill(&net, restorer).await;

    assert_eq!(runs.last().unwrap().drills[0].outcome, Some(BackupStatus::VerifyFailed));
    assert_eq!(runs.last().unwrap().drills[0].failed_checks, ["user check has orders"]);
    assert!(
        net.describe(&drill.scratch.as_ref().unwrap().id).await.is_none(),
        "the copy is deleted after a failure too"
    );
    let alerts = net.aws.alerts(1, Duration::from_secs(10)).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(
        alerts[0].subject.contains("FAILED") && alerts[0].subject.contains("user check has orders"),
        "{}",
        alerts[0].subject
    );
    assert!(
        alerts[0].message.contains(&format!("point-in-time copy of RDS instance {source}")),
        "{}",
        alerts[0].message
    );
    assert!(!alerts[0].raw.contains("source-password"), "the password never reaches an alert");
}
