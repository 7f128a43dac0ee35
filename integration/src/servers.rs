#![allow(clippy::panic)] // test harness: a server that cannot start must fail the test loudly

//! Real servers the fleet tests need, started as processes on free ports and stopped on drop:
//! Redis and PostgreSQL (Debian's packages, installed by `make fleet-servers`).

use crate::ports::free_port;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A throwaway `redis-server` on 127.0.0.1 (no persistence).
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
}

impl Redis {
    pub fn start() -> Redis {
        let mut redis = Redis { child: None, port: free_port() };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The server's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts it again on the same port (after [`Redis::stop`]), empty.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("redis-server is needed for the fleet tests (make fleet-servers installs it): {e}")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start on port {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it (a Redis outage) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A throwaway PostgreSQL server (Debian's `postgresql` binaries, installed by
/// `make fleet-servers`) on 127.0.0.1, its data in a temporary folder. Postgres refuses to run
/// as root, so as root it runs as the `postgres` user. It stops with the value, and, when kept
/// for a whole test process (see [`Postgres::shared`]), when that process exits.
pub struct Postgres {
    pid: Option<u32>,
    child: Option<Child>,
    pub port: u16,
    dir: std::path::PathBuf,
    bin: std::path::PathBuf,
    as_postgres: bool,
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| d.filter_map(Result::ok).map(|e| e.path().join("bin")).find(|p| p.join("initdb").exists()))
            .unwrap_or_else(|| panic!("PostgreSQL is needed for these tests (make fleet-servers installs it)"));
        let as_postgres = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("fusebox-pg-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut pg = Postgres { pid: None, child: None, port: free_port(), dir, bin, as_postgres };
        if as_postgres {
            pg.run(Command::new("chown").arg("postgres").arg(&pg.dir));
        }
        let mut initdb = pg.command("initdb");
        pg.run(initdb.arg("-D").arg(pg.dir.join("data")).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]));
        pg.restart();
        pg
    }

    /// A server for the whole test process: started once, stopped when the process exits.
    pub fn shared() -> &'static Postgres {
        static SHARED: std::sync::OnceLock<Postgres> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| {
            let pg = Postgres::start();
            // Statics are never dropped: a watchdog stops the server once this process is gone.
            let watch = format!(
                "while kill -0 {me} 2>/dev/null; do sleep 0.2; done; kill -QUIT {pg}; sleep 1; rm -rf '{dir}'",
                me = std::process::id(),
                pg = pg.pid.unwrap_or(0),
                dir = pg.dir.display()
            );
            let _ = Command::new("sh").arg("-c").arg(watch).stdout(Stdio::null()).stderr(Stdio::null()).spawn();
            pg
        })
    }

    /// `postgres://` URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates an empty database and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        let mut createdb = self.command("createdb");
        self.run(createdb.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", name]));
        self.url(name)
    }

    /// Starts the server again (after [`Postgres::stop`]) on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        let mut cmd = self.command("postgres");
        cmd.arg("-D").arg(self.dir.join("data")).arg("-p").arg(self.port.to_string()).arg("-k").arg(&self.dir);
        for setting in ["listen_addresses=127.0.0.1", "fsync=off", "synchronous_commit=off", "full_page_writes=off"] {
            cmd.arg("-c").arg(setting);
        }
        let log =
            std::fs::File::create(self.dir.join("postgres.log")).map(Stdio::from).unwrap_or_else(|_| Stdio::null());
        let child = cmd.stdout(Stdio::null()).stderr(log).spawn().unwrap_or_else(|e| panic!("starting postgres: {e}"));
        self.pid = Some(child.id());
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let ready = self.bin.join("pg_isready");
        while !Command::new(&ready)
            .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .status()
            .is_ok_and(|s| s.success())
        {
            assert!(Instant::now() < deadline, "postgres did not start; log in {}", self.dir.display());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server at once (an outage; it recovers its data on restart).
    pub fn stop(&mut self) {
        if let (Some(mut child), Some(pid)) = (self.child.take(), self.pid.take()) {
            let _ = Command::new("kill").arg("-QUIT").arg(pid.to_string()).status();
            let _ = child.wait();
        }
    }

    /// A Postgres binary, run as the `postgres` user when we are root (without a shell or a
    /// fork in between, so the child is the server itself).
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=postgres", "--regid=postgres", "--init-groups"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn run(&self, cmd: &mut Command) {
        let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A throwaway nginx on 127.0.0.1:`port` in front of `upstream`, as a model server is often
/// deployed: `proxy_pass` with a URI, so nginx decodes and normalises the path it forwards
/// (`//v1/...`, `/./v1/...`, `/%76%31/...` all reach the upstream as `/v1/...`).
pub struct Nginx {
    child: Child,
    pub port: u16,
}

impl Nginx {
    /// Starts nginx (Debian's `nginx-light`, installed by `make proxies`) with its files in `dir`.
    pub fn start(dir: &std::path::Path, port: u16, upstream: u16) -> Nginx {
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/nginx.err;\nevents {{}}\n\
             http {{\n  access_log {d}/nginx.access;\n  client_body_temp_path {d}/nginx-body;\n  \
             proxy_temp_path {d}/nginx-proxy;\n  fastcgi_temp_path {d}/nginx-fastcgi;\n  uwsgi_temp_path {d}/nginx-uwsgi;\n  \
             scgi_temp_path {d}/nginx-scgi;\n  server {{\n    listen 127.0.0.1:{port};\n    \
             location / {{ proxy_pass http://127.0.0.1:{upstream}/; proxy_buffering off; }}\n  }}\n}}\n"
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("nginx is needed for the reverse-proxy test (make proxies installs it): {e}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not start on port {port}; see {d}/nginx.err");
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx { child, port }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
