//! The stream runtime's logic on librdkafka's in-process mock cluster: exactly-once
//! commits and fencing, punctuation, standbys, replica metadata, the partitioner. (The
//! end-to-end behaviour against a real broker process is in `replicas.rs`.)

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use credstream::streams::{
    Batch, InputRecord, Outgoing, OutputProducer, ProcessingGuarantee, Processor, ProcessorContext,
    Punctuation, PunctuationType, RuntimeSettings, RuntimeStatus, StoreRegistry, StreamsMetadata,
    StreamsRuntime, Topology, TopologyShape, changelog_topic, partition_for_key, replicas_topic,
};

const PARTITIONS: i32 = 4;
const INPUT: &str = "in";
const OUTPUT: &str = "out";
const STORES: [&str; 2] = ["seen", "punct"];

/// Records every record it sees as an idempotent upsert keyed by offset, echoes it to
/// `out`, and notes punctuations.
struct Echo {
    punctuations: Vec<Punctuation>,
}

#[async_trait::async_trait]
impl Processor for Echo {
    async fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        record: &InputRecord,
    ) -> Result<(), credstream::Error> {
        let value = record.value.clone().unwrap_or_default();
        ctx.put("seen", format!("{:08}", record.offset).as_bytes(), &value);
        let key = format!("{}:{}", record.partition, record.offset);
        ctx.send(OUTPUT, key.as_bytes(), &value).await
    }

    fn punctuations(&self) -> Vec<Punctuation> {
        self.punctuations.clone()
    }

    async fn punctuate(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        kind: PunctuationType,
        time_ms: i64,
    ) -> Result<(), credstream::Error> {
        ctx.put("punct", format!("{kind:?}:{time_ms:015}").as_bytes(), b"1");
        Ok(())
    }
}

struct Cluster {
    mock: MockCluster<'static, DefaultProducerContext>,
    bootstrap: String,
}

fn cluster(app: &str) -> Result<Cluster> {
    credstream::metrics::install();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
    let mock = MockCluster::new(1)?;
    for t in [INPUT, OUTPUT] {
        mock.create_topic(t, PARTITIONS, 1)?;
    }
    for s in STORES {
        mock.create_topic(&changelog_topic(app, s), PARTITIONS, 1)?;
    }
    mock.create_topic(&replicas_topic(app), 1, 1)?;
    let bootstrap = mock.bootstrap_servers();
    Ok(Cluster { mock, bootstrap })
}

fn client(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

/// A replica of the echo topology, running on its own task.
struct Replica {
    stores: StoreRegistry,
    status: RuntimeStatus,
    metadata: StreamsMetadata,
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), credstream::Error>>,
}

impl Replica {
    async fn start(
        bootstrap: &str,
        app: &str,
        dir: &std::path::Path,
        guarantee: ProcessingGuarantee,
        standbys: usize,
        punctuations: Vec<Punctuation>,
    ) -> Result<Replica> {
        let settings = RuntimeSettings {
            app_id: app.into(),
            state_dir: dir.to_path_buf(),
            session_timeout_ms: 6000,
            max_poll_interval_ms: 30_000,
            create_topics: false,
            replication_factor: 1,
            guarantee,
            num_standby_replicas: standbys,
            endpoint: Some(format!("{}:1", dir.display())),
        };
        let topology = Topology {
            shape: TopologyShape {
                name: "echo".into(),
                source: INPUT.into(),
                processor: "echo".into(),
                stores: STORES.iter().map(|s| s.to_string()).collect(),
                sinks: vec![OUTPUT.into()],
            },
            processor: Box::new(move |_| {
                Box::new(Echo {
                    punctuations: punctuations.clone(),
                })
            }),
            partition_of: Box::new(|_, key, n| {
                std::str::from_utf8(key)
                    .ok()?
                    .parse::<i32>()
                    .ok()
                    .filter(|p| *p < n)
            }),
        };
        let client = client(bootstrap);
        let producer = OutputProducer::new(&client)?;
        let runtime = StreamsRuntime::new(settings, client, topology, producer).await?;
        let stop = CancellationToken::new();
        Ok(Replica {
            stores: runtime.registry(),
            status: runtime.status(),
            metadata: runtime.metadata(),
            handle: tokio::spawn(runtime.run(stop.clone())),
            stop,
        })
    }

    async fn stop(self) -> Result<()> {
        self.stop.cancel();
        self.handle.await?.map_err(|e| anyhow::anyhow!("{e}"))
    }

    fn seen(&self) -> usize {
        self.stores
            .scan("seen", b"", None, usize::MAX)
            .unwrap()
            .len()
    }
}

/// Two at-least-once replicas of one application, each with its own state directory.
async fn two_replicas(
    bootstrap: &str,
    app: &str,
    standbys: usize,
) -> Result<([tempfile::TempDir; 2], Replica, Replica)> {
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    let mut replicas = Vec::new();
    for dir in &dirs {
        replicas.push(
            Replica::start(
                bootstrap,
                app,
                dir.path(),
                ProcessingGuarantee::AtLeastOnce,
                standbys,
                vec![],
            )
            .await?,
        );
    }
    let b = replicas.pop().expect("two replicas");
    let a = replicas.pop().expect("two replicas");
    Ok((dirs, a, b))
}

/// Produces `n` keyed records to `in` (keys `k0`, `k1`, …), with timestamps `t0 + i * step`.
fn produce(bootstrap: &str, from: usize, n: usize, t0: i64, step: i64) -> Result<()> {
    let producer: ThreadedProducer<DefaultProducerContext> = client(bootstrap).create()?;
    for i in from..from + n {
        let key = format!("k{i}");
        let value = format!("v{i}");
        producer
            .send(
                BaseRecord::to(INPUT)
                    .key(&key)
                    .payload(&value)
                    .timestamp(t0 + i as i64 * step),
            )
            .map_err(|(e, _)| e)?;
    }
    producer.flush(Duration::from_secs(10))?;
    Ok(())
}

/// Every value of `topic`, as `(key, value)`, by partition order.
fn read_all(bootstrap: &str, topic: &str, partitions: i32) -> Result<Vec<(String, String)>> {
    let consumer: BaseConsumer = client(bootstrap)
        .set("group.id", "reader")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in 0..partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(5))?;
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Offset(low))?;
            ends.insert(p, high);
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return Ok(out);
    }
    consumer.assign(&tpl)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !ends.is_empty() {
        ensure!(
            std::time::Instant::now() < deadline,
            "reading {topic}: {ends:?} left"
        );
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m?;
            let text =
                |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
            out.push((text(m.key()), text(m.payload())));
            if ends
                .get(&m.partition())
                .is_some_and(|end| m.offset() + 1 >= *end)
            {
                ends.remove(&m.partition());
            }
        }
    }
    Ok(out)
}

async fn until(what: &str, secs: u64, mut check: impl FnMut() -> bool) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !check() {
        ensure!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

// Two limits of the mock cluster shape these tests: it does not store offsets sent in a
// transaction (TxnOffsetCommit is validated, then dropped), and a new producer with the
// same transactional id gets a new producer id instead of fencing the old one. So the
// broker-side behaviours are injected as the errors a real broker returns, and what is
// checked is what credstream does with them.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_runs_every_record_in_a_committed_transaction() -> Result<()> {
    let c = cluster("eos")?;
    let dir = tempfile::tempdir()?;
    produce(&c.bootstrap, 0, 40, 1_000, 1)?;
    let r = Replica::start(
        &c.bootstrap,
        "eos",
        dir.path(),
        ProcessingGuarantee::ExactlyOnce,
        0,
        vec![],
    )
    .await?;
    until("40 records in the store", 30, || r.seen() == 40).await?;
    r.stop().await?;
    let out = read_all(&c.bootstrap, OUTPUT, PARTITIONS)?;
    let keys: BTreeSet<&String> = out.iter().map(|(k, _)| k).collect();
    ensure!(
        out.len() == 40 && keys.len() == 40,
        "{} outputs, {} keys",
        out.len(),
        keys.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abortable_failure_aborts_the_transaction_and_retries() -> Result<()> {
    let c = cluster("abort")?;
    let dir = tempfile::tempdir()?;
    let r = Replica::start(
        &c.bootstrap,
        "abort",
        dir.path(),
        ProcessingGuarantee::ExactlyOnce,
        0,
        vec![],
    )
    .await?;
    produce(&c.bootstrap, 0, 10, 1_000, 1)?;
    until("10 records", 30, || r.seen() == 10).await?;
    // The broker refuses to add a partition to the next transaction (only transactional
    // producers ask): the transaction cannot commit and must be aborted.
    c.mock.request_errors(
        RDKafkaApiKey::AddPartitionsToTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
    );
    produce(&c.bootstrap, 10, 10, 1_000, 1)?;
    until("20 records after the retry", 60, || r.seen() == 20).await?;
    r.stop().await?;
    let metrics = credstream::metrics::install().render();
    ensure!(
        metrics.contains("credstream_transactions_total{outcome=\"aborted\"}"),
        "no transaction was aborted:\n{metrics}"
    );
    // Every record is in the store once; every output key exists (the mock also shows
    // the aborted transaction's records to read_committed readers, so count keys).
    let out = read_all(&c.bootstrap, OUTPUT, PARTITIONS)?;
    let keys: BTreeSet<&String> = out.iter().map(|(k, _)| k).collect();
    ensure!(keys.len() == 20, "{} output keys", keys.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_exactly_once_task_is_dropped_and_the_replica_rejoins() -> Result<()> {
    let c = cluster("zombie")?;
    let dir = tempfile::tempdir()?;
    let r = Replica::start(
        &c.bootstrap,
        "zombie",
        dir.path(),
        ProcessingGuarantee::ExactlyOnce,
        0,
        vec![],
    )
    .await?;
    produce(&c.bootstrap, 0, 8, 1_000, 1)?;
    until("8 records", 30, || r.seen() == 8).await?;
    let rejoined_before = r.status.rejoins();

    // The broker answers the next commit as it answers a producer whose transactional id
    // a new owner has taken. The task is dropped without applying its work, and the
    // replica rejoins the group, as Kafka Streams does on a migrated task; here it gets
    // its partitions back and does the work again, in transactions that commit.
    c.mock.request_errors(
        RDKafkaApiKey::EndTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_PRODUCER_FENCED],
    );
    produce(&c.bootstrap, 8, 8, 1_000, 1)?;
    until("a rejoin", 30, || r.status.rejoins() > rejoined_before).await?;
    until("16 records", 60, || r.seen() == 16).await?;
    r.stop().await?;
    let metrics = credstream::metrics::install().render();
    ensure!(
        metrics.contains("credstream_tasks_lost_total"),
        "no task was lost:\n{metrics}"
    );
    let out = read_all(&c.bootstrap, OUTPUT, PARTITIONS)?;
    let keys: BTreeSet<&String> = out.iter().map(|(k, _)| k).collect();
    ensure!(keys.len() == 16, "{} output keys", keys.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn punctuations_fire_on_wall_clock_and_on_stream_time() -> Result<()> {
    let c = cluster("punct")?;
    let dir = tempfile::tempdir()?;
    let punctuations = vec![
        Punctuation {
            kind: PunctuationType::WallClock,
            interval: Duration::from_millis(300),
        },
        Punctuation {
            kind: PunctuationType::StreamTime,
            interval: Duration::from_millis(1000),
        },
    ];
    let r = Replica::start(
        &c.bootstrap,
        "punct",
        dir.path(),
        ProcessingGuarantee::AtLeastOnce,
        0,
        punctuations,
    )
    .await?;
    // Stream time runs from 10 000 to 14 900 in steps of 100 ms, in each partition.
    produce(&c.bootstrap, 0, 50, 10_000, 100)?;
    until("50 records", 30, || r.seen() == 50).await?;
    let stream_times = || -> BTreeSet<i64> {
        r.stores
            .scan("punct", b"StreamTime:", None, usize::MAX)
            .unwrap()
            .iter()
            .map(|(k, _)| String::from_utf8_lossy(&k[11..]).parse().unwrap())
            .collect()
    };
    // Boundaries crossed by stream time: 11 000 … 14 000, each exactly once per task.
    until("stream-time punctuations", 10, || stream_times().len() >= 4).await?;
    let fired = stream_times();
    ensure!(
        fired
            .iter()
            .all(|t| t % 1000 == 0 && (11_000..=14_000).contains(t)),
        "{fired:?}"
    );
    until("wall-clock punctuations", 10, || {
        r.stores
            .scan("punct", b"WallClock:", None, usize::MAX)
            .unwrap()
            .len()
            >= 2
    })
    .await?;
    r.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standbys_make_a_failover_restore_almost_nothing() -> Result<()> {
    let c = cluster("warm")?;
    let (_dirs, a, b) = two_replicas(&c.bootstrap, "warm", 1).await?;
    until("both replicas hold tasks", 30, || {
        !a.status.assigned().is_empty() && !b.status.assigned().is_empty()
    })
    .await?;
    produce(&c.bootstrap, 0, 400, 1_000, 1)?;
    until("400 records across replicas", 30, || {
        a.seen() + b.seen() == 400
    })
    .await?;
    // Each replica keeps the other's partitions warm.
    until("standbys in the replica table", 15, || {
        (0..PARTITIONS).all(|p| a.metadata.standbys(p).len() == 1)
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await; // standbys catch up
    let restored_before = b.status.restored_records();
    a.stop().await?;
    until("b owns every partition", 30, || {
        b.status.assigned().len() == PARTITIONS as usize
    })
    .await?;
    ensure!(b.seen() == 400, "b sees {} records", b.seen());
    let restored = b.status.restored_records() - restored_before;
    // Without standbys b would restore a's ~200 records; warm, it restores only the tail.
    ensure!(restored < 20, "takeover restored {restored} records");
    b.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_metadata_follows_rebalances() -> Result<()> {
    let c = cluster("meta")?;
    let (_dirs, a, b) = two_replicas(&c.bootstrap, "meta", 0).await?;
    let agrees = |m: &StreamsMetadata| {
        (0..PARTITIONS).all(|p| {
            let owner = m.owner(p).map(|r| r.replica_id);
            let expected = if a.status.assigned().contains(&p) {
                Some(a.metadata.replica_id().to_string())
            } else if b.status.assigned().contains(&p) {
                Some(b.metadata.replica_id().to_string())
            } else {
                None
            };
            owner.is_some() && owner == expected
        })
    };
    until("both replicas agree on the owners", 30, || {
        !a.status.assigned().is_empty()
            && !b.status.assigned().is_empty()
            && agrees(&a.metadata)
            && agrees(&b.metadata)
    })
    .await?;
    let b_id = b.metadata.replica_id().to_string();
    b.stop().await?;
    until("a owns everything, by its own table", 30, || {
        (0..PARTITIONS).all(|p| a.metadata.owner(p).is_some_and(|r| r.replica_id != b_id))
    })
    .await?;
    let owner = a.metadata.owner(
        a.metadata
            .partition_of("seen", b"2")
            .context("partition of key")?,
    );
    ensure!(owner.is_some_and(|r| r.endpoint.is_some()));
    a.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_partitioner_agrees_with_librdkafka() -> Result<()> {
    let c = cluster("part")?;
    let producer = OutputProducer::new(&client(&c.bootstrap))?;
    let batch = Batch::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    for i in 0..200 {
        let key = format!("client-{i}");
        producer
            .send(
                &batch,
                Outgoing {
                    topic: INPUT,
                    partition: None,
                    key: key.as_bytes(),
                    value: Some(b"x"),
                    headers: None,
                },
            )
            .await?;
        seen.lock().unwrap().push(key);
    }
    batch.wait().await?;
    let consumer: BaseConsumer = client(&c.bootstrap).set("group.id", "p").create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(INPUT, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut checked = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while checked < 200 && std::time::Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m?;
            let key = m.key().unwrap();
            ensure!(
                partition_for_key(key, PARTITIONS) == m.partition(),
                "{:?}",
                String::from_utf8_lossy(key)
            );
            checked += 1;
        }
    }
    ensure!(checked == 200, "read {checked} of 200");
    Ok(())
}
