//! Test support shared by openum's crates.
//!
//! - [`canonicalize`]: an XML canonical form for comparing documents (namespace-resolved names,
//!   attributes sorted, namespace declarations and whitespace-only text dropped).
//! - [`Validator`]: validates documents against the official `messages.xsd`/`types.xsd` with
//!   `xmllint`. A missing `xmllint` is a test failure, never a skip.
//! - [`tls`]: a test PKI (root, intermediate, server certificates) made with `openssl`.
//! - [`http1`]: one hand-written HTTP/1.1 exchange on a kept-alive connection (for NTLM).
//! - [`mailbox`]: [`mailbox::MailboxDouble`], an EWS mailbox server double (`GetFolder`,
//!   `GetItem`, `GetAttachment`, `FindItem`) with run-time fault modes and a request log.

#![expect(
    clippy::expect_used,
    reason = "test support: a failure here is meant to fail the calling test"
)]

pub mod http1;
pub mod mailbox;
pub mod ntlm;
pub mod private_pg;
pub mod tls;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

/// A canonical form of `xml` for equality checks.
///
/// Panics (this is test support) if the document is not well-formed.
pub fn canonicalize(xml: &str) -> String {
    let xml = xml.trim_start_matches('\u{feff}');
    let mut reader = NsReader::from_str(xml);
    let mut out = String::new();
    loop {
        let (res, event) = reader.read_resolved_event().expect("well-formed XML");
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let name = qualify(&res, e.local_name().as_ref());
                let mut attrs: Vec<(String, String)> = e
                    .attributes()
                    .map(|a| a.expect("attribute"))
                    .filter(|a| {
                        let k = a.key.as_ref();
                        k != b"xmlns" && !k.starts_with(b"xmlns:")
                    })
                    .map(|a| {
                        let (r, local) = reader.resolve_attribute(a.key);
                        let key = match r {
                            ResolveResult::Bound(_) => qualify(&r, local.as_ref()),
                            _ if a.key.as_ref().starts_with(b"xml:") => {
                                format!("{{xml}}{}", String::from_utf8_lossy(local.as_ref()))
                            }
                            _ => String::from_utf8_lossy(local.as_ref()).into_owned(),
                        };
                        let value = a
                            .decode_and_unescape_value(reader.decoder())
                            .expect("attribute value")
                            .into_owned();
                        (key, value)
                    })
                    .collect();
                attrs.sort();
                let _ = write!(out, "<{name}");
                for (k, v) in attrs {
                    let _ = write!(out, " {k}={v:?}");
                }
                out.push('>');
                if matches!(event, Event::Empty(_)) {
                    let _ = write!(out, "</{name}>");
                }
            }
            Event::End(ref e) => {
                let (res, _) = reader.resolve_element(e.name());
                let _ = write!(out, "</{}>", qualify(&res, e.local_name().as_ref()));
            }
            Event::Text(t) => {
                let text = t.unescape().expect("text");
                if !text.trim().is_empty() {
                    let _ = write!(out, "{:?}", text.as_ref());
                }
            }
            Event::CData(c) => {
                let _ = write!(out, "{:?}", String::from_utf8_lossy(&c));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

fn qualify(res: &ResolveResult<'_>, local: &[u8]) -> String {
    let local = String::from_utf8_lossy(local);
    match res {
        ResolveResult::Bound(ns) => format!("{{{}}}{local}", String::from_utf8_lossy(ns.as_ref())),
        _ => local.into_owned(),
    }
}

/// Validates documents against the official EWS schema with `xmllint`.
pub struct Validator {
    dir: tempfile::TempDir,
}

impl Validator {
    /// The process-wide validator (the schema set is written to a temp directory once).
    pub fn shared() -> &'static Validator {
        static V: OnceLock<Validator> = OnceLock::new();
        V.get_or_init(Validator::new)
    }

    fn new() -> Self {
        let found = Command::new("xmllint").arg("--version").output();
        assert!(
            found.is_ok(),
            "xmllint is required for schema validation (apt-get install libxml2-utils); refusing to skip"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let types = ews_proto::schema::TYPES_XSD;
        let quirk = r#" fixed="Exchange2010_SP1""#;
        assert_eq!(
            types.matches(quirk).count(),
            1,
            "the RequestServerVersion quirk should occur exactly once in types.xsd"
        );
        let write = |name: &str, body: &str| {
            std::fs::write(dir.path().join(name), body).expect("write schema copy");
        };
        write("types.xsd", &types.replacen(quirk, "", 1));
        write("messages.xsd", ews_proto::schema::MESSAGES_XSD);
        write("soap11.xsd", include_str!("../xsd/soap11.xsd"));
        write("xml.xsd", include_str!("../xsd/xml.xsd"));
        write(
            "all.xsd",
            r#"<?xml version="1.0" encoding="utf-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:openum:validation">
  <xs:import namespace="http://www.w3.org/XML/1998/namespace" schemaLocation="xml.xsd"/>
  <xs:import namespace="http://schemas.xmlsoap.org/soap/envelope/" schemaLocation="soap11.xsd"/>
  <xs:import namespace="http://schemas.microsoft.com/exchange/services/2006/messages" schemaLocation="messages.xsd"/>
</xs:schema>
"#,
        );
        Self { dir }
    }

    /// Validates a whole SOAP document (request, response or fault). Returns xmllint's report on
    /// failure.
    pub fn validate(&self, xml: &str) -> Result<(), String> {
        let file = tempfile::Builder::new()
            .suffix(".xml")
            .tempfile_in(self.dir.path())
            .expect("temp file");
        std::fs::write(file.path(), xml).expect("write document");
        let schema: PathBuf = self.dir.path().join("all.xsd");
        let out = Command::new("xmllint")
            .arg("--noout")
            .arg("--nonet")
            .arg("--schema")
            .arg(&schema)
            .arg(file.path())
            .output()
            .expect("run xmllint");
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Validates and panics with xmllint's report if the document is invalid.
    pub fn assert_valid(&self, xml: &str) {
        if let Err(report) = self.validate(xml) {
            panic!("document failed schema validation:\n{report}\n--- document ---\n{xml}");
        }
    }
}

/// One element of a document, as a flat outline entry (document order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Nesting depth (root = 0).
    pub depth: usize,
    /// Resolved namespace (`""` for none).
    pub ns: String,
    /// Local name.
    pub local: String,
    /// The prefix used in the document (`""` for none).
    pub prefix: String,
    /// Attributes (`local`, value), namespace declarations excluded.
    pub attrs: Vec<(String, String)>,
    /// Written as `<x/>`.
    pub self_closing: bool,
    /// Text directly inside, concatenated.
    pub text: String,
}

impl Node {
    /// The value of the attribute `local`.
    pub fn attr(&self, local: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == local)
            .map(|(_, v)| v.as_str())
    }
}

/// The element outline of `xml`, for byte-shape assertions (prefixes, self-closing tags, order).
pub fn outline(xml: &str) -> Vec<Node> {
    let mut reader = NsReader::from_str(xml);
    let mut nodes: Vec<Node> = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    loop {
        let (res, event) = reader.read_resolved_event().expect("well-formed XML");
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let ns = match res {
                    ResolveResult::Bound(n) => String::from_utf8_lossy(n.as_ref()).into_owned(),
                    _ => String::new(),
                };
                let prefix = e
                    .name()
                    .prefix()
                    .map(|p| String::from_utf8_lossy(p.as_ref()).into_owned())
                    .unwrap_or_default();
                let attrs = e
                    .attributes()
                    .map(|a| a.expect("attribute"))
                    .filter(|a| {
                        let k = a.key.as_ref();
                        k != b"xmlns" && !k.starts_with(b"xmlns:")
                    })
                    .map(|a| {
                        (
                            String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned(),
                            a.unescape_value().expect("value").into_owned(),
                        )
                    })
                    .collect();
                let self_closing = matches!(event, Event::Empty(_));
                nodes.push(Node {
                    depth: open.len(),
                    ns,
                    local: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
                    prefix,
                    attrs,
                    self_closing,
                    text: String::new(),
                });
                if !self_closing {
                    open.push(nodes.len() - 1);
                }
            }
            Event::End(_) => {
                open.pop();
            }
            Event::Text(t) => {
                if let Some(&i) = open.last() {
                    nodes[i].text.push_str(&t.unescape().expect("text"));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    nodes
}

/// A PostgreSQL server for tests: the one named by `OPENUM_TEST_POSTGRES_URL` (as `.ci/run`
/// starts it), or else a private one started from the installed binaries in a temp directory
/// and stopped on drop. Fails loudly when neither is possible — it never skips.
pub struct Postgres {
    /// `postgres://…` URL.
    pub url: String,
    private: Option<(tempfile::TempDir, PathBuf)>,
}

impl Postgres {
    /// Connects to or starts a server.
    pub fn start() -> Self {
        if let Ok(url) = std::env::var("OPENUM_TEST_POSTGRES_URL") {
            if !url.is_empty() {
                return Self { url, private: None };
            }
        }
        let bin = find_postgres_bin().expect(
            "PostgreSQL is required: set OPENUM_TEST_POSTGRES_URL or install postgresql (initdb, pg_ctl)",
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        // initdb refuses to run as root: run the server as the `postgres` user then.
        let run = |program: &str, args: &[&str]| {
            let path = bin.join(program);
            let status = if root {
                Command::new("runuser")
                    .args(["-u", "postgres", "--"])
                    .arg(&path)
                    .args(args)
                    .stdout(std::process::Stdio::null())
                    .status()
            } else {
                Command::new(&path)
                    .args(args)
                    .stdout(std::process::Stdio::null())
                    .status()
            };
            assert!(
                status.map(|s| s.success()).unwrap_or(false),
                "{program} {args:?} failed"
            );
        };
        if root {
            let status = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(
                status.success(),
                "chown the PostgreSQL temp dir to postgres"
            );
        }
        let data_str = data.to_str().expect("utf-8 path").to_owned();
        run(
            "initdb",
            &[
                "-D",
                &data_str,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            dir.path().display()
        );
        let log = dir.path().join("pg.log");
        run(
            "pg_ctl",
            &[
                "-D",
                &data_str,
                "-o",
                &options,
                "-l",
                log.to_str().expect("utf-8 path"),
                "-w",
                "start",
            ],
        );
        Self {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            private: Some((dir, bin)),
        }
    }
}

impl Postgres {
    /// A new, empty database `name` on this server (dropped first if it exists), for a test
    /// that changes what others share (the schema version); returns its URL.
    pub async fn own_database(&self, name: &str) -> String {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test PostgreSQL");
        tokio::spawn(connection);
        // DROP/CREATE DATABASE cannot run in a transaction: one statement each.
        for statement in [
            format!("DROP DATABASE IF EXISTS {name}"),
            format!("CREATE DATABASE {name}"),
        ] {
            client
                .batch_execute(&statement)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
        let (base, _) = self.url.rsplit_once('/').expect("a postgres:// URL");
        format!("{base}/{name}")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some((dir, bin)) = &self.private {
            let data = dir.path().join("data");
            let root = Command::new("id")
                .arg("-u")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
                .unwrap_or(false);
            let mut cmd = if root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(bin.join("pg_ctl"));
                c
            } else {
                Command::new(bin.join("pg_ctl"))
            };
            let _ = cmd
                .arg("-D")
                .arg(data)
                .args(["-m", "immediate", "stop"])
                .stdout(std::process::Stdio::null())
                .status();
        }
    }
}

pub(crate) fn find_postgres_bin() -> Option<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Some(dir);
        }
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    candidates.sort();
    candidates.pop()
}

/// A 16-bit PCM WAV file (interleaved `samples`), for audio fixtures made in tests.
pub fn pcm_wav(rate: u32, channels: u16, samples: &[i16]) -> Vec<u8> {
    let data_len = u32::try_from(samples.len() * 2).expect("fixture fits a WAV");
    let mut v = Vec::with_capacity(44 + samples.len() * 2);
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + data_len).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&channels.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&(rate * u32::from(channels) * 2).to_le_bytes());
    v.extend_from_slice(&(channels * 2).to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        v.extend_from_slice(&s.to_le_bytes());
    }
    v
}

/// `seconds` of a sine tone at `hz`, 16-bit, at `rate`.
pub fn tone(rate: u32, hz: f32, seconds: f32, amplitude: f32) -> Vec<i16> {
    let n = (rate as f32 * seconds) as usize;
    (0..n)
        .map(|i| ((i as f32 * hz * std::f32::consts::TAU / rate as f32).sin() * amplitude) as i16)
        .collect()
}
