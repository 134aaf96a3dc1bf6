//! sea-orm entities for Switchboard's tables. The schema itself lives in `migration/`.

pub mod attachment;
pub mod away_setting;
pub mod block;
pub mod bot;
pub mod contact_request;
pub mod conversation;
pub mod event;
pub mod member;
pub mod mention;
pub mod message;
pub mod push_delivery;
pub mod push_subscription;
pub mod reaction;
pub mod server_key;
pub mod user;
pub mod webhook_delivery;
