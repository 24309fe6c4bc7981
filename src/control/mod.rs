//! The key service's Unix-socket control interface: the framed JSON protocol
//! ([`protocol`]), the server that identifies callers by SO_PEERCRED and dispatches to a
//! [`Handler`] ([`server`]), and the client the CLI uses ([`client`]).
//!
//! Never takes a caller's identity from the request: only from the kernel.

pub mod client;
mod local;
pub mod protocol;
pub mod server;

pub use client::{Backend, SocketClient};
pub use local::LocalBackend;
pub use server::{Handler, RunningServer, Server, ShutdownHandle};

use std::ffi::OsStr;
use std::path::PathBuf;

/// Where the system key service (run by root) listens.
pub const SYSTEM_SOCKET: &str = "/run/kmsfs/kms.sock";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    #[error("control socket {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("control socket {}: a key service is already listening there", .0.display())]
    AlreadyServing(PathBuf),
    #[error("control socket {}: the path exists and is not a socket; refusing to replace it", .0.display())]
    NotASocket(PathBuf),
    #[error("control protocol: {0}")]
    Protocol(String),
}

/// The sockets a client run by `uid` tries, in order: its own runtime socket, then the
/// system one. Root's only socket is the system one.
pub fn default_socket_paths(uid: u32) -> Vec<PathBuf> {
    socket_paths_for(uid, std::env::var_os("XDG_RUNTIME_DIR").as_deref())
}

/// Where `kmsfs serve` / `kmsfs mount` run by `uid` listen.
pub fn default_listen_path(uid: u32) -> PathBuf {
    listen_path_for(uid, std::env::var_os("XDG_RUNTIME_DIR").as_deref())
}

fn user_runtime_socket(uid: u32, xdg_runtime_dir: Option<&OsStr>) -> PathBuf {
    match xdg_runtime_dir.filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("kmsfs").join("kms.sock"),
        // The conventional runtime directory when the session did not export it.
        None => PathBuf::from(format!("/run/user/{uid}/kmsfs/kms.sock")),
    }
}

fn socket_paths_for(uid: u32, xdg_runtime_dir: Option<&OsStr>) -> Vec<PathBuf> {
    if uid == 0 {
        return vec![PathBuf::from(SYSTEM_SOCKET)];
    }
    vec![
        user_runtime_socket(uid, xdg_runtime_dir),
        PathBuf::from(SYSTEM_SOCKET),
    ]
}

fn listen_path_for(uid: u32, xdg_runtime_dir: Option<&OsStr>) -> PathBuf {
    if uid == 0 {
        PathBuf::from(SYSTEM_SOCKET)
    } else {
        user_runtime_socket(uid, xdg_runtime_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_paths_follow_docs_protocol() {
        let xdg = Some(OsStr::new("/run/user/1001"));
        let cases: &[(u32, Option<&OsStr>, &[&str], &str)] = &[
            (0, xdg, &["/run/kmsfs/kms.sock"], "/run/kmsfs/kms.sock"),
            (
                1001,
                xdg,
                &["/run/user/1001/kmsfs/kms.sock", "/run/kmsfs/kms.sock"],
                "/run/user/1001/kmsfs/kms.sock",
            ),
            (
                1002,
                None,
                &["/run/user/1002/kmsfs/kms.sock", "/run/kmsfs/kms.sock"],
                "/run/user/1002/kmsfs/kms.sock",
            ),
            (
                1003,
                Some(OsStr::new("")),
                &["/run/user/1003/kmsfs/kms.sock", "/run/kmsfs/kms.sock"],
                "/run/user/1003/kmsfs/kms.sock",
            ),
        ];
        for (uid, xdg, want, listen) in cases {
            let got = socket_paths_for(*uid, *xdg);
            let want: Vec<PathBuf> = want.iter().map(PathBuf::from).collect();
            assert_eq!(got, want, "uid {uid}");
            assert_eq!(
                listen_path_for(*uid, *xdg),
                PathBuf::from(listen),
                "uid {uid}"
            );
        }
    }
}
