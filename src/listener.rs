//! How the Convex client's retries reach the people running a sync: as Airbyte WARN lines on
//! the connector's output, and, when Convex rate-limits the read (429), as the RUNNING status
//! with reason `RATE_LIMITED` on the streams being read (the Airbyte UI shows it), back to
//! plain RUNNING once a request succeeds again. When that output is gone, the client stops
//! waiting.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use crate::output::Output;
use crate::protocol::{now_ms, LogLevel, Message, StreamDescriptor, StreamStatusKind};
use convex::http::{Listener, Retrying};

/// The streams whose requests are in flight (set by the read engine before each walk), and
/// whether they were told they are rate limited.
#[derive(Default)]
pub struct Activity {
    state: Mutex<ActivityState>,
}

#[derive(Default)]
struct ActivityState {
    streams: Vec<StreamDescriptor>,
    limited: bool,
}

impl Activity {
    /// The streams being read from now on (none: between walks).
    pub fn set(&self, streams: &[StreamDescriptor]) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.streams = streams.to_vec();
        state.limited = false;
    }

    /// The lines for a rate limit: RUNNING with `RATE_LIMITED` on every stream being read.
    fn limited(&self, quota_reset: Option<i64>) -> Vec<u8> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.limited = !state.streams.is_empty();
        let mut lines = Vec::new();
        for s in &state.streams {
            Message::rate_limited(s, quota_reset).write_line(&mut lines);
        }
        lines
    }

    /// The lines once requests succeed again: plain RUNNING where a rate limit was shown.
    fn recovered(&self) -> Vec<u8> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut lines = Vec::new();
        if std::mem::take(&mut state.limited) {
            for s in &state.streams {
                Message::stream_status(s, StreamStatusKind::Running).write_line(&mut lines);
            }
        }
        lines
    }
}

pub struct LogListener {
    pub out: Output,
    pub activity: std::sync::Arc<Activity>,
}

impl Listener for LogListener {
    fn retrying<'a>(&'a self, r: Retrying<'a>) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let msg = format!(
                "{}: {}; retrying in {:.1} s (attempt {} of {})",
                r.what,
                r.error,
                r.delay.as_secs_f64(),
                r.next_attempt,
                r.max_attempts
            );
            let mut lines = Message::log(LogLevel::Warn, &msg).to_line();
            if r.rate_limited {
                let reset = r
                    .retry_after
                    .map(|ra| now_ms() + i64::try_from(ra.as_millis()).unwrap_or(i64::MAX / 2));
                lines.extend(self.activity.limited(reset));
            }
            // A closed output surfaces through `gone`; a log line cannot fail a sync.
            let _ = self.out.send(lines).await;
        })
    }

    fn recovered<'a>(&'a self, _what: &'a str) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let lines = self.activity.recovered();
            if !lines.is_empty() {
                let _ = self.out.send(lines).await;
            }
        })
    }

    fn gone(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.out.closed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(name: &str) -> StreamDescriptor {
        StreamDescriptor {
            name: name.into(),
            namespace: None,
        }
    }

    #[test]
    fn a_rate_limit_shows_on_the_streams_being_read_until_they_recover() {
        let a = Activity::default();
        assert!(a.limited(Some(5)).is_empty(), "no stream is being read");
        assert!(a.recovered().is_empty());
        a.set(&[desc("users"), desc("orders")]);
        let limited = String::from_utf8(a.limited(Some(1765000000000))).unwrap();
        assert_eq!(limited.lines().count(), 2);
        assert!(limited.contains("\"name\":\"users\"") && limited.contains("\"name\":\"orders\""));
        assert!(limited.contains("\"quota_reset\":1765000000000"));
        let back = String::from_utf8(a.recovered()).unwrap();
        assert_eq!(back.lines().count(), 2);
        assert!(back.contains("\"status\":\"RUNNING\"") && !back.contains("RATE_LIMITED"));
        assert!(a.recovered().is_empty(), "said once");
    }
}
