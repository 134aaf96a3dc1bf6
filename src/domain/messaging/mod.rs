//! Messages: sending (in stages), editing and deleting, receipts, reactions, mentions, pins,
//! search, and the text rules and masking they apply.

pub mod mentions;
pub mod messages;
pub mod pii;
pub mod pins;
pub mod reactions;
pub mod receipts;
pub mod search;
pub mod send;
pub mod text;
pub mod views;
