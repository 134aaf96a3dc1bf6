//! The domain: validation, one transaction per change, then hand-off of the persisted
//! events to the live side. Routes call these; actors never do.

pub mod attachments;
pub mod conversations;
pub mod events;
pub mod files;
pub mod groups;
pub mod live;
pub mod messages;
pub mod pii;
pub mod receipts;
pub mod safety;
pub mod search;
pub mod sending;
pub mod text;
pub mod users;
pub mod writer;
