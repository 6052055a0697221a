//! bench-run: runs one command and reports what the kernel measured for it.
//!
//!   bench-run --stdout FILE --stderr FILE [--timeout SECS] -- CMD [ARGS...]
//!
//! Prints one JSON line: {"wall":s,"user":s,"sys":s,"maxrss_kib":n,"exit":code,"signal":n|null,
//! "timeout":bool}. user/sys/maxrss come from wait4(2) for that child only.
//!
//! Why not measure from the Python driver: a child's ru_maxrss includes the memory of the
//! process it was forked from until exec (Linux carries the pre-exec high-water mark over), so a
//! child of a ~15-25 MiB Python process can never report less than that. This helper is a small
//! static binary (~1 MiB resident), so the figure is the program's own.

use std::fs::File;
use std::process::{exit, Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut out, mut err, mut timeout) = (None, None, None::<f64>);
    let mut cmd: Vec<String> = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--stdout" => out = args.next(),
            "--stderr" => err = args.next(),
            "--timeout" => timeout = args.next().and_then(|s| s.parse().ok()),
            "--" => {
                cmd = args.by_ref().collect();
                break;
            }
            _ => {
                eprintln!("bench-run: unknown argument {a}");
                exit(2)
            }
        }
    }
    if cmd.is_empty() {
        eprintln!("usage: bench-run --stdout FILE --stderr FILE [--timeout SECS] -- CMD [ARGS...]");
        exit(2);
    }
    let open = |p: Option<String>| -> Stdio {
        match p {
            Some(p) => Stdio::from(File::create(&p).unwrap_or_else(|e| {
                eprintln!("bench-run: {p}: {e}");
                exit(2)
            })),
            None => Stdio::null(),
        }
    };
    let (so, se) = (open(out), open(err));
    let t0 = Instant::now();
    let child = Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .stdout(so)
        .stderr(se)
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bench-run: cannot start {}: {e}", cmd[0]);
            exit(2)
        }
    };
    let pid = child.id() as libc::pid_t;
    let timed_out = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some(t) = timeout {
        let flag = timed_out.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs_f64(t));
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            // SAFETY: plain kill(2) of our own child; harmless if it already exited and was
            // not reaped yet (the pid stays ours until wait4 returns).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        });
    }
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data, filled in by the kernel.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = loop {
        // SAFETY: valid pointers to locals; pid is our child.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        break r;
    };
    let wall = t0.elapsed().as_secs_f64();
    if r != pid {
        eprintln!("bench-run: wait4: {}", std::io::Error::last_os_error());
        exit(2);
    }
    std::mem::forget(child);
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let (code, sig) = if libc::WIFEXITED(status) {
        (libc::WEXITSTATUS(status).to_string(), "null".to_string())
    } else {
        ("null".to_string(), libc::WTERMSIG(status).to_string())
    };
    println!(
        "{{\"wall\":{wall:.6},\"user\":{:.6},\"sys\":{:.6},\"maxrss_kib\":{},\"exit\":{code},\"signal\":{sig},\"timeout\":{}}}",
        tv(ru.ru_utime),
        tv(ru.ru_stime),
        ru.ru_maxrss,
        timed_out.load(std::sync::atomic::Ordering::SeqCst)
    );
}
