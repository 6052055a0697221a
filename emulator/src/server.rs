//! The HTTP server (hyper; HTTP/1.1, or HTTP/1.1 and HTTP/2 over TLS) and [`EmulatorServer`],
//! the sync-friendly handle tests use.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::deployment::Deployment;
use crate::faults::FaultRule;
use crate::generator::{self, GenerateSpec};
use crate::http::{convex_error, json_value, no_route, EmuBody, SocketSlot};
use crate::settings::Settings;
use crate::tls::Tls;
use crate::{churn, control, endpoint};

/// Largest request body accepted (transactions with near-1 MiB documents fit easily).
const MAX_BODY: usize = 256 << 20;

/// Everything needed to start an emulator.
#[derive(Clone, Debug)]
pub struct Config {
    /// Interface to bind; tests keep the default 127.0.0.1.
    pub host: String,
    /// 0 = any free port.
    pub port: u16,
    pub access_key: String,
    /// Seed of all randomness (tablet ids, document ids, data, fault rates).
    pub seed: u64,
    /// Initial data (`tables: 0` = empty deployment). Its own `seed` field is ignored in
    /// favour of [`Config::seed`].
    pub generate: GenerateSpec,
    pub settings: Settings,
    pub faults: Vec<FaultRule>,
    /// Serve `https` (HTTP/2 and HTTP/1.1 by ALPN) with a self-made certificate whose CA
    /// is written to a file in the temp directory ([`EmulatorServer::ca_file`]).
    pub tls: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "127.0.0.1".into(),
            port: 0,
            access_key: "emulator-access-key".into(),
            seed: 0,
            generate: GenerateSpec::default(),
            settings: Settings::default(),
            faults: Vec::new(),
            tls: false,
        }
    }
}

impl Config {
    /// Builds the deployment described by this config: settings, faults and generated data.
    pub fn deployment(&self) -> anyhow::Result<Deployment> {
        let dep = Deployment::new(self.seed, self.access_key.clone());
        dep.set_settings(self.settings.clone());
        for f in &self.faults {
            dep.add_fault(f.clone())?;
        }
        let spec = GenerateSpec {
            seed: self.seed,
            ..self.generate.clone()
        };
        if spec.tables > 0 || spec.components {
            generator::generate(&dep, &spec)?;
        }
        Ok(dep)
    }
}

/// A running emulator on its own tokio runtime (background thread). Dropping it stops it.
pub struct EmulatorServer {
    url: String,
    addr: SocketAddr,
    ca_file: Option<std::path::PathBuf>,
    deployment: Deployment,
    thread: Option<JoinHandle<()>>,
}

impl EmulatorServer {
    /// Generates the configured data, binds, and serves in the background.
    pub fn start(config: Config) -> anyhow::Result<EmulatorServer> {
        let deployment = config.deployment()?;
        if config.tls {
            Self::start_tls_with(&config.host, config.port, deployment)
        } else {
            Self::start_with(&config.host, config.port, deployment)
        }
    }

    /// Serves an existing deployment.
    pub fn start_with(
        host: &str,
        port: u16,
        deployment: Deployment,
    ) -> anyhow::Result<EmulatorServer> {
        Self::spawn(host, port, deployment, None)
    }

    /// Serves an existing deployment over `https` with a new self-made certificate.
    pub fn start_tls_with(
        host: &str,
        port: u16,
        deployment: Deployment,
    ) -> anyhow::Result<EmulatorServer> {
        let tls = crate::tls::self_signed(&std::env::temp_dir(), host)?;
        Self::spawn(host, port, deployment, Some(tls))
    }

    fn spawn(
        host: &str,
        port: u16,
        deployment: Deployment,
        tls: Option<Tls>,
    ) -> anyhow::Result<EmulatorServer> {
        let ca_file = tls.as_ref().map(|t| t.ca_file.clone());
        let scheme = if tls.is_some() { "https" } else { "http" };
        let listener = std::net::TcpListener::bind((host, port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let dep = deployment.clone();
        let thread = std::thread::Builder::new()
            .name("convex-emulator".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("convex-emulator-worker")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        eprintln!("convex-emulator: cannot start runtime: {e}");
                        return;
                    }
                };
                rt.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(l) => serve_with(l, dep, tls.map(|t| t.acceptor)).await,
                        Err(e) => eprintln!("convex-emulator: cannot use listener: {e}"),
                    }
                });
                // Stalled connections may still hold tasks; don't wait for them.
                rt.shutdown_background();
            })?;
        Ok(EmulatorServer {
            url: format!("{scheme}://{addr}"),
            addr,
            ca_file,
            deployment,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT` (`https://` with TLS; no trailing slash).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// With TLS: the PEM file of the CA that signed the server's certificate.
    pub fn ca_file(&self) -> Option<&std::path::Path> {
        self.ca_file.as_deref()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn access_key(&self) -> &str {
        self.deployment.access_key()
    }

    pub fn deployment(&self) -> &Deployment {
        &self.deployment
    }

    /// Stops the server and waits for its thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.deployment.request_shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for EmulatorServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serves HTTP on `listener` until [`Deployment::request_shutdown`] is called.
pub async fn serve(listener: TcpListener, dep: Deployment) {
    serve_with(listener, dep, None).await
}

/// Serves `https` on `listener` (HTTP/2 or HTTP/1.1, as ALPN agrees) until
/// [`Deployment::request_shutdown`] is called.
pub async fn serve_tls(listener: TcpListener, dep: Deployment, tls: &Tls) {
    serve_with(listener, dep, Some(tls.acceptor.clone())).await
}

async fn serve_with(listener: TcpListener, dep: Deployment, tls: Option<TlsAcceptor>) {
    let mut shutdown = dep.lifecycle().shutdown_signal();
    if *shutdown.borrow() {
        return;
    }
    if dep.lifecycle().claim_system_writer() {
        tokio::spawn(churn::system_writer(dep.clone()));
    }
    loop {
        tokio::select! {
            r = listener.accept() => {
                let (stream, _) = match r {
                    Ok(s) => s,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        eprintln!("convex-emulator: accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let dep = dep.clone();
                let mut stop = dep.lifecycle().shutdown_signal();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let slot: SocketSlot =
                        Arc::new(Mutex::new(stream.as_fd().try_clone_to_owned().ok()));
                    let svc_slot = slot.clone();
                    let svc_dep = dep.clone();
                    let svc = service_fn(move |req| {
                        let dep = svc_dep.clone();
                        let slot = svc_slot.clone();
                        async move { handle(dep, req, slot).await }
                    });
                    match tls {
                        None => {
                            let conn = http1::Builder::new()
                                .keep_alive(true)
                                .serve_connection(TokioIo::new(stream), svc);
                            tokio::select! {
                                _ = conn => {}
                                _ = stop.wait_for(|s| *s) => {}
                            }
                        }
                        Some(acceptor) => {
                            let stream = tokio::select! {
                                s = acceptor.accept(stream) => s,
                                _ = stop.wait_for(|s| *s) => return,
                            };
                            // A failed handshake (e.g. a client that does not trust the CA)
                            // just ends the connection.
                            if let Ok(stream) = stream {
                                let builder = auto::Builder::new(TokioExecutor::new());
                                let conn = builder.serve_connection(TokioIo::new(stream), svc);
                                tokio::select! {
                                    _ = conn => {}
                                    _ = stop.wait_for(|s| *s) => {}
                                }
                            }
                        }
                    }
                    // Release our duplicate descriptor so the socket really closes.
                    slot.lock().unwrap_or_else(|e| e.into_inner()).take();
                });
            }
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
}

async fn handle(
    dep: Deployment,
    req: Request<Incoming>,
    slot: SocketSlot,
) -> Result<Response<EmuBody>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(convex_error(
                413,
                "PayloadTooLarge",
                "Request body too large or unreadable",
            ))
        }
    };
    let path = parts.uri.path();
    if path.starts_with("/_emulator/") {
        // Generation and change sets can take a while; keep them off the async workers.
        let r = tokio::task::spawn_blocking(move || control::handle(&dep, &parts, &body)).await;
        return Ok(r.unwrap_or_else(|_| json_value(500, &serde_json::json!({"error": "panic"}))));
    }
    if path.starts_with("/api/") {
        return endpoint::handle(&dep, parts, body, &slot).await;
    }
    Ok(no_route())
}
