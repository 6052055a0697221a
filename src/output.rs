//! The one writer of stdout. Every message of every command goes through here.
//!
//! Producers (stream tasks) build whole lines into their own buffers and hand finished buffers
//! over a bounded channel; a dedicated thread writes each buffer whole. So lines never
//! interleave, a STATE never overtakes the records it covers (one channel, FIFO per producer),
//! blocking stdout writes never stall the async runtime, and memory is bounded by the channel.

use std::io::{self, Write};
use std::thread::JoinHandle;

use std::sync::Arc;

use convex::buffers::BufferPool;

use tokio::sync::{mpsc, watch, Semaphore};

/// Buffers this large are sent as soon as they fill; smaller ones at page and message ends.
/// The kernel's copy into a file costs less per byte in large writes: 123 MB of records took
/// 33 ms of system time in the 164 KiB writes 256 KiB buffers gave, 25 ms in 1 MiB writes.
pub const CHUNK_BYTES: usize = 1024 * 1024;
/// Bytes queued for the writer before producers wait: bounds memory whatever the record size,
/// and is the backpressure that slows the network to the speed of stdout.
const QUEUE_BYTES: usize = 4 * 1024 * 1024;
/// The capacity of a new buffer: a chunk plus room for the record that fills it (a buffer is
/// set aside once it holds a chunk: `Emitter`).
const BUFFER_CAPACITY: usize = CHUNK_BYTES + 64 * 1024;

#[derive(Clone)]
pub struct Output {
    /// Each chunk travels with the queue budget it holds, returned once it is written.
    tx: mpsc::UnboundedSender<(Vec<u8>, u32)>,
    budget: Arc<Semaphore>,
    /// Becomes true when the writer fails: lets a request waiting on the network give up
    /// as soon as nobody can receive what it would bring.
    closed: watch::Receiver<bool>,
    /// Written buffers for reuse: the process's one pool, shared with the Convex client's
    /// page reader (`buffer_pool`).
    pool: BufferPool,
}

pub struct WriterThread {
    handle: JoinHandle<io::Result<u64>>,
}

/// Output closed: the writer failed (usually a closed stdout pipe).
#[derive(Debug, thiserror::Error)]
#[error("stdout is closed: the process reading this connector's output went away")]
pub struct OutputClosed;

impl Output {
    /// Starts the writer thread over `sink` (stdout in production, a buffer in tests).
    pub fn start<W: Write + Send + 'static>(sink: W) -> (Output, WriterThread) {
        let (tx, mut rx) = mpsc::unbounded_channel::<(Vec<u8>, u32)>();
        let budget = Arc::new(Semaphore::new(QUEUE_BYTES));
        let writer_budget = budget.clone();
        let (closed_tx, closed) = watch::channel(false);
        let pool = BufferPool::default();
        let writer_pool = pool.clone();
        let handle = std::thread::Builder::new()
            .name("stdout-writer".into())
            .spawn(move || {
                let mut sink = sink;
                let mut written = 0u64;
                let result = loop {
                    let Some((chunk, permits)) = rx.blocking_recv() else {
                        break Ok(written);
                    };
                    // Flush per chunk: chunks end at message boundaries, and a STATE must reach
                    // the platform promptly after the records it covers.
                    if let Err(e) = sink.write_all(&chunk).and_then(|()| sink.flush()) {
                        break Err(e);
                    }
                    written += chunk.len() as u64;
                    writer_pool.give(chunk);
                    writer_budget.add_permits(permits as usize);
                };
                // Producers waiting for queue space must learn the writer is gone, not hang.
                writer_budget.close();
                if result.is_err() {
                    closed_tx.send_replace(true);
                }
                result
            })
            .expect("spawn stdout writer thread");
        (
            Output {
                tx,
                budget,
                closed,
                pool,
            },
            WriterThread { handle },
        )
    }

    /// An empty buffer to build the next chunk in: a written one when there is one.
    pub fn buffer(&self) -> Vec<u8> {
        self.pool.take(BUFFER_CAPACITY)
    }

    /// The pool written buffers return to, for the network's buffers to come from the same.
    pub fn buffer_pool(&self) -> BufferPool {
        self.pool.clone()
    }

    /// Resolves once the writer has failed (stdout's reader went away); never otherwise.
    pub async fn closed(&self) {
        let mut rx = self.closed.clone();
        if rx.wait_for(|closed| *closed).await.is_err() {
            // The writer finished normally: only possible once every Output is gone.
            std::future::pending::<()>().await;
        }
    }

    pub async fn send(&self, chunk: Vec<u8>) -> Result<(), OutputClosed> {
        if chunk.is_empty() {
            return Ok(());
        }
        let n = permits_for(chunk.len());
        self.budget
            .acquire_many(n)
            .await
            .map_err(|_| OutputClosed)?
            .forget();
        self.tx.send((chunk, n)).map_err(|_| OutputClosed)
    }

    /// For synchronous callers (spec, check, discover, error paths outside the runtime).
    /// Small messages only: it does not wait for queue space.
    pub fn send_blocking(&self, chunk: Vec<u8>) -> Result<(), OutputClosed> {
        if chunk.is_empty() {
            return Ok(());
        }
        let n = match self.budget.try_acquire_many(permits_for(chunk.len())) {
            Ok(p) => {
                p.forget();
                permits_for(chunk.len())
            }
            // Over budget: let it through without holding any.
            Err(_) => 0,
        };
        self.tx.send((chunk, n)).map_err(|_| OutputClosed)
    }
}

/// A chunk larger than the whole budget takes all of it (and so waits for an empty queue).
fn permits_for(len: usize) -> u32 {
    len.min(QUEUE_BYTES) as u32
}

impl WriterThread {
    /// Waits until everything sent has been written and flushed. Call after dropping every
    /// `Output` clone.
    pub fn finish(self) -> io::Result<u64> {
        self.handle
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("stdout writer thread panicked")))
    }
}

/// A `Write` that appends to a shared buffer: lets tests capture exactly what stdout would get.
#[cfg(test)]
#[derive(Clone, Default)]
pub struct SharedBuffer(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

#[cfg(test)]
impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
impl SharedBuffer {
    pub fn contents(&self) -> Vec<u8> {
        self.0.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_arrive_whole_and_in_order() {
        let buf = SharedBuffer::default();
        let (out, thread) = Output::start(buf.clone());
        out.send_blocking(b"a\n".to_vec()).unwrap();
        out.send_blocking(Vec::new()).unwrap();
        out.send_blocking(b"b\nc\n".to_vec()).unwrap();
        drop(out);
        assert_eq!(thread.finish().unwrap(), 6);
        assert_eq!(buf.contents(), b"a\nb\nc\n");
    }

    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_broken_pipe_closes_the_output() {
        let (out, thread) = Output::start(Broken);
        out.send_blocking(b"x\n".to_vec()).unwrap();
        // The writer stops at its first error; later sends see a closed channel.
        let err = thread.finish().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        assert!(out.send_blocking(b"y\n".to_vec()).is_err());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        // A producer needing more queue space than is left does not hang either.
        assert!(rt.block_on(out.send(vec![b'z'; QUEUE_BYTES + 1])).is_err());
        // And a request waiting on the network can learn it.
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(5), out.closed())
                .await
                .expect("closed() resolves once the writer failed")
        });
    }
}
