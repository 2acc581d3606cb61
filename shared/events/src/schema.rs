//! JSON Schema documents for every event type (`schemas/events/<service>/<Type>.v<N>.json`): the
//! envelope with that type's payload. Generated from the Rust types; a test keeps the committed
//! files equal to what the types say and validates an example of every variant against them.

use serde_json::{Map, Value, json};

use crate::envelope::{Actor, DomainEvent};

/// `(relative path under schemas/events, schema document)` for every event type of `E`.
pub fn documents<E: DomainEvent>() -> Vec<(String, Value)> {
    E::TYPES
        .iter()
        .filter_map(|t| {
            let payload = E::schema_for_type(t.name)?;
            let path = format!("{}/{}.v{}.json", E::SERVICE, t.name, t.version);
            Some((path, envelope_schema(E::SERVICE, t.name, t.version, t.subject, payload.to_value())))
        })
        .collect()
}

fn take_defs(schema: &mut Value, defs: &mut Map<String, Value>) {
    if let Some(obj) = schema.as_object_mut() {
        obj.remove("$schema");
        if let Some(Value::Object(d)) = obj.remove("$defs") {
            defs.extend(d);
        }
    }
}

fn envelope_schema(service: &str, name: &str, version: u16, subject: &str, mut payload: Value) -> Value {
    let mut defs = Map::new();
    take_defs(&mut payload, &mut defs);
    let mut actor = schemars::schema_for!(Actor).to_value();
    take_defs(&mut actor, &mut defs);
    if let Some(obj) = payload.as_object_mut() {
        obj.remove("title");
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("https://kubegate.dev/schemas/events/{service}/{name}.v{version}.json"),
        "title": format!("{name} v{version}"),
        "description": format!("kubegate event {name}, version {version}, published on subject {subject}."),
        "type": "object",
        "additionalProperties": false,
        "required": ["id", "stream", "sequence", "position", "type", "version", "occurred_at", "actor", "correlation_id", "payload"],
        "properties": {
            "id": {"type": "string", "format": "uuid", "description": "UUIDv7; also the bus de-duplication id"},
            "stream": {"type": "string", "minLength": 1},
            "sequence": {"type": "integer", "minimum": 1},
            "position": {"type": "integer", "minimum": 1},
            "type": {"const": name},
            "version": {"const": version},
            "occurred_at": {"type": "string", "format": "date-time"},
            "actor": actor,
            "correlation_id": {"type": "string"},
            "payload": payload,
        },
        "$defs": Value::Object(defs),
    })
}
