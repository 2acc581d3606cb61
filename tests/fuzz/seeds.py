#!/usr/bin/env python3
"""Writes the seed corpora under corpus/<target>/ (committed; run again only to change them).
Token seeds are signed with the fuzz target's fixed key (seed 32 x 0x07, kid "fuzz-1"), which
needs the `cryptography` package; everything else is plain text."""
import base64, hashlib, hmac, json, os, sys

HERE = os.path.dirname(os.path.abspath(__file__))
NOW = 1_767_225_600


def write(target, items):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for old in os.listdir(d):
        os.remove(os.path.join(d, old))
    for i, item in enumerate(items):
        data = item if isinstance(item, bytes) else item.encode()
        name = f"seed-{i:03d}-{hashlib.sha1(data).hexdigest()[:10]}"
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def tokens():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives import serialization
    key = Ed25519PrivateKey.from_private_bytes(bytes([7] * 32))
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def sign(header, payload):
        h = header if isinstance(header, str) else json.dumps(header, separators=(",", ":"))
        p = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
        signing_input = f"{b64(h.encode())}.{b64(p.encode())}"
        return signing_input, key.sign(signing_input.encode())

    claims = {"sub": "7", "name": "alice", "jti": "0193a6f2-tok", "iat": NOW - 10, "exp": NOW + 3600, "scope": "kubeconfig"}
    session = dict(claims, scope="session")
    never = {k: v for k, v in claims.items() if k != "exp"}
    good = {"alg": "EdDSA", "typ": "JWT", "kid": "fuzz-1"}
    out = []
    for header, payload in [(good, claims), (good, session), (good, never), (good, dict(claims, exp=NOW - 1)),
                            (dict(good, jku="https://127.0.0.1:1/jwks"), claims),
                            (dict(good, x5u="https://127.0.0.1:1/x5u"), claims),
                            (dict(good, jwk={"kty": "OKP", "crv": "Ed25519", "x": b64(public)}), claims),
                            (dict(good, kid="../../x"), claims), (dict(good, kid="' OR 1=1 --"), claims),
                            (dict(good, kid="k" * 10240), claims), (dict(good, crit=["exp"]), claims),
                            ('{"alg":"EdDSA","kid":"fuzz-1","alg":"none"}', claims),
                            (good, '{"sub":"7","sub":"1","name":"alice","jti":"j","iat":1,"scope":"kubeconfig","scope":"session"}')]:
        si, sig = sign(header, payload)
        out.append(f"{si}.{b64(sig)}")
    # Non-canonical signature: S + L.
    si, sig = sign(good, claims)
    L = 2**252 + 27742317777372353535851937790883648493
    s = int.from_bytes(sig[32:], "little") + L
    out.append(f"{si}.{b64(sig[:32] + s.to_bytes(32, 'little'))}")
    # alg none in several spellings, HS256 keyed with the public key (raw and base64url).
    for alg in ["none", "noNE", "NONE", "None"]:
        out.append(f"{b64(json.dumps({'alg': alg, 'kid': 'fuzz-1'}).encode())}.{b64(json.dumps(claims).encode())}.")
    for secret in [public, b64(public).encode()]:
        si = f"{b64(json.dumps({'alg': 'HS256', 'kid': 'fuzz-1'}).encode())}.{b64(json.dumps(claims).encode())}"
        out.append(f"{si}.{b64(hmac.new(secret, si.encode(), hashlib.sha256).digest())}")
    # JSON (non-compact) serialization, and shapes that are not tokens at all.
    si, sig = sign(good, claims)
    h, p = si.split(".")
    out.append(json.dumps({"payload": p, "protected": h, "signature": b64(sig)}))
    out += ["", ".", "..", "a.b", "a.b.c.d", "eyJ.eyJ.", " " + si + "." + b64(sig), si + "." + b64(sig) + "="]
    return out


def paths():
    m = {"GET": 0, "HEAD": 1, "POST": 2, "PUT": 3, "PATCH": 4, "DELETE": 5, "OPTIONS": 6}
    items = [
        ("GET", "/api/v1/namespaces/dev/pods?limit=500"), ("GET", "/api/v1/pods?watch=true&resourceVersion=1"),
        ("GET", "/api/v1/watch/namespaces/dev/pods/web"), ("GET", "/api/v1/namespaces/dev/pods?watch=1"),
        ("GET", "/api/v1/namespaces/dev/pods?watch=false"), ("DELETE", "/api/v1/namespaces/dev/pods"),
        ("HEAD", "/api/v1/namespaces/dev/pods/web"), ("POST", "/api/v1/namespaces/dev/pods/web/exec?command=sh&stdin=true"),
        ("GET", "/api/v1/namespaces/dev/pods/web/log?follow=true"), ("GET", "/api/v1/nodes/n1/proxy/metrics"),
        ("GET", "/api/v1/namespaces/dev/services/https:web:443/proxy/x"), ("PATCH", "/api/v1/namespaces/dev/pods/web/ephemeralcontainers"),
        ("GET", "/apis/apps/v1/namespaces/dev/deployments/web/scale"), ("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles"),
        ("GET", "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/clusterroles"), ("GET", "/api/v1/namespaces/dev"),
        ("GET", "/api/v1/namespaces"), ("GET", "/version?timeout=32s"), ("GET", "/openapi/v3/api/v1"), ("GET", "/healthz/etcd"),
        ("GET", "/metrics"), ("GET", "/api"), ("GET", "/apis"), ("GET", "/"), ("GET", ""),
        ("GET", "/api/v1/namespaces/dev/pods/../secrets"), ("GET", "/api/v1/namespaces/dev/pods/%2e%2e/secrets"),
        ("GET", "/api/v1/namespaces/dev%2Fpods"), ("GET", "/api/v1/namespaces/dev/pods/web%252F"),
        ("GET", "/api/v1/namespaces/dev/pods;x=y"), ("GET", "/api/v1/namespaces/dev/pods#frag"), ("GET", "//api/v1/pods"),
        ("POST", "/api/v1/namespaces/dev/pods?dryRun=All&as=admin&impersonate-user=admin"),
        ("GET", "/api/v1/pods?fieldSelector=metadata.name%3Dweb,metadata.namespace%3Ddev"),
        ("GET", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"), ("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews"),
        ("OPTIONS", "/api/v1/pods"), ("GET", "/api/v1/namespaces/%64ev/pods"), ("GET", "/api/v1/namespaces/dev/pods/a%00b"),
    ]
    return [bytes([m[meth]]) + p.encode() for meth, p in items]


def headers():
    def seed(flags, user, team, lines):
        return bytes([flags]) + ("\n".join([user, team] + lines)).encode()
    return [
        seed(1, "alice", "ops", ["accept: application/json", "user-agent: kubectl/v1.33.0"]),
        seed(1, "alice", "ops", ["Impersonate-User: admin", "impersonate-group: system:masters", "IMPERSONATE-EXTRA-scopes: x",
                                 "X-Remote-User: admin", "x-remote-group: system:masters", "Authorization: Bearer stolen",
                                 "authorization: Basic YTpi", "X-Forwarded-For: 1.2.3.4", "Forwarded: for=1.2.3.4"]),
        seed(1, "alice", "ops", ["Connection: Impersonate-User, Impersonate-Group, Authorization", "Impersonate-User: admin"]),
        seed(0, "bob", "Team/50%", ["Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Protocol: v5.channel.k8s.io",
                                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="]),
        seed(1, "Carol.O'Neil", "QA", ["Connection: keep-alive, x-secret", "x-secret: 1", "TE: trailers", "Trailer: x",
                                       "Transfer-Encoding: chunked", "Keep-Alive: 5", "Proxy-Authorization: x", "Host: evil"]),
        seed(1, "dave", "dev", ["Connection: upgrade", "Upgrade: SPDY/3.1", "X-Stream-Protocol-Version: v4.channel.k8s.io"]),
        seed(1, " bad", "", ["x: a\tb"]),
    ]


def kubeconfigs():
    return ["alice\0prod\0staging", "bob\0prod\0prod", "x\0kubegate-prod-2\0prod\0prod", "yaml\0: colon\0- dash\0# hash\0'quote\"\0\\back\0{flow}\0&anchor *alias",
            "unicode\0测试\0emoji 🚀\0\u2028line sep\0tab\there\0new\nline\0true\0null\0~\0123\0 lead", "u\0"]


def events():
    def env(t, stream, pos, payload, actor=None):
        return json.dumps({"id": f"0193a6f2-0000-7000-8000-{pos:012d}", "stream": stream, "sequence": 1, "position": pos,
                           "type": t, "version": 1, "occurred_at": "2026-01-01T00:00:00Z",
                           "actor": actor or {"kind": "system", "service": "identity"}, "correlation_id": "c", "payload": payload})
    return [
        env("UserDisabled", "user-1", 1, {"user_id": 1}),
        env("UserCreated", "user-2", 2, {"user_id": 2, "username": "alice", "role": "user", "password": "sealed"}),
        env("UserTokensRevoked", "user-2", 3, {"user_id": 2, "valid_after": 1767225600}),
        env("AccessPolicySet", "environment-1", 4, {"environment_id": 1, "users": [], "teams": []}),
        env("RequestAudited", "proxy-a", 5, {"request_id": "r", "subject": {"client_address": "127.0.0.1:1"},
                                            "target": {"verb": "get", "path": "/api"}, "decision": "allowed", "status": 200,
                                            "duration_us": 1, "bytes_in": 0, "bytes_out": 0}, {"kind": "anonymous"}),
        env("UserDisabled", "user-1", 6, {"user_id": 1, "extra": 1}),
        env("NoSuchEvent", "user-1", 7, {}),
        '{"id":"x"}', "[]", "null", "", "{", '{"payload":' * 50,
    ]


write("token", tokens())
write("request_path", paths())
write("headers", headers())
write("kubeconfig", kubeconfigs())
write("events", events())
print("seeds written", file=sys.stderr)
