//! Wires the roles of `credstream run` together: the embedded registry, pollers, the
//! topology runtime and the query API, all in one process or a subset of them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, RawStoreKind, SourceKind};
use crate::credit::{CreditTopology, KafkaArrivalSink};
use crate::formats::Catalog;
use crate::poller::{LocalSource, Poller, SftpSource};
use crate::query::QueryState;
use crate::rawstore::{FsRawStore, RawStore, S3RawStore};
use crate::schema::contracts::Contracts;
use crate::schema::{Registry, server::SchemaStore};
use crate::streams::{
    OutputProducer, RuntimeSettings, RuntimeStatus, StoreRegistry, StreamsRuntime, ensure_topics,
};
use crate::tokenise::Tokeniser;

/// A part of the pipeline a process can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Poll the configured sources and emit file arrivals.
    Poller,
    /// Run the credit topology as a member of the consumer group.
    Topology,
    /// Serve the query API and /metrics.
    Query,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Poller, Role::Topology, Role::Query];
}

/// A started application.
pub struct RunningApp {
    /// Where the query API and `/metrics` listen, when the query role runs.
    pub query_addr: Option<SocketAddr>,
    /// The schema registry in use.
    pub registry_url: String,
    /// The topology's stores in this process.
    pub stores: StoreRegistry,
    pub status: Option<RuntimeStatus>,
    shutdown: CancellationToken,
    tasks: JoinSet<Result<(), crate::Error>>,
}

impl RunningApp {
    /// Asks every role to stop.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// A token that stops every role when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits for every role to stop; the first error stops the others.
    pub async fn wait(mut self) -> Result<(), crate::Error> {
        let mut first_error = None;
        while let Some(joined) = self.tasks.join_next().await {
            let result = joined.unwrap_or_else(|e| {
                std::panic::resume_unwind(e.into_panic());
            });
            if let Err(e) = result {
                tracing::error!(error = %e, kind = %e.kind(), "a role failed; stopping");
                self.shutdown.cancel();
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// The librdkafka settings every client shares.
pub fn kafka_client_config(config: &Config) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.kafka.bootstrap_servers);
    for (k, v) in &config.kafka.properties {
        client.set(k, v);
    }
    client
}

fn io(context: &str) -> impl FnOnce(std::io::Error) -> crate::Error + '_ {
    move |e| crate::Error::io(context, e)
}

/// Starts the roles in `roles` (and the embedded registry when configured).
pub async fn start(config: &Config, roles: &[Role]) -> Result<RunningApp, crate::Error> {
    let metrics = crate::metrics::install();
    let shutdown = CancellationToken::new();
    let mut tasks: JoinSet<Result<(), crate::Error>> = JoinSet::new();

    let client = kafka_client_config(config);
    let registry_url = if config.registry.embedded {
        let journal = crate::schema::journal::Journal::open(
            &client,
            &config.registry.topic,
            config.kafka.create_topics,
            config.kafka.replication_factor,
        )
        .await?;
        let listener = tokio::net::TcpListener::bind(config.registry.listen)
            .await
            .map_err(io("binding the embedded schema registry"))?;
        let url = format!(
            "http://{}",
            listener.local_addr().map_err(io("registry address"))?
        );
        tracing::info!(%url, "embedded schema registry listening");
        let token = shutdown.clone();
        tasks.spawn(async move {
            crate::schema::server::serve(
                listener,
                Arc::new(SchemaStore::new(journal)),
                async move { token.cancelled().await },
            )
            .await
            .map_err(io("serving the schema registry"))
        });
        url
    } else {
        config.registry_url()
    };

    let catalog = catalog(config)?;
    for d in &config.deliveries {
        if !catalog.categories().iter().any(|c| c.name == d.category) {
            return Err(crate::config::ConfigError::Invalid(format!(
                "deliveries: {} expects category {:?}, which no layout defines ({})",
                d.client,
                d.category,
                catalog.names()
            ))
            .into());
        }
    }
    let contracts = contracts(config)?;
    let raw = raw_store(config).await?;
    let mut settings = config.registry_client()?;
    settings.url = registry_url.clone();
    let registry = Arc::new(Registry::connect(&settings)?);
    let tokeniser = tokeniser(config, &catalog)?;
    let credit = CreditTopology::register(
        &config.kafka,
        registry.clone(),
        raw.clone(),
        catalog,
        &contracts,
        tokeniser,
    )
    .await?;
    ensure_topics(&client, &credit.topics(), config.kafka.create_topics).await?;
    let producer = OutputProducer::new(&client)?;

    let mut stores = StoreRegistry::default();
    let mut status = None;
    let mut metadata = None;
    let mut standby_stores = StoreRegistry::default();
    // Bind the query API first: its address is published for interactive queries.
    let query_listener = if roles.contains(&Role::Query) {
        Some(
            tokio::net::TcpListener::bind(config.query.listen)
                .await
                .map_err(io("binding the query API"))?,
        )
    } else {
        None
    };
    let query_addr = match &query_listener {
        Some(l) => Some(l.local_addr().map_err(io("query API address"))?),
        None => None,
    };
    let query_endpoint = config
        .query
        .advertised
        .clone()
        .or_else(|| query_addr.map(|a| a.to_string()));
    if roles.contains(&Role::Topology) {
        let settings = RuntimeSettings {
            app_id: config.app.id.clone(),
            state_dir: config.app.state_dir.clone(),
            session_timeout_ms: config.kafka.session_timeout_ms,
            max_poll_interval_ms: config.kafka.max_poll_interval_ms,
            create_topics: config.kafka.create_topics,
            replication_factor: config.kafka.replication_factor,
            guarantee: config.app.processing_guarantee,
            num_standby_replicas: config.app.num_standby_replicas,
            endpoint: query_endpoint.clone(),
        };
        let runtime = StreamsRuntime::new(
            settings,
            client.clone(),
            credit
                .clone()
                .expecting(config.deliveries.clone())
                .view_chunk(config.topology.view_chunk_accounts)
                .topology(),
            producer.clone(),
        )
        .await?;
        stores = runtime.registry();
        standby_stores = runtime.standby_registry();
        status = Some(runtime.status());
        metadata = Some(runtime.metadata());
        let token = shutdown.clone();
        tasks.spawn(async move { runtime.run(token).await });
    }

    if roles.contains(&Role::Poller) {
        if config.sources.is_empty() {
            tracing::warn!("the poller role runs but no [sources] are configured");
        }
        let (topic, codec) = credit.arrivals();
        let sink = Arc::new(KafkaArrivalSink::new(producer.clone(), topic, codec));
        for (name, source) in &config.sources {
            let boxed: Box<dyn crate::poller::Source> = match source.kind {
                SourceKind::Local => Box::new(LocalSource::new(name, &source.path)),
                SourceKind::Sftp => Box::new(SftpSource::new(name, source.sftp(name)?)),
            };
            let poller = Poller::new(
                boxed,
                raw.clone(),
                sink.clone(),
                &config.app.state_dir,
                Duration::from_millis(source.poll_interval_ms),
            )?
            .with_quiet_period(source.quiet_period())
            .with_filter(
                crate::poller::PathFilter::new(&source.include, &source.exclude)
                    .map_err(crate::config::ConfigError::Invalid)?,
            )
            .with_marker_suffix(source.marker_suffix.clone())
            .with_move_to_done(source.move_to_done.clone())
            .with_max_concurrent_reads(source.max_concurrent_reads)
            .with_events(source.watch.unwrap_or(source.kind == SourceKind::Local));
            let token = shutdown.clone();
            tasks.spawn(async move {
                poller.run(token).await;
                Ok(())
            });
        }
    }

    if let (Some(listener), Some(addr)) = (query_listener, query_addr) {
        tracing::info!(url = %format!("http://{addr}"), "query API listening");
        let audit_path = config
            .query
            .audit_log
            .clone()
            .unwrap_or_else(|| config.app.state_dir.join("audit").join("query.jsonl"));
        let audit =
            crate::query::Audit::open(&audit_path).map_err(io("opening the query audit log"))?;
        let auth = crate::query::Auth::from_config(&config.query.auth)?;
        tracing::info!(audit_log = %audit_path.display(), tokens = config.query.auth.tokens.len(), "query audit log open");
        let mut state = QueryState::new(stores.clone(), metrics)
            .with_auth(auth)
            .with_audit(audit);
        if let (Some(status), Some(metadata)) = (status.clone(), metadata) {
            state = state.with_runtime(status, metadata, standby_stores);
        }
        let token = shutdown.clone();
        tasks.spawn(async move {
            crate::query::serve(listener, state, async move { token.cancelled().await })
                .await
                .map_err(io("serving the query API"))
        });
    }

    Ok(RunningApp {
        query_addr,
        registry_url: registry.url().to_string(),
        stores,
        status,
        shutdown,
        tasks,
    })
}

/// The categories: `topology.dir`, or the built-in `topologies/`.
pub fn catalog(config: &Config) -> Result<Catalog, crate::Error> {
    Ok(match &config.topology.dir {
        Some(dir) => Catalog::load_dir(dir)?,
        None => Catalog::builtin()?,
    })
}

/// The tokeniser for card numbers: required when any category declares a `pan` field, so
/// a pipeline never starts unable to tokenise.
pub fn tokeniser(config: &Config, catalog: &Catalog) -> Result<Tokeniser, crate::Error> {
    if let Some(t) = config.tokenisation.tokeniser()? {
        return Ok(t);
    }
    let with_pans: Vec<&str> = catalog
        .categories()
        .iter()
        .filter(|c| c.fields.iter().any(|f| f.ty.is_tokenised()))
        .map(|c| c.name.as_str())
        .collect();
    Err(crate::config::ConfigError::Invalid(format!(
        "categories {} declare card-number (pan) fields, and no tokenisation key is set: give \
         tokenisation.key_file (a file holding at least {} bytes) or CREDSTREAM_TOKENISATION__KEY",
        with_pans.join(", "),
        crate::tokenise::MIN_KEY_BYTES
    ))
    .into())
}

/// The configured tokeniser, or one under a random key used once (for `credstream parse`
/// without a key: tokens then match nothing else). The flag says which.
pub fn tokeniser_or_ephemeral(config: &Config) -> Result<(Tokeniser, bool), crate::Error> {
    if let Some(t) = config.tokenisation.tokeniser()? {
        return Ok((t, false));
    }
    Ok((
        Tokeniser::new(&random_key()).expect("a random key is long enough"),
        true,
    ))
}

/// 32 random bytes from the operating system, hex-encoded.
pub fn random_key() -> crate::config::Secret {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).expect("the operating system provides random bytes");
    crate::config::Secret::new(hex::encode(key))
}

/// The Avro contracts: `topology.avro_dir`, or the built-in `avro/`.
fn contracts(config: &Config) -> Result<Contracts, crate::Error> {
    Ok(match &config.topology.avro_dir {
        Some(dir) => Contracts::load_dir(dir)?,
        None => Contracts::builtin(),
    })
}

/// The configured raw store. For S3, objects are downloaded for parsing into
/// `raw_store.cache_dir` (default `<state_dir>/raw-cache`).
async fn raw_store(config: &Config) -> Result<Arc<dyn RawStore>, crate::Error> {
    Ok(match config.raw_store.kind {
        RawStoreKind::Fs => Arc::new(FsRawStore::new(&config.raw_store.path)),
        RawStoreKind::S3 => {
            let cache = config
                .raw_store
                .cache_dir
                .clone()
                .unwrap_or_else(|| config.app.state_dir.join("raw-cache"));
            let store = S3RawStore::connect(&config.raw_store, cache).await?;
            match store.check().await {
                Err(e) if e.kind() == crate::ErrorKind::Config => return Err(e.into()),
                Err(e) => {
                    tracing::warn!(error = %e, "the raw store does not answer yet; files wait until it does")
                }
                Ok(()) => {}
            }
            Arc::new(store)
        }
    })
}

/// Sends `FileArrived` records from outside the poller (`credstream replay` and
/// `backfill`): the configured raw store, the arrivals topic's codec from the registry and
/// one producer, for any number of records.
pub struct ArrivalSender {
    raw: Arc<dyn RawStore>,
    sink: KafkaArrivalSink,
    producer: OutputProducer,
    topic: String,
}

impl ArrivalSender {
    /// Opens the raw store, looks up the `FileArrived` schema and starts a producer.
    pub async fn connect(config: &Config) -> Result<ArrivalSender, crate::Error> {
        let raw = raw_store(config).await?;
        let registry = Registry::connect(&config.registry_client()?)?;
        let topic = crate::credit::arrivals_topic(&config.kafka);
        let codec = registry
            .codec(
                &crate::schema::value_subject(&topic),
                contracts(config)?.get(crate::schema::contracts::FILE_ARRIVED)?,
            )
            .await?;
        let producer = OutputProducer::new(&kafka_client_config(config))?;
        Ok(ArrivalSender {
            raw,
            sink: KafkaArrivalSink::new(producer.clone(), topic.clone(), Arc::new(codec)),
            producer,
            topic,
        })
    }

    /// The configured raw store.
    pub fn raw_store(&self) -> Arc<dyn RawStore> {
        self.raw.clone()
    }

    /// The sink: [`crate::poller::ArrivalSink::emit`] sends an arrival and returns once
    /// the broker has it.
    pub fn sink(&self) -> &KafkaArrivalSink {
        &self.sink
    }

    /// The arrivals topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Asks the topology to process the file with `sha256` again from the raw store: sends
    /// a `FileArrived` record with `replay` set, and returns it once the broker has it.
    pub async fn replay(&self, sha256: &str) -> Result<crate::credit::FileArrived, crate::Error> {
        let key = crate::rawstore::key_for(sha256)?;
        let meta = self.raw.meta(&key).await?;
        // Reading verifies the bytes against their digest: a replay of damaged bytes stops
        // here.
        let object = self.raw.open(&key).await?;
        let size = std::fs::metadata(object.path())
            .map_err(|source| crate::rawstore::RawStoreError::Io {
                op: "stat",
                key: key.clone(),
                source,
            })?
            .len();
        drop(object);
        let arrival = crate::credit::FileArrived {
            client_id: meta.client_id,
            source: "replay".into(),
            path: meta.original_path,
            size: size as i64,
            mtime: meta.mtime_ms,
            sha256: sha256.to_string(),
            raw_key: key,
            detected_at: chrono::Utc::now().timestamp_millis(),
            replay: true,
        };
        self.sink.send(&arrival).await?;
        tracing::info!(sha256, path = %arrival.path, client = %arrival.client_id, "replay requested");
        Ok(arrival)
    }

    /// Waits until everything sent is with the broker (each send has waited for its own
    /// acknowledgement already).
    pub fn flush(&self) -> Result<(), crate::Error> {
        Ok(self.producer.flush(Duration::from_secs(10))?)
    }
}

/// Asks the topology to process the file with `sha256` again from the raw store: sends a
/// `FileArrived` record with `replay` set, and returns it once the broker has it.
pub async fn request_replay(
    config: &Config,
    sha256: &str,
) -> Result<crate::credit::FileArrived, crate::Error> {
    let sender = ArrivalSender::connect(config).await?;
    let arrival = sender.replay(sha256).await?;
    sender.flush()?;
    Ok(arrival)
}
