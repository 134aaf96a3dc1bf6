//! Web Push (RFC 8030 delivery, RFC 8291 encryption, RFC 8292 VAPID): the server's VAPID
//! key and the subscriptions browsers hand over.

pub mod payload;
pub mod sender;
pub mod subscriptions;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use entity::server_key;
use p256::SecretKey;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use sea_orm::{ActiveValue::Set, DatabaseConnection, DbErr, EntityTrait};
use secrecy::{ExposeSecret, SecretString};

use crate::config::PushSettings;

/// The `server_keys` row holding the generated VAPID private key.
const VAPID_KEY_NAME: &str = "vapid_private_key";

/// The deployment's VAPID key pair.
#[derive(Clone)]
pub struct VapidKeys {
    /// The P-256 private scalar, base64url: what signs each push's VAPID token.
    pub private_key: SecretString,
    /// The uncompressed public point, base64url: what browsers subscribe with.
    pub public_key: String,
}

impl VapidKeys {
    /// The configured key, else the one stored by the first instance to start, else a new
    /// one stored for the others (the first insert wins a race; everyone reads it back).
    pub async fn load(conn: &DatabaseConnection, settings: &PushSettings) -> Result<Self, DbErr> {
        let configured = settings.vapid_private_key.expose_secret();
        if !configured.is_empty() {
            // Settings::validate has refused any other.
            return Self::from_base64(configured)
                .ok_or_else(|| DbErr::Custom("push.vapid_private_key is not a base64url P-256 key".into()));
        }
        if let Some(keys) = Self::stored(conn).await? {
            return Ok(keys);
        }
        let generated = loop {
            // Fails only for 0 and values at or above the group order: about 2^-128.
            if let Ok(key) = SecretKey::from_slice(&rand::random::<[u8; 32]>()) {
                break key;
            }
        };
        let row = server_key::ActiveModel {
            name: Set(VAPID_KEY_NAME.into()),
            value: Set(URL_SAFE_NO_PAD.encode(generated.to_bytes())),
        };
        server_key::Entity::insert(row)
            .on_conflict_do_nothing_on([server_key::Column::Name])
            .exec(conn)
            .await?;
        Self::stored(conn).await?.ok_or_else(|| DbErr::Custom("the stored VAPID key is unreadable".into()))
    }

    async fn stored(conn: &DatabaseConnection) -> Result<Option<Self>, DbErr> {
        let Some(row) = server_key::Entity::find_by_id(VAPID_KEY_NAME).one(conn).await? else {
            return Ok(None);
        };
        Self::from_base64(&row.value)
            .map(Some)
            .ok_or_else(|| DbErr::Custom("the stored VAPID key is not a P-256 key".into()))
    }

    pub fn from_base64(private_key: &str) -> Option<Self> {
        let bytes = decode(private_key)?;
        let secret = SecretKey::from_slice(&bytes).ok()?;
        let public = secret.public_key().to_encoded_point(false);
        Some(Self {
            private_key: SecretString::from(URL_SAFE_NO_PAD.encode(secret.to_bytes())),
            public_key: URL_SAFE_NO_PAD.encode(public.as_bytes()),
        })
    }
}

/// base64url, with or without `=` padding.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text.strip_suffix("==").or_else(|| text.strip_suffix('=')).unwrap_or(text)).ok()
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_private_key_gives_its_uncompressed_public_point() {
        // The scalar 1: its public point is the curve's generator.
        let mut one = [0u8; 32];
        one[31] = 1;
        let keys = VapidKeys::from_base64(&URL_SAFE_NO_PAD.encode(one)).expect("a key");
        let public = decode(&keys.public_key).expect("base64url");
        assert_eq!(public.len(), 65);
        assert_eq!(public[0], 4);
        assert_eq!(
            hex::encode(&public[1..33]),
            "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
        );
    }

    #[test]
    fn padding_is_optional_and_other_alphabets_are_refused() {
        assert_eq!(decode("AQID"), Some(vec![1, 2, 3]));
        assert_eq!(decode("AQ=="), Some(vec![1]));
        assert_eq!(decode("AQ"), Some(vec![1]));
        assert_eq!(decode("+/8="), None);
        assert_eq!(decode("***"), None);
        assert!(VapidKeys::from_base64("AQ").is_none(), "not 32 bytes");
        assert!(VapidKeys::from_base64(&URL_SAFE_NO_PAD.encode([0u8; 32])).is_none(), "zero is no key");
    }
}
