//! The one writer of stdout. Every message of every command goes through here.
//!
//! Producers (stream tasks) build whole lines into their own buffers and hand finished buffers
//! over a bounded channel; a dedicated thread writes each buffer whole. So lines never
//! interleave, a STATE never overtakes the records it covers (one channel, FIFO per producer),
//! blocking stdout writes never stall the async runtime, and memory is bounded by the channel.

use std::io::{self, Write};
use std::thread::JoinHandle;

use tokio::sync::mpsc;

/// Buffers this large are sent as soon as they fill; smaller ones at page and message ends.
pub const CHUNK_BYTES: usize = 256 * 1024;
/// Chunks queued for the writer before producers wait: bounds memory, gives backpressure.
const QUEUE_CHUNKS: usize = 16;

#[derive(Clone)]
pub struct Output {
    tx: mpsc::Sender<Vec<u8>>,
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
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(QUEUE_CHUNKS);
        let handle = std::thread::Builder::new()
            .name("stdout-writer".into())
            .spawn(move || {
                let mut sink = sink;
                let mut written = 0u64;
                while let Some(chunk) = rx.blocking_recv() {
                    sink.write_all(&chunk)?;
                    // Flush per chunk: chunks end at message boundaries, and a STATE must reach
                    // the platform promptly after the records it covers.
                    sink.flush()?;
                    written += chunk.len() as u64;
                }
                Ok(written)
            })
            .expect("spawn stdout writer thread");
        (Output { tx }, WriterThread { handle })
    }

    pub async fn send(&self, chunk: Vec<u8>) -> Result<(), OutputClosed> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.tx.send(chunk).await.map_err(|_| OutputClosed)
    }

    /// For synchronous callers (spec, check, discover, error paths outside the runtime).
    pub fn send_blocking(&self, chunk: Vec<u8>) -> Result<(), OutputClosed> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.tx.blocking_send(chunk).map_err(|_| OutputClosed)
    }
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
    }
}
