//! The contract's timestamps: RFC 3339 UTC with milliseconds, `2026-11-22T10:30:00.123Z`.

use chrono::{DateTime, SubsecRound, Utc};
use serde::Serializer;

pub type Timestamp = DateTime<Utc>;

/// Now, truncated to milliseconds so what is stored is exactly what is served.
pub fn now() -> Timestamp {
    Utc::now().trunc_subsecs(3)
}

/// Unix milliseconds: how delivery queues store times, compared the same way on both
/// databases.
pub fn unix_ms(at: Timestamp) -> i64 {
    at.timestamp_millis()
}

pub fn format(at: &Timestamp) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn serialize<S: Serializer>(at: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(at))
}

pub mod option {
    use super::Timestamp;
    use serde::Serializer;

    pub fn serialize<S: Serializer>(at: &Option<Timestamp>, serializer: S) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => super::serialize(at, serializer),
            None => serializer.serialize_none(),
        }
    }
}
