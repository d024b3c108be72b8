//! Fresh AWS resources on the emulator for one test: a KMS key, a versioned bucket, the catalog table, an
//! alert topic with an SQS queue subscribed to it (so tests read what SNS delivered), all uniquely named.

use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use backstop::app::AwsClients;
use backstop::config::{Config, TargetConfig};
use backstop::pipeline::codec::Codec;

pub struct AwsFixture {
    pub sdk: SdkConfig,
    pub clients: AwsClients,
    pub endpoint: String,
    pub bucket: String,
    pub table: String,
    pub topic_arn: String,
    pub kms_key_arn: String,
    pub queue_url: String,
    pub sqs: aws_sdk_sqs::Client,
}

/// One alert as SNS delivered it to the queue.
#[derive(Debug, Clone)]
pub struct DeliveredAlert {
    pub subject: String,
    pub message: String,
    pub attributes: serde_json::Value,
    pub raw: String,
}

impl AwsFixture {
    pub async fn new() -> Self {
        let endpoint = crate::moto::endpoint().to_string();
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(&endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "tests"))
            .load()
            .await;
        let clients = AwsClients::from_sdk_config(&sdk, true);
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let bucket = format!("backstop-test-{id}");
        let table = format!("backstop-test-{id}");

        let kms = aws_sdk_kms::Client::new(&sdk);
        let kms_key_arn = kms.create_key().send().await.unwrap().key_metadata.unwrap().arn.unwrap();

        clients.s3.create_bucket().bucket(&bucket).send().await.unwrap();
        clients
            .s3
            .put_bucket_versioning()
            .bucket(&bucket)
            .versioning_configuration(
                VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build(),
            )
            .send()
            .await
            .unwrap();

        let key = |name: &str, kind| KeySchemaElement::builder().attribute_name(name).key_type(kind).build().unwrap();
        let attr = |name: &str| {
            AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build().unwrap()
        };
        clients
            .dynamodb
            .create_table()
            .table_name(&table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("pk", KeyType::Hash))
            .key_schema(key("sk", KeyType::Range))
            .attribute_definitions(attr("pk"))
            .attribute_definitions(attr("sk"))
            .send()
            .await
            .unwrap();
        clients
            .dynamodb
            .update_time_to_live()
            .table_name(&table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder().attribute_name("expires_at").enabled(true).build().unwrap(),
            )
            .send()
            .await
            .unwrap();

        let topic_arn =
            clients.sns.create_topic().name(format!("alerts-{id}")).send().await.unwrap().topic_arn.unwrap();
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let queue_url = sqs.create_queue().queue_name(format!("inbox-{id}")).send().await.unwrap().queue_url.unwrap();
        let queue_arn = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
            .clone();
        clients.sns.subscribe().topic_arn(&topic_arn).protocol("sqs").endpoint(queue_arn).send().await.unwrap();

        AwsFixture { sdk, clients, endpoint, bucket, table, topic_arn, kms_key_arn, queue_url, sqs }
    }

    /// A configuration for these resources and `targets`.
    pub fn config(&self, targets: Vec<TargetConfig>) -> Config {
        Config {
            bucket: self.bucket.clone(),
            table: self.table.clone(),
            topic_arn: Some(self.topic_arn.clone()),
            kms_key_id: Some(self.kms_key_arn.clone()),
            key_prefix: String::new(),
            codec: Codec::Zstd,
            compression_level: Codec::Zstd.default_level(),
            notify_success: false,
            lease: Duration::from_secs(3600),
            pg_bin_dir: Some(crate::pg::bin_dir()),
            targets,
            verify: backstop::config::VerifySettings {
                scratch: backstop::config::ScratchSettings::Local { dir: None },
                older_backup: false,
                rto_budget: None,
                rpo_budget: None,
                check_timeout: Duration::from_secs(30),
                scratch_lifetime: Duration::from_secs(3600),
                rows: backstop::domain::verification::RowCheck::Digests,
                restore_jobs: 2,
                physical: false,
                lease: Duration::from_secs(120),
            },
            monitor: Default::default(),
            runbook_url: String::new(),
            fargate: false,
            servers: Vec::new(),
            gone: Vec::new(),
        }
    }

    /// Every object version and delete marker in the bucket, as `key@version`.
    pub async fn versions(&self) -> Vec<String> {
        let out = self.clients.s3.list_object_versions().bucket(&self.bucket).send().await.unwrap();
        let versions = out.versions.unwrap_or_default().into_iter().map(|v| (v.key, v.version_id));
        let markers = out.delete_markers.unwrap_or_default().into_iter().map(|m| (m.key, m.version_id));
        versions.chain(markers).map(|(k, v)| format!("{}@{}", k.unwrap_or_default(), v.unwrap_or_default())).collect()
    }

    pub async fn object(&self, key: &str) -> Vec<u8> {
        let out = self.clients.s3.get_object().bucket(&self.bucket).key(key).send().await.unwrap();
        out.body.collect().await.unwrap().into_bytes().to_vec()
    }

    pub async fn open_uploads(&self) -> Vec<String> {
        let out = self.clients.s3.list_multipart_uploads().bucket(&self.bucket).send().await.unwrap();
        out.uploads.unwrap_or_default().into_iter().filter_map(|u| u.key).collect()
    }

    /// Every alert published before this call, and only those: publishes a marker to the topic and reads until
    /// the marker arrives (SNS delivers to the queue in order on the emulator). So "no alert" means none was
    /// published, not that none arrived within a poll; and a delivery path that delivers nothing fails here.
    pub async fn alerts_until_now(&self) -> Vec<DeliveredAlert> {
        let marker = format!("backstop-test-marker-{}", uuid::Uuid::new_v4());
        self.clients.sns.publish().topic_arn(&self.topic_arn).subject(&marker).message("marker").send().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut before = Vec::new();
        while Instant::now() < deadline {
            for alert in self.alerts(0, Duration::from_secs(1)).await {
                if alert.subject == marker {
                    return before;
                }
                before.push(alert);
            }
        }
        panic!("the marker published to {} never reached the queue: the alert delivery path is broken", self.topic_arn);
    }

    /// Alerts delivered so far: polls until `expected` arrived (or `wait` passed), then drains what else came.
    pub async fn alerts(&self, expected: usize, wait: Duration) -> Vec<DeliveredAlert> {
        let deadline = Instant::now() + wait;
        let mut got = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            let batch = out.messages.unwrap_or_default();
            let empty = batch.is_empty();
            for m in batch {
                let raw = m.body.unwrap_or_default();
                let envelope: serde_json::Value = serde_json::from_str(&raw).unwrap();
                got.push(DeliveredAlert {
                    subject: envelope["Subject"].as_str().unwrap_or_default().to_string(),
                    message: envelope["Message"].as_str().unwrap_or_default().to_string(),
                    attributes: envelope["MessageAttributes"].clone(),
                    raw,
                });
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(m.receipt_handle.unwrap())
                    .send()
                    .await
                    .unwrap();
            }
            if (got.len() >= expected && empty) || Instant::now() > deadline {
                return got;
            }
        }
    }
}
