//! Helpers for the tests that run agents on loopback: a guard that kills spawned agents and a
//! free local address to listen on.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::Child;

/// Spawned agents, killed on drop.
pub struct Agents(pub Vec<Child>);

impl Drop for Agents {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `127.0.0.1:PORT` with a port that was free a moment ago.
pub fn free_addr() -> String {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("127.0.0.1:{port}")
}
