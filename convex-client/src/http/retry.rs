//! How a failed request is tried again: the policy (how many attempts, how long between
//! them, how long one request may take) and the [`Listener`] that hears about each retry.
//! Apart from the client because it is what the client's caller configures and implements,
//! and it depends on nothing else here; the loops that apply it are the client's.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::ConvexError;

/// The overall deadline of one request, body included: generous (a 1,024-document page of
/// large documents takes a while; 600 s by default), yet a body that trickles a byte now and
/// then, never idle for `request_timeout`, still ends.
pub fn request_deadline(request_timeout: Duration) -> Duration {
    request_timeout.saturating_mul(5)
}

/// Bounded retries: exponential backoff with jitter, or the server's `Retry-After`.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is cut to it, so one answer cannot park a sync for hours.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// For commands a person waits on (check, discover): fail within seconds, whatever
    /// `Retry-After` a server asks for.
    pub fn interactive() -> Self {
        RetryPolicy {
            max_attempts: 3,
            max_retry_after: Duration::from_secs(5),
            ..RetryPolicy::default()
        }
    }

    /// Delay before attempt `attempt + 1` (attempts count from 1).
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(ra) = retry_after {
            return ra.min(self.max_retry_after);
        }
        let exp = self
            .base_delay
            .saturating_mul(1u32 << (attempt - 1).min(16))
            .min(self.max_delay);
        // "Equal jitter": at least half the exponential delay, so retries still back off, and
        // spread over the other half so concurrent streams do not retry in lockstep.
        let half = exp / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

/// A request about to be tried again.
#[derive(Debug)]
pub struct Retrying<'a> {
    /// What was being done (`list_snapshot of users`).
    pub what: &'a str,
    pub error: &'a ConvexError,
    pub delay: Duration,
    pub next_attempt: u32,
    pub max_attempts: u32,
    /// Convex refused it for too many requests (429): the read is rate limited.
    pub rate_limited: bool,
    /// How long the server asked to wait (`Retry-After`), as it said it: `delay` is that, cut
    /// to the policy's longest wait.
    pub retry_after: Option<Duration>,
}

/// Whoever runs the client: hears about retries and may stop waiting for answers (then
/// requests are abandoned instead of retried for minutes). The Convex layer shows nothing
/// to anyone itself; the caller decides what a retry looks like.
pub trait Listener: Send + Sync {
    fn retrying<'a>(&'a self, r: Retrying<'a>) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
    /// A request that was retried has succeeded (once per such request).
    fn recovered<'a>(&'a self, what: &'a str) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        let _ = what;
        Box::pin(std::future::ready(()))
    }
    /// Resolves once nobody waits for answers any more.
    fn gone(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let p = RetryPolicy::default();
        for attempt in 1..10 {
            let d = p.delay(attempt, None);
            let exp = (p.base_delay * (1 << (attempt - 1))).min(p.max_delay);
            assert!(d >= exp / 2 && d <= exp, "attempt {attempt}: {d:?}");
        }
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(7200))),
            p.max_retry_after
        );
    }
}
