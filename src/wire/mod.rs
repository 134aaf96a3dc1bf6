//! What travels to clients: the WebSocket frames, the JSON shapes of the API, and a frame
//! serialized once for every device that receives it. Both the domain and the live side
//! import this; it imports neither.

pub mod frames;
pub mod views;

use actix::Message;
use bytestring::ByteString;
use serde::{Deserialize, Deserializer, Serialize};

/// Ids of different things, typed where they meet (a user and a conversation in one call
/// cannot be swapped); inside a function they are unwrapped by pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct UserId(pub i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ConversationId(pub i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct MessageId(pub i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct EventId(pub i64);

/// A frame ready for the wire: serialized once, shared by every device that receives it.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Frame {
    /// Set for stored events; sessions use it to drop what a replay already sent.
    pub event_id: Option<i64>,
    /// Over Redis: the event published before this one on the same user's channel, so a
    /// session can tell it missed one.
    pub prev_event_id: Option<i64>,
    /// When the event's transaction committed (Unix microseconds), for the delivery latency
    /// histogram; it travels through Redis too.
    pub committed_us: Option<u64>,
    pub text: ByteString,
}

impl Frame {
    pub fn new(event_id: Option<i64>, frame: &impl Serialize) -> Self {
        // Our frame types serialize infallibly (string keys, no maps with non-string keys).
        let text = serde_json::to_string(frame).unwrap_or_default();
        Self { event_id, prev_event_id: None, committed_us: None, text: ByteString::from(text) }
    }
}

/// One frame for every device of one user.
#[derive(Debug, Clone)]
pub struct UserFrame {
    pub user_id: UserId,
    pub frame: Frame,
}

/// A positive 64-bit id. Zero, negatives, fractions, strings and numbers beyond i64 are
/// refused; an integral float (`2.0`) is the integer JSON Schema says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Id(pub i64);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_i64(IdVisitor)
    }
}

struct IdVisitor;

impl serde::de::Visitor<'_> for IdVisitor {
    type Value = Id;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a positive integer")
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Id, E> {
        if value > 0 { Ok(Id(value)) } else { Err(E::custom("must be a positive integer")) }
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Id, E> {
        i64::try_from(value)
            .map_err(|_| E::custom("must be at most 2^63 - 1"))
            .and_then(|v| self.visit_i64(v))
    }

    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Id, E> {
        // 2^63 itself is the first float past i64::MAX.
        if value.fract() == 0.0 && value > 0.0 && value < 9_223_372_036_854_775_808.0 {
            self.visit_i64(value as i64)
        } else {
            Err(E::custom("must be a positive integer"))
        }
    }
}

impl utoipa::PartialSchema for Id {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(1))
            .description(Some("a positive 64-bit id"))
            .into()
    }
}

impl utoipa::ToSchema for Id {}
