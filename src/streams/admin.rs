//! Creates the topics a deployment needs and checks the ones that exist.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::error::RDKafkaErrorCode;

use super::StreamsError;

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// A topic and how it must be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    /// `cleanup.policy=compact`: changelogs and the file ledger keep the latest value per key.
    pub compacted: bool,
    /// Fail when the topic exists with another partition count (changelogs must be
    /// partitioned exactly like their input).
    pub exact_partitions: bool,
}

/// Partition counts of the topics that exist now.
pub async fn topic_partitions(config: &ClientConfig) -> Result<HashMap<String, i32>, StreamsError> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || {
        let consumer: rdkafka::consumer::BaseConsumer = config
            .create()
            .map_err(|e| StreamsError::kafka("create metadata client", e))?;
        let metadata = consumer
            .fetch_metadata(None, METADATA_TIMEOUT)
            .map_err(|e| StreamsError::kafka("fetch metadata", e))?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| (t.name().to_string(), t.partitions().len() as i32))
            .collect())
    })
    .await
    .expect("metadata fetch does not panic")
}

/// Creates each missing topic (when `create` is on) and checks the partition counts of
/// those that must match. Missing topics with `create` off are an error naming them.
pub async fn ensure_topics(
    config: &ClientConfig,
    specs: &[TopicSpec],
    create: bool,
) -> Result<(), StreamsError> {
    let existing = topic_partitions(config).await?;
    for spec in specs {
        if let Some(&n) = existing.get(&spec.name)
            && spec.exact_partitions
            && n != spec.partitions
        {
            return Err(StreamsError::Topic {
                topic: spec.name.clone(),
                message: format!(
                    "has {n} partitions; it must have {} to match its input",
                    spec.partitions
                ),
            });
        }
    }
    let missing: Vec<&TopicSpec> = specs
        .iter()
        .filter(|s| !existing.contains_key(&s.name))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !create {
        return Err(StreamsError::Topic {
            topic: missing
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            message: "missing, and kafka.create_topics is off".into(),
        });
    }
    let admin: AdminClient<DefaultClientContext> = config
        .create()
        .map_err(|e| StreamsError::kafka("create admin client", e))?;
    let new_topics: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|s| {
            let topic = NewTopic::new(
                &s.name,
                s.partitions,
                TopicReplication::Fixed(s.replication_factor),
            );
            if s.compacted {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            }
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(|e| StreamsError::kafka("create topics", e))?;
    for result in results {
        match result {
            Ok(name) => tracing::info!(topic = %name, "topic created"),
            // Another replica created it first.
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(StreamsError::Topic {
                    topic: name,
                    message: format!("cannot be created: {code}"),
                });
            }
        }
    }
    // Creation is asynchronous on some brokers: wait until every topic is in the metadata.
    let deadline = Instant::now() + METADATA_TIMEOUT;
    loop {
        let existing = topic_partitions(config).await?;
        let absent: Vec<&str> = missing
            .iter()
            .filter(|s| !existing.contains_key(&s.name))
            .map(|s| s.name.as_str())
            .collect();
        if absent.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(StreamsError::Topic {
                topic: absent.join(", "),
                message: "created but not visible in metadata".into(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
