//! Upgrade negotiation for exec, attach and port-forward: which transport the client asks for and
//! which subprotocol to answer with (always one the client offered, chosen in the client's order,
//! as Kubernetes does).

use http::HeaderMap;

/// Remote-command protocol versions (exec and attach).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RcVersion {
    /// `channel.k8s.io` (or no protocol at all): errors travel as plain text.
    V1,
    V2,
    V3,
    /// Errors travel as a JSON `Status`.
    V4,
    /// v4 plus the WebSocket stdin close signal (`ff 00`).
    V5,
}

impl RcVersion {
    /// The error channel carries a JSON `Status` (including on success).
    pub fn json_status(self) -> bool {
        self >= RcVersion::V4
    }
}

/// WebSocket channel framing: binary with a channel byte, or text with an ASCII channel digit and
/// base64 payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Binary,
    Base64,
}

/// What the client asked for and what we will answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Negotiated {
    /// Remote command over WebSocket channels.
    WsRemoteCommand { protocol: String, version: RcVersion, framing: Framing },
    /// Port-forward over WebSocket channels (ports from the query).
    WsPortForward { protocol: String, framing: Framing },
    /// Port-forward as SPDY carried inside WebSocket binary messages.
    WsTunnelledSpdy { protocol: String },
    /// Remote command over SPDY/3.1.
    SpdyRemoteCommand { protocol: String, version: RcVersion },
    /// Port-forward over SPDY/3.1.
    SpdyPortForward { protocol: String },
}

impl Negotiated {
    /// The subprotocol answered (empty when the client offered none).
    pub fn protocol(&self) -> &str {
        match self {
            Negotiated::WsRemoteCommand { protocol, .. }
            | Negotiated::WsPortForward { protocol, .. }
            | Negotiated::WsTunnelledSpdy { protocol }
            | Negotiated::SpdyRemoteCommand { protocol, .. }
            | Negotiated::SpdyPortForward { protocol } => protocol,
        }
    }
}

/// Why an upgrade request cannot be served; each maps to a Kubernetes-style answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    #[error("Upgrade request required")]
    NotUpgrade,
    #[error("websocket upgrade requires Sec-WebSocket-Key and Sec-WebSocket-Version: 13")]
    BadWebSocket,
    #[error("requested protocol(s) are not supported: {offered:?}; supports {supported:?}")]
    WsProtocol { offered: Vec<String>, supported: Vec<&'static str> },
    #[error(
        "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {supported:?}"
    )]
    SpdyProtocol { offered: Vec<String>, supported: Vec<&'static str> },
}

pub const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
pub const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";

const WS_REMOTE_COMMAND: &[(&str, RcVersion, Framing)] = &[
    ("v5.channel.k8s.io", RcVersion::V5, Framing::Binary),
    ("v4.channel.k8s.io", RcVersion::V4, Framing::Binary),
    ("v4.base64.channel.k8s.io", RcVersion::V4, Framing::Base64),
    ("channel.k8s.io", RcVersion::V1, Framing::Binary),
    ("base64.channel.k8s.io", RcVersion::V1, Framing::Base64),
];

const WS_PORT_FORWARD: &[(&str, Framing)] =
    &[("v4.channel.k8s.io", Framing::Binary), ("v4.base64.channel.k8s.io", Framing::Base64)];

const SPDY_REMOTE_COMMAND: &[(&str, RcVersion)] = &[
    ("v5.channel.k8s.io", RcVersion::V5),
    ("v4.channel.k8s.io", RcVersion::V4),
    ("v3.channel.k8s.io", RcVersion::V3),
    ("v2.channel.k8s.io", RcVersion::V2),
    ("channel.k8s.io", RcVersion::V1),
];

/// All values of a (possibly repeated, possibly comma-separated) header, trimmed, in order.
pub fn header_list(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

fn has_token(headers: &HeaderMap, name: &str, token: &str) -> bool {
    header_list(headers, name).iter().any(|v| v.eq_ignore_ascii_case(token))
}

/// Picks the transport and subprotocol for an exec/attach (`port_forward == false`) or
/// port-forward request.
pub fn negotiate(headers: &HeaderMap, port_forward: bool) -> Result<Negotiated, NegotiationError> {
    let upgrade = header_list(headers, "upgrade");
    let is_ws = upgrade.iter().any(|u| u.eq_ignore_ascii_case("websocket"));
    let is_spdy = upgrade.iter().any(|u| u.to_ascii_uppercase().starts_with("SPDY/3.1"));
    if !has_token(headers, "connection", "upgrade") || !(is_ws || is_spdy) {
        return Err(NegotiationError::NotUpgrade);
    }
    if is_ws {
        let key_ok = headers.get("sec-websocket-key").is_some_and(|k| !k.is_empty());
        let version_ok = header_list(headers, "sec-websocket-version").iter().any(|v| v == "13");
        if !key_ok || !version_ok {
            return Err(NegotiationError::BadWebSocket);
        }
        let offered = header_list(headers, "sec-websocket-protocol");
        return negotiate_ws(&offered, port_forward);
    }
    let offered = header_list(headers, "x-stream-protocol-version");
    negotiate_spdy(&offered, port_forward)
}

fn negotiate_ws(offered: &[String], port_forward: bool) -> Result<Negotiated, NegotiationError> {
    // No subprotocol at all selects raw binary channels, as the Kubernetes servers allow.
    if offered.is_empty() {
        return Ok(if port_forward {
            Negotiated::WsPortForward { protocol: String::new(), framing: Framing::Binary }
        } else {
            Negotiated::WsRemoteCommand {
                protocol: String::new(),
                version: RcVersion::V1,
                framing: Framing::Binary,
            }
        });
    }
    for p in offered {
        if port_forward {
            if p == TUNNEL_PROTOCOL {
                return Ok(Negotiated::WsTunnelledSpdy { protocol: p.clone() });
            }
            if let Some((_, framing)) = WS_PORT_FORWARD.iter().find(|(name, _)| name == p) {
                return Ok(Negotiated::WsPortForward { protocol: p.clone(), framing: *framing });
            }
        } else if let Some((_, version, framing)) = WS_REMOTE_COMMAND.iter().find(|(name, ..)| name == p) {
            return Ok(Negotiated::WsRemoteCommand {
                protocol: p.clone(),
                version: *version,
                framing: *framing,
            });
        }
    }
    let supported = if port_forward {
        std::iter::once(TUNNEL_PROTOCOL).chain(WS_PORT_FORWARD.iter().map(|(n, _)| *n)).collect()
    } else {
        WS_REMOTE_COMMAND.iter().map(|(n, ..)| *n).collect()
    };
    Err(NegotiationError::WsProtocol { offered: offered.to_vec(), supported })
}

fn negotiate_spdy(offered: &[String], port_forward: bool) -> Result<Negotiated, NegotiationError> {
    if port_forward {
        if offered.is_empty() || offered.iter().any(|p| p == PORT_FORWARD_PROTOCOL) {
            return Ok(Negotiated::SpdyPortForward { protocol: PORT_FORWARD_PROTOCOL.to_string() });
        }
        return Err(NegotiationError::SpdyProtocol {
            offered: offered.to_vec(),
            supported: vec![PORT_FORWARD_PROTOCOL],
        });
    }
    // Clients from before protocol negotiation send no version and speak v1.
    if offered.is_empty() {
        return Ok(Negotiated::SpdyRemoteCommand { protocol: String::new(), version: RcVersion::V1 });
    }
    for p in offered {
        if let Some((_, version)) = SPDY_REMOTE_COMMAND.iter().find(|(name, _)| name == p) {
            return Ok(Negotiated::SpdyRemoteCommand { protocol: p.clone(), version: *version });
        }
    }
    Err(NegotiationError::SpdyProtocol {
        offered: offered.to_vec(),
        supported: SPDY_REMOTE_COMMAND.iter().map(|(n, _)| *n).collect(),
    })
}

/// The protocol names a SPDY server accepts, for the `X-Accepted-Stream-Protocol-Versions` header.
pub fn spdy_supported(port_forward: bool) -> Vec<&'static str> {
    if port_forward {
        vec![PORT_FORWARD_PROTOCOL]
    } else {
        SPDY_REMOTE_COMMAND.iter().map(|(n, _)| *n).collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use http::HeaderValue;

    fn ws(protocols: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("Upgrade"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("sec-websocket-key", HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="));
        h.insert("sec-websocket-version", HeaderValue::from_static("13"));
        for p in protocols {
            h.append("sec-websocket-protocol", HeaderValue::from_str(p).unwrap());
        }
        h
    }

    fn spdy(protocols: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("Upgrade"));
        h.insert("upgrade", HeaderValue::from_static("SPDY/3.1"));
        for p in protocols {
            h.append("x-stream-protocol-version", HeaderValue::from_str(p).unwrap());
        }
        h
    }

    #[test]
    fn kubectl_websocket_exec_gets_v5() {
        let n = negotiate(&ws(&["v5.channel.k8s.io"]), false).unwrap();
        assert_eq!(
            n,
            Negotiated::WsRemoteCommand {
                protocol: "v5.channel.k8s.io".into(),
                version: RcVersion::V5,
                framing: Framing::Binary
            }
        );
    }

    #[test]
    fn python_offer_list_is_taken_in_client_order() {
        let n = negotiate(&ws(&["v5.channel.k8s.io,v4.channel.k8s.io"]), false).unwrap();
        assert!(matches!(n, Negotiated::WsRemoteCommand { version: RcVersion::V5, .. }));
        let n = negotiate(&ws(&["bogus", "v4.base64.channel.k8s.io"]), false).unwrap();
        assert!(matches!(
            n,
            Negotiated::WsRemoteCommand { version: RcVersion::V4, framing: Framing::Base64, .. }
        ));
    }

    #[test]
    fn unknown_websocket_protocols_are_refused() {
        let err = negotiate(&ws(&["v9.channel.k8s.io"]), false).unwrap_err();
        assert!(matches!(err, NegotiationError::WsProtocol { .. }));
        // A remote-command protocol is not a port-forward protocol.
        let err = negotiate(&ws(&["v5.channel.k8s.io"]), true).unwrap_err();
        assert!(matches!(err, NegotiationError::WsProtocol { .. }));
    }

    #[test]
    fn no_websocket_protocol_means_raw_channels() {
        let n = negotiate(&ws(&[]), false).unwrap();
        assert!(
            matches!(n, Negotiated::WsRemoteCommand { ref protocol, version: RcVersion::V1, .. } if protocol.is_empty())
        );
    }

    #[test]
    fn port_forward_over_websocket() {
        let n = negotiate(&ws(&["SPDY/3.1+portforward.k8s.io"]), true).unwrap();
        assert_eq!(n, Negotiated::WsTunnelledSpdy { protocol: TUNNEL_PROTOCOL.into() });
        let n = negotiate(&ws(&["v4.channel.k8s.io"]), true).unwrap();
        assert!(matches!(n, Negotiated::WsPortForward { framing: Framing::Binary, .. }));
    }

    #[test]
    fn spdy_exec_picks_the_first_supported_version() {
        let n = negotiate(&spdy(&["v5.channel.k8s.io", "v4.channel.k8s.io"]), false).unwrap();
        assert!(matches!(n, Negotiated::SpdyRemoteCommand { version: RcVersion::V5, .. }));
        let n = negotiate(&spdy(&["v4.channel.k8s.io", "v3.channel.k8s.io"]), false).unwrap();
        assert!(matches!(n, Negotiated::SpdyRemoteCommand { version: RcVersion::V4, .. }));
        let err = negotiate(&spdy(&["v9.channel.k8s.io"]), false).unwrap_err();
        assert!(matches!(err, NegotiationError::SpdyProtocol { .. }));
    }

    #[test]
    fn spdy_port_forward() {
        let n = negotiate(&spdy(&["portforward.k8s.io"]), true).unwrap();
        assert!(matches!(n, Negotiated::SpdyPortForward { .. }));
        assert!(negotiate(&spdy(&["v4.channel.k8s.io"]), true).is_err());
    }

    #[test]
    fn plain_requests_and_broken_websockets_are_refused() {
        assert_eq!(negotiate(&HeaderMap::new(), false), Err(NegotiationError::NotUpgrade));
        let mut h = ws(&["v5.channel.k8s.io"]);
        h.remove("sec-websocket-key");
        assert_eq!(negotiate(&h, false), Err(NegotiationError::BadWebSocket));
    }
}
