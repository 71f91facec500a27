//! A test PKI made at test time with the `openssl` command: a root CA, an intermediate CA, and
//! server certificates for `localhost` / `127.0.0.1` issued by the intermediate, written as PEM
//! files (leaf + intermediate as the served chain). A missing `openssl` is a test failure, never
//! a skip.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The private key format of an issued certificate's key file.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum KeyFormat {
    /// ECDSA P-256, PKCS#8 (`BEGIN PRIVATE KEY`).
    EcPkcs8,
    /// ECDSA P-256, SEC1 (`BEGIN EC PRIVATE KEY`).
    EcSec1,
    /// RSA 2048, PKCS#1 (`BEGIN RSA PRIVATE KEY`).
    Rsa,
}

/// A root and an intermediate CA in a directory.
#[derive(Debug)]
pub struct TestCa {
    dir: PathBuf,
    /// The root certificate (PEM): what clients trust.
    pub root: PathBuf,
    intermediate: PathBuf,
    intermediate_key: PathBuf,
}

/// A server certificate issued by a [`TestCa`].
#[derive(Debug, Clone)]
pub struct Issued {
    /// Leaf then intermediate (PEM): what `server.tls_cert` names.
    pub chain: PathBuf,
    /// The leaf alone (PEM).
    pub leaf: PathBuf,
    /// The private key (PEM, in the requested format).
    pub key: PathBuf,
    /// The leaf's serial number, as upper-case hex without separators (as `openssl x509
    /// -serial` prints it).
    pub serial_hex: String,
    /// The leaf's subject common name.
    pub common_name: String,
}

/// Runs `openssl` with `args` in `dir`; panics with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("openssl is required by the TLS tests (apt-get install openssl): {e}")
        });
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

fn ec_key(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            name,
        ],
    );
}

impl TestCa {
    /// Makes a root CA and an intermediate CA under `dir` (which must exist).
    pub fn new(dir: &Path) -> Self {
        ec_key(dir, "root.key");
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "root.key",
                "-subj",
                "/CN=openum test root",
                "-days",
                "3",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-out",
                "root.pem",
            ],
        );
        ec_key(dir, "intermediate.key");
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-key",
                "intermediate.key",
                "-subj",
                "/CN=openum test intermediate",
                "-out",
                "intermediate.csr",
            ],
        );
        write(
            &dir.join("intermediate.ext"),
            "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "intermediate.csr",
                "-CA",
                "root.pem",
                "-CAkey",
                "root.key",
                "-set_serial",
                "2",
                "-days",
                "3",
                "-extfile",
                "intermediate.ext",
                "-out",
                "intermediate.pem",
            ],
        );
        Self {
            dir: dir.to_owned(),
            root: dir.join("root.pem"),
            intermediate: dir.join("intermediate.pem"),
            intermediate_key: dir.join("intermediate.key"),
        }
    }

    /// Issues a certificate for `localhost` and `127.0.0.1` with subject CN `common_name` and
    /// serial `serial`; files are named after `name`.
    pub fn issue(&self, name: &str, common_name: &str, serial: u32, format: KeyFormat) -> Issued {
        let dir = &self.dir;
        let key = format!("{name}.key");
        match format {
            KeyFormat::EcPkcs8 => ec_key(dir, &key),
            KeyFormat::EcSec1 => {
                ec_key(dir, &format!("{name}.p8"));
                openssl(dir, &["ec", "-in", &format!("{name}.p8"), "-out", &key]);
            }
            KeyFormat::Rsa => {
                openssl(
                    dir,
                    &[
                        "genpkey",
                        "-algorithm",
                        "RSA",
                        "-pkeyopt",
                        "rsa_keygen_bits:2048",
                        "-out",
                        &format!("{name}.p8"),
                    ],
                );
                openssl(
                    dir,
                    &[
                        "rsa",
                        "-in",
                        &format!("{name}.p8"),
                        "-traditional",
                        "-out",
                        &key,
                    ],
                );
            }
        }
        let csr = format!("{name}.csr");
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-key",
                &key,
                "-subj",
                &format!("/CN={common_name}"),
                "-out",
                &csr,
            ],
        );
        let ext = format!("{name}.ext");
        write(
            &dir.join(&ext),
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
        );
        let leaf = format!("{name}.pem");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                path_str(&self.intermediate),
                "-CAkey",
                path_str(&self.intermediate_key),
                "-set_serial",
                &serial.to_string(),
                "-days",
                "3",
                "-extfile",
                &ext,
                "-out",
                &leaf,
            ],
        );
        let chain = dir.join(format!("{name}-chain.pem"));
        let leaf_pem = std::fs::read_to_string(dir.join(&leaf)).unwrap_or_default();
        let intermediate_pem = std::fs::read_to_string(&self.intermediate).unwrap_or_default();
        write(&chain, &format!("{leaf_pem}{intermediate_pem}"));
        let serial_hex = openssl(dir, &["x509", "-in", &leaf, "-noout", "-serial"])
            .trim()
            .trim_start_matches("serial=")
            .to_owned();
        Issued {
            chain,
            leaf: dir.join(leaf),
            key: dir.join(key),
            serial_hex,
            common_name: common_name.to_owned(),
        }
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str()
        .unwrap_or_else(|| panic!("test paths are UTF-8: {}", path.display()))
}
