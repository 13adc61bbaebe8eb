//! A PostgreSQL database of its own for each test, on the server that
//! `scripts/postgres` runs on 127.0.0.1.
//!
//! `scripts/test` (and so CI) starts the server and exports its URL in
//! [`URL_ENV`] and its password file in [`PASSWORD_FILE_ENV`]. Without
//! them a test fails under `CI=true`; elsewhere it starts the server
//! itself with `scripts/postgres start` (left running for the next tests;
//! `scripts/postgres stop` stops it).

use std::path::PathBuf;
use std::sync::OnceLock;

/// The server's URL, without a password: `postgres://USER@127.0.0.1:PORT/DB`.
pub const URL_ENV: &str = "TAXII_TEST_POSTGRES_URL";
/// A file holding the server's password.
pub const PASSWORD_FILE_ENV: &str = "TAXII_TEST_POSTGRES_PASSWORD_FILE";

/// The server: its URL and its password.
#[derive(Debug, Clone)]
pub struct Server {
    /// `postgres://USER@127.0.0.1:PORT/postgres`.
    pub url: String,
    /// The user's password.
    pub password: String,
}

/// The server the tests share, started if need be (see the module).
pub fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let (url, password_file) = match std::env::var(URL_ENV) {
            Ok(url) => {
                let file = std::env::var_os(PASSWORD_FILE_ENV).unwrap_or_else(|| {
                    panic!("{URL_ENV} is set but {PASSWORD_FILE_ENV} is not: set both (scripts/test does)")
                });
                (url, PathBuf::from(file))
            }
            Err(_) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
                "{URL_ENV} is not set: under CI the PostgreSQL tests need the server \
                 scripts/test starts (run the tests through scripts/test)"
            ),
            Err(_) => start(),
        };
        let password = std::fs::read_to_string(&password_file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", password_file.display()))
            .trim()
            .to_string();
        Server { url, password }
    })
}

/// Starts the server with `scripts/postgres start`.
fn start() -> (String, PathBuf) {
    let root = crate::repo_root();
    eprintln!("{URL_ENV} is not set: starting PostgreSQL with scripts/postgres start");
    let url = crate::project_script("postgres", &["start"]);
    (url, root.join("target/postgres/password"))
}

/// A database created for one test, dropped when the test ends.
#[derive(Debug)]
pub struct TestDatabase {
    /// Its URL, without a password.
    pub url: String,
    /// The password.
    pub password: String,
    name: String,
}

impl TestDatabase {
    /// A new, empty database with a random name.
    pub fn create() -> Self {
        let server = server();
        let name = format!("taxii_test_{:016x}", fastrand::u64(..));
        let mut admin = connect(&server.url, &server.password);
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("cannot create the test database {name}: {e}"));
        let mut url = url::Url::parse(&server.url).expect("the server's URL is a URL");
        url.set_path(&format!("/{name}"));
        Self {
            url: url.to_string(),
            password: server.password.clone(),
            name,
        }
    }

    /// A client connected to it, for checks the host does not offer.
    pub fn client(&self) -> ::postgres::Client {
        connect(&self.url, &self.password)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let server = server();
        let mut admin = connect(&server.url, &server.password);
        let dropped = admin.batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
        if let Err(e) = dropped {
            eprintln!("cannot drop the test database {}: {e}", self.name);
        }
    }
}

fn connect(url: &str, password: &str) -> ::postgres::Client {
    let mut config: ::postgres::Config = url.parse().expect("a PostgreSQL URL");
    config.password(password);
    config
        .connect(::postgres::NoTls)
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}
