//! Network namespaces for tests that need their own addresses and DNS:
//! a namespace with `lo` up and its own /etc/resolv.conf, collectors and
//! dnsmasq started inside it with `ip netns exec`, and threads that join it
//! to talk to them. Needs root; everything is removed when dropped.
//!
use crate::{Collector, PATIENCE, http_request, metric_sum};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// True when the tests can create namespaces (root, with `ip` and dnsmasq).
pub fn available() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("needs root (network namespaces)".into());
    }
    for tool in ["/usr/sbin/ip", "/usr/sbin/dnsmasq"] {
        if !Path::new(tool).exists() {
            return Err(format!("{tool} is not installed"));
        }
    }
    Ok(())
}

/// True, after saying why on stderr, when namespaces cannot be created here:
/// tests that need them return early (CI runs as root, where they run).
pub fn skip_without_namespaces() -> bool {
    match available() {
        Ok(()) => false,
        Err(why) => {
            eprintln!("skipping: {why}");
            true
        }
    }
}

fn run(command: &mut Command) -> Output {
    let output = command.output().expect("run command");
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A network namespace, deleted (with its /etc/netns directory) on drop,
/// also when the test panics.
pub struct NetNs {
    pub name: String,
    etc: PathBuf,
}

impl NetNs {
    /// Creates `olly-lb-<pid>-<tag>` with `lo` up and a resolv.conf that
    /// points at 127.0.0.1 (where the test's dnsmasq listens).
    pub fn create(tag: &str) -> NetNs {
        Self::create_with_nameserver(tag, "127.0.0.1")
    }

    /// Like [`NetNs::create`], with the resolver at `nameserver`.
    pub fn create_with_nameserver(tag: &str, nameserver: &str) -> NetNs {
        let name = format!("olly-lb-{}-{tag}", std::process::id());
        // A leftover of an earlier run with the same pid.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = NetNs {
            etc: PathBuf::from("/etc/netns").join(&name),
            name,
        };
        run(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]));
        std::fs::create_dir_all(&ns.etc).expect("create /etc/netns/<ns>");
        std::fs::write(
            ns.etc.join("resolv.conf"),
            format!("nameserver {nameserver}\noptions timeout:1 attempts:2\n"),
        )
        .expect("write resolv.conf");
        ns
    }

    /// `ip netns exec <ns> program`: runs inside the namespace, with its
    /// resolv.conf bind-mounted over /etc/resolv.conf. `ip` execs the
    /// program, so the child's pid is the program's.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Runs `f` on a thread that joined the namespace, so its sockets are
    /// inside it (the rest of the test process stays outside).
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.spawn(f).join().expect("namespace thread")
    }

    /// Like [`NetNs::enter`], without waiting for the thread.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = PathBuf::from("/var/run/netns").join(&self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open the namespace");
            // SAFETY: setns on a namespace fd we own; it changes only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
    }

    /// The addresses `name` resolves to inside the namespace (getent, which
    /// goes through the same resolver as the collectors).
    pub fn resolve(&self, name: &str) -> Vec<String> {
        let output = self
            .command("getent")
            .args(["ahosts", name])
            .output()
            .expect("getent");
        let mut addresses: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect();
        addresses.sort();
        addresses.dedup();
        addresses
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = std::fs::remove_dir_all(&self.etc);
    }
}

/// A cluster network: a namespace holding a bridge (the "node"), with pod
/// namespaces attached by veth pairs on one /24, each resolving names
/// through the bridge's address (where a [`Dnsmasq`] can answer them).
pub struct Cluster {
    /// The bridge's namespace; its address is the subnet's `.1`.
    pub ns: NetNs,
    prefix: String,
    pods: usize,
}

impl Cluster {
    /// Creates the bridge namespace with `<prefix>.1/24` (e.g. prefix `10.213.0`).
    pub fn create(tag: &str, prefix: &str) -> Cluster {
        let gateway = format!("{prefix}.1");
        let ns = NetNs::create_with_nameserver(tag, &gateway);
        run(Command::new("ip").args(["-n", &ns.name, "link", "add", "br0", "type", "bridge"]));
        run(Command::new("ip").args([
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("{gateway}/24"),
            "dev",
            "br0",
        ]));
        run(Command::new("ip").args(["-n", &ns.name, "link", "set", "br0", "up"]));
        Cluster {
            ns,
            prefix: prefix.to_string(),
            pods: 0,
        }
    }

    /// The bridge's address (the resolver's).
    pub fn gateway_address(&self) -> String {
        format!("{}.1", self.prefix)
    }

    /// A pod: a namespace with `eth0` at `<prefix>.<host>/24` on the bridge.
    pub fn pod(&mut self, tag: &str, host: u8) -> NetNs {
        self.pods += 1;
        let pod = NetNs::create_with_nameserver(tag, &self.gateway_address());
        // veth names are at most 15 bytes.
        let outside = format!("vp{}", self.pods);
        run(Command::new("ip").args([
            "-n",
            &self.ns.name,
            "link",
            "add",
            &outside,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &pod.name,
        ]));
        run(Command::new("ip").args([
            "-n",
            &self.ns.name,
            "link",
            "set",
            &outside,
            "master",
            "br0",
            "up",
        ]));
        let address = format!("{}.{host}/24", self.prefix);
        run(Command::new("ip").args(["-n", &pod.name, "addr", "add", &address, "dev", "eth0"]));
        run(Command::new("ip").args(["-n", &pod.name, "link", "set", "eth0", "up"]));
        pod
    }

    /// `<prefix>.<host>`
    pub fn address(&self, host: u8) -> String {
        format!("{}.{host}", self.prefix)
    }
}

/// dnsmasq inside a namespace, answering from a hosts file it re-reads on
/// SIGHUP (dnsmasq reloads `--addn-hosts` files then). Nothing is cached:
/// `--local-ttl=0` and `--no-negcache`.
pub struct Dnsmasq {
    child: Child,
    hosts: PathBuf,
    records: std::sync::Mutex<std::collections::BTreeMap<String, Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Dnsmasq {
    /// Starts dnsmasq on 127.0.0.1:53 in `ns`, answering `name` with `addresses`.
    pub fn start(ns: &NetNs, name: &str, addresses: &[&str]) -> Dnsmasq {
        Self::start_at(ns, "127.0.0.1", &[(name, addresses)])
    }

    /// Starts dnsmasq on `listen`:53 in `ns`, answering each name with its
    /// addresses.
    pub fn start_at(ns: &NetNs, listen: &str, records: &[(&str, &[&str])]) -> Dnsmasq {
        let dir = tempfile::tempdir().expect("temp dir");
        let hosts = dir.path().join("hosts");
        let records: std::collections::BTreeMap<String, Vec<String>> = records
            .iter()
            .map(|(name, addresses)| {
                (
                    name.to_string(),
                    addresses.iter().map(|a| a.to_string()).collect(),
                )
            })
            .collect();
        std::fs::write(&hosts, hosts_text(&records)).expect("write hosts");
        let child = ns
            .command("/usr/sbin/dnsmasq")
            .args([
                "--no-daemon",
                "--conf-file=/dev/null",
                "--port=53",
                &format!("--listen-address={listen}"),
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                "--local-ttl=0",
                "--no-negcache",
                "--user=root",
                "--pid-file=",
            ])
            .arg(format!("--addn-hosts={}", hosts.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq");
        let dnsmasq = Dnsmasq {
            child,
            hosts,
            records: std::sync::Mutex::new(records.clone()),
            _dir: dir,
        };
        for (name, addresses) in &records {
            let addresses: Vec<&str> = addresses.iter().map(String::as_str).collect();
            dnsmasq.wait_for(ns, name, &addresses);
        }
        dnsmasq
    }

    /// Changes the answer for `name` and waits until dnsmasq gives it.
    pub fn set(&self, ns: &NetNs, name: &str, addresses: &[&str]) {
        let text = {
            let mut records = self.records.lock().expect("records");
            records.insert(
                name.to_string(),
                addresses.iter().map(|a| a.to_string()).collect(),
            );
            hosts_text(&records)
        };
        std::fs::write(&self.hosts, text).expect("write hosts");
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) with a pid we own.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
        self.wait_for(ns, name, addresses);
    }

    fn wait_for(&self, ns: &NetNs, name: &str, addresses: &[&str]) {
        let mut want: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
        want.sort();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let got = ns.resolve(name);
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "dnsmasq never answered {want:?} for {name} (last: {got:?})"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn hosts_text(records: &std::collections::BTreeMap<String, Vec<String>>) -> String {
    records
        .iter()
        .flat_map(|(name, addresses)| addresses.iter().map(move |a| format!("{a} {name}\n")))
        .collect()
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A collector running inside a namespace. Killed when dropped. Derefs to
/// [`Collector`]; its self-metrics are fetched from inside the namespace.
pub struct NsCollector(Collector);

impl NsCollector {
    /// Starts `binary` in `ns` with `config`; `{dir}` in the config is
    /// replaced by the collector's temp dir. Logs are JSON.
    pub fn start(ns: &NetNs, binary: impl AsRef<Path>, label: &str, config: &str) -> NsCollector {
        Self::start_with_args(ns, binary, label, config, &[])
    }

    /// Like [`NsCollector::start`], with extra command-line arguments.
    pub fn start_with_args(
        ns: &NetNs,
        binary: impl AsRef<Path>,
        label: &str,
        config: &str,
        args: &[&str],
    ) -> NsCollector {
        NsCollector(Collector::spawn(
            ns.command(binary.as_ref()),
            label,
            config,
            args,
        ))
    }

    /// The self-metrics text (fetched from inside the namespace).
    pub fn metrics_text(&self, ns: &NetNs) -> String {
        let address = self.address("telemetry", "prometheus");
        ns.enter(move || {
            let response = http_request(address, "GET", "/metrics", &[], b"");
            String::from_utf8_lossy(&response.body).into_owned()
        })
    }

    /// Sum of the series of `name` whose labels contain `labels`.
    pub fn metric(&self, ns: &NetNs, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_sum(&self.metrics_text(ns), name, labels)
    }
}

impl std::ops::Deref for NsCollector {
    type Target = Collector;
    fn deref(&self) -> &Collector {
        &self.0
    }
}

impl std::ops::DerefMut for NsCollector {
    fn deref_mut(&mut self) -> &mut Collector {
        &mut self.0
    }
}
