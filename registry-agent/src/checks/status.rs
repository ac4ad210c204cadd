//! The threshold state machine between a check's raw results and the status it reports
//! (Consul's `checks.StatusHandler`): `SuccessBeforePassing`, `FailuresBeforeWarning` and
//! `FailuresBeforeCritical`.
//!
//! Both counters start at their thresholds, so the first result after registration is
//! reported at once; after that a run of consecutive results must reach the threshold.

use registry_proto::model::status;

/// Counts consecutive successes and failures of one check.
#[derive(Debug, Clone)]
pub struct StatusHandler {
    success_before_passing: u32,
    failures_before_warning: u32,
    failures_before_critical: u32,
    successes: u32,
    failures: u32,
}

impl StatusHandler {
    /// A handler with Consul's thresholds. `failures_before_warning` should already default
    /// to `failures_before_critical` when it was not given (the spec builder does that).
    pub fn new(
        success_before_passing: u32,
        failures_before_warning: u32,
        failures_before_critical: u32,
    ) -> Self {
        StatusHandler {
            success_before_passing,
            failures_before_warning,
            failures_before_critical,
            successes: success_before_passing,
            failures: failures_before_critical,
        }
    }

    /// Records one result and returns the status to report, or `None` while a threshold
    /// has not been reached (the check keeps its current status).
    pub fn observe(&mut self, result: &str) -> Option<&'static str> {
        if result == status::PASSING || result == status::WARNING {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            if self.successes >= self.success_before_passing {
                return Some(if result == status::PASSING {
                    status::PASSING
                } else {
                    status::WARNING
                });
            }
            None
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
            if self.failures >= self.failures_before_critical {
                return Some(status::CRITICAL);
            }
            if self.failures >= self.failures_before_warning {
                return Some(status::WARNING);
            }
            None
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use registry_proto::model::status::{CRITICAL, PASSING, WARNING};

    #[test]
    fn no_thresholds_reports_every_result() {
        let mut h = StatusHandler::new(0, 0, 0);
        assert_eq!(h.observe(PASSING), Some(PASSING));
        assert_eq!(h.observe(CRITICAL), Some(CRITICAL));
        assert_eq!(h.observe(WARNING), Some(WARNING));
        assert_eq!(h.observe(PASSING), Some(PASSING));
    }

    #[test]
    fn first_result_is_reported_at_once() {
        let mut h = StatusHandler::new(3, 3, 3);
        assert_eq!(h.observe(PASSING), Some(PASSING));
        let mut h = StatusHandler::new(3, 3, 3);
        assert_eq!(h.observe(CRITICAL), Some(CRITICAL));
    }

    #[test]
    fn success_before_passing() {
        let mut h = StatusHandler::new(2, 0, 0);
        assert_eq!(h.observe(CRITICAL), Some(CRITICAL));
        // One success is not enough...
        assert_eq!(h.observe(PASSING), None);
        // ...two in a row are.
        assert_eq!(h.observe(PASSING), Some(PASSING));
        assert_eq!(h.observe(PASSING), Some(PASSING));
        // A failure resets the run.
        assert_eq!(h.observe(CRITICAL), Some(CRITICAL));
        assert_eq!(h.observe(PASSING), None);
        assert_eq!(h.observe(CRITICAL), Some(CRITICAL));
        assert_eq!(h.observe(PASSING), None);
        assert_eq!(h.observe(WARNING), Some(WARNING));
    }

    #[test]
    fn failures_before_critical() {
        let mut h = StatusHandler::new(0, 3, 3);
        assert_eq!(h.observe(PASSING), Some(PASSING));
        assert_eq!(h.observe(CRITICAL), None);
        assert_eq!(h.observe(CRITICAL), None);
        assert_eq!(h.observe(CRITICAL), Some(CRITICAL));
        // A success resets the failure run.
        assert_eq!(h.observe(PASSING), Some(PASSING));
        assert_eq!(h.observe(CRITICAL), None);
        assert_eq!(h.observe(PASSING), Some(PASSING));
        assert_eq!(h.observe(CRITICAL), None);
        assert_eq!(h.observe(CRITICAL), None);
    }

    #[test]
    fn failures_before_warning_then_critical() {
        let mut h = StatusHandler::new(0, 1, 3);
        assert_eq!(h.observe(PASSING), Some(PASSING));
        assert_eq!(h.observe(CRITICAL), Some(WARNING));
        assert_eq!(h.observe(CRITICAL), Some(WARNING));
        assert_eq!(h.observe(CRITICAL), Some(CRITICAL));
        assert_eq!(h.observe(CRITICAL), Some(CRITICAL));
        assert_eq!(h.observe(PASSING), Some(PASSING));
        assert_eq!(h.observe(CRITICAL), Some(WARNING));
    }

    #[test]
    fn warning_results_count_as_successes() {
        let mut h = StatusHandler::new(2, 2, 2);
        assert_eq!(h.observe(CRITICAL), Some(CRITICAL));
        assert_eq!(h.observe(WARNING), None);
        assert_eq!(h.observe(WARNING), Some(WARNING));
    }
}
