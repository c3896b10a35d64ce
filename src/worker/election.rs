//! One writer among many workers: each campaigns for a lease in the engine;
//! the holder leads (polls the upstreams and writes ticks), the others stand
//! by. The leader renews well inside the lease's TTL and stops leading on
//! its own when a renewal has not come back before the lease could have
//! ended, measured from a monotonic clock read before the renewal was sent.
//! The lease's generation fences every tick, so a paused old leader that
//! wakes up is refused by the engine even before it notices.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store::Engine;

/// How long a lease lasts unless renewed: a dead leader's successor takes
/// over within about this long (plus [`CAMPAIGN_EVERY`]).
pub const LEASE_TTL: Duration = Duration::from_millis(1_500);
/// The leader renews three times per TTL, counted from when each renewal
/// was sent, each given at most a quarter of the TTL: two renewals may fail
/// before it has to stand down.
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

    /// `leader` while the lease surely holds, else `standby`.
    pub fn name(&self) -> &'static str {
        if self.writes_as().is_some() {
            "leader"
        } else {
            "standby"
        }
    }
}

/// How the worker tells the election that the engine refused its tick: the
/// generation of the newer writer (0: none). The election then gives the
/// lease up, and campaigns again above that generation.
#[derive(Debug, Clone, Default)]
pub struct Fenced(Arc<AtomicU64>);

impl Fenced {
    pub fn by(&self, generation: u64) {
        self.0.fetch_max(generation, Ordering::AcqRel);
    }

    fn take(&self) -> u64 {
        self.0.swap(0, Ordering::AcqRel)
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
    pub fenced: Fenced,
}

impl Election {
    /// Campaigns, leads and renews until `stop`, then gives the lease up.
    /// The role goes out on `role` (and in the log and metrics) at every
    /// change.
    pub async fn run(self, role: watch::Sender<Role>, stop: CancellationToken) {
        metrics::gauge!("ratesd_worker_leader").set(0.0);
        let mut failing = false;
        // A generation the next lease must exceed (a fence a tick ran into).
        let mut at_least = 0;
        while !stop.is_cancelled() {
            let current = *role.borrow();
            let sent = Instant::now();
            let fence = self.fenced.take();
            let next = match current {
                Role::Leader { generation, .. } if fence > generation => {
                    // A newer writer's tick is in the engine while we hold
                    // the lease (a counter that went back): give it up and
                    // campaign above it.
                    at_least = at_least.max(fence);
                    tracing::warn!(generation, fence, "fenced off; giving the lease up");
                    if let Err(e) = self.engine.resign(&self.node, generation).await {
                        tracing::debug!(error = %e, "cannot give the lease up; it lapses");
                    }
                    Role::Standby
                }
                Role::Standby => self.campaign(at_least, &mut failing).await,
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
            // Renewals keep their pace from when each was sent, however
            // long the last one took.
            let wait = match next {
                Role::Standby => CAMPAIGN_EVERY,
                Role::Leader { .. } => RENEW_EVERY.min(self.ttl / 3).saturating_sub(sent.elapsed()),
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

    async fn campaign(&self, at_least: u64, failing: &mut bool) -> Role {
        let sent = Instant::now();
        let campaign = self.engine.campaign(&self.node, self.ttl, at_least);
        match tokio::time::timeout(self.ttl / 4, campaign).await {
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
            self.ttl / 4,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Catalog;
    use crate::store::Embedded;

    /// A worker that ran into a fence gives the lease up and leads again
    /// only above the fence's generation.
    #[tokio::test(start_paused = true)]
    async fn a_fenced_leader_campaigns_above_the_fence() {
        let catalog = Arc::new(Catalog::with_extra("").unwrap());
        let fenced = Fenced::default();
        let election = Election {
            engine: Engine::Embedded(Arc::new(Embedded::new(catalog))),
            node: "test".into(),
            ttl: LEASE_TTL,
            fenced: fenced.clone(),
        };
        let (tx, mut rx) = watch::channel(Role::Standby);
        let stop = CancellationToken::new();
        let task = tokio::spawn(election.run(tx, stop.clone()));
        let generation = |r: &Role| match r {
            Role::Leader { generation, .. } => Some(*generation),
            Role::Standby => None,
        };
        rx.wait_for(|r| generation(r) == Some(1)).await.unwrap();
        fenced.by(41);
        rx.wait_for(|r| *r == Role::Standby).await.unwrap();
        let role = *rx.wait_for(|r| generation(r).is_some()).await.unwrap();
        assert_eq!(generation(&role), Some(42), "above the fence");
        assert_eq!(role.name(), "leader");
        stop.cancel();
        task.await.unwrap();
        assert_eq!(*rx.borrow(), Role::Standby, "given up at the stop");
    }

    #[test]
    fn a_lease_past_its_deadline_is_not_leading() {
        let past = Role::Leader {
            generation: 3,
            until: Instant::now() - Duration::from_millis(1),
        };
        assert_eq!(past.writes_as(), None);
        assert_eq!(past.name(), "standby");
    }
}
