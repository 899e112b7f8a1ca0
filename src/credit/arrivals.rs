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

#[async_trait::async_trait]
impl ArrivalSink for KafkaArrivalSink {
    async fn emit(&self, arrival: &Arrival) -> Result<(), PollerError> {
        let fail = |message: String| PollerError::Sink {
            path: arrival.path.clone(),
            message,
        };
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
        let value = self
            .codec
            .to_vec(&record)
            .map_err(|e| fail(e.to_string()))?;
        let batch = Batch::new();
        self.producer
            .send(
                &batch,
                Outgoing {
                    topic: &self.topic,
                    partition: None,
                    key: arrival.client_id.as_bytes(),
                    value: Some(&value),
                    headers: None,
                },
            )
            .await
            .map_err(|e| fail(e.to_string()))?;
        batch.wait().await.map_err(|e| fail(e.to_string()))
    }
}
