//! A PostgreSQL server of the test's own, never the shared `OPENUM_TEST_POSTGRES_URL` one: for
//! tests that stop and restart the server, or run it with TLS.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A private PostgreSQL server (initdb in a temp dir, as the `postgres` user when root); stopped
/// when dropped.
pub struct PrivatePostgres {
    /// `postgres://…` URL (127.0.0.1, the server's port).
    pub url: String,
    /// The port it listens on.
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    options: String,
    root: bool,
}

/// A test CA and a server certificate for 127.0.0.1 it signed, made with the `openssl` tool.
pub struct TestCa {
    /// The CA certificate (PEM file).
    pub ca_pem: PathBuf,
    /// The server certificate (PEM file).
    pub cert: PathBuf,
    /// The server key (PEM file).
    pub key: PathBuf,
}

impl TestCa {
    /// Makes a CA and a server certificate for `127.0.0.1` in `dir`. Panics (saying so) when the
    /// `openssl` tool is missing.
    pub fn create(dir: &Path) -> Self {
        let openssl = |args: &[&str]| {
            let status = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap_or_else(|e| {
                    panic!("the openssl tool is required (apt-get install openssl): {e}")
                });
            assert!(status.success(), "openssl {args:?} failed");
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=openum test CA",
        ]);
        openssl(&args);
        let mut args = vec!["req"];
        args.extend(ec);
        args.extend([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        openssl(&args);
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write the extension file");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        Self {
            ca_pem: dir.join("ca.pem"),
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
        }
    }
}

impl PrivatePostgres {
    /// Starts a server without TLS.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts a server; with `tls`, `ssl = on` with that certificate and key.
    pub fn start_with(tls: Option<&TestCa>) -> Self {
        let bin = crate::find_postgres_bin()
            .expect("PostgreSQL is required: install postgresql (initdb, pg_ctl)");
        let dir = tempfile::tempdir().expect("temp dir");
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        let mut options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            dir.path().display()
        );
        if let Some(ca) = tls {
            for (from, to) in [(&ca.cert, "server.crt"), (&ca.key, "server.key")] {
                std::fs::copy(from, dir.path().join(to)).expect("copy the TLS files");
            }
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={0}/server.crt -c ssl_key_file={0}/server.key",
                dir.path().display()
            ));
        }
        let server = Self {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            port,
            dir,
            bin,
            options,
            root,
        };
        if root {
            let status = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(server.dir.path())
                .status()
                .expect("chown");
            assert!(
                status.success(),
                "chown the PostgreSQL temp dir to postgres"
            );
        }
        if tls.is_some() {
            let status = Command::new("chmod")
                .arg("600")
                .arg(server.dir.path().join("server.key"))
                .status()
                .expect("chmod");
            assert!(status.success(), "chmod the server key");
        }
        let data = server.data();
        server.run(
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        if tls.is_some() {
            // TCP clients must use TLS: a plain connection is refused, so a client that connects
            // has proved it spoke TLS.
            std::fs::write(
                server.dir.path().join("data/pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
            )
            .expect("write pg_hba.conf");
        }
        server.start_again();
        server
    }

    fn data(&self) -> String {
        self.dir
            .path()
            .join("data")
            .to_str()
            .expect("utf-8 path")
            .to_owned()
    }

    fn run(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let mut command = if self.root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let status = command.args(args).stdout(Stdio::null()).status();
        assert!(
            status.map(|s| s.success()).unwrap_or(false),
            "{program} {args:?} failed"
        );
    }

    /// Stops the server at once (`-m immediate`: like a crash, connections are cut).
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    /// Starts the stopped server again, on the same port.
    pub fn start_again(&self) {
        let log = self.dir.path().join("pg.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &self.options,
                "-l",
                log.to_str().expect("utf-8 path"),
                "-w",
                "start",
            ],
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let mut command = if self.root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"));
            c
        } else {
            Command::new(self.bin.join("pg_ctl"))
        };
        // Best effort: the server may be stopped already; the temp dir goes either way.
        let _ = command
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A database of the test's own on a (possibly shared) server, so that what the test's nodes do
/// to every node of their database — closing the calls of nodes whose heartbeat is old — never
/// reaches another test's nodes. Dropped (with its connections) when dropped.
pub struct FreshDatabase {
    /// `postgres://…` URL of the new database.
    pub url: String,
    server_url: String,
    name: String,
}

impl FreshDatabase {
    /// Creates a database named after `tag` (and this process) on the server at `server_url`.
    pub fn create(server_url: &str, tag: &str) -> Self {
        let name = format!("openum_{tag}_{}", std::process::id());
        let psql = crate::find_postgres_bin()
            .expect("PostgreSQL is required: install postgresql (psql)")
            .join("psql");
        let sql = |statement: String| {
            let out = Command::new(&psql)
                .arg(server_url)
                .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", &statement])
                .output()
                .expect("psql");
            assert!(
                out.status.success(),
                "psql {statement}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        sql(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        sql(format!("CREATE DATABASE {name}"));
        let (head, query) = server_url
            .split_once('?')
            .map_or((server_url, None), |(h, q)| (h, Some(q)));
        let base = head.rsplit_once('/').map_or(head, |(b, _)| b);
        let url = match query {
            Some(q) => format!("{base}/{name}?{q}"),
            None => format!("{base}/{name}"),
        };
        Self {
            url,
            server_url: server_url.to_owned(),
            name,
        }
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        if let Some(bin) = crate::find_postgres_bin() {
            // Best effort: the server may be gone already (a private one dropped first).
            let _ = Command::new(bin.join("psql"))
                .arg(&self.server_url)
                .args([
                    "-q",
                    "-c",
                    &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
