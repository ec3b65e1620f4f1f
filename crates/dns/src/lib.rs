//! Cluster DNS for podvisor: answers `<svc>.<ns>.svc.cluster.local` (A records: the
//! ClusterIP, or the ready endpoint addresses of a headless Service) and
//! `<hostname>.<svc>.<ns>.svc.cluster.local` (a headless Service's ready endpoint with a
//! hostname, such as a StatefulSet's pod) from a [`DnsTable`] the
//! node keeps current, NXDOMAIN for other names in `cluster.local`, and forwards every other
//! name to the host's upstream resolver (the first `nameserver` of `/etc/resolv.conf`, over
//! UDP, again over TCP when the answer is truncated; SERVFAIL when there is none or it does not
//! answer).
//!
//! What it is not: it does not watch the API itself (the node fills the table), and it serves
//! IPv4 A records only (AAAA questions get an empty NOERROR answer for known names, as CoreDNS
//! does for an IPv4-only Service). The server is `hickory-server`'s, over UDP and TCP.
//!
//! Shutdown: [`Server::serve`] runs until its shutdown future completes.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::ServerFuture;
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};

/// The cluster domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// The TTL of cluster answers, in seconds (CoreDNS's default for the kubernetes plugin).
const TTL: u32 = 5;
/// How long a forwarded question may take.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The server stopped with an error.
    #[error("the DNS server failed: {0}")]
    Serve(#[source] hickory_proto::ProtoError),
}

/// The names the server answers: `<svc>.<ns>` → addresses. Cheap to clone (shared).
#[derive(Clone, Debug, Default)]
pub struct DnsTable(Arc<RwLock<Records>>);

/// `(namespace, service)` → addresses.
type Records = HashMap<(String, String), Vec<Ipv4Addr>>;

impl DnsTable {
    /// Replaces every record: `(namespace, service, addresses)`. A Service with no addresses
    /// (headless without ready endpoints) still exists: its name answers with no records.
    pub fn replace(&self, records: impl IntoIterator<Item = (String, String, Vec<Ipv4Addr>)>) {
        let map = records
            .into_iter()
            .map(|(ns, svc, ips)| ((ns, svc), ips))
            .collect();
        if let Ok(mut table) = self.0.write() {
            *table = map;
        }
    }

    /// The addresses of `<svc>.<ns>`, if the Service exists.
    pub fn lookup(&self, namespace: &str, service: &str) -> Option<Vec<Ipv4Addr>> {
        let table = self.0.read().ok()?;
        table.get(&(namespace.to_owned(), service.to_owned())).cloned()
    }
}

/// What a name in the cluster domain resolves to.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// The name is not in the cluster domain: forward it.
    Outside,
    /// No such name (NXDOMAIN).
    NoSuchName,
    /// The name exists; these are its addresses (maybe none).
    Addresses(Vec<Ipv4Addr>),
}

/// Resolves `name` (absolute or not, any case) against `table`.
pub fn resolve(table: &DnsTable, name: &str) -> Answer {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let Some(rest) = name
        .strip_suffix(CLUSTER_DOMAIN)
        .filter(|r| r.is_empty() || r.ends_with('.'))
    else {
        return Answer::Outside;
    };
    let labels: Vec<&str> = rest.trim_end_matches('.').split('.').collect();
    match labels.as_slice() {
        [svc, ns, "svc"] => match table.lookup(ns, svc) {
            Some(ips) => Answer::Addresses(ips),
            None => Answer::NoSuchName,
        },
        // A headless Service's endpoint with a hostname: `<hostname>.<svc>.<ns>.svc`.
        [host, svc, ns, "svc"] => match table.lookup(ns, &format!("{host}.{svc}")) {
            Some(ips) => Answer::Addresses(ips),
            None => Answer::NoSuchName,
        },
        // `cluster.local`, `svc.cluster.local` and `<ns>.svc.cluster.local` exist, empty.
        [""] | ["svc"] | [_, "svc"] => Answer::Addresses(Vec::new()),
        _ => Answer::NoSuchName,
    }
}

/// The first `nameserver` of a resolv.conf text, as an address on port 53, if any that is not
/// `exclude` (the cluster DNS itself).
pub fn upstream_from_resolv_conf(text: &str, exclude: IpAddr) -> Option<SocketAddr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse::<IpAddr>().ok())
        .find(|ip| *ip != exclude)
        .map(|ip| SocketAddr::new(ip, 53))
}

struct Handler {
    table: DnsTable,
    upstream: Option<SocketAddr>,
}

impl Handler {
    /// Asks the upstream resolver `query` and returns its answer records and code: over UDP,
    /// and again over TCP when the UDP answer comes back truncated (TC set), as a stub
    /// resolver does (RFC 7766).
    async fn forward(&self, query: &Query) -> (ResponseCode, Vec<Record>) {
        let Some(upstream) = self.upstream else {
            return (ResponseCode::ServFail, Vec::new());
        };
        let id: u16 = rand_id();
        let mut message = Message::new();
        message
            .set_id(id)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true)
            .add_query(query.clone());
        let ask = async {
            let bytes = message.to_vec().ok()?;
            let reply = ask_udp(upstream, &bytes, id).await?;
            if reply.truncated() {
                return ask_tcp(upstream, &bytes, id).await;
            }
            Some(reply)
        };
        match tokio::time::timeout(UPSTREAM_TIMEOUT, ask).await {
            Ok(Some(reply)) => (reply.response_code(), reply.answers().to_vec()),
            _ => (ResponseCode::ServFail, Vec::new()),
        }
    }
}

/// Sends `question` (with id `id`) to `upstream` over UDP and waits for its answer.
async fn ask_udp(upstream: SocketAddr, question: &[u8], id: u16) -> Option<Message> {
    let bind: SocketAddr = if upstream.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = tokio::net::UdpSocket::bind(bind).await.ok()?;
    socket.send_to(question, upstream).await.ok()?;
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, from) = socket.recv_from(&mut buf).await.ok()?;
        let Some(bytes) = buf.get(..n) else { continue };
        if from != upstream {
            continue;
        }
        match Message::from_vec(bytes) {
            Ok(reply) if reply.id() == id => return Some(reply),
            _ => continue,
        }
    }
}

/// Sends `question` to `upstream` over TCP (two-byte length prefix, RFC 1035 4.2.2) and reads
/// its answer.
async fn ask_tcp(upstream: SocketAddr, question: &[u8], id: u16) -> Option<Message> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(upstream).await.ok()?;
    let len = u16::try_from(question.len()).ok()?;
    let mut framed = Vec::with_capacity(question.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(question);
    stream.write_all(&framed).await.ok()?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.ok()?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut answer).await.ok()?;
    Message::from_vec(&answer).ok().filter(|reply| reply.id() == id)
}

/// A query id that differs between queries (no cryptographic need: the socket is fresh).
fn rand_id() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    (h.finish() & 0xffff) as u16
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler>(&self, request: &Request, mut response: R) -> ResponseInfo {
        let builder = MessageResponseBuilder::from_message_request(request);
        let mut header = Header::response_from_request(request.header());
        header.set_recursion_available(true);
        let Ok(info) = request.request_info() else {
            header.set_response_code(ResponseCode::FormErr);
            let message = builder.build_no_records(header);
            return send(&mut response, message, header).await;
        };
        let query = info.query;
        let name = query.name().to_string();
        let (code, records) = match resolve(&self.table, &name) {
            Answer::Outside => self.forward(query.original()).await,
            Answer::NoSuchName => (ResponseCode::NXDomain, Vec::new()),
            Answer::Addresses(ips) => {
                let owner = Name::from(query.name().clone());
                let records = match query.query_type() {
                    RecordType::A | RecordType::ANY => ips
                        .into_iter()
                        .map(|ip| Record::from_rdata(owner.clone(), TTL, RData::A(A(ip))))
                        .collect(),
                    _ => Vec::new(),
                };
                header.set_authoritative(true);
                (ResponseCode::NoError, records)
            }
        };
        header.set_response_code(code);
        let message = builder.build(header, records.iter(), [], [], []);
        send(&mut response, message, header).await
    }
}

async fn send<'a, R: ResponseHandler>(
    response: &mut R,
    message: hickory_server::authority::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    header: Header,
) -> ResponseInfo {
    match response.send_response(message).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!(error = %e, "cannot send a DNS answer");
            let mut h = header;
            h.set_response_code(ResponseCode::ServFail);
            h.into()
        }
    }
}

/// Binds UDP and TCP on `addr` (port 0: one free port for both is looked for) and returns the
/// address bound and a future that serves `table` until `shutdown` completes.
pub async fn bind(
    addr: SocketAddr,
    table: DnsTable,
    upstream: Option<SocketAddr>,
) -> Result<(SocketAddr, Server), Error> {
    let bind_err = |addr, source| Error::Bind { addr, source };
    let (udp, tcp) = loop {
        let udp = tokio::net::UdpSocket::bind(addr)
            .await
            .map_err(|e| bind_err(addr, e))?;
        let local = udp.local_addr().map_err(|e| bind_err(addr, e))?;
        match tokio::net::TcpListener::bind(local).await {
            Ok(tcp) => break (udp, tcp),
            // Port 0 gave a UDP port whose TCP twin is taken: try another.
            Err(_) if addr.port() == 0 => continue,
            Err(e) => return Err(bind_err(addr, e)),
        }
    };
    let local = udp.local_addr().map_err(|e| bind_err(addr, e))?;
    let mut server = ServerFuture::new(Handler { table, upstream });
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5));
    Ok((local, Server(server)))
}

/// A bound DNS server; [`Server::serve`] runs it.
pub struct Server(ServerFuture<Handler>);

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Server")
    }
}

impl Server {
    /// Serves until `shutdown` completes, then stops.
    pub async fn serve(mut self, shutdown: impl std::future::Future<Output = ()>) -> Result<(), Error> {
        tokio::select! {
            () = shutdown => self.0.shutdown_gracefully().await.map_err(Error::Serve),
            r = self.0.block_until_done() => r.map_err(Error::Serve),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> DnsTable {
        let t = DnsTable::default();
        t.replace([
            (
                "default".into(),
                "myservice".into(),
                vec![Ipv4Addr::new(10, 96, 0, 5)],
            ),
            (
                "db".into(),
                "headless".into(),
                vec![Ipv4Addr::new(10, 88, 0, 2), Ipv4Addr::new(10, 88, 0, 3)],
            ),
            ("db".into(), "empty".into(), vec![]),
            (
                "db".into(),
                "web-0.headless".into(),
                vec![Ipv4Addr::new(10, 88, 0, 2)],
            ),
        ]);
        t
    }

    #[test]
    fn a_headless_services_named_endpoints_resolve() {
        let t = table();
        assert_eq!(
            resolve(&t, "web-0.headless.db.svc.cluster.local."),
            Answer::Addresses(vec![Ipv4Addr::new(10, 88, 0, 2)])
        );
        assert_eq!(
            resolve(&t, "web-1.headless.db.svc.cluster.local."),
            Answer::NoSuchName
        );
        assert_eq!(
            resolve(&t, "web-0.myservice.default.svc.cluster.local."),
            Answer::NoSuchName
        );
    }

    #[test]
    fn cluster_names_resolve_from_the_table() {
        let t = table();
        assert_eq!(
            resolve(&t, "myservice.default.svc.cluster.local."),
            Answer::Addresses(vec![Ipv4Addr::new(10, 96, 0, 5)])
        );
        assert_eq!(
            resolve(&t, "MyService.Default.SVC.cluster.local"),
            resolve(&t, "myservice.default.svc.cluster.local")
        );
        assert!(
            matches!(resolve(&t, "headless.db.svc.cluster.local."), Answer::Addresses(v) if v.len() == 2)
        );
        assert_eq!(
            resolve(&t, "empty.db.svc.cluster.local."),
            Answer::Addresses(vec![])
        );
        assert_eq!(resolve(&t, "nope.default.svc.cluster.local."), Answer::NoSuchName);
        assert_eq!(
            resolve(&t, "myservice.default.cluster.local."),
            Answer::NoSuchName
        );
        assert_eq!(resolve(&t, "myservice.cluster.local."), Answer::NoSuchName);
        assert_eq!(resolve(&t, "svc.cluster.local."), Answer::Addresses(vec![]));
        assert_eq!(resolve(&t, "example.com."), Answer::Outside);
        assert_eq!(resolve(&t, "notcluster.local."), Answer::Outside);
    }

    #[test]
    fn the_upstream_is_the_first_other_nameserver() {
        let conf = "# x\nnameserver 10.88.0.1\nnameserver 192.0.2.53\nsearch a\n";
        assert_eq!(
            upstream_from_resolv_conf(conf, "10.88.0.1".parse().unwrap()),
            Some("192.0.2.53:53".parse().unwrap())
        );
        assert_eq!(
            upstream_from_resolv_conf("search a\n", "10.88.0.1".parse().unwrap()),
            None
        );
    }

    /// A real query over UDP and TCP against the server.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_server_answers_over_udp_and_tcp() {
        let (addr, server) = bind("127.0.0.1:0".parse().unwrap(), table(), None).await.unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        let ask = |name: &str| {
            let mut m = Message::new();
            m.set_id(7)
                .set_recursion_desired(true)
                .add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
            m.to_vec().unwrap()
        };
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        udp.send_to(&ask("myservice.default.svc.cluster.local."), addr)
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(10), udp.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let reply = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(reply.response_code(), ResponseCode::NoError);
        assert_eq!(reply.answers().len(), 1);
        assert_eq!(
            reply.answers()[0].data(),
            &RData::A(A(Ipv4Addr::new(10, 96, 0, 5)))
        );
        udp.send_to(&ask("gone.default.svc.cluster.local."), addr)
            .await
            .unwrap();
        let n = tokio::time::timeout(Duration::from_secs(10), udp.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            Message::from_vec(&buf[..n]).unwrap().response_code(),
            ResponseCode::NXDomain
        );
        // No upstream: outside names fail rather than hang.
        udp.send_to(&ask("example.com."), addr).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(10), udp.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            Message::from_vec(&buf[..n]).unwrap().response_code(),
            ResponseCode::ServFail
        );
        // TCP: two-byte length prefix.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let q = ask("headless.db.svc.cluster.local.");
        let len = u16::try_from(q.len()).unwrap().to_be_bytes();
        tcp.write_all(&[&len[..], &q].concat()).await.unwrap();
        let mut len = [0u8; 2];
        tcp.read_exact(&mut len).await.unwrap();
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
        tcp.read_exact(&mut body).await.unwrap();
        assert_eq!(Message::from_vec(&body).unwrap().answers().len(), 2);
        stop_server(stop, task).await;
    }

    /// Stops a server started by a test and waits for it to end cleanly.
    async fn stop_server(
        stop: tokio::sync::oneshot::Sender<()>,
        task: tokio::task::JoinHandle<Result<(), Error>>,
    ) {
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    /// The upstream's answer to `question`: `192.0.2.7`, or nothing with TC set.
    fn upstream_reply(question: &Message, truncated: bool) -> Message {
        let asked = question.queries()[0].name().clone();
        let mut reply = Message::new();
        reply
            .set_id(question.id())
            .set_message_type(MessageType::Response)
            .set_response_code(ResponseCode::NoError)
            .set_truncated(truncated)
            .add_query(question.queries()[0].clone());
        if !truncated {
            reply.add_answer(Record::from_rdata(
                asked,
                60,
                RData::A(A(Ipv4Addr::new(192, 0, 2, 7))),
            ));
        }
        reply
    }

    /// Serves the table with `upstream` as the resolver, asks it `example.com` over UDP as a
    /// pod would, and returns the answer's code and addresses.
    async fn ask_example_com(upstream: SocketAddr) -> (ResponseCode, Vec<RData>) {
        let (addr, server) = bind("127.0.0.1:0".parse().unwrap(), table(), Some(upstream))
            .await
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        let mut m = Message::new();
        m.set_id(9).set_recursion_desired(true).add_query(Query::query(
            Name::from_ascii("example.com.").unwrap(),
            RecordType::A,
        ));
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        udp.send_to(&m.to_vec().unwrap(), addr).await.unwrap();
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(10), udp.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let reply = Message::from_vec(&buf[..n]).unwrap();
        stop_server(stop, task).await;
        let answers = reply.answers().iter().map(|a| a.data().clone()).collect();
        (reply.response_code(), answers)
    }

    /// A name outside the cluster domain is forwarded to the upstream resolver (a stand-in on
    /// loopback here, as the host's resolver would be) and its answer comes back to the pod.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn outside_names_are_forwarded_to_the_upstream_resolver() {
        let upstream = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let upstream_addr = upstream.local_addr().unwrap();
        let resolver = tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let (n, from) = upstream.recv_from(&mut buf).await.unwrap();
            let question = Message::from_vec(&buf[..n]).unwrap();
            let reply = upstream_reply(&question, false);
            upstream.send_to(&reply.to_vec().unwrap(), from).await.unwrap();
            question.queries()[0].name().clone()
        });
        let (code, answers) = ask_example_com(upstream_addr).await;
        assert_eq!(code, ResponseCode::NoError);
        assert_eq!(answers, [RData::A(A(Ipv4Addr::new(192, 0, 2, 7)))]);
        let asked = tokio::time::timeout(Duration::from_secs(10), resolver)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(asked.to_ascii(), "example.com.");
    }

    /// A truncated UDP answer is asked again over TCP, and the full answer reaches the pod
    /// (without the retry the pod got an empty answer).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_truncated_answer_is_asked_again_over_tcp() {
        // The stand-in resolver answers UDP truncated and TCP in full, on one port.
        let (tcp, udp) = loop {
            let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = tcp.local_addr().unwrap();
            if let Ok(udp) = tokio::net::UdpSocket::bind(port).await {
                break (tcp, udp);
            }
        };
        let upstream_addr = tcp.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let (n, from) = udp.recv_from(&mut buf).await.unwrap();
            let question = Message::from_vec(&buf[..n]).unwrap();
            let reply = upstream_reply(&question, true);
            udp.send_to(&reply.to_vec().unwrap(), from).await.unwrap();
        });
        let over_tcp = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut stream, _) = tcp.accept().await.unwrap();
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).await.unwrap();
            let mut question = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream.read_exact(&mut question).await.unwrap();
            let reply = upstream_reply(&Message::from_vec(&question).unwrap(), false)
                .to_vec()
                .unwrap();
            let len = u16::try_from(reply.len()).unwrap().to_be_bytes();
            stream.write_all(&[&len[..], &reply].concat()).await.unwrap();
        });
        let (code, answers) = ask_example_com(upstream_addr).await;
        assert_eq!(code, ResponseCode::NoError);
        assert_eq!(answers, [RData::A(A(Ipv4Addr::new(192, 0, 2, 7)))]);
        tokio::time::timeout(Duration::from_secs(10), over_tcp)
            .await
            .unwrap()
            .unwrap();
    }
}
