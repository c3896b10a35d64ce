//! Connections to a standalone Redis, a Redis found through Sentinel or a
//! Redis Cluster, behind one type that the store's commands run on, and
//! the live feed's subscription on each.

use std::sync::Arc;
use std::time::Duration;

use deadpool::managed;

use deadpool_redis::redis::aio::ConnectionLike;
use deadpool_redis::redis::cluster::ClusterClient;
use deadpool_redis::redis::cluster_async::ClusterConnection;
use deadpool_redis::redis::sentinel::{SentinelClient, SentinelServerType};
use deadpool_redis::redis::{self, Cmd, Pipeline, RedisFuture, Value};
use deadpool_redis::{Pool, Runtime};
use futures_util::StreamExt;

use super::{RedisError, Result};

/// How long a command may take: blocking archive reads wait up to a
/// second, which the client's default (500 ms) would cut off.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A standalone Redis (a pool of multiplexed connections), the master a
/// set of sentinels names (the same, to whichever node is master now), or
/// a cluster (one multiplexed connection per node, made on first use).
pub(crate) enum Backend {
    Standalone {
        pool: Pool,
        client: redis::Client,
    },
    Sentinel {
        pool: managed::Pool<MasterManager>,
        master: Arc<Master>,
    },
    Cluster(Box<Cluster>),
}

/// A pool of 32 connections of `manager`, each made within `create`.
fn build_pool<M, W>(manager: M, create: Duration) -> Result<managed::Pool<M, W>>
where
    M: managed::Manager,
    W: From<managed::Object<M>>,
{
    managed::Pool::builder(manager)
        .max_size(32)
        .wait_timeout(Some(Duration::from_secs(2)))
        .create_timeout(Some(create))
        .recycle_timeout(Some(Duration::from_secs(2)))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| RedisError::Config(e.to_string()))
}

fn connection_config() -> redis::AsyncConnectionConfig {
    redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
}

/// The master of a Sentinel deployment, asked of the sentinels for every
/// new connection (so a failover is followed as connections are remade).
pub(crate) struct Master {
    sentinel: tokio::sync::Mutex<SentinelClient>,
    name: String,
}

impl Master {
    /// A client of the master the sentinels name now (checked to be one).
    async fn client(&self) -> Result<redis::Client> {
        let mut sentinel = self.sentinel.lock().await;
        tokio::time::timeout(RESPONSE_TIMEOUT, sentinel.async_get_client())
            .await
            .map_err(|_| {
                RedisError::Config(format!(
                    "no sentinel named a master for {:?} in time",
                    self.name
                ))
            })?
            .map_err(RedisError::from)
    }
}

/// Makes connections to the current master, and keeps one only while its
/// server is still the master: after a failover the old master may come
/// back as a replica, which reads but refuses every write.
pub(crate) struct MasterManager(Arc<Master>);

impl managed::Manager for MasterManager {
    type Type = redis::aio::MultiplexedConnection;
    type Error = redis::RedisError;

    async fn create(&self) -> std::result::Result<Self::Type, Self::Error> {
        let client = self.0.client().await.map_err(|e| match e {
            RedisError::Redis(e) => e,
            other => redis::RedisError::from((redis::ErrorKind::Io, "sentinel", other.to_string())),
        })?;
        client
            .get_multiplexed_async_connection_with_config(&connection_config())
            .await
    }

    async fn recycle(
        &self,
        conn: &mut Self::Type,
        _: &managed::Metrics,
    ) -> managed::RecycleResult<Self::Error> {
        let role: Vec<Value> = redis::cmd("ROLE").query_async(conn).await?;
        let is_master = role
            .first()
            .and_then(|v| redis::from_redis_value::<String>(v.clone()).ok())
            .is_some_and(|r| r == "master");
        if is_master {
            Ok(())
        } else {
            Err(managed::RecycleError::message(
                "the server is no longer the master",
            ))
        }
    }
}

pub(crate) struct Cluster {
    client: ClusterClient,
    nodes: Vec<String>,
    conn: tokio::sync::Mutex<Option<ClusterConnection>>,
}

impl Backend {
    pub(crate) fn standalone(url: &str) -> Result<Self> {
        let client = redis::Client::open(url)?;
        let manager = deadpool_redis::Manager::new_with_config(url, connection_config())?;
        let pool = build_pool(manager, Duration::from_secs(2))?;
        Ok(Self::Standalone { pool, client })
    }

    /// `url`: `redis+sentinel://HOST:PORT,HOST:PORT/MASTER_NAME`.
    pub(crate) fn sentinel(url: &str) -> Result<Self> {
        let (sentinels, name) = parse_sentinel_url(url)?;
        let sentinel =
            SentinelClient::build(sentinels, name.clone(), None, SentinelServerType::Master)?;
        let master = Arc::new(Master {
            sentinel: tokio::sync::Mutex::new(sentinel),
            name,
        });
        // Making a connection asks a sentinel first: more time than for
        // a plain Redis.
        let pool = build_pool(MasterManager(master.clone()), Duration::from_secs(4))?;
        Ok(Self::Sentinel { pool, master })
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
            Self::Sentinel { pool, .. } => Ok(Conn::Master(pool.get().await?)),
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
            Self::Standalone { client, .. } => subscribe_on(client, &channels).await,
            // On the master the sentinels name now: after a failover the
            // old one's connection drops, and the hub subscribes afresh.
            Self::Sentinel { master, .. } => subscribe_on(&master.client().await?, &channels).await,
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

async fn subscribe_on(client: &redis::Client, channels: &[String]) -> Result<Subscription> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channels).await?;
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

/// The sentinels' URLs and the master's name of
/// `redis+sentinel://HOST:PORT,HOST:PORT/MASTER_NAME`.
fn parse_sentinel_url(url: &str) -> Result<(Vec<String>, String)> {
    let bad = |why: &str| {
        RedisError::Config(format!(
            "RATES_REDIS_URL: {why}; expected redis+sentinel://HOST:PORT,HOST:PORT/MASTER_NAME"
        ))
    };
    let rest = url
        .strip_prefix("redis+sentinel://")
        .ok_or_else(|| bad("not a redis+sentinel:// URL"))?;
    let (hosts, name) = rest
        .split_once('/')
        .ok_or_else(|| bad("no master name after the sentinels"))?;
    let name = name.trim_end_matches('/');
    if name.is_empty() || name.contains(['/', '?', '#']) {
        return Err(bad("the master name is missing or malformed"));
    }
    let sentinels: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| format!("redis://{h}"))
        .collect();
    if sentinels.is_empty() {
        return Err(bad("no sentinel address"));
    }
    Ok((sentinels, name.to_owned()))
}

/// Whether `url` names Redis through Sentinel.
pub(crate) fn is_sentinel_url(url: &str) -> bool {
    url.starts_with("redis+sentinel://")
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
    Master(managed::Object<MasterManager>),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Pooled(c) => c.req_packed_command(cmd),
            Self::Master(c) => c.req_packed_command(cmd),
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
            Self::Master(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Pooled(c) => c.get_db(),
            Self::Master(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_name_the_sentinels_and_the_master() {
        let (sentinels, name) =
            parse_sentinel_url("redis+sentinel://10.0.0.1:26379, 10.0.0.2:26380/rates").unwrap();
        assert_eq!(
            sentinels,
            ["redis://10.0.0.1:26379", "redis://10.0.0.2:26380"]
        );
        assert_eq!(name, "rates");
        for bad in [
            "redis://h:1/rates",
            "redis+sentinel://h:1",
            "redis+sentinel://h:1/",
            "redis+sentinel:///rates",
            "redis+sentinel://h:1/a/b",
        ] {
            let e = parse_sentinel_url(bad).unwrap_err().to_string();
            assert!(e.contains("redis+sentinel://HOST:PORT"), "{bad}: {e}");
        }
    }
}
