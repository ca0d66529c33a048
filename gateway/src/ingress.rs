//! The ingress: mTLS termination, the peer's identity, the HTTP API and its problem responses.

pub mod accept;
pub mod api;
pub mod body;
pub mod conn;
pub mod guard;
pub mod identity;
pub mod members;
pub mod observe;
pub mod problem;
pub mod risk_admin;
pub mod risk_gate;
pub mod tls;
