//! Connections to a standalone Redis or a Redis Cluster, behind one type
//! that the store's commands run on, and the live feed's subscription on
//! either.

use std::time::Duration;

use deadpool_redis::redis::aio::ConnectionLike;
use deadpool_redis::redis::cluster::ClusterClient;
use deadpool_redis::redis::cluster_async::ClusterConnection;
use deadpool_redis::redis::{self, Cmd, Pipeline, RedisFuture, Value};
use deadpool_redis::{Pool, Runtime};
use futures_util::StreamExt;

use super::{RedisError, Result};

/// How long a command may take: blocking archive reads wait up to a
/// second, which the client's default (500 ms) would cut off.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A standalone Redis (a pool of multiplexed connections) or a cluster
/// (one multiplexed connection per node, made on first use).
pub(crate) enum Backend {
    Standalone { pool: Pool, client: redis::Client },
    Cluster(Box<Cluster>),
}

pub(crate) struct Cluster {
    client: ClusterClient,
    nodes: Vec<String>,
    conn: tokio::sync::Mutex<Option<ClusterConnection>>,
}

impl Backend {
    pub(crate) fn standalone(url: &str) -> Result<Self> {
        let client = redis::Client::open(url)?;
        let conn_cfg = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECT_TIMEOUT));
        let manager = deadpool_redis::Manager::new_with_config(url, conn_cfg)?;
        let pool = Pool::builder(manager)
            .max_size(32)
            .wait_timeout(Some(Duration::from_secs(2)))
            .create_timeout(Some(Duration::from_secs(2)))
            .recycle_timeout(Some(Duration::from_secs(2)))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| RedisError::Config(e.to_string()))?;
        Ok(Self::Standalone { pool, client })
    }

    /// `seeds`: comma-separated node URLs (`redis://` may be left out).
    pub(crate) fn cluster(seeds: &str) -> Result<Self> {
        let nodes: Vec<String> = seeds
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                if s.contains("://") {
                    s.to_owned()
                } else {
                    format!("redis://{s}")
                }
            })
            .collect();
        if nodes.is_empty() {
            return Err(RedisError::Config(
                "RATES_REDIS_URL names no cluster node".into(),
            ));
        }
        let client = cluster_builder(&nodes).build()?;
        Ok(Self::Cluster(Box::new(Cluster {
            client,
            nodes,
            conn: tokio::sync::Mutex::new(None),
        })))
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// A connection for a few commands. On a cluster it is a clone of one
    /// shared multiplexed connection, made on first use (so the service
    /// starts while the cluster is down); it reconnects to nodes by itself.
    pub(crate) async fn conn(&self) -> Result<Conn> {
        match self {
            Self::Standalone { pool, .. } => Ok(Conn::Pooled(pool.get().await?)),
            Self::Cluster(cluster) => {
                let Cluster { client, conn, .. } = cluster.as_ref();
                let mut slot = conn.lock().await;
                if let Some(c) = slot.as_ref() {
                    return Ok(Conn::Cluster(c.clone()));
                }
                let c = tokio::time::timeout(RESPONSE_TIMEOUT, client.get_async_connection())
                    .await
                    .map_err(|_| {
                        RedisError::Config("cluster unreachable: connect timed out".into())
                    })??;
                *slot = Some(c.clone());
                Ok(Conn::Cluster(c))
            }
        }
    }

    /// Subscribes to `channels` on a connection of its own: every message's
    /// channel and payload, until the connection drops.
    pub(crate) async fn subscribe(&self, channels: Vec<String>) -> Result<Subscription> {
        match self {
            Self::Standalone { client, .. } => {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&channels).await?;
                let stream = pubsub.into_on_message().map(|msg| {
                    let channel = msg.get_channel_name().to_owned();
                    (
                        channel,
                        msg.get_payload::<String>().map_err(RedisError::from),
                    )
                });
                Ok(Subscription {
                    stream: Box::pin(stream),
                })
            }
            Self::Cluster(cluster) => {
                let nodes = &cluster.nodes;
                // Sharded pub/sub: each channel is served by the master of
                // its slot, so the feed spreads like the keys. It needs
                // RESP3, whose pushes arrive on this channel.
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                let client = cluster_builder(nodes)
                    .use_protocol(redis::ProtocolVersion::RESP3)
                    .push_sender(tx)
                    .build()?;
                let mut conn = client.get_async_connection().await?;
                // One command per channel: each may live on another node.
                for channel in &channels {
                    conn.ssubscribe(channel).await?;
                }
                let stream =
                    futures_util::stream::unfold((rx, conn), |(mut rx, conn)| async move {
                        loop {
                            let push = rx.recv().await?;
                            match push.kind {
                                redis::PushKind::SMessage | redis::PushKind::Message => {
                                    if let Some(item) = shard_message(push.data) {
                                        return Some((item, (rx, conn)));
                                    }
                                }
                                // A node went away, or a slot moved (Redis
                                // unsubscribes its shard channel's clients
                                // then, and the client does not subscribe
                                // again): end the feed, so that the hub
                                // subscribes afresh and fills the gap from
                                // the windows.
                                redis::PushKind::Disconnection
                                | redis::PushKind::SUnsubscribe
                                | redis::PushKind::Unsubscribe => return None,
                                _ => {}
                            }
                        }
                    });
                Ok(Subscription {
                    stream: Box::pin(stream),
                })
            }
        }
    }
}

fn cluster_builder(nodes: &[String]) -> redis::cluster::ClusterClientBuilder {
    ClusterClient::builder(nodes.to_vec())
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(RESPONSE_TIMEOUT)
        .retries(2)
}

/// `[channel, payload]` of a sharded message.
fn shard_message(data: Vec<Value>) -> Option<(String, Result<String>)> {
    let mut data = data.into_iter();
    let channel: String = redis::from_redis_value(data.next()?).ok()?;
    let payload =
        redis::from_redis_value::<String>(data.next()?).map_err(|e| RedisError::Corrupt {
            key: channel.clone(),
            message: e.to_string(),
        });
    Some((channel, payload))
}

/// A subscription's messages: `(channel, payload)`.
pub(crate) struct Subscription {
    stream: std::pin::Pin<Box<dyn futures_util::Stream<Item = (String, Result<String>)> + Send>>,
}

impl Subscription {
    pub(crate) async fn next(&mut self) -> Option<(String, Result<String>)> {
        self.stream.next().await
    }
}

/// One connection of either kind; the store's commands run on it.
pub(crate) enum Conn {
    Pooled(deadpool_redis::Connection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Pooled(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Pooled(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Pooled(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}
