//! The domain, by capability: validation, one transaction per change, then hand-off of the
//! persisted events to the live side. Routes call these; actors never do (they reach the
//! domain only through `realtime::port`, implemented in `events::live`).

pub mod bots;
pub mod conversations;
pub mod events;
pub mod files;
pub mod messaging;
pub mod push;
pub mod safety;
pub mod users;
