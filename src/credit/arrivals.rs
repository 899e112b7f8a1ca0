//! The poller's sink: `FileArrived` Avro records on the `file-arrivals` topic.

use std::sync::Arc;

use crate::poller::{Arrival, ArrivalSink, PollerError};
use crate::schema::Codec;
use crate::streams::{Batch, Outgoing, OutputProducer};

use super::records::FileArrived;

/// Sends arrivals keyed by client id, so one client's files are processed in order by one
/// task.
pub struct KafkaArrivalSink {
    producer: OutputProducer,
    topic: String,
    codec: Arc<Codec>,
}

impl KafkaArrivalSink {
    pub fn new(producer: OutputProducer, topic: String, codec: Arc<Codec>) -> Self {
        KafkaArrivalSink {
            producer,
            topic,
            codec,
        }
    }
}

impl KafkaArrivalSink {
    /// Sends `record` keyed by its client id and waits until the broker has it.
    pub async fn send(&self, record: &FileArrived) -> Result<(), crate::Error> {
        let value = self.codec.to_vec(record)?;
        let batch = Batch::new();
        self.producer
            .send(
                &batch,
                Outgoing {
                    topic: &self.topic,
                    partition: None,
                    key: record.client_id.as_bytes(),
                    value: Some(&value),
                    headers: None,
                },
            )
            .await?;
        Ok(batch.wait().await?)
    }
}

#[async_trait::async_trait]
impl ArrivalSink for KafkaArrivalSink {
    async fn emit(&self, arrival: &Arrival) -> Result<(), PollerError> {
        let record = FileArrived {
            client_id: arrival.client_id.clone(),
            source: arrival.source.clone(),
            path: arrival.path.clone(),
            size: arrival.size as i64,
            mtime: arrival.mtime_ms,
            sha256: arrival.sha256.clone(),
            raw_key: arrival.raw_key.clone(),
            detected_at: arrival.detected_at_ms,
            replay: false,
        };
        self.send(&record).await.map_err(|e| PollerError::Sink {
            path: arrival.path.clone(),
            message: e.to_string(),
        })
    }
}
