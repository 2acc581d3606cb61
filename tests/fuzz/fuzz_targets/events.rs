//! Event decoding on any bytes (a message on the bus, packed or not, a spool line, a stored row):
//! a typed error or envelopes, never a panic; what decodes encodes and decodes to the same again,
//! alone and packed.
#![no_main]

use kubegate_events::RawEnvelope;
use kubegate_events::audit::AuditEvent;
use kubegate_events::environments::EnvironmentEvent;
use kubegate_events::identity::IdentityEvent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(all) = RawEnvelope::all_from_slice(data) else { return };
    assert!(!all.is_empty(), "a message holds at least one envelope");
    let encoded: Vec<Vec<u8>> = all.iter().map(RawEnvelope::to_vec).collect();
    for (raw, bytes) in all.iter().zip(&encoded) {
        let again = RawEnvelope::from_slice(bytes).expect("a decoded envelope re-encodes");
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
    }
    let parts: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
    let packed = RawEnvelope::pack(&parts);
    if packed.len() <= kubegate_events::envelope::MAX_ENVELOPE_BYTES {
        let back = RawEnvelope::all_from_slice(&packed).expect("packed envelopes read back");
        assert_eq!(back.iter().map(|e| e.id).collect::<Vec<_>>(), all.iter().map(|e| e.id).collect::<Vec<_>>());
    }
});
