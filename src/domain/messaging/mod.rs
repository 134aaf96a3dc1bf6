//! Messages: sending (in stages), editing and deleting, receipts, search, and the text rules
//! and masking they apply.

pub mod messages;
pub mod pii;
pub mod receipts;
pub mod search;
pub mod send;
pub mod text;
