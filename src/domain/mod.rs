//! The domain: validation, one transaction per change, then hand-off of the persisted
//! events to the live side. Routes call these; actors never do.

pub mod conversations;
pub mod events;
pub mod messages;
pub mod users;
pub mod views;
pub mod writer;
