//! When a stage ends by itself (besides shutdown): `--until-idle` for tests, backfills and demos.

use std::time::Duration;

use crate::Shutdown;

#[derive(Clone, Default)]
pub struct StopWhen {
    /// Stop once no input arrived for this long (and the stage has caught up with its input)...
    pub idle_for: Option<Duration>,
    /// ...and the stage feeding this one has finished (when it runs in the same process).
    pub upstream_done: Option<Shutdown>,
}

impl StopWhen {
    pub fn idle(idle_for: Option<Duration>) -> Self {
        StopWhen {
            idle_for,
            upstream_done: None,
        }
    }

    /// Whether the idle and upstream conditions hold after `idle` without input.
    pub fn reached(&self, idle: Duration) -> bool {
        self.idle_for.is_some_and(|limit| idle >= limit)
            && self
                .upstream_done
                .as_ref()
                .is_none_or(Shutdown::is_requested)
    }
}
