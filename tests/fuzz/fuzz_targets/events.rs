//! Event decoding on any bytes (a message on the bus, a spool line, a stored row): a typed
//! error or an envelope, never a panic; what decodes encodes and decodes to the same again.
#![no_main]

use kubegate_events::RawEnvelope;
use kubegate_events::audit::AuditEvent;
use kubegate_events::environments::EnvironmentEvent;
use kubegate_events::identity::IdentityEvent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = RawEnvelope::from_slice(data) else { return };
    let again = RawEnvelope::from_slice(&raw.to_vec()).expect("a decoded envelope re-encodes");
    assert_eq!(again.id, raw.id);
    assert_eq!(again.position, raw.position);
    assert_eq!(again.payload.get(), raw.payload.get());
    if let Ok(e) = raw.decode::<IdentityEvent>() {
        assert_eq!(e.position, raw.position);
    }
    if let Ok(e) = raw.decode::<EnvironmentEvent>() {
        assert_eq!(e.position, raw.position);
    }
    if let Ok(e) = raw.decode::<AuditEvent>() {
        assert_eq!(e.position, raw.position);
    }
});
