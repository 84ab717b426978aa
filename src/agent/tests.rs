//! Agent tests on loopback: the handshake, its deadline and caps, the limits and the peer list.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::control::auth::{self, Role};
use crate::control::{self, Client, ControlError, Frame, Reply, Request, WindowSpec, MAX_REPLY, MAX_REQUEST};
use crate::transport::{FlowSpec, TransportKind};

const T: Duration = Duration::from_secs(5);
const LOCAL: &str = "127.0.0.1";

/// Starts an agent on an ephemeral loopback port; returns its address.
fn start(cfg: AgentConfig) -> String {
    let listener = bind(&cfg).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || serve(cfg, listener));
    addr
}

fn agent(name: &str, token: &str) -> AgentConfig {
    AgentConfig::new(name, "127.0.0.1:0".parse().unwrap(), token)
}

fn send_req(s: &mut TcpStream, r: &Request) {
    control::send(s, r, MAX_REQUEST).unwrap();
}

fn recv_reply(s: &mut TcpStream) -> Reply {
    let Frame::Body(b) = control::recv_frame(s, MAX_REPLY, Some(T)).unwrap() else { panic!("frame too large") };
    serde_json::from_slice(&b).unwrap()
}

fn flow(id: u64, max_bytes: u64, timeout_s: f64, options: serde_json::Value) -> FlowSpec {
    FlowSpec {
        id,
        transport: TransportKind::HostTcp,
        local_addr: Some(LOCAL.into()),
        max_bytes,
        timeout_s,
        options,
        tcp_congestion: None,
    }
}

#[test]
fn refuses_a_wrong_token_and_serves_the_right_one() {
    let addr = start(agent("a0", "right"));
    let e = Client::connect("a0", &addr, "wrong", T).err().unwrap();
    assert!(matches!(e, ControlError::Remote { .. }) && e.to_string().contains("authentication failed"), "{e}");
    let (mut c, hello) = Client::connect("a0", &addr, "right", T).unwrap();
    let Reply::Hello { agent, limits, .. } = hello else { panic!("{hello:?}") };
    assert_eq!((agent.as_str(), limits), ("a0", control::AgentLimits::default()));
    // Arming a flow that was never connected is an error naming the agent, not a hang.
    let w = WindowSpec { flow_id: 9, bytes: 1, warmup: 0, warmup_bytes: 1, min_count: 1, max_count: 1, duration_s: 0.0 };
    let e = c.call(&Request::Arm { windows: vec![w] }, T).unwrap_err();
    assert!(e.to_string().contains("agent a0") && e.to_string().contains("flow 9"), "{e}");
}

#[test]
fn one_agent_cannot_answer_as_another_host() {
    let addr = start(agent("gpu_p0", "tok"));
    let e = Client::connect("gpu_p1", &addr, "tok", T).err().unwrap().to_string();
    assert!(e.contains("gpu_p0") && e.contains("gpu_p1") && e.contains("control_addr"), "{e}");
    assert!(Client::connect("gpu_p0", &addr, "tok", T).is_ok());
}

/// A fake agent that knows the name but not the token: the coordinator must not trust it.
#[test]
fn the_coordinator_refuses_an_agent_that_cannot_prove_the_token() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let Frame::Body(b) = control::recv_frame(&mut s, MAX_REQUEST, Some(T)).unwrap() else { return };
        let Ok(Request::Hello { agent, client_nonce, .. }) = serde_json::from_slice(&b) else { return };
        let nonce = auth::random_hex(auth::NONCE_BYTES).unwrap();
        let ch = Reply::Challenge { agent: agent.clone(), version: control::PROTOCOL_VERSION, nonce: nonce.clone() };
        control::send(&mut s, &ch, MAX_REPLY).unwrap();
        let _ = control::recv_frame(&mut s, MAX_REQUEST, Some(T));
        let proof = auth::mac("guessed", Role::Agent, &nonce, &client_nonce, &agent);
        let hello =
            Reply::Hello { agent, version: control::PROTOCOL_VERSION, transports: vec![], limits: Default::default(), proof };
        control::send(&mut s, &hello, MAX_REPLY).unwrap();
    });
    let e = Client::connect("gpu_p0", &addr, "tok", T).err().unwrap().to_string();
    assert!(e.contains("could not prove"), "{e}");
}

/// Records what a coordinator sends through a proxy, then replays it on a new connection.
#[test]
fn the_token_never_travels_and_a_captured_handshake_does_not_replay() {
    let token = "s3cret-token-of-the-run";
    let agent_addr = start(agent("a0", token));
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_addr = proxy.local_addr().unwrap().to_string();
    let captured = Arc::new(Mutex::new(Vec::new()));
    let (cap, up_addr) = (captured.clone(), agent_addr.clone());
    std::thread::spawn(move || {
        let (mut down, _) = proxy.accept().unwrap();
        let mut up = TcpStream::connect(&up_addr).unwrap();
        let (mut up2, mut down2) = (up.try_clone().unwrap(), down.try_clone().unwrap());
        std::thread::spawn(move || std::io::copy(&mut up2, &mut down2));
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = down.read(&mut buf) {
            cap.lock().unwrap().extend_from_slice(&buf[..n]);
            if up.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let (c, _) = Client::connect_in_rack("a0", &proxy_addr, token, &[LOCAL.parse().unwrap()], T).unwrap();
    drop(c);
    std::thread::sleep(Duration::from_millis(100));
    let sent = captured.lock().unwrap().clone();
    assert!(!sent.is_empty());
    assert!(!sent.windows(token.len()).any(|w| w == token.as_bytes()), "the token went over the wire");
    // Replay every byte the coordinator sent: the agent's fresh nonce makes the old MAC wrong.
    let mut s = TcpStream::connect(&agent_addr).unwrap();
    s.write_all(&sent).unwrap();
    assert!(matches!(recv_reply(&mut s), Reply::Challenge { .. }));
    match recv_reply(&mut s) {
        Reply::Error { message } => assert!(message.contains("authentication failed"), "{message}"),
        other => panic!("replayed handshake accepted: {other:?}"),
    }
}

#[test]
fn a_slow_client_is_cut_at_the_handshake_deadline() {
    let mut cfg = agent("a0", "tok");
    cfg.handshake_s = 1.0;
    let addr = start(cfg);
    let mut s = TcpStream::connect(&addr).unwrap();
    let t0 = Instant::now();
    // A frame announcing 100 bytes, then one byte every 200 ms: each read sees progress, so a
    // per-read timeout would wait for ever; the deadline does not.
    let mut bytes = 100u32.to_be_bytes().to_vec();
    bytes.extend([b' '; 100]);
    let cut = bytes.iter().any(|b| {
        std::thread::sleep(Duration::from_millis(200));
        s.write_all(&[*b]).is_err()
    });
    let waited = t0.elapsed().as_secs_f64();
    assert!(cut && waited < 3.0, "cut {cut} after {waited:.1} s");
}

#[test]
fn unauthenticated_connections_beyond_the_cap_are_closed_at_once() {
    let mut cfg = agent("a0", "tok");
    cfg.max_pending = 3;
    let addr = start(cfg);
    let idle: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = TcpStream::connect(&addr).unwrap();
    extra.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let t0 = Instant::now();
    let n = extra.read(&mut [0u8; 8]).unwrap_or(0);
    assert!(n == 0 && t0.elapsed() < Duration::from_secs(1), "the fourth connection was kept ({:?})", t0.elapsed());
    drop(idle);
    // Their slots come back as soon as they close.
    let deadline = Instant::now() + Duration::from_secs(3);
    while Client::connect("a0", &addr, "tok", T).is_err() {
        assert!(Instant::now() < deadline, "slots not released");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn out_of_bounds_requests_are_refused_and_the_session_goes_on() {
    let addr = start(agent("a0", "tok"));
    let (mut c, _) = Client::connect_in_rack("a0", &addr, "tok", &[LOCAL.parse().unwrap()], T).unwrap();
    let big = serde_json::json!({"chunk_bytes": 1u64 << 40});
    let cases = [
        (Request::Prepare { flow: flow(1, 1 << 40, 5.0, serde_json::Value::Null) }, "max_bytes 1099511627776"),
        (Request::Prepare { flow: flow(2, 1 << 63, 5.0, serde_json::Value::Null) }, "max_bytes 9223372036854775808"),
        (Request::Prepare { flow: flow(3, 1 << 20, 1e308, serde_json::Value::Null) }, "timeout_s"),
        (
            Request::Connect { flow: flow(4, 1 << 20, 5.0, big), endpoint: serde_json::json!({"addr": "127.0.0.1:9"}) },
            "chunk_bytes",
        ),
    ];
    for (req, want) in cases {
        let e = c.call(&req, T).unwrap_err().to_string();
        assert!(e.contains(want) && e.contains("agent a0"), "{e}");
    }
    // The session's memory budget counts every open flow.
    let l = control::AgentLimits::default();
    let n = l.max_open_bytes / l.max_bytes;
    for id in 0..n {
        assert!(matches!(
            c.call(&Request::Prepare { flow: flow(10 + id, l.max_bytes, 5.0, serde_json::Value::Null) }, T),
            Ok(Reply::Ready { .. })
        ));
    }
    let e = c.call(&Request::Prepare { flow: flow(99, 1, 5.0, serde_json::Value::Null) }, T).unwrap_err().to_string();
    assert!(e.contains("exceeds this session"), "{e}");
    let e = c.call(&Request::Prepare { flow: flow(10, 1, 5.0, serde_json::Value::Null) }, T).unwrap_err().to_string();
    assert!(e.contains("already open"), "{e}");
}

/// Counts connections accepted on a loopback listener.
fn counting_listener() -> (String, Arc<Mutex<u32>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let count = Arc::new(Mutex::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            *c.lock().unwrap() += 1;
            drop(s);
        }
    });
    (addr, count)
}

#[test]
fn connect_reaches_only_the_racks_peers() {
    let addr = start(agent("a0", "tok"));
    let (target, accepted) = counting_listener();
    let endpoint = serde_json::json!({"addr": target});
    // Outside the rack: refused before any packet leaves, and no port-scan oracle.
    let outside: IpAddr = "127.0.0.2".parse().unwrap();
    let (mut c, _) = Client::connect_in_rack("a0", &addr, "tok", &[outside], T).unwrap();
    let e = c.call(&Request::Connect { flow: flow(1, 1 << 20, 5.0, serde_json::Value::Null), endpoint: endpoint.clone() }, T);
    let e = e.unwrap_err().to_string();
    assert!(e.contains("refused") && e.contains("not a data-plane address"), "{e}");
    let e =
        c.call(&Request::Connect { flow: flow(2, 1 << 20, 5.0, serde_json::Value::Null), endpoint: serde_json::json!({}) }, T);
    assert!(e.unwrap_err().to_string().contains("no valid \"addr\""));
    // Without a peer list (a liveness check), nothing may be connected either.
    let (mut bare, _) = Client::connect("a0", &addr, "tok", T).unwrap();
    let e = bare.call(&Request::Connect { flow: flow(3, 1 << 20, 5.0, serde_json::Value::Null), endpoint: endpoint.clone() }, T);
    assert!(e.is_err());
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(*accepted.lock().unwrap(), 0);
    // Inside the rack a flow runs end to end.
    let (mut c, _) = Client::connect_in_rack("a0", &addr, "tok", &[LOCAL.parse().unwrap()], T).unwrap();
    let Reply::Ready { endpoint } = c.call(&Request::Prepare { flow: flow(5, 4096, 5.0, serde_json::Value::Null) }, T).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        c.call(&Request::Connect { flow: flow(5, 4096, 5.0, serde_json::Value::Null), endpoint }, T).unwrap(),
        Reply::Connected
    );
    let w = WindowSpec { flow_id: 5, bytes: 4096, warmup: 1, warmup_bytes: 4096, min_count: 3, max_count: 3, duration_s: 0.0 };
    assert_eq!(c.call(&Request::Arm { windows: vec![w] }, T).unwrap(), Reply::Armed);
    let Reply::Done { results } = c.call(&Request::Go, T).unwrap() else { panic!() };
    assert_eq!((results[0].times_s.len(), results[0].warmup_done), (3, 1));
    assert_eq!(c.call(&Request::Close { flow_id: 5 }, T).unwrap(), Reply::Closed);
}

#[test]
fn windows_out_of_bounds_are_refused_at_arm() {
    let addr = start(agent("a0", "tok"));
    let (mut c, _) = Client::connect_in_rack("a0", &addr, "tok", &[LOCAL.parse().unwrap()], T).unwrap();
    let Reply::Ready { endpoint } = c.call(&Request::Prepare { flow: flow(1, 4096, 5.0, serde_json::Value::Null) }, T).unwrap()
    else {
        panic!()
    };
    c.call(&Request::Connect { flow: flow(1, 4096, 5.0, serde_json::Value::Null), endpoint }, T).unwrap();
    let w = WindowSpec { flow_id: 1, bytes: 1 << 62, warmup: 0, warmup_bytes: 0, min_count: 1, max_count: 1, duration_s: 1e308 };
    let e = c.call(&Request::Arm { windows: vec![w] }, T).unwrap_err().to_string();
    assert!(e.contains("flow 1") && e.contains("arm"), "{e}");
    let w = WindowSpec { flow_id: 1, bytes: 64, warmup: 0, warmup_bytes: 0, min_count: 1, max_count: u32::MAX, duration_s: 0.0 };
    assert!(c.call(&Request::Arm { windows: vec![w] }, T).is_err());
    assert_eq!(c.call(&Request::Close { flow_id: 1 }, T).unwrap(), Reply::Closed);
}

#[test]
fn a_coordinator_of_another_version_is_told_so() {
    let addr = start(agent("a0", "tok"));
    let mut s = TcpStream::connect(&addr).unwrap();
    // Protocol 1's hello carried the token itself.
    let old = serde_json::json!({"type": "hello", "version": 1, "token": "tok"});
    control::send(&mut s, &old, MAX_REQUEST).unwrap();
    match recv_reply(&mut s) {
        Reply::Error { message } => assert!(message.contains("protocol 2, the coordinator 1"), "{message}"),
        other => panic!("{other:?}"),
    }
    let mut s = TcpStream::connect(&addr).unwrap();
    send_req(&mut s, &Request::Go);
    assert!(matches!(recv_reply(&mut s), Reply::Error { message } if message.contains("must be hello")));
}
