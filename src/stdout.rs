//! stdout as the one place messages go: opened so that every write error is seen.

#[cfg(target_os = "linux")]
use std::path::Path;

/// stdout as a file of its own descriptor, so every write error is seen (std's `Stdout` hides
/// `EBADF`). Fails if the process was started with stdout closed.
#[cfg(unix)]
pub fn open() -> std::io::Result<std::fs::File> {
    use std::os::fd::AsFd;
    if stdout_was_closed_at_start() {
        return Err(std::io::Error::other(
            "it was closed when the process started",
        ));
    }
    Ok(std::fs::File::from(
        std::io::stdout().as_fd().try_clone_to_owned()?,
    ))
}

/// Rust's runtime reopens a closed stdout on `/dev/null` read-write before `main`, so writes
/// "succeed" into nothing. A shell's `>/dev/null` opens it write-only: read-write `/dev/null`
/// on descriptor 1 is the runtime's doing.
#[cfg(target_os = "linux")]
fn stdout_was_closed_at_start() -> bool {
    const O_ACCMODE: u32 = 0o3;
    const O_RDWR: u32 = 0o2;
    let is_null = std::fs::read_link("/proc/self/fd/1").is_ok_and(|p| p == Path::new("/dev/null"));
    let flags = std::fs::read_to_string("/proc/self/fdinfo/1")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
        });
    is_null && flags.is_some_and(|f| f & O_ACCMODE == O_RDWR)
}

#[cfg(all(unix, not(target_os = "linux")))]
fn stdout_was_closed_at_start() -> bool {
    false
}

#[cfg(not(unix))]
pub fn open() -> std::io::Result<std::io::Stdout> {
    Ok(std::io::stdout())
}
