//! A TCP proxy in front of the test server that a test can take down and
//! bring back: what a worker sees of a server that goes away (a failover, a
//! restart) without stopping the server the other tests share. While down,
//! its port refuses connections and every connection through it is cut.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_postgres::config::Host;
use tokio_postgres::Config;

pub struct Proxy {
    address: SocketAddr,
    upstream: SocketAddr,
    /// The accept loop and every forwarding task; empty while down.
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl Proxy {
    /// A proxy to the server of `config` (TCP host and port), up.
    pub async fn start(config: &Config) -> Proxy {
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(host)) => host.clone(),
            _ => panic!("the proxy needs a TCP host in DATABASE_URL"),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let upstream = tokio::net::lookup_host((host.as_str(), port))
            .await
            .expect("resolve the test server")
            .next()
            .expect("an address of the test server");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let address = listener.local_addr().expect("proxy address");
        let proxy = Proxy {
            address,
            upstream,
            tasks: Arc::new(Mutex::new(JoinSet::new())),
        };
        proxy.serve(listener);
        proxy
    }

    /// `config` pointed at the proxy instead of the server.
    pub fn config(&self, config: &Config) -> Config {
        let mut through = Config::new();
        if let Some(user) = config.get_user() {
            through.user(user);
        }
        if let Some(password) = config.get_password() {
            through.password(password);
        }
        if let Some(dbname) = config.get_dbname() {
            through.dbname(dbname);
        }
        through.host("127.0.0.1").port(self.address.port());
        through
    }

    /// Cuts every connection and refuses new ones.
    pub fn down(&self) {
        self.tasks.lock().expect("proxy tasks").abort_all();
    }

    /// Accepts connections again, on the same port.
    pub async fn up(&self) {
        let listener = TcpListener::bind(self.address)
            .await
            .expect("rebind the proxy");
        self.serve(listener);
    }

    fn serve(&self, listener: TcpListener) {
        let upstream = self.upstream;
        let tasks = Arc::clone(&self.tasks);
        self.tasks.lock().expect("proxy tasks").spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                tasks.lock().expect("proxy tasks").spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    // Ends when either side closes; a reset shows in the
                    // output of a failing test.
                    if let Err(error) =
                        tokio::io::copy_bidirectional(&mut client, &mut server).await
                    {
                        eprintln!("proxy: a connection ended with {error}");
                    }
                });
            }
        });
    }
}
