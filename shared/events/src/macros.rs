//! One declaration per event enum generates the enum, its type table and its typed decoding, so
//! a variant cannot exist without a name, a version and a subject.

/// Declares a domain event enum. Each line: `Variant(Payload) = "aggregate.action" v VERSION`.
macro_rules! domain_events {
    (
        $(#[$meta:meta])*
        pub enum $name:ident, service $service:literal, stream $stream:literal {
            $( $(#[$vmeta:meta])* $variant:ident($payload:ty) = $subject:literal v $version:literal ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $name {
            $( $(#[$vmeta])* $variant($payload), )*
        }

        impl $crate::envelope::DomainEvent for $name {
            const SERVICE: &'static str = $service;
            const STREAM: &'static str = $stream;
            const TYPES: &'static [$crate::envelope::EventType] = &[
                $( $crate::envelope::EventType {
                    name: stringify!($variant),
                    version: $version,
                    subject: concat!("kubegate.", $service, ".", $subject),
                }, )*
            ];

            fn event_type(&self) -> &'static str {
                match self { $( $name::$variant(_) => stringify!($variant), )* }
            }

            fn version(&self) -> u16 {
                match self { $( $name::$variant(_) => $version, )* }
            }

            fn subject(&self) -> &'static str {
                match self { $( $name::$variant(_) => concat!("kubegate.", $service, ".", $subject), )* }
            }

            fn serialize_payload<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self { $( $name::$variant(p) => serde::Serialize::serialize(p, serializer), )* }
            }

            fn decode_payload(
                event_type: &str,
                version: u16,
                payload: &serde_json::value::RawValue,
            ) -> Result<Self, $crate::envelope::DecodeError> {
                match event_type {
                    $( stringify!($variant) => {
                        if version != $version {
                            return Err($crate::envelope::DecodeError::UnsupportedVersion {
                                event_type: stringify!($variant),
                                version,
                                supported: $version,
                            });
                        }
                        serde_json::from_str::<$payload>(payload.get())
                            .map($name::$variant)
                            .map_err(|source| $crate::envelope::DecodeError::Payload {
                                event_type: stringify!($variant),
                                source,
                            })
                    } )*
                    other => Err($crate::envelope::DecodeError::UnknownType(
                        other.chars().take(64).collect(),
                    )),
                }
            }

            fn schema_for_type(event_type: &str) -> Option<schemars::Schema> {
                match event_type {
                    $( stringify!($variant) => Some(schemars::schema_for!($payload)), )*
                    _ => None,
                }
            }
        }
    };
}

pub(crate) use domain_events;
