//! The once-a-second schedule, apart from the tick so that it can be tested
//! on a controllable clock: one tick per wall-clock second, as early in the
//! second as it can, never two for one second, never one for a second that
//! has not begun; a tick that overruns skips the seconds it missed instead
//! of bursting to catch up. A tick that could not act (a standby's) may run
//! again within its second when the ticker says it is ready (it came to
//! lead), so that a takeover writes the second it happens in.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::domain::UnixSeconds;

/// Work done once a second.
pub trait Tick {
    /// Does the second's work; false when it could not (and may try again
    /// within the second once [`Tick::ready`] says so).
    fn tick(&mut self, second: UnixSeconds) -> impl Future<Output = bool>;

    /// Completes when a tick that could not act might now: by default never.
    fn ready(&mut self) -> impl Future<Output = ()> {
        std::future::pending()
    }
}

/// Calls `tick(second)` once for each wall-clock second until `shutdown`,
/// starting each tick as soon as its second begins. A tick in progress is
/// finished before shutdown is honoured.
pub async fn run_schedule<C, T>(clock: &C, shutdown: &CancellationToken, ticker: &mut T)
where
    C: Clock + ?Sized,
    T: Tick,
{
    let mut last: Option<UnixSeconds> = None;
    // A second whose tick could not act, to try again when ready.
    let mut retry: Option<UnixSeconds> = None;
    while !shutdown.is_cancelled() {
        let now = clock.now();
        let second = now.as_secs() as UnixSeconds;
        if last.is_none_or(|l| second > l) {
            if let Some(l) = last.filter(|&l| second > l + 1) {
                let skipped = second - l - 1;
                tracing::warn!(skipped, "tick overran; skipped seconds");
                metrics::counter!("ratesd_worker_ticks_skipped_total").increment(skipped as u64);
            }
            let lateness = now - Duration::from_secs(second as u64);
            metrics::histogram!("ratesd_worker_tick_lateness_seconds")
                .record(lateness.as_secs_f64());
            if lateness > Duration::from_millis(250) {
                tracing::debug!(second, ?lateness, "tick started late");
            }
            let started = std::time::Instant::now();
            let done = ticker.tick(second).await;
            metrics::histogram!("ratesd_worker_tick_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            last = Some(second);
            retry = (!done).then_some(second);
            continue;
        }
        // Sleep to just past the next second boundary.
        let wait = Duration::from_secs(1) - Duration::from_nanos(u64::from(now.subsec_nanos()))
            + Duration::from_millis(1);
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(wait) => {}
            () = ticker.ready(), if retry == Some(second) => {
                if ticker.tick(second).await {
                    retry = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::Clock;

    /// Wall time that moves with tokio's (pausable) clock.
    struct TokioClock {
        origin: Duration,
        start: tokio::time::Instant,
    }

    impl Clock for TokioClock {
        fn now(&self) -> Duration {
            self.origin + self.start.elapsed()
        }
    }

    fn clock_at(secs: u64, millis: u64) -> TokioClock {
        TokioClock {
            origin: Duration::from_secs(secs) + Duration::from_millis(millis),
            start: tokio::time::Instant::now(),
        }
    }

    async fn ticks_with(
        clock: TokioClock,
        run_for: Duration,
        tick_cost: impl Fn(UnixSeconds) -> Duration,
    ) -> Vec<(UnixSeconds, Duration)> {
        struct Recorder<'a, F> {
            clock: &'a TokioClock,
            cost: F,
            seen: Vec<(UnixSeconds, Duration)>,
        }
        impl<F: Fn(UnixSeconds) -> Duration> Tick for Recorder<'_, F> {
            async fn tick(&mut self, second: UnixSeconds) -> bool {
                self.seen.push((second, self.clock.now()));
                tokio::time::sleep((self.cost)(second)).await;
                true
            }
        }
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(run_for).await;
            stop.cancel();
        });
        let mut recorder = Recorder {
            clock: &clock,
            cost: tick_cost,
            seen: Vec::new(),
        };
        run_schedule(&clock, &shutdown, &mut recorder).await;
        recorder.seen
    }

    #[tokio::test(start_paused = true)]
    async fn one_tick_per_second_aligned_to_the_second() {
        let ticks = ticks_with(clock_at(1_000, 400), Duration::from_secs(60), |_| {
            Duration::from_millis(30)
        })
        .await;
        let seconds: Vec<_> = ticks.iter().map(|t| t.0).collect();
        assert_eq!(seconds, (1_000..=1_060).collect::<Vec<_>>());
        for (second, started) in &ticks[1..] {
            assert_eq!(started.as_secs() as i64, *second, "never before its second");
            assert!(started.subsec_millis() < 10, "aligned: {started:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn overrunning_ticks_skip_without_burst_or_duplicates() {
        // Second 1003's tick takes 2.5 s, to 1005.5: 1004 is skipped, 1005 runs
        // at once (late), and the schedule is back on the second from 1006.
        let ticks = ticks_with(clock_at(1_000, 0), Duration::from_secs(10), |s| {
            if s == 1_003 {
                Duration::from_millis(2_500)
            } else {
                Duration::from_millis(10)
            }
        })
        .await;
        let seconds: Vec<_> = ticks.iter().map(|t| t.0).collect();
        assert_eq!(
            seconds,
            [
                1_000, 1_001, 1_002, 1_003, 1_005, 1_006, 1_007, 1_008, 1_009
            ]
        );
        for (second, started) in &ticks {
            assert!(
                started.as_secs() as i64 >= *second,
                "no tick ahead of its second"
            );
        }
    }

    /// A ticker that cannot act until told (a standby until it leads).
    struct Standby<'a> {
        clock: &'a TokioClock,
        leads: std::sync::Arc<tokio::sync::Notify>,
        leading: bool,
        tries: Vec<(UnixSeconds, Duration)>,
        done: Vec<(UnixSeconds, Duration)>,
    }

    impl Tick for Standby<'_> {
        async fn tick(&mut self, second: UnixSeconds) -> bool {
            self.tries.push((second, self.clock.now()));
            if self.leading {
                self.done.push((second, self.clock.now()));
            }
            self.leading
        }

        async fn ready(&mut self) {
            self.leads.notified().await;
            self.leading = true;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_skipped_second_is_ticked_again_when_the_ticker_is_ready() {
        let clock = clock_at(1_000, 0);
        let leads = std::sync::Arc::new(tokio::sync::Notify::new());
        let shutdown = CancellationToken::new();
        let (stop, notify) = (shutdown.clone(), leads.clone());
        tokio::spawn(async move {
            // It comes to lead 2.4 s in: second 1002 is still written.
            tokio::time::sleep(Duration::from_millis(2_400)).await;
            notify.notify_one();
            tokio::time::sleep(Duration::from_millis(2_000)).await;
            stop.cancel();
        });
        let mut ticker = Standby {
            clock: &clock,
            leads,
            leading: false,
            tries: Vec::new(),
            done: Vec::new(),
        };
        run_schedule(&clock, &shutdown, &mut ticker).await;
        let seconds = |v: &[(UnixSeconds, Duration)]| v.iter().map(|t| t.0).collect::<Vec<_>>();
        assert_eq!(seconds(&ticker.done), [1_002, 1_003, 1_004], "each once");
        assert_eq!(
            ticker.done[0].1,
            Duration::from_millis(1_002_400),
            "at once"
        );
        assert_eq!(
            seconds(&ticker.tries),
            [1_000, 1_001, 1_002, 1_002, 1_003, 1_004],
            "a standby tries each second once, and again only when ready"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_the_schedule() {
        let ticks = ticks_with(clock_at(50, 999), Duration::from_millis(2_500), |_| {
            Duration::ZERO
        })
        .await;
        assert_eq!(
            ticks.iter().map(|t| t.0).collect::<Vec<_>>(),
            [50, 51, 52, 53]
        );
    }
}
