//! Creating the bucket and tables when they are missing: for local stacks,
//! tests with uniquely named resources, and `ferry setup`. Production
//! infrastructure is created by its owners; `localstack/` does the same
//! for LocalStack.

use super::aws::{sdk_error, StoreError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
};
use std::time::{Duration, Instant};

/// Creates a table with a single string partition key, if missing, and
/// waits until it is active.
pub async fn ensure_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    key: &str,
) -> Result<(), StoreError> {
    let created = client
        .create_table()
        .table_name(table)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(key)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| StoreError::Malformed {
                    what: "table definition",
                    key: table.into(),
                    detail: e.to_string(),
                })?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(key)
                .key_type(KeyType::Hash)
                .build()
                .map_err(|e| StoreError::Malformed {
                    what: "table definition",
                    key: table.into(),
                    detail: e.to_string(),
                })?,
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    if let Err(e) = created {
        if !e
            .as_service_error()
            .is_some_and(|se| se.is_resource_in_use_exception())
        {
            return Err(sdk_error("DynamoDB CreateTable", e));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| sdk_error("DynamoDB DescribeTable", e))?;
        if d.table.and_then(|t| t.table_status) == Some(TableStatus::Active)
            || Instant::now() > deadline
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Creates the bucket and both tables named in the settings.
pub async fn ensure_all(s: &crate::config::Settings) -> Result<(), StoreError> {
    let s3 = super::aws::s3_config(s).await;
    super::Originals::new(&s3, &s.s3_bucket, &s.s3_prefix)
        .ensure_bucket()
        .await?;
    let ddb = aws_sdk_dynamodb::Client::new(&super::aws::dynamo_config(s).await);
    ensure_table(&ddb, &s.dynamo_table, "id").await?;
    ensure_table(&ddb, &s.lease_table, "name").await
}
