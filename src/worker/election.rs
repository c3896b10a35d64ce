//! One writer among many workers: each campaigns for a lease in the engine;
//! the holder leads (polls the upstreams and writes ticks), the others stand
//! by. The leader renews well inside the lease's TTL and stops leading on
//! its own when a renewal has not come back before the lease could have
//! ended, measured from a monotonic clock read before the renewal was sent.
//! The lease's generation fences every tick, so a paused old leader that
//! wakes up is refused by the engine even before it notices.

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store::Engine;

/// How long a lease lasts unless renewed: a dead leader's successor takes
/// over within about this long (plus [`CAMPAIGN_EVERY`]).
pub const LEASE_TTL: Duration = Duration::from_millis(1_500);
/// The leader renews three times per TTL: two renewals may fail before it
/// has to stand down.
const RENEW_EVERY: Duration = Duration::from_millis(500);
/// How often a standby tries to take a free lease.
const CAMPAIGN_EVERY: Duration = Duration::from_millis(200);

/// A worker's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Standby,
    /// Leads with the lease of `generation` until `until` (monotonic) at
    /// the latest, unless renewed.
    Leader {
        generation: u64,
        until: Instant,
    },
}

impl Role {
    /// The generation to write ticks with, while the lease is surely held.
    pub fn writes_as(&self) -> Option<u64> {
        match *self {
            Self::Leader { generation, until } if Instant::now() < until => Some(generation),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Standby => "standby",
            Self::Leader { .. } => "leader",
        }
    }
}

/// A process's node name in the lease: host, process id and a random part,
/// so two processes never share one.
pub fn node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

pub struct Election {
    pub engine: Engine,
    pub node: String,
    pub ttl: Duration,
}

impl Election {
    /// Campaigns, leads and renews until `stop`, then gives the lease up.
    /// The role goes out on `role` (and in the log and metrics) at every
    /// change.
    pub async fn run(self, role: watch::Sender<Role>, stop: CancellationToken) {
        metrics::gauge!("ratesd_worker_leader").set(0.0);
        let mut failing = false;
        while !stop.is_cancelled() {
            let current = *role.borrow();
            let next = match current {
                Role::Standby => self.campaign(&mut failing).await,
                Role::Leader { generation, until } => {
                    self.renew(generation, until, &mut failing).await
                }
            };
            if next.name() != current.name() {
                match next {
                    Role::Leader { generation, .. } => {
                        tracing::info!(node = %self.node, generation, "leading: this worker writes");
                        metrics::counter!("ratesd_worker_elections_won_total").increment(1);
                        metrics::gauge!("ratesd_worker_leader").set(1.0);
                    }
                    Role::Standby => {
                        tracing::warn!(node = %self.node, "standing by: lost the writer's lease");
                        metrics::gauge!("ratesd_worker_leader").set(0.0);
                    }
                }
            }
            role.send_replace(next);
            let wait = match next {
                Role::Standby => CAMPAIGN_EVERY,
                Role::Leader { .. } => RENEW_EVERY.min(self.ttl / 3),
            };
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        if let Role::Leader { generation, .. } = role.send_replace(Role::Standby) {
            metrics::gauge!("ratesd_worker_leader").set(0.0);
            match self.engine.resign(&self.node, generation).await {
                Ok(()) => tracing::info!(node = %self.node, "lease given up: a standby takes over"),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot give the lease up; it lapses by itself")
                }
            }
        }
    }

    async fn campaign(&self, failing: &mut bool) -> Role {
        let sent = Instant::now();
        match tokio::time::timeout(self.ttl / 3, self.engine.campaign(&self.node, self.ttl)).await {
            Ok(Ok(Some(generation))) => {
                *failing = false;
                Role::Leader {
                    generation,
                    until: self.deadline(sent),
                }
            }
            Ok(Ok(None)) => {
                *failing = false;
                Role::Standby
            }
            Ok(Err(e)) => {
                self.note_failure(failing, &e.to_string());
                Role::Standby
            }
            Err(_) => {
                self.note_failure(failing, "no answer in time");
                Role::Standby
            }
        }
    }

    async fn renew(&self, generation: u64, until: Instant, failing: &mut bool) -> Role {
        let sent = Instant::now();
        let renewed = tokio::time::timeout(
            self.ttl / 3,
            self.engine.renew(&self.node, generation, self.ttl),
        )
        .await;
        match renewed {
            Ok(Ok(true)) => {
                *failing = false;
                return Role::Leader {
                    generation,
                    until: self.deadline(sent),
                };
            }
            // Someone else holds it (ours lapsed): stand by at once.
            Ok(Ok(false)) => return Role::Standby,
            Ok(Err(e)) => self.note_failure(failing, &e.to_string()),
            Err(_) => self.note_failure(failing, "no answer in time"),
        }
        // Not renewed: lead on only while the last renewal surely holds.
        if Instant::now() < until {
            Role::Leader { generation, until }
        } else {
            Role::Standby
        }
    }

    /// When a lease asked for at `sent` ends at the earliest, with a tenth
    /// of the TTL to spare for clocks that run at slightly different rates.
    fn deadline(&self, sent: Instant) -> Instant {
        sent + self.ttl - self.ttl / 10
    }

    fn note_failure(&self, failing: &mut bool, error: &str) {
        metrics::counter!("ratesd_redis_errors_total", "op" => "lease").increment(1);
        if !*failing {
            tracing::warn!(%error, "cannot reach the engine for the writer's lease");
            *failing = true;
        }
    }
}
