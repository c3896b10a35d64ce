//! Startup: builds the stores, sources, worker, archiver and API from the
//! configuration, runs the roles asked for, and stops them in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::cache::{HistoryCache, Prepared, RatesCache};
use crate::api::limit::{self, ConnectionLimiter, HttpLimiter};
use crate::api::rest::AssetList;
use crate::api::ws::WsSettings;
use crate::api::{self, AppState, Shared};
use crate::archiver::Archiver;
use crate::config::{Config, ConfigError, Role};
use crate::live::LiveHub;
use crate::sources::{self, SourceSpec};
use crate::store::{Archive, ArchiveError, RedisError, RedisStore};
use crate::worker::{SystemClock, Worker, WorkerSettings};

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
    #[error("RATES_DATABASE_URL is off: there is no archive to migrate")]
    NoArchive,
}

/// A running service.
pub struct App {
    addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
    /// Stopped before the archiver, so that its last tick is flushed too.
    worker: Option<tokio::task::JoinHandle<()>>,
    archiver: Option<(tokio::task::JoinHandle<()>, CancellationToken)>,
}

impl App {
    /// Starts the roles of `role`. Redis and PostgreSQL need not be up: the
    /// service starts anyway, reports it in `/health/ready`, and catches up
    /// when they come.
    pub async fn start(config: &Config, role: Role) -> Result<Self, StartupError> {
        let catalog = Arc::new(config.catalog()?);
        let redis = RedisStore::new(&config.redis_url, &config.redis_prefix)?;
        let archive = config.archive_url().map(Archive::new).transpose()?;
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut worker_task = None;
        let mut archiver_task = None;
        let metrics = crate::telemetry::metrics();
        let source_names: Vec<&'static str> = config.sources.iter().map(SourceSpec::name).collect();
        crate::telemetry::register_metrics(&source_names);
        let token = shutdown.clone();
        tasks.spawn(async move {
            // Histograms are drained on upkeep; no scrape may go without it for long.
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    () = token.cancelled() => return,
                    _ = every.tick() => metrics.run_upkeep(),
                }
            }
        });

        if role.runs_worker() {
            if config.sources.contains(&SourceSpec::Simulated) {
                tracing::warn!(
                    "the simulated source is in use: its quotes are made up, not market data"
                );
            }
            let sources = sources::build(&config.sources, &catalog, &config.upstream_settings())?;
            let settings = WorkerSettings {
                window_seconds: config.history_seconds,
                stale_after_seconds: config.stale_after_seconds,
                fetch_timeout: Duration::from_millis(config.upstream_timeout_ms),
                backfill_seconds: config.simulated_backfill_seconds,
                archive_buffer: archive.as_ref().map(|_| config.archive_buffer_ticks),
            };
            let worker = Worker::new(
                sources,
                catalog.clone(),
                redis.clone(),
                archive.clone(),
                settings,
            );
            worker_task = Some(tokio::spawn(
                worker.run(Arc::new(SystemClock), shutdown.clone()),
            ));
            if let Some(archive) = &archive {
                let archiver = Archiver {
                    redis: redis.clone(),
                    archive: archive.clone(),
                    migrate: config.auto_migrate,
                    buffer_ticks: config.archive_buffer_ticks,
                };
                let token = CancellationToken::new();
                archiver_task = Some((tokio::spawn(archiver.run(token.clone())), token));
            }
        } else if let Some(archive) = archive.clone().filter(|_| config.auto_migrate) {
            // An API alone still wants the archive's schema for old ranges.
            tasks.spawn(async move {
                if let Err(e) = archive.prepare(true).await {
                    tracing::warn!(error = %e, "cannot prepare the archive; old ranges unavailable");
                }
            });
        }

        let mut addr = None;
        if role.runs_api() {
            let listener = TcpListener::bind(config.http_addr)
                .await
                .map_err(|source| StartupError::Bind {
                    addr: config.http_addr,
                    source,
                })?;
            let local = listener.local_addr().map_err(|source| StartupError::Bind {
                addr: config.http_addr,
                source,
            })?;
            addr = Some(local);
            let hub = LiveHub::new(&catalog);
            let http_limiter = HttpLimiter::new(
                config.rate_limit_per_second,
                config.rate_limit_burst,
                config.trusted_proxies.0.clone(),
            )
            .map(Arc::new);
            if let Some(limiter) = &http_limiter {
                tasks.spawn(limit::forget_idle_clients(
                    limiter.clone(),
                    shutdown.clone(),
                ));
            }
            tasks.spawn(hub.clone().run(redis.clone(), shutdown.clone()));
            let state = AppState::new(Shared {
                catalog: catalog.clone(),
                redis: redis.clone(),
                archive: archive.clone(),
                stale_after_seconds: config.stale_after_seconds,
                window_seconds: config.history_seconds,
                rates: Arc::new(RatesCache::new(
                    catalog.clone(),
                    redis.clone(),
                    config.stale_after_seconds,
                    hub.clone(),
                )),
                catalog_json: Prepared::json(&AssetList::from_catalog(&catalog)),
                history: Arc::new(HistoryCache::new(&catalog)),
                hub,
                ws: WsSettings {
                    max_frame_bytes: usize::try_from(config.ws_max_frame_bytes)
                        .unwrap_or(usize::MAX),
                    ping_every: Duration::from_secs(config.ws_ping_seconds),
                    idle_timeout: Duration::from_secs(3 * config.ws_ping_seconds),
                    frames_per_second: config.ws_frames_per_second,
                    ..WsSettings::default()
                },
                enable_ui: config.enable_ui,
                http_limiter: http_limiter.clone(),
                ws_connections: ConnectionLimiter::new(config.ws_max_connections_per_ip),
                trusted_proxies: config.trusted_proxies.0.clone(),
                shutdown: shutdown.clone(),
            });
            let token = shutdown.clone();
            tasks.spawn(async move {
                if let Err(e) = api::serve(listener, state, token.clone()).await {
                    tracing::error!(error = %e, "http server failed");
                }
                // The server only ends on its own when it failed: stop the rest.
                token.cancel();
            });
            tracing::info!(%local, "api listening");
        }
        Ok(Self {
            addr,
            shutdown,
            tasks,
            worker: worker_task,
            archiver: archiver_task,
        })
    }

    /// Where the API listens (its real port when configured with port 0).
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Cancelling this token stops the service.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
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
