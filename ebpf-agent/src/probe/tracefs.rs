//! tracefs: tracepoints are attached through it, and it is not mounted at
//! boot everywhere (nor inside most containers).

use std::path::Path;

const TRACEFS: &str = "/sys/kernel/tracing";

/// True when tracefs (or debugfs's tracing directory) is usable.
fn mounted() -> bool {
    Path::new(TRACEFS).join("events").is_dir()
        || Path::new("/sys/kernel/debug/tracing/events").is_dir()
}

/// Mounts tracefs at /sys/kernel/tracing when no tracing directory is there.
/// Returns whether it mounted it.
pub(super) fn ensure_mounted() -> std::io::Result<bool> {
    if mounted() {
        return Ok(false);
    }
    let source = c"nodev";
    let target = c"/sys/kernel/tracing";
    let fstype = c"tracefs";
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(true)
}
