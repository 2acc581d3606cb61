//! Sealing and opening upstream credentials, and proof that no secret leaks through output or errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kubegate_seal::{
    CredentialError, FleetPublicKey, FleetSecretKey, KeyError, MAX_SEALED_LEN, SealError, SealedCredential,
    SecretString, UpstreamCredential, generate_fleet_key, open, seal,
};

const TOKEN: &str = "kubegate-upstream-token-1f3a9c7e5b";

struct ClientCert {
    cert_pem: String,
    key_pem: String,
}

fn client_cert() -> ClientCert {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["kubegate".into()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    ClientCert { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
}

/// The base64 body lines of a PEM block: the secret bytes of a key as they appear in text.
fn pem_body_lines(pem: &str) -> Vec<&str> {
    pem.lines().filter(|l| !l.starts_with("-----") && l.len() > 8).collect()
}

/// Every way the error and its sources print.
fn error_text(error: &dyn std::error::Error) -> String {
    let mut text = format!("{error} {error:?}");
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(&format!(" {inner} {inner:?}"));
        source = inner.source();
    }
    text
}

#[test]
fn token_round_trip() {
    let (public, secret) = generate_fleet_key();
    let credential = UpstreamCredential::token(TOKEN).unwrap();
    let sealed = seal(&public, &credential).unwrap();
    assert!(sealed.as_str().starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    let opened = open(&secret, &sealed).unwrap();
    assert_eq!(opened, credential);
    match opened {
        UpstreamCredential::Token { token, .. } => assert_eq!(token.expose_secret(), TOKEN),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn client_certificate_round_trip() {
    let (public, secret) = generate_fleet_key();
    let pair = client_cert();
    let credential =
        UpstreamCredential::client_certificate(pair.cert_pem.clone(), pair.key_pem.clone()).unwrap();
    let sealed = seal(&public, &credential).unwrap();
    match open(&secret, &sealed).unwrap() {
        UpstreamCredential::ClientCertificate { cert_pem, key_pem, .. } => {
            assert_eq!(cert_pem, pair.cert_pem);
            assert_eq!(key_pem.expose_secret(), pair.key_pem);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn ed25519_keys_are_accepted() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["kubegate".into()]).unwrap().self_signed(&key).unwrap();
    UpstreamCredential::client_certificate(cert.pem(), key.serialize_pem()).unwrap();
}

#[test]
fn sealing_twice_gives_different_files() {
    let (public, secret) = generate_fleet_key();
    let credential = UpstreamCredential::token(TOKEN).unwrap();
    let first = seal(&public, &credential).unwrap();
    let second = seal(&public, &credential).unwrap();
    assert_ne!(first, second);
    assert_eq!(open(&secret, &first).unwrap(), open(&secret, &second).unwrap());
}

#[test]
fn wrong_key_is_a_typed_error() {
    let (public, _) = generate_fleet_key();
    let (_, other_secret) = generate_fleet_key();
    let sealed = seal(&public, &UpstreamCredential::token(TOKEN).unwrap()).unwrap();
    assert!(matches!(open(&other_secret, &sealed), Err(SealError::WrongKey)));
}

#[test]
fn the_sealed_text_holds_no_secret() {
    let (public, _) = generate_fleet_key();
    let pair = client_cert();
    let token_sealed = seal(&public, &UpstreamCredential::token(TOKEN).unwrap()).unwrap();
    let cert_sealed = seal(
        &public,
        &UpstreamCredential::client_certificate(pair.cert_pem.clone(), pair.key_pem.clone()).unwrap(),
    )
    .unwrap();
    for sealed in [&token_sealed, &cert_sealed] {
        let text = sealed.as_str();
        assert!(!text.contains(TOKEN));
        assert!(!text.contains("PRIVATE KEY"));
        assert!(!text.contains("token"));
        for line in pem_body_lines(&pair.key_pem) {
            assert!(!text.contains(line), "key line {line} is visible");
        }
        let debug = format!("{sealed:?}");
        assert_eq!(debug, format!("SealedCredential {{ len: {} }}", text.len()));
    }
}

#[test]
fn debug_and_display_never_show_secrets() {
    let (_, secret_key) = generate_fleet_key();
    let key_text = secret_key.to_secret_string();
    let pair = client_cert();
    let token = UpstreamCredential::token(TOKEN).unwrap();
    let cert = UpstreamCredential::client_certificate(pair.cert_pem.clone(), pair.key_pem.clone()).unwrap();
    let secret = SecretString::new(TOKEN);

    let printed = [
        format!("{secret:?}"),
        format!("{secret}"),
        format!("{token:?}"),
        format!("{token}"),
        format!("{cert:?}"),
        format!("{cert}"),
        format!("{secret_key:?}"),
        format!("{key_text:?}"),
        format!("{key_text}"),
    ];
    for text in &printed {
        assert!(!text.contains(TOKEN), "{text}");
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        assert!(!text.to_ascii_uppercase().contains(&key_text.expose_secret()[16..]), "{text}");
        for line in pem_body_lines(&pair.key_pem) {
            assert!(!text.contains(line), "{text}");
        }
        assert!(text.contains("[redacted]"), "{text}");
    }
    assert_eq!(format!("{secret:?}"), "[redacted]");
}

#[test]
fn secret_key_text_round_trips() {
    let (public, secret) = generate_fleet_key();
    let text = secret.to_secret_string();
    assert!(text.expose_secret().starts_with("AGE-SECRET-KEY-1"));
    let parsed = FleetSecretKey::parse(&format!("  {}\n", text.expose_secret())).unwrap();
    assert_eq!(parsed.public_key(), public);
    // Lower case is the same bech32 string.
    let lower = FleetSecretKey::parse(&text.expose_secret().to_lowercase()).unwrap();
    assert_eq!(lower.public_key(), public);

    let shown = public.to_string();
    assert!(shown.starts_with("age1"));
    assert_eq!(FleetPublicKey::parse(&format!("{shown}\n")).unwrap(), public);
    assert_eq!(shown.parse::<FleetPublicKey>().unwrap(), public);
    let json = serde_json::to_string(&public).unwrap();
    assert_eq!(json, format!("\"{shown}\""));
    assert_eq!(serde_json::from_str::<FleetPublicKey>(&json).unwrap(), public);
}

#[test]
fn garbage_keys_fail_cleanly_without_echo() {
    let (public, secret) = generate_fleet_key();
    let secret_text = secret.to_secret_string();
    let secret_text = secret_text.expose_secret();
    let public_text = public.to_string();

    // A valid-looking secret key with its last character changed: bad checksum.
    let mut damaged_secret = secret_text.to_owned();
    let last = damaged_secret.pop().unwrap();
    damaged_secret.push(if last == 'Q' { 'P' } else { 'Q' });
    let mut damaged_public = public_text.clone();
    let last = damaged_public.pop().unwrap();
    damaged_public.push(if last == 'q' { 'p' } else { 'q' });

    for garbage in [
        "",
        "   ",
        "age1",
        "not a key",
        "AGE-SECRET-KEY-1",
        "AGE-SECRET-KEY-1XYZ",
        "age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq",
        "\u{0}\u{1}💥",
        damaged_secret.as_str(),
        damaged_public.as_str(),
    ] {
        let as_public = FleetPublicKey::parse(garbage).unwrap_err();
        let as_secret = FleetSecretKey::parse(garbage).unwrap_err();
        for error in [error_text(&as_public), error_text(&as_secret)] {
            // The bare prefixes are words of the messages themselves.
            if garbage.trim().len() > 4 && garbage.trim() != "AGE-SECRET-KEY-1" {
                assert!(!error.contains(garbage.trim()), "{error} echoes {garbage:?}");
            }
        }
    }
    assert!(matches!(FleetPublicKey::parse(secret_text), Err(KeyError::SecretKeyGivenAsPublic)));
    let error = FleetPublicKey::parse(secret_text).unwrap_err();
    assert!(!error_text(&error).contains(&secret_text[16..]));
    assert!(matches!(FleetSecretKey::parse(&public_text), Err(KeyError::PublicKeyGivenAsSecret)));
    assert!(matches!(FleetSecretKey::parse(&damaged_secret), Err(KeyError::InvalidSecretKey { .. })));
    assert!(matches!(FleetPublicKey::parse(&damaged_public), Err(KeyError::InvalidPublicKey { .. })));
}

#[test]
fn invalid_tokens_are_refused() {
    assert!(matches!(UpstreamCredential::token(""), Err(CredentialError::EmptyToken)));
    for bad in ["a b", "tok\n", "\ttok", "tök", "a\u{0}b", "a\u{7f}"] {
        let error = UpstreamCredential::token(bad).unwrap_err();
        assert!(matches!(error, CredentialError::TokenCharacters), "{bad:?}");
        assert!(!error_text(&error).contains(bad));
    }
}

#[test]
fn invalid_client_certificates_are_refused() {
    let pair = client_cert();
    let other = client_cert();

    let mismatch =
        UpstreamCredential::client_certificate(pair.cert_pem.clone(), other.key_pem.clone()).unwrap_err();
    assert!(matches!(mismatch, CredentialError::KeyMismatch), "{mismatch:?}");

    assert!(matches!(
        UpstreamCredential::client_certificate("no pem here", pair.key_pem.clone()),
        Err(CredentialError::NoCertificate)
    ));
    assert!(matches!(
        UpstreamCredential::client_certificate(
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
            pair.key_pem.clone()
        ),
        Err(CredentialError::CertificatePem { .. })
    ));
    assert!(matches!(
        UpstreamCredential::client_certificate(
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            pair.key_pem.clone()
        ),
        Err(CredentialError::Unusable { .. })
    ));

    // A damaged key: the error must not quote any of it.
    let mut damaged_key = pair.key_pem.clone();
    damaged_key.insert_str(damaged_key.find('\n').unwrap() + 1, "!!");
    for key in ["", "no pem here", pair.cert_pem.as_str(), damaged_key.as_str()] {
        let error = UpstreamCredential::client_certificate(pair.cert_pem.clone(), key).unwrap_err();
        assert!(matches!(error, CredentialError::PrivateKeyPem), "{error:?}");
        let text = error_text(&error);
        for line in pem_body_lines(&pair.key_pem) {
            assert!(!text.contains(line), "{text}");
        }
    }
    let garbage_key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    let error = UpstreamCredential::client_certificate(pair.cert_pem.clone(), garbage_key).unwrap_err();
    assert!(matches!(error, CredentialError::Unusable { .. }), "{error:?}");
}

#[test]
fn damaged_or_foreign_sealed_text_is_refused() {
    let (public, secret) = generate_fleet_key();
    let sealed = seal(&public, &UpstreamCredential::token(TOKEN).unwrap()).unwrap();

    assert!(matches!(SealedCredential::from_armored("garbage"), Err(SealError::NotArmored)));
    assert!(matches!(
        SealedCredential::from_armored("x".repeat(MAX_SEALED_LEN + 1)),
        Err(SealError::TooLarge)
    ));

    // Flip one character in the middle of the armored body.
    let text = sealed.as_str();
    let lines: Vec<&str> = text.lines().collect();
    let middle = lines.len() / 2;
    let mut line = lines[middle].to_owned();
    let c = line.remove(10);
    line.insert(10, if c == 'A' { 'B' } else { 'A' });
    let mut damaged_lines = lines.clone();
    damaged_lines[middle] = &line;
    let damaged = SealedCredential::from_armored(damaged_lines.join("\n") + "\n").unwrap();
    assert!(matches!(open(&secret, &damaged), Err(SealError::Corrupt { .. } | SealError::WrongKey)));

    let empty_armor = SealedCredential::from_armored(
        "-----BEGIN AGE ENCRYPTED FILE-----\n-----END AGE ENCRYPTED FILE-----\n",
    )
    .unwrap();
    assert!(matches!(open(&secret, &empty_armor), Err(SealError::Corrupt { .. })));
}

/// What a proxy finds inside must pass the same validation as what the service accepted.
#[test]
fn opened_payloads_are_validated_again() {
    let (public, secret) = generate_fleet_key();
    let recipient: age::x25519::Recipient = public.to_string().parse().unwrap();
    let seal_raw = |json: &str| {
        SealedCredential::from_armored(age::encrypt_and_armor(&recipient, json.as_bytes()).unwrap()).unwrap()
    };

    let empty = seal_raw(r#"{"type":"token","token":""}"#);
    assert!(matches!(open(&secret, &empty), Err(SealError::Credential(CredentialError::EmptyToken))));
    let unknown = seal_raw(r#"{"type":"password","password":"hunter2"}"#);
    let error = open(&secret, &unknown).unwrap_err();
    assert!(matches!(error, SealError::Payload));
    assert!(!error_text(&error).contains("hunter2"));
    let wrong_type = seal_raw(r#"{"type":"token","token":["secret-in-array"]}"#);
    let error = open(&secret, &wrong_type).unwrap_err();
    assert!(matches!(error, SealError::Payload));
    assert!(!error_text(&error).contains("secret-in-array"));

    let pair = client_cert();
    let json = serde_json::json!({
        "type": "clientCertificate",
        "certPem": pair.cert_pem,
        "keyPem": pair.key_pem,
    });
    let opened = open(&secret, &seal_raw(&json.to_string())).unwrap();
    assert!(matches!(opened, UpstreamCredential::ClientCertificate { .. }));
    let token = open(&secret, &seal_raw(r#"{"type":"token","token":"abc"}"#)).unwrap();
    assert_eq!(token, UpstreamCredential::token("abc").unwrap());
}

#[test]
fn sealed_credential_serializes_as_its_text() {
    let (public, secret) = generate_fleet_key();
    let sealed = seal(&public, &UpstreamCredential::token(TOKEN).unwrap()).unwrap();
    let json = serde_json::to_string(&sealed).unwrap();
    let back: SealedCredential = serde_json::from_str(&json).unwrap();
    assert_eq!(back, sealed);
    assert_eq!(SealedCredential::from_armored(sealed.clone().into_string()).unwrap(), sealed);
    assert!(serde_json::from_str::<SealedCredential>("\"nope\"").is_err());
    assert!(open(&secret, &back).is_ok());
}
