//! Challenge-response authentication of the control plane and the token file.
//!
//! The token never travels: the agent sends a fresh random nonce per connection, the
//! coordinator answers with HMAC-SHA256(token, "linkcal-control client" || agent nonce ||
//! client nonce || agent name), and the agent proves it holds the token too with the same MAC
//! over the "linkcal-control agent" label. A captured exchange is useless on another
//! connection (the agent's nonce differs) and is bound to one agent name, so an agent answering
//! for a host it is not fails the handshake.

use std::io::Read;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::InputError;

/// Bytes of every nonce.
pub const NONCE_BYTES: usize = 32;

/// Which side computes a MAC: each side's proof has its own label, so one side's MAC never
/// serves as the other's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The coordinator answering the agent's challenge.
    Client,
    /// The agent proving it holds the token.
    Agent,
}

impl Role {
    fn label(self) -> &'static [u8] {
        match self {
            Role::Client => b"linkcal-control client\0",
            Role::Agent => b"linkcal-control agent\0",
        }
    }
}

/// `n` random bytes from the OS, as lowercase hex.
pub fn random_hex(n: usize) -> std::io::Result<String> {
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(hex(&b))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// HMAC-SHA256(token, label || agent_nonce || 0 || client_nonce || 0 || agent_name), as hex.
/// The zero separators keep two different triples from concatenating to the same bytes.
pub fn mac(token: &str, role: Role, agent_nonce: &str, client_nonce: &str, agent: &str) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(token.as_bytes()).expect("HMAC takes keys of any length");
    for part in [role.label(), agent_nonce.as_bytes(), b"\0", client_nonce.as_bytes(), b"\0", agent.as_bytes()] {
        m.update(part);
    }
    hex(&m.finalize().into_bytes())
}

/// Whether `given` is the expected MAC, compared in time independent of where they differ.
pub fn mac_matches(token: &str, role: Role, agent_nonce: &str, client_nonce: &str, agent: &str, given: &str) -> bool {
    super::token_matches(&mac(token, role, agent_nonce, client_nonce, agent), given)
}

/// Whether a nonce is what [`random_hex`] makes: `NONCE_BYTES` bytes of lowercase hex.
pub fn nonce_ok(n: &str) -> bool {
    n.len() == 2 * NONCE_BYTES && n.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// Reads a token file: the first line, trimmed. Refuses an empty file and a file that group
/// or others may read or write (the token is the rack's only secret), saying the chmod to run.
pub fn read_token(path: &Path) -> Result<String, InputError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| InputError::file(path, format!("cannot read: {e}")))?;
    let mode = meta.permissions().mode() & 0o777;
    if meta.is_file() && mode & 0o077 != 0 {
        return Err(InputError::file(
            path,
            format!(
                "token file has mode {mode:03o}: group or others may read it; run `chmod 600 {}` (and keep it owned by the user running linkcal)",
                path.display()
            ),
        ));
    }
    let text = crate::error::read_input(path)?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        return Err(InputError::file(path, "token file is empty; put the run's shared token on its first line"));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn macs_bind_token_nonces_name_and_role() {
        let (a, c) = (random_hex(NONCE_BYTES).unwrap(), random_hex(NONCE_BYTES).unwrap());
        assert!(nonce_ok(&a) && nonce_ok(&c) && a != c);
        let m = mac("tok", Role::Client, &a, &c, "gpu_p0");
        assert_eq!(m.len(), 64);
        assert!(mac_matches("tok", Role::Client, &a, &c, "gpu_p0", &m));
        // Any change of token, nonce, name or role gives another MAC.
        assert!(!mac_matches("tok2", Role::Client, &a, &c, "gpu_p0", &m));
        assert!(!mac_matches("tok", Role::Client, &c, &a, "gpu_p0", &m));
        assert!(!mac_matches("tok", Role::Client, &a, &c, "gpu_p1", &m));
        assert!(!mac_matches("tok", Role::Agent, &a, &c, "gpu_p0", &m));
        // The separators keep shifted boundaries apart.
        assert_ne!(mac("t", Role::Client, "ab", "c", "x"), mac("t", Role::Client, "a", "bc", "x"));
        assert!(!nonce_ok("xyz") && !nonce_ok(&"A".repeat(64)));
    }

    /// RFC 4231 test case 2: the HMAC-SHA256 underneath is the standard one.
    #[test]
    fn hmac_is_rfc_4231() {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").unwrap();
        m.update(b"what do ya want for nothing?");
        assert_eq!(hex(&m.finalize().into_bytes()), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn token_files_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "secret\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_token(&p).unwrap_err().to_string();
        assert!(e.contains("mode 644") && e.contains(&format!("chmod 600 {}", p.display())), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o620)).unwrap();
        assert!(read_token(&p).is_err());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_token(&p).unwrap(), "secret");
        std::fs::write(&p, "\n").unwrap();
        assert!(read_token(&p).unwrap_err().to_string().contains("empty"));
        assert!(read_token(&dir.path().join("none")).unwrap_err().to_string().contains("cannot read"));
    }
}
