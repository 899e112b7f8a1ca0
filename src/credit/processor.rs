//! The file processor: one instance per task, all sharing the registered contracts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use apache_avro::Schema;

use super::CreditError;
use super::records::{
    DedupEntry, FileArrived, FileLedgerEntry, FileStatus, QuarantineRecord, QuarantineScope,
};
use crate::config::{Config, KafkaConfig};
use crate::formats::{
    BadRecordPolicy, Catalog, Category, DriftClass, FileDrift, Position, RecordIssue, parse_csv,
};
use crate::rawstore::RawStore;
use crate::schema::contracts::{self, Contracts};
use crate::schema::{Codec, FileProvenance, Registry, RowPlan, RowRef, value_subject};
use crate::streams::{
    InputRecord, Processor, ProcessorContext, TopicSpec, Topology, TopologyShape, changelog_topic,
    partition_for_key, replicas_topic,
};

/// Store of first arrivals by content: `<client id>/<sha256>` → [`DedupEntry`].
pub const DEDUP_STORE: &str = "dedup";
/// Store of the file ledger: `<sha256>/<arrival id>` → [`FileLedgerEntry`] (JSON).
pub const LEDGER_STORE: &str = "ledger";

/// Topic names, without the prefix.
const ARRIVALS: &str = "file-arrivals";
const QUARANTINE: &str = "quarantine";
const LEDGER: &str = "file-ledger";

/// A category with its output topic, registered codec and checked row plan.
struct CategoryOutput {
    category: Category,
    topic: String,
    codec: Arc<Codec>,
    plan: RowPlan,
}

struct Shared {
    registry: Arc<Registry>,
    raw: Arc<dyn RawStore>,
    catalog: Catalog,
    arrivals_topic: String,
    arrival_codec: Arc<Codec>,
    quarantine_topic: String,
    quarantine_codec: Arc<Codec>,
    ledger_topic: String,
    ledger_codec: Arc<Codec>,
    outputs: Vec<CategoryOutput>,
    kafka: KafkaConfig,
}

/// The credit topology with its contracts registered and its layouts checked.
#[derive(Clone)]
pub struct CreditTopology {
    shared: Arc<Shared>,
}

impl CreditTopology {
    /// Registers every contract (or finds it registered) and checks each category's layout
    /// against its output schema as the registry returns it.
    pub async fn register(
        kafka: &KafkaConfig,
        registry: Arc<Registry>,
        raw: Arc<dyn RawStore>,
        catalog: Catalog,
        contracts: &Contracts,
    ) -> Result<CreditTopology, crate::Error> {
        let codec = async |topic: &str, contract: &str| -> Result<Arc<Codec>, crate::Error> {
            let text = contracts.get(contract)?;
            Ok(Arc::new(registry.codec(&value_subject(topic), text).await?))
        };
        let arrivals_topic = arrivals_topic(kafka);
        let quarantine_topic = kafka.topic(QUARANTINE);
        let ledger_topic = kafka.topic(LEDGER);
        let arrival_codec = codec(&arrivals_topic, contracts::FILE_ARRIVED).await?;
        let quarantine_codec = codec(&quarantine_topic, contracts::QUARANTINE_RECORD).await?;
        let ledger_codec = codec(&ledger_topic, contracts::FILE_LEDGER_ENTRY).await?;
        let mut outputs = Vec::new();
        for category in catalog.categories() {
            let topic = kafka.topic(&category.output_topic);
            let codec = codec(&topic, &category.schema).await?;
            let plan = RowPlan::new(category, codec.schema())?;
            tracing::info!(category = %category.name, topic = %topic, schema_id = codec.id(), layout = %category.layout_id(), "category ready");
            outputs.push(CategoryOutput {
                category: category.clone(),
                topic,
                codec,
                plan,
            });
        }
        Ok(CreditTopology {
            shared: Arc::new(Shared {
                registry,
                raw,
                catalog,
                arrivals_topic,
                arrival_codec,
                quarantine_topic,
                quarantine_codec,
                ledger_topic,
                ledger_codec,
                outputs,
                kafka: kafka.clone(),
            }),
        })
    }

    /// The topic arrivals are sent to, and its codec (for the poller's sink).
    pub fn arrivals(&self) -> (String, Arc<Codec>) {
        (
            self.shared.arrivals_topic.clone(),
            self.shared.arrival_codec.clone(),
        )
    }

    /// Every topic the topology reads or writes, except changelogs (the runtime's).
    pub fn topics(&self) -> Vec<TopicSpec> {
        topic_specs(&self.shared.kafka, &self.shared.catalog)
    }

    /// The runtime topology.
    pub fn topology(&self) -> Topology {
        let shared = self.shared.clone();
        Topology {
            shape: shape(&self.shared.kafka, &self.shared.catalog),
            processor: Box::new(move |_| {
                Box::new(FileProcessor {
                    shared: shared.clone(),
                })
            }),
            partition_of: Box::new(partition_of),
        }
    }
}

/// The topic the poller (and `credstream replay`) sends `FileArrived` records to.
pub fn arrivals_topic(kafka: &KafkaConfig) -> String {
    kafka.topic(ARRIVALS)
}

/// The topology's shape for `kafka` and `catalog`, without registering anything (for
/// `topology describe`).
pub fn shape(kafka: &KafkaConfig, catalog: &Catalog) -> TopologyShape {
    let mut sinks = vec![kafka.topic(QUARANTINE), kafka.topic(LEDGER)];
    sinks.extend(
        catalog
            .categories()
            .iter()
            .map(|c| kafka.topic(&c.output_topic)),
    );
    TopologyShape {
        name: "credit-files".into(),
        source: arrivals_topic(kafka),
        processor: "file-processor".into(),
        stores: vec![DEDUP_STORE.into(), LEDGER_STORE.into()],
        sinks,
    }
}

/// The partition a store key belongs to: arrivals are keyed by client id, so a dedup key
/// (`<client>/<sha256>`) goes where its client does, and a ledger key
/// (`<sha256>/p<partition>-<offset>`) names its arrival's partition.
fn partition_of(store: &str, key: &[u8], partitions: i32) -> Option<i32> {
    let key = std::str::from_utf8(key).ok()?;
    match store {
        DEDUP_STORE => {
            let (client, _) = key.split_once('/')?;
            Some(partition_for_key(client.as_bytes(), partitions))
        }
        LEDGER_STORE => {
            let (_, arrival) = key.split_once('/')?;
            let (partition, _) = arrival.strip_prefix('p')?.split_once('-')?;
            partition
                .parse()
                .ok()
                .filter(|p| (0..partitions).contains(p))
        }
        _ => None,
    }
}

/// The topics of the topology (not changelogs) for `kafka` and `catalog`.
fn topic_specs(kafka: &KafkaConfig, catalog: &Catalog) -> Vec<TopicSpec> {
    let spec = |name: String, compacted: bool| TopicSpec {
        name,
        partitions: kafka.partitions,
        replication_factor: kafka.replication_factor,
        compacted,
        exact_partitions: false,
    };
    let mut topics = vec![
        spec(arrivals_topic(kafka), false),
        spec(kafka.topic(QUARANTINE), false),
        spec(kafka.topic(LEDGER), true),
    ];
    topics.extend(
        catalog
            .categories()
            .iter()
            .map(|c| spec(kafka.topic(&c.output_topic), false)),
    );
    topics
}

/// Every topic a deployment with `config` uses, changelogs included: for brokers where
/// topics are made by hand (or by the demo on the mock cluster).
pub fn planned_topics(config: &Config, catalog: &Catalog) -> Vec<TopicSpec> {
    let mut topics = topic_specs(&config.kafka, catalog);
    for store in [DEDUP_STORE, LEDGER_STORE] {
        topics.push(TopicSpec {
            name: changelog_topic(&config.app.id, store),
            partitions: config.kafka.partitions,
            replication_factor: config.kafka.replication_factor,
            compacted: true,
            exact_partitions: true,
        });
    }
    topics.push(TopicSpec {
        name: replicas_topic(&config.app.id),
        partitions: 1,
        replication_factor: config.kafka.replication_factor,
        compacted: true,
        exact_partitions: false,
    });
    topics
}

struct FileProcessor {
    shared: Arc<Shared>,
}

/// What routing a file's records came to.
enum Routed {
    /// The file is held whole.
    Held(FileDrift),
    /// Records went out or to quarantine, one by one.
    Records {
        records_in: u64,
        records_out: u64,
        quarantined: BTreeMap<DriftClass, u64>,
    },
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[async_trait::async_trait]
impl Processor for FileProcessor {
    async fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        record: &InputRecord,
    ) -> Result<(), crate::Error> {
        let arrival = self.decode_arrival(record).await?;
        let arrival_id = format!("p{}-{}", record.partition, record.offset);
        let dedup_key = format!("{}/{}", arrival.client_id, arrival.sha256);

        let seen: Option<DedupEntry> = match ctx.get(DEDUP_STORE, dedup_key.as_bytes())? {
            Some(raw) => {
                Some(
                    serde_json::from_slice(&raw).map_err(|e| CreditError::CorruptState {
                        store: DEDUP_STORE,
                        key: dedup_key.clone(),
                        message: e.to_string(),
                    })?,
                )
            }
            None => None,
        };
        // A replay processes the bytes again; its ledger entry names the first arrival.
        let replay_of = match &seen {
            Some(first) if arrival.replay => Some(first.arrival_id.clone()),
            _ => None,
        };
        if let Some(first) = seen.filter(|_| !arrival.replay) {
            if first.arrival_id == arrival_id {
                // This very record was processed before a crash let it be replayed.
                return Ok(());
            }
            let entry = self.ledger_entry(&arrival, &arrival_id, FileStatus::Duplicate, |e| {
                e.reason = Some(format!(
                    "same bytes as arrival {} of {}; nothing emitted",
                    first.arrival_id, first.path
                ));
                e.duplicate_of = Some(first.arrival_id.clone());
            });
            self.write_ledger(ctx, &entry).await?;
            crate::metrics::FileDuplicate {
                client: &arrival.client_id,
            }
            .emit();
            tracing::info!(client = %arrival.client_id, path = %arrival.path, sha256 = %arrival.sha256, first = %first.arrival_id, "duplicate file: audit event only");
            return Ok(());
        }

        let entry = match self.shared.catalog.categorize(arrival.file_name()) {
            Err(reason) => {
                let drift = FileDrift {
                    class: DriftClass::UnknownCategory,
                    reason,
                    field: None,
                    expected: None,
                    actual: Some(arrival.file_name().to_string()),
                    records: 0,
                };
                self.hold_file(ctx, &arrival, &arrival_id, None, drift)
                    .await?
            }
            Ok(category) => {
                let output = self
                    .shared
                    .outputs
                    .iter()
                    .find(|o| o.category.name == category.name)
                    .expect("every category has an output");
                let bytes = self.shared.raw.get(&arrival.raw_key).await?;
                let routed = tokio::task::block_in_place(|| {
                    self.route_records(ctx, &arrival, output, &bytes)
                })?;
                match routed {
                    Routed::Held(drift) => {
                        self.hold_file(ctx, &arrival, &arrival_id, Some(output), drift)
                            .await?
                    }
                    Routed::Records {
                        records_in,
                        records_out,
                        quarantined,
                    } => {
                        let held: u64 = quarantined.values().sum();
                        let status = if held == 0 {
                            FileStatus::Processed
                        } else {
                            FileStatus::PartiallyQuarantined
                        };
                        let client = arrival.client_id.as_str();
                        let category = output.category.name.as_str();
                        crate::metrics::RecordsOut {
                            client,
                            category,
                            count: records_out,
                        }
                        .emit();
                        for (class, count) in &quarantined {
                            crate::metrics::RecordsQuarantined {
                                client,
                                category,
                                class: class.as_str(),
                                count: *count,
                            }
                            .emit();
                        }
                        tracing::info!(client, path = %arrival.path, category, records_in, records_out, records_quarantined = held, "file processed");
                        self.ledger_entry(&arrival, &arrival_id, status, |e| {
                            e.category = Some(output.category.name.clone());
                            e.records_in = records_in as i64;
                            e.records_out = records_out as i64;
                            e.records_quarantined = held as i64;
                            e.layout_version = Some(output.category.layout_version as i32);
                            e.schema_id = Some(output.codec.id() as i32);
                            if held > 0 {
                                e.reason = Some(
                                    quarantined
                                        .iter()
                                        .map(|(c, n)| format!("{n} {c}"))
                                        .collect::<Vec<_>>()
                                        .join(", "),
                                );
                            }
                        })
                    }
                }
            }
        };
        let mut entry = entry;
        if arrival.replay {
            entry.replay_of = replay_of.clone();
            let note = match &replay_of {
                Some(first) => format!("replay of arrival {first}"),
                None => "replay (no earlier arrival of these bytes)".to_string(),
            };
            entry.reason = Some(match entry.reason.take() {
                Some(r) => format!("{note}; {r}"),
                None => note,
            });
            tracing::info!(client = %arrival.client_id, sha256 = %arrival.sha256, replay_of = ?replay_of, status = entry.status.as_str(), "file replayed");
        }
        self.write_ledger(ctx, &entry).await?;
        crate::metrics::FileProcessed {
            client: &arrival.client_id,
            category: entry.category.as_deref().unwrap_or("unknown"),
            status: entry.status.as_str(),
        }
        .emit();
        if replay_of.is_some() {
            // Later resends of these bytes stay duplicates of the first arrival.
            return Ok(());
        }
        let first = DedupEntry {
            arrival_id,
            ledger_key: entry.key(),
            path: arrival.path.clone(),
        };
        ctx.put(
            DEDUP_STORE,
            dedup_key.as_bytes(),
            &serde_json::to_vec(&first).expect("dedup entries serialise"),
        );
        Ok(())
    }
}

impl FileProcessor {
    async fn decode_arrival(&self, record: &InputRecord) -> Result<FileArrived, crate::Error> {
        let bad = |message: String| CreditError::BadArrival {
            partition: record.partition,
            offset: record.offset,
            message,
        };
        let value = record
            .value
            .as_deref()
            .ok_or_else(|| bad("no value".into()))?;
        let (id, mut body) = crate::schema::split_wire(value)
            .ok_or_else(|| bad("not in the Confluent wire format".into()))?;
        let writer = self.shared.registry.schema_by_id(id).await?;
        let reader: &Schema = self.shared.arrival_codec.schema();
        let decoded = crate::schema::decode_datum(&writer, reader, &mut body)
            .map_err(|e| bad(e.to_string()))?;
        apache_avro::from_value::<FileArrived>(&decoded).map_err(|e| bad(e.to_string()).into())
    }

    fn ledger_entry(
        &self,
        arrival: &FileArrived,
        arrival_id: &str,
        status: FileStatus,
        fill: impl FnOnce(&mut FileLedgerEntry),
    ) -> FileLedgerEntry {
        let mut entry = FileLedgerEntry {
            arrival_id: arrival_id.to_string(),
            client_id: arrival.client_id.clone(),
            category: None,
            file_path: arrival.path.clone(),
            file_sha256: arrival.sha256.clone(),
            raw_key: arrival.raw_key.clone(),
            size: arrival.size,
            status,
            reason: None,
            duplicate_of: None,
            records_in: 0,
            records_out: 0,
            records_quarantined: 0,
            layout_version: None,
            schema_id: None,
            arrived_at: arrival.detected_at,
            processed_at: now_ms(),
            replay_of: None,
        };
        fill(&mut entry);
        entry
    }

    /// Sends the ledger entry and stages it in the ledger store.
    async fn write_ledger(
        &self,
        ctx: &mut ProcessorContext<'_>,
        entry: &FileLedgerEntry,
    ) -> Result<(), crate::Error> {
        let key = entry.key();
        let value = self.shared.ledger_codec.to_vec(entry)?;
        ctx.send(&self.shared.ledger_topic, key.as_bytes(), &value)
            .await?;
        ctx.put(
            LEDGER_STORE,
            key.as_bytes(),
            &serde_json::to_vec(entry).expect("ledger entries serialise"),
        );
        Ok(())
    }

    /// Holds a whole file: one file-scope quarantine record, and the ledger entry.
    async fn hold_file(
        &self,
        ctx: &mut ProcessorContext<'_>,
        arrival: &FileArrived,
        arrival_id: &str,
        output: Option<&CategoryOutput>,
        drift: FileDrift,
    ) -> Result<FileLedgerEntry, crate::Error> {
        let category = output.map(|o| o.category.name.clone());
        let record = QuarantineRecord {
            scope: QuarantineScope::File,
            class: drift.class.as_str().to_string(),
            reason: drift.reason.clone(),
            field: drift.field.clone(),
            expected: drift.expected.clone(),
            actual: drift.actual.clone(),
            client_id: arrival.client_id.clone(),
            category: category.clone(),
            file_sha256: arrival.sha256.clone(),
            raw_key: arrival.raw_key.clone(),
            file_path: arrival.path.clone(),
            line: None,
            byte_offset: None,
            record_index: None,
            records_affected: drift.records as i64,
            excerpt: None,
            detected_at: now_ms(),
        };
        let value = self.shared.quarantine_codec.to_vec(&record)?;
        ctx.send(
            &self.shared.quarantine_topic,
            record.key().as_bytes(),
            &value,
        )
        .await?;
        let category_label = category.as_deref().unwrap_or("unknown");
        crate::metrics::FileQuarantined {
            client: &arrival.client_id,
            category: category_label,
            class: drift.class.as_str(),
        }
        .emit();
        crate::metrics::RecordsQuarantined {
            client: &arrival.client_id,
            category: category_label,
            class: drift.class.as_str(),
            count: drift.records,
        }
        .emit();
        tracing::warn!(client = %arrival.client_id, path = %arrival.path, class = %drift.class, reason = %drift.reason, records = drift.records, "file quarantined");
        Ok(
            self.ledger_entry(arrival, arrival_id, FileStatus::Quarantined, |e| {
                e.category = category;
                e.reason = Some(format!("{}: {}", drift.class, drift.reason));
                e.records_in = drift.records as i64;
                e.records_quarantined = drift.records as i64;
                e.layout_version = output.map(|o| o.category.layout_version as i32);
                e.schema_id = output.map(|o| o.codec.id() as i32);
            }),
        )
    }

    /// Parses the file and sends each record to the output topic or quarantine. Runs under
    /// `block_in_place`: parsing is CPU work, and sends block only while the producer's
    /// queue is full.
    fn route_records(
        &self,
        ctx: &ProcessorContext<'_>,
        arrival: &FileArrived,
        output: &CategoryOutput,
        bytes: &[u8],
    ) -> Result<Routed, crate::Error> {
        let layout = output.category.layout_id();
        let file = FileProvenance {
            file_sha256: &arrival.sha256,
            raw_key: &arrival.raw_key,
            layout: &layout,
        };
        // A trailer, or a layout that holds the whole file on one bad record, must be
        // checked before any record leaves.
        if output.category.validates_first(bytes)
            && let Some(drift) = validate(output, file, bytes)
        {
            return Ok(Routed::Held(drift));
        }
        let mut value = Vec::with_capacity(512);
        let mut key = String::with_capacity(80);
        let mut records_out = 0u64;
        let mut quarantined: BTreeMap<DriftClass, u64> = BTreeMap::new();
        let parsed = parse_csv(
            bytes,
            &output.category,
            |outcome| -> Result<(), crate::Error> {
                let issue = match outcome {
                    Ok(rec) => {
                        value.clear();
                        output.codec.write_header(&mut value);
                        let row = RowRef {
                            values: rec.values,
                            position: rec.position,
                            file,
                        };
                        match output.plan.write(&row, &mut value) {
                            Ok(()) => {
                                key.clear();
                                write!(key, "{}:{}", arrival.sha256, rec.position.record_index)
                                    .expect("writing to a String");
                                ctx.send_blocking(&output.topic, key.as_bytes(), &value)?;
                                records_out += 1;
                                return Ok(());
                            }
                            Err(e) => schema_issue(e, rec.position),
                        }
                    }
                    Err(issue) => issue,
                };
                *quarantined.entry(issue.class).or_default() += 1;
                let record = QuarantineRecord {
                    scope: QuarantineScope::Record,
                    class: issue.class.as_str().to_string(),
                    reason: issue.reason,
                    field: issue.field,
                    expected: issue.expected,
                    actual: issue.actual.clone(),
                    client_id: arrival.client_id.clone(),
                    category: Some(output.category.name.clone()),
                    file_sha256: arrival.sha256.clone(),
                    raw_key: arrival.raw_key.clone(),
                    file_path: arrival.path.clone(),
                    line: Some(issue.position.line as i64),
                    byte_offset: Some(issue.position.byte_offset as i64),
                    record_index: Some(issue.position.record_index as i64),
                    records_affected: 1,
                    excerpt: issue.actual,
                    detected_at: now_ms(),
                };
                let encoded = self.shared.quarantine_codec.to_vec(&record)?;
                ctx.send_blocking(
                    &self.shared.quarantine_topic,
                    record.key().as_bytes(),
                    &encoded,
                )
            },
        )?;
        Ok(match parsed {
            Err(drift) => Routed::Held(drift),
            Ok(summary) => {
                if let Some(trailer) = &summary.trailer {
                    tracing::info!(path = %arrival.path, line = trailer.line, records = trailer.records, totals = %trailer.sums.iter().map(|t| format!("{}={t}", t.field)).collect::<Vec<_>>().join(" "), "trailer control totals reconcile");
                }
                Routed::Records {
                    records_in: summary.records,
                    records_out,
                    quarantined,
                }
            }
        })
    }
}

/// A record the parser accepted but the Avro schema refused.
fn schema_issue(e: impl std::fmt::Display, position: Position) -> RecordIssue {
    RecordIssue {
        class: DriftClass::SchemaViolation,
        reason: e.to_string(),
        field: None,
        expected: None,
        actual: None,
        position,
    }
}

/// The validation pass: parses and encodes the whole file without sending anything.
/// Returns the drift that holds the file: a trailer that does not reconcile, or (with
/// `quarantine.bad_records = "file"`) the first bad record.
fn validate(output: &CategoryOutput, file: FileProvenance<'_>, bytes: &[u8]) -> Option<FileDrift> {
    let mut scratch = Vec::with_capacity(512);
    let mut first: Option<RecordIssue> = None;
    let mut bad = 0u64;
    let parsed = parse_csv(
        bytes,
        &output.category,
        |outcome| -> Result<(), std::convert::Infallible> {
            let issue = match outcome {
                Ok(rec) => {
                    scratch.clear();
                    let row = RowRef {
                        values: rec.values,
                        position: rec.position,
                        file,
                    };
                    match output.plan.write(&row, &mut scratch) {
                        Ok(()) => return Ok(()),
                        Err(e) => schema_issue(e, rec.position),
                    }
                }
                Err(issue) => issue,
            };
            bad += 1;
            first.get_or_insert(issue);
            Ok(())
        },
    );
    let summary = match parsed {
        Ok(Err(drift)) => return Some(drift),
        Ok(Ok(summary)) => summary,
        Err(never) => match never {},
    };
    let issue = first.filter(|_| output.category.bad_records == BadRecordPolicy::File)?;
    Some(FileDrift {
        class: issue.class,
        reason: format!(
            "{bad} of {} records are bad, and this layout holds the whole file on any \
             (quarantine.bad_records = \"file\"); the first, line {}: {}",
            summary.records, issue.position.line, issue.reason
        ),
        field: issue.field,
        expected: issue.expected,
        actual: issue.actual,
        records: summary.records,
    })
}
