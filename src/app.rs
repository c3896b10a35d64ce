//! Startup: builds the stores from the configuration and composes the
//! roles asked for (the worker and archiver; the API and its WebSocket
//! side), then stops them in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::health::WorkerRole;
use crate::api::{self, Api, limit};
use crate::clock::SystemClock;
use crate::config::{Config, ConfigError, Role};
use crate::domain::Catalog;
use crate::sources::{self, SourceSpec};
use crate::store::{Archive, ArchiveError, Archiver, Embedded, Engine, RedisError, RedisStore};
use crate::stream::{LiveHub, Streams, WsSettings};
use crate::worker::election::{self, Election};
use crate::worker::{Worker, WorkerSettings};

/// How long a stop may take before the remaining tasks are abandoned.
const STOP_DEADLINE: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Access(#[from] crate::access::AccessError),
    #[error("RATES_DATABASE_URL is not set: there is no archive to migrate")]
    NoArchive,
    #[error(
        "`ratesd {0}` alone needs a shared engine: set RATES_REDIS_URL \
         (or run `ratesd` with no subcommand for one process with the embedded engine)"
    )]
    NeedsSharedEngine(&'static str),
}

/// A running service.
pub struct App {
    addr: Option<SocketAddr>,
    /// Where the admin listener listens, when `RATES_ADMIN_ADDR` is set.
    admin_addr: Option<SocketAddr>,
    engine: Engine,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
    /// Stopped before the archiver, so that its last tick is flushed too.
    worker: Option<tokio::task::JoinHandle<()>>,
    archiver: Option<(tokio::task::JoinHandle<()>, CancellationToken)>,
    /// The worker's role, when this process runs one.
    role: Option<WorkerRole>,
}

impl App {
    /// Starts the roles of `role`. Redis and PostgreSQL need not be up: the
    /// service starts anyway, reports it in `/health/ready`, and catches up
    /// when they come.
    pub async fn start(config: &Config, role: Role) -> Result<Self, StartupError> {
        let catalog = Arc::new(config.catalog()?);
        let engine = match config.redis_url() {
            Some(url) => {
                tracing::info!(prefix = %config.redis_prefix, mode = ?config.redis_mode, "redis engine");
                Engine::Redis(Arc::new(RedisStore::new(
                    url,
                    &config.redis_prefix,
                    config.redis_mode,
                )?))
            }
            None => match role {
                Role::All => {
                    tracing::info!(
                        "embedded engine: one process, nothing survives a restart; \
                         set RATES_REDIS_URL for Redis"
                    );
                    Engine::Embedded(Arc::new(Embedded::new(catalog.clone())))
                }
                Role::Serve => return Err(StartupError::NeedsSharedEngine("serve")),
                Role::Worker => return Err(StartupError::NeedsSharedEngine("worker")),
            },
        };
        let archive = config.archive()?;
        if archive.is_none() {
            tracing::info!(
                "no archive: RATES_DATABASE_URL is not set; history reaches back over the live window only"
            );
        }
        let mut app = Self {
            addr: None,
            admin_addr: None,
            engine: engine.clone(),
            shutdown: CancellationToken::new(),
            tasks: JoinSet::new(),
            worker: None,
            archiver: None,
            role: None,
        };
        app.start_metrics(config);
        if role.runs_worker() {
            app.start_worker(config, &catalog, &engine, archive.as_ref())?;
        } else if let Some(archive) = archive.clone().filter(|_| config.auto_migrate) {
            // An API alone still wants the archive's schema for old ranges.
            app.tasks.spawn(async move {
                if let Err(e) = archive.prepare(true).await {
                    tracing::warn!(error = %e, "cannot prepare the archive; old ranges unavailable");
                }
            });
        }
        if !role.runs_worker()
            && let Some(archive) = archive.clone()
        {
            // No archiver here to learn the archive's state: ask it now and then.
            app.tasks
                .spawn(archive.watch(Duration::from_secs(5), app.shutdown.clone()));
        }
        if role.runs_api() {
            app.start_api(config, catalog, engine, archive, false)
                .await?;
        } else if let Err(e) = app.start_api(config, catalog, engine, archive, true).await {
            // A worker alone serves its probes where it can; it works without.
            tracing::warn!(error = %e, "worker health and metrics not served");
        }
        Ok(app)
    }

    /// The metric families, and their upkeep.
    fn start_metrics(&mut self, config: &Config) {
        let metrics = crate::telemetry::metrics();
        let source_names: Vec<&'static str> = config.sources.iter().map(SourceSpec::name).collect();
        crate::telemetry::register_metrics(&source_names);
        let token = self.shutdown.clone();
        self.tasks.spawn(async move {
            // Histograms are drained on upkeep; no scrape may go without it for long.
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    () = token.cancelled() => return,
                    _ = every.tick() => metrics.run_upkeep(),
                }
            }
        });
    }

    /// The worker, and the archiver when there is an archive.
    fn start_worker(
        &mut self,
        config: &Config,
        catalog: &Arc<Catalog>,
        engine: &Engine,
        archive: Option<&Archive>,
    ) -> Result<(), StartupError> {
        if config.sources.contains(&SourceSpec::Simulated) {
            tracing::warn!(
                "the simulated source is in use: its quotes are made up, not market data"
            );
        }
        let sources = sources::build(&config.sources, catalog, &config.upstream_settings())?;
        let settings = WorkerSettings {
            window_seconds: config.history_seconds,
            stale_after_seconds: config.stale_after_seconds,
            fetch_timeout: Duration::from_millis(config.upstream_timeout_ms),
            backfill_seconds: config.simulated_backfill_seconds,
            archive_buffer: archive.map(|_| config.archive_buffer_ticks),
        };
        let election = Election {
            engine: engine.clone(),
            node: election::node_name(),
            ttl: election::LEASE_TTL,
            fenced: Default::default(),
        };
        let (role_tx, role_rx) = tokio::sync::watch::channel(election::Role::Standby);
        let worker = Worker::new(
            sources,
            catalog.clone(),
            engine.clone(),
            archive.cloned(),
            settings,
            election,
            role_rx.clone(),
        );
        self.worker = Some(tokio::spawn(worker.run(
            Arc::new(SystemClock),
            self.shutdown.clone(),
            role_tx,
        )));
        self.role = Some(role_rx);
        if let Some(archive) = archive {
            let archiver = Archiver {
                engine: engine.clone(),
                archive: archive.clone(),
                migrate: config.auto_migrate,
                buffer_ticks: config.archive_buffer_ticks,
                retention_days: config.archive_retention_days,
            };
            let token = CancellationToken::new();
            self.archiver = Some((tokio::spawn(archiver.run(token.clone())), token));
        }
        Ok(())
    }

    /// The HTTP API and the WebSocket side: the listener, the live hub, the
    /// API's state, the server. With `probes_only`, `/health/*` and
    /// `/metrics` alone (`ratesd worker`).
    async fn start_api(
        &mut self,
        config: &Config,
        catalog: Arc<Catalog>,
        engine: Engine,
        archive: Option<Archive>,
        probes_only: bool,
    ) -> Result<(), StartupError> {
        let bind = |source| StartupError::Bind {
            addr: config.http_addr,
            source,
        };
        let listener = TcpListener::bind(config.http_addr).await.map_err(bind)?;
        let local = listener.local_addr().map_err(bind)?;
        self.addr = Some(local);
        // Without an archive, a ticker reaches back over the live window only.
        let ticker_window = archive
            .is_none()
            .then_some(i64::from(config.history_seconds));
        let ids: Vec<_> = catalog.assets().iter().map(|a| a.id).collect();
        let hub = LiveHub::new(
            &catalog,
            ticker_window,
            engine.live_messages(&ids),
            config.stale_after_seconds,
        );
        self.tasks
            .spawn(hub.clone().run(engine.clone(), self.shutdown.clone()));
        let streams = Arc::new(Streams::new(
            catalog,
            engine.clone(),
            archive.clone(),
            hub,
            config.history_seconds,
            WsSettings::from_config(config),
            self.shutdown.clone(),
        ));
        if !probes_only {
            self.tasks.spawn(crate::stream::ticker_seeding::keep_seeded(
                streams.clone(),
                self.shutdown.clone(),
            ));
        }
        let mut api = Api::new(config, engine, archive, streams, self.role.clone())?;
        if probes_only {
            api = api.probes_only();
        }
        if let Some(addr) = config.admin_addr {
            self.start_admin(addr, &api).await?;
            api = api.without_metrics();
        }
        if let Some(access) = api.access() {
            if let Some(keys) = access.gate.keys() {
                self.tasks
                    .spawn(crate::access::keys::watch(keys, self.shutdown.clone()));
            }
            self.tasks.spawn(limit::forget_idle_clients(
                access.limiter.clone(),
                self.shutdown.clone(),
            ));
        }
        self.serve(listener, api, "http");
        if probes_only {
            tracing::info!(%local, "worker health and metrics listening");
        } else {
            tracing::info!(%local, "api listening");
        }
        Ok(())
    }

    /// The admin listener (`RATES_ADMIN_ADDR`): `/metrics` and `/health/*`
    /// on an address of their own.
    async fn start_admin(&mut self, addr: SocketAddr, api: &Api) -> Result<(), StartupError> {
        let bind = |source| StartupError::Bind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind)?;
        let local = listener.local_addr().map_err(bind)?;
        self.admin_addr = Some(local);
        self.serve(listener, api.admin(), "admin");
        tracing::info!(%local, "admin (health and metrics) listening");
        Ok(())
    }

    /// Serves `api` on `listener` (the `which` server) until the shutdown.
    fn serve(&mut self, listener: TcpListener, api: Api, which: &'static str) {
        let token = self.shutdown.clone();
        self.tasks.spawn(async move {
            if let Err(e) = api::serve(listener, api, token.clone()).await {
                tracing::error!(error = %e, server = which, "server failed");
            }
            // A server only ends on its own when it failed: stop the rest.
            token.cancel();
        });
    }

    /// The engine this process writes to and reads from.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Where the API listens (its real port when configured with port 0).
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Where the admin listener listens (its real port when configured
    /// with port 0), when there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Runs until `signal` completes or a part stops on its own, then stops.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) {
        tokio::select! {
            () = signal => tracing::info!("shutting down"),
            () = self.shutdown.cancelled() => tracing::warn!("a part of the service stopped; shutting down"),
        }
        self.stop().await;
    }

    /// Stops every part, in order: the API stops accepting and closes its
    /// sockets and the worker finishes its tick; then the archiver flushes
    /// what the buffer holds, within its deadline.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let ordered = async {
            if let Some(worker) = self.worker.take() {
                let _ = worker.await;
            }
            if let Some((archiver, token)) = self.archiver.take() {
                token.cancel();
                let _ = archiver.await;
            }
            while self.tasks.join_next().await.is_some() {}
        };
        if tokio::time::timeout(STOP_DEADLINE, ordered).await.is_err() {
            tracing::warn!("some tasks did not stop within {STOP_DEADLINE:?}; abandoning them");
            self.tasks.abort_all();
        }
    }
}

/// `ratesd migrate`: create the archive database if needed, apply the
/// migrations, and return.
pub async fn migrate(config: &Config) -> Result<(), StartupError> {
    let url = config.archive_url().ok_or(StartupError::NoArchive)?;
    let archive = Archive::new(url)?;
    archive.prepare(true).await?;
    archive.close().await;
    Ok(())
}
