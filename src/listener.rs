//! How the Convex client's retries reach the people running a sync: as Airbyte WARN lines on
//! the connector's output. When that output is gone, the client stops waiting.

use std::future::Future;
use std::pin::Pin;

use crate::convex::http::{Listener, Retrying};
use crate::output::Output;
use crate::protocol::{LogLevel, Message};

pub struct LogListener(pub Output);

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
            // A closed output surfaces through `gone`; a log line cannot fail a sync.
            let _ = self
                .0
                .send(Message::log(LogLevel::Warn, &msg).to_line())
                .await;
        })
    }

    fn gone(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.0.closed())
    }
}
