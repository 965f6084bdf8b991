//! A one-node Slurm cluster started from a temporary folder: munged with its
//! own key and socket, slurmctld and slurmd with a generated, cgroup-free
//! `slurm.conf` (Debian's slurm-wlm 22.05 and munge, which
//! setup/fetch-slurm.sh installs as root). Commands reach it through
//! `SLURM_CONF`; dropping the cluster cancels its jobs, waits for the queue
//! to empty, and stops the three daemons by the PIDs it started.
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PROGRAMS: [&str; 8] = [
    "munged",
    "slurmctld",
    "slurmd",
    "sbatch",
    "squeue",
    "scontrol",
    "scancel",
    "sinfo",
];

pub struct Cluster {
    dir: tempfile::TempDir,
    /// munged, slurmctld, slurmd, in start order.
    daemons: Vec<(&'static str, Child)>,
}

/// Why this machine cannot run the cluster, if it cannot.
fn missing() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("the daemons need root".into());
    }
    let absent: Vec<&str> = PROGRAMS
        .iter()
        .copied()
        .filter(|p| find(p).is_none())
        .collect();
    (!absent.is_empty()).then(|| format!("{} not installed", absent.join(", ")))
}

fn find(program: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free local port")
}

/// Waits for `ready`, failing with `what` and the cluster's logs after `limit`.
fn wait_until(limit: Duration, what: &str, logs: &Path, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        if start.elapsed() > limit {
            panic!(
                "the test cluster: {what} within {} s\n{}",
                limit.as_secs(),
                log_tails(logs)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn log_tails(dir: &Path) -> String {
    let mut text = String::new();
    for name in ["munged.log", "slurmctld.log", "slurmd.log", "daemons.out"] {
        let body = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        let tail: Vec<&str> = body.lines().rev().take(15).collect();
        let lines: Vec<&str> = tail.into_iter().rev().collect();
        text.push_str(&format!("--- {name}\n{}\n", lines.join("\n")));
    }
    text
}

impl Cluster {
    /// The cluster, or `None` (with a message) on a machine without root or
    /// without the packages.
    pub fn start_or_skip() -> Option<Cluster> {
        if let Some(why) = missing() {
            eprintln!(
                "skipped: a one-node Slurm cluster needs root and Debian's slurm-wlm and munge \
                 (setup/fetch-slurm.sh installs them, as root): {why}"
            );
            return None;
        }
        Some(Cluster::start())
    }

    fn start() -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("saelab-slurm")
            .tempdir()
            .unwrap();
        // munged refuses a socket whose folders others cannot traverse.
        set_mode(dir.path(), 0o755);
        let mut cluster = Cluster {
            dir,
            daemons: Vec::new(),
        };
        cluster.start_munge();
        let conf = cluster.write_conf();
        for daemon in ["slurmctld", "slurmd"] {
            let child = cluster.spawn(daemon, &["-D", "-f", &conf.display().to_string()]);
            cluster.daemons.push((daemon, child));
        }
        let path = cluster.path().to_path_buf();
        wait_until(Duration::from_secs(90), "no idle node", &path, || {
            cluster
                .command("sinfo")
                .args(["-h", "-o", "%T"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "idle")
        });
        cluster
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&self, program: &str, args: &[&str]) -> Child {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path().join("daemons.out"))
            .unwrap();
        Command::new(find(program).unwrap())
            .args(args)
            .env("SLURM_CONF", self.conf_path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"))
    }

    fn start_munge(&mut self) {
        let key = self.path().join("munge.key");
        let mut bytes = vec![0; 1024];
        let mut random = std::fs::File::open("/dev/urandom").unwrap();
        std::io::Read::read_exact(&mut random, &mut bytes).unwrap();
        std::fs::write(&key, &bytes).unwrap();
        set_mode(&key, 0o400);
        let p = |name: &str| self.path().join(name).display().to_string();
        let args = [
            "-F".to_string(),
            "--force".into(),
            format!("--socket={}", p("munge.socket")),
            format!("--key-file={}", p("munge.key")),
            format!("--pid-file={}", p("munged.pid")),
            format!("--log-file={}", p("munged.log")),
            format!("--seed-file={}", p("munge.seed")),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let child = self.spawn("munged", &args);
        self.daemons.push(("munged", child));
        let socket = self.path().join("munge.socket");
        wait_until(
            Duration::from_secs(30),
            "munged made no socket",
            self.path(),
            || socket.exists(),
        );
    }

    fn conf_path(&self) -> PathBuf {
        self.path().join("slurm.conf")
    }

    /// slurm.conf for one node as `slurmd -C` describes this machine,
    /// without cgroups or accounting, state kept in the temporary folder.
    fn write_conf(&self) -> PathBuf {
        let node = Command::new(find("slurmd").unwrap())
            .arg("-C")
            .output()
            .unwrap();
        let node = String::from_utf8_lossy(&node.stdout);
        let node_line = node.lines().next().unwrap_or_default().to_string();
        let name = node_line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("NodeName="))
            .expect("slurmd -C printed no NodeName")
            .to_string();
        let d = self.path().display();
        for folder in ["state", "spool"] {
            std::fs::create_dir_all(self.path().join(folder)).unwrap();
        }
        let conf = format!(
            "ClusterName=saelabtest\n\
             SlurmctldHost={name}(127.0.0.1)\n\
             SlurmctldPort={ctld}\n\
             SlurmdPort={slurmd}\n\
             SlurmUser=root\n\
             SlurmdUser=root\n\
             AuthType=auth/munge\n\
             AuthInfo=socket={d}/munge.socket,cred_expire=10\n\
             CredType=cred/munge\n\
             StateSaveLocation={d}/state\n\
             SlurmdSpoolDir={d}/spool\n\
             SlurmctldPidFile={d}/slurmctld.pid\n\
             SlurmdPidFile={d}/slurmd.pid\n\
             SlurmctldLogFile={d}/slurmctld.log\n\
             SlurmdLogFile={d}/slurmd.log\n\
             ProctrackType=proctrack/linuxproc\n\
             TaskPlugin=task/none\n\
             SelectType=select/cons_tres\n\
             SelectTypeParameters=CR_CPU\n\
             SchedulerType=sched/backfill\n\
             JobAcctGatherType=jobacct_gather/none\n\
             AccountingStorageType=accounting_storage/none\n\
             MpiDefault=none\n\
             ReturnToService=2\n\
             {node_line} NodeAddr=127.0.0.1 State=UNKNOWN\n\
             PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n",
            ctld = free_port(),
            slurmd = free_port(),
        );
        std::fs::write(self.conf_path(), conf).unwrap();
        self.conf_path()
    }

    /// A Slurm client command (or saelab) that talks to this cluster.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command.env("SLURM_CONF", self.conf_path());
        command
    }

    /// Lines of `squeue -h -r -o %i|%T`.
    pub fn queue(&self) -> Vec<String> {
        let out = self
            .command("squeue")
            .args(["-h", "-r", "-o", "%i|%T"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect()
    }

    /// The cluster's logs, for a failing test's message.
    pub fn logs(&self) -> String {
        log_tails(self.path())
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Jobs first, so no task outlives the daemons (this cluster's jobs are all ours).
        let _ = self.command("scancel").args(["--user", "root"]).status();
        let start = Instant::now();
        while !self.queue().is_empty() && start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(500));
        }
        for (name, child) in self.daemons.iter_mut().rev() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let stopping = Instant::now();
            while matches!(child.try_wait(), Ok(None)) {
                if stopping.elapsed() > Duration::from_secs(20) {
                    eprintln!("the test cluster: {name} ignored SIGTERM; killing it");
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}
