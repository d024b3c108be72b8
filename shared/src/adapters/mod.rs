//! Adapters: the ports implemented for AWS (S3, DynamoDB, SNS, Secrets Manager), for PostgreSQL's client
//! programs, and in memory for unit tests.

pub mod dynamodb;
pub mod memory;
pub mod postgres;
pub mod s3;
pub mod secrets;
pub mod sns;
