//! The `credstream` binary: parse the command line, set up logging, run the command.

use std::process::ExitCode;

use clap::Parser;
use credstream::api_client::ApiClient;
use credstream::cli::{ApiArgs, Cli, Command, LogFormat, TopologyAction};
use credstream::config::Config;
use credstream::{Error, ErrorKind, app, demo};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// See Cargo.toml: threads hand records to each other, and glibc's arena locks made them
/// wait on one another.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, kind = %e.kind(), "credstream stopped");
            eprintln!("error: {e}");
            ExitCode::from(match e.kind() {
                ErrorKind::Config => 2,
                ErrorKind::External => 3,
                ErrorKind::Internal | ErrorKind::Data => 1,
            })
        }
    }
}

fn init_logging(cli: &Cli) {
    let default = match cli.command {
        Command::Demo { .. } => "error",
        // A client prints its own errors; its stdout is the API's JSON.
        Command::Query(_) => "off",
        _ => "info",
    };
    let directives = cli.log.as_deref().unwrap_or(default);
    let filter = tracing_subscriber::EnvFilter::try_new(directives).unwrap_or_else(|e| {
        eprintln!("warning: bad --log filter {directives:?} ({e}); using {default}");
        tracing_subscriber::EnvFilter::new(default)
    });
    // Commands that draw progress bars log through a writer that lifts the bars for each
    // line; the others write to standard error directly, as always.
    let writer = match cli.command {
        Command::Gen { .. } | Command::Backfill(_) | Command::Replay(_) | Command::Query(_) => {
            BoxMakeWriter::new(credstream::progress::LogWriter)
        }
        _ => BoxMakeWriter::new(std::io::stderr),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Cancels `token` on Ctrl-C or SIGTERM.
fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("signal received; shutting down");
        token.cancel();
    });
}

/// The query API client of `--api` and `--token-file`, or the CREDSTREAM_TOKEN variable.
fn api_client(args: &ApiArgs) -> Result<ApiClient, Error> {
    let token = ApiClient::token(
        args.token_file.as_deref(),
        std::env::var("CREDSTREAM_TOKEN").ok(),
    )?;
    Ok(ApiClient::new(&args.api, token)?)
}

async fn run(command: Command) -> Result<(), Error> {
    let stop = CancellationToken::new();
    cancel_on_signal(stop.clone());
    match command {
        Command::Run { config, role } => {
            let config = Config::load(Some(&config))?;
            let app = app::start(&config, &Command::roles(&role)).await?;
            let handle = stop.clone();
            let shutdown_app = app.shutdown_token();
            tokio::spawn(async move {
                handle.cancelled().await;
                shutdown_app.cancel();
            });
            app.wait().await
        }
        Command::Gen { kind } => credstream::samples::run_gen(kind),
        Command::Parse {
            file,
            category,
            config,
        } => {
            let config = Config::load(config.as_deref())?;
            let catalog = app::catalog(&config)?;
            let (tokeniser, ephemeral) = app::tokeniser_or_ephemeral(&config)?;
            if ephemeral {
                eprintln!(
                    "parse: no tokenisation key configured; card numbers are tokenised under a \
                     one-off random key, so tokens will not match the pipeline's"
                );
            }
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let outcome = credstream::inspect::parse_file(
                &file,
                category.as_deref(),
                &catalog,
                &tokeniser,
                &mut out,
            )?;
            std::io::Write::flush(&mut out).map_err(|e| Error::io("writing the output", e))?;
            if !outcome.is_clean() {
                std::process::exit(4);
            }
            Ok(())
        }
        Command::Replay(args) => {
            let config = Config::load(Some(&args.config))?;
            let api = if args.quarantined || args.wait {
                Some(api_client(&args.api)?)
            } else {
                None
            };
            credstream::replay::run(&config, args, api).await
        }
        Command::Backfill(args) => {
            let config = Config::load(Some(&args.config))?;
            credstream::backfill::run(&config, &args).await
        }
        Command::Query(args) => {
            let api = api_client(&args.api)?;
            credstream::api_client::run(&api, args).await
        }
        Command::Demo {
            dir,
            listen,
            no_serve,
        } => demo::run(&dir, listen, !no_serve, stop).await,
        Command::Topology {
            action: TopologyAction::Describe { format, config },
        } => {
            let config = Config::load(config.as_deref())?;
            let catalog = app::catalog(&config)?;
            let shape = credstream::credit::shape(&config.kafka, &catalog);
            print!(
                "{}",
                credstream::streams::describe(&shape, &config.app.id, format)
            );
            Ok(())
        }
        Command::Registry {
            listen,
            brokers,
            topic,
            kafka_properties,
        } => {
            let mut client = rdkafka::ClientConfig::new();
            client.set("bootstrap.servers", &brokers);
            for (k, v) in &kafka_properties {
                client.set(k, v);
            }
            let journal =
                credstream::schema::journal::Journal::open(&client, &topic, true, 1).await?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| Error::io(format!("binding {listen}"), e))?;
            tracing::info!(url = %format!("http://{listen}"), %topic, "schema registry listening");
            let store = std::sync::Arc::new(credstream::schema::server::SchemaStore::new(journal));
            credstream::schema::server::serve(
                listener,
                store,
                async move { stop.cancelled().await },
            )
            .await
            .map_err(|e| Error::io("serving the schema registry", e))
        }
    }
}
