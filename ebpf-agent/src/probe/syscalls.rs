//! The syscalls the probes handle, by number, and where a syscall's
//! arguments sit in `struct pt_regs`: both differ between architectures, and
//! the programs get only the registers and the number, so the agent hands
//! them this table (`SYSCALLS`) and, for the raw tracepoint programs, the
//! offsets (`CONFIG`; the BTF ones have them built in for the architecture
//! the object is built for).

use ebpf_probe::{
    BUF_IOVEC, BUF_MSGHDR, BUF_NONE, BUF_PLAIN, BUF_SOCKADDR, EventKind, SYSCALL_BUFFER_SHIFT,
};

/// Offsets in `struct pt_regs` of the first two syscall arguments and of the
/// syscall number as it entered, all valid at the syscall's exit too (the
/// exit program reads them there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RegisterOffsets {
    pub(crate) arg0: u32,
    pub(crate) arg1: u32,
    pub(crate) nr: u32,
}

/// A handled syscall: its number and what the programs do with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Handled {
    pub(crate) nr: u32,
    pub(crate) kind: EventKind,
    pub(crate) buffer: u32,
}

impl Handled {
    const fn new(nr: u32, kind: EventKind, buffer: u32) -> Self {
        Handled { nr, kind, buffer }
    }

    /// The `SYSCALLS` map value.
    pub(crate) fn value(self) -> u32 {
        self.kind as u32 | (self.buffer << SYSCALL_BUFFER_SHIFT)
    }
}

use EventKind::{Accept, Close, Connect, Read, Write};

/// x86-64: `di`, `si` and `orig_ax` in `struct pt_regs` (the return value
/// goes to `ax`, so all three still hold the entry's values at the exit)
/// (arch/x86/include/asm/ptrace.h), numbers from
/// arch/x86/entry/syscalls/syscall_64.tbl.
#[cfg(target_arch = "x86_64")]
pub(crate) const REGISTERS: Option<RegisterOffsets> = Some(RegisterOffsets {
    arg0: 14 * 8,
    arg1: 13 * 8,
    nr: 15 * 8,
});
#[cfg(target_arch = "x86_64")]
pub(crate) const HANDLED: &[Handled] = &[
    Handled::new(0, Read, BUF_PLAIN),        // read
    Handled::new(1, Write, BUF_PLAIN),       // write
    Handled::new(3, Close, BUF_NONE),        // close
    Handled::new(19, Read, BUF_IOVEC),       // readv
    Handled::new(20, Write, BUF_IOVEC),      // writev
    Handled::new(40, Write, BUF_NONE),       // sendfile
    Handled::new(42, Connect, BUF_SOCKADDR), // connect
    Handled::new(43, Accept, BUF_SOCKADDR),  // accept
    Handled::new(44, Write, BUF_PLAIN),      // sendto
    Handled::new(45, Read, BUF_PLAIN),       // recvfrom
    Handled::new(46, Write, BUF_MSGHDR),     // sendmsg
    Handled::new(47, Read, BUF_MSGHDR),      // recvmsg
    Handled::new(288, Accept, BUF_SOCKADDR), // accept4
];

/// arm64: `orig_x0`, `regs[1]` and `syscallno` in `struct pt_regs`
/// (arch/arm64/include/asm/ptrace.h: 31 registers, sp, pc, pstate, then
/// orig_x0 and syscallno): the first argument is read from `orig_x0`
/// because the return value overwrites `regs[0]` before the exit
/// tracepoint. Numbers from the generic table
/// (include/uapi/asm-generic/unistd.h).
#[cfg(target_arch = "aarch64")]
pub(crate) const REGISTERS: Option<RegisterOffsets> = Some(RegisterOffsets {
    arg0: 34 * 8,
    arg1: 8,
    nr: 35 * 8,
});
#[cfg(target_arch = "aarch64")]
pub(crate) const HANDLED: &[Handled] = &[
    Handled::new(57, Close, BUF_NONE),        // close
    Handled::new(63, Read, BUF_PLAIN),        // read
    Handled::new(64, Write, BUF_PLAIN),       // write
    Handled::new(65, Read, BUF_IOVEC),        // readv
    Handled::new(66, Write, BUF_IOVEC),       // writev
    Handled::new(71, Write, BUF_NONE),        // sendfile
    Handled::new(202, Accept, BUF_SOCKADDR),  // accept
    Handled::new(203, Connect, BUF_SOCKADDR), // connect
    Handled::new(206, Write, BUF_PLAIN),      // sendto
    Handled::new(207, Read, BUF_PLAIN),       // recvfrom
    Handled::new(211, Write, BUF_MSGHDR),     // sendmsg
    Handled::new(212, Read, BUF_MSGHDR),      // recvmsg
    Handled::new(242, Accept, BUF_SOCKADDR),  // accept4
];

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(crate) const REGISTERS: Option<RegisterOffsets> = None;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(crate) const HANDLED: &[Handled] = &[];

#[cfg(test)]
mod tests {
    use super::*;
    use ebpf_probe::SYSCALLS_LEN;

    #[test]
    fn every_handled_syscall_fits_the_table_once() {
        let mut seen = std::collections::HashSet::new();
        for h in HANDLED {
            assert!(h.nr < SYSCALLS_LEN, "{h:?} is past the table");
            assert!(seen.insert(h.nr), "{h:?} twice");
            assert_ne!(h.value(), 0);
        }
        assert_eq!(HANDLED.len(), 13);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x86_64_numbers_match_libc() {
        let number = |name: &str| {
            HANDLED.iter().find(|h| {
                let n = i64::from(h.nr);
                match name {
                    "read" => n == libc::SYS_read,
                    "write" => n == libc::SYS_write,
                    "close" => n == libc::SYS_close,
                    "readv" => n == libc::SYS_readv,
                    "writev" => n == libc::SYS_writev,
                    "sendfile" => n == libc::SYS_sendfile,
                    "connect" => n == libc::SYS_connect,
                    "accept" => n == libc::SYS_accept,
                    "accept4" => n == libc::SYS_accept4,
                    "sendto" => n == libc::SYS_sendto,
                    "recvfrom" => n == libc::SYS_recvfrom,
                    "sendmsg" => n == libc::SYS_sendmsg,
                    "recvmsg" => n == libc::SYS_recvmsg,
                    _ => false,
                }
            })
        };
        for name in [
            "read", "write", "close", "readv", "writev", "sendfile", "connect", "accept",
            "accept4", "sendto", "recvfrom", "sendmsg", "recvmsg",
        ] {
            assert!(
                number(name).is_some(),
                "{name} is not handled under libc's number"
            );
        }
        assert_eq!(
            HANDLED
                .iter()
                .find(|h| i64::from(h.nr) == libc::SYS_accept4)
                .map(|h| h.kind),
            Some(Accept)
        );
    }
}
