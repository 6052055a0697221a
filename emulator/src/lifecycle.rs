//! The serving side of a deployment's life: the shutdown signal every server and
//! connection of it watches, and which server runs its background system writer (one per
//! deployment however many servers serve it, so churn does not multiply).

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

pub struct Lifecycle {
    shutdown: watch::Sender<bool>,
    system_writer: AtomicBool,
}

impl Default for Lifecycle {
    fn default() -> Self {
        let (shutdown, _) = watch::channel(false);
        Lifecycle {
            shutdown,
            system_writer: AtomicBool::new(false),
        }
    }
}

impl Lifecycle {
    /// Asks the servers (and their connections) to stop.
    pub fn request_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Becomes `true` once a shutdown is requested.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// True for the first caller only: that server runs the background system writer.
    pub fn claim_system_writer(&self) -> bool {
        !self.system_writer.swap(true, Ordering::SeqCst)
    }
}
