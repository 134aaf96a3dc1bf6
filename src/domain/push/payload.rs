//! One push, ready to POST: the contract's payload, encrypted for the subscription
//! (RFC 8291 `aes128gcm`) and signed for the push service (RFC 8292 VAPID), by `web-push`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use serde::Serialize;
use web_push::{
    ContentEncoding, SubscriptionInfo, Urgency, VapidSignature, VapidSignatureBuilder, WebPushError,
    WebPushMessageBuilder, request_builder,
};

use super::VapidKeys;

/// How long a push service keeps an undelivered push: a day, then the chat itself has it.
const TTL_SECONDS: u32 = 24 * 60 * 60;
/// Characters of the message text a push carries.
const PREVIEW_CHARS: usize = 100;
/// How long one VAPID token is used: `web-push` makes them good for twelve hours.
const SIGNATURE_REUSE: Duration = Duration::from_secs(60 * 60);
/// Push service origins remembered; a deployment sees a handful (one per browser vendor).
const SIGNATURE_ORIGINS: usize = 1024;

/// What a push says, before encryption (the contract's payload).
#[derive(Debug, Serialize)]
pub struct Payload {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub conversation_id: i64,
    pub message_id: i64,
    pub sender: Sender,
    pub preview: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Sender {
    pub id: i64,
    pub username: String,
    pub display_name: String,
}

impl Payload {
    /// A `new_message` push; `preview` is the first 100 characters of `text`, if wanted.
    pub fn new_message(
        conversation_id: i64,
        message_id: i64,
        sender: Sender,
        text: &str,
        preview: bool,
    ) -> Self {
        Self {
            kind: "new_message",
            conversation_id,
            message_id,
            sender,
            preview: preview.then(|| text.chars().take(PREVIEW_CHARS).collect()),
        }
    }
}

/// Where to send a subscription's push.
pub struct Target<'a> {
    pub endpoint: &'a str,
    pub p256dh: &'a str,
    pub auth: &'a str,
}

/// The request a push service gets: URL, headers (`Authorization: vapid …`,
/// `Content-Encoding: aes128gcm`, `TTL`, `Urgency`) and the encrypted body.
pub struct PushRequest {
    pub endpoint: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// VAPID tokens by push service origin. Signing one costs two P-256 scalar multiplications,
/// most of a push's CPU; a token names only the origin, so one per origin an hour serves
/// every push to it.
pub struct Signatures {
    keys: VapidKeys,
    subject: String,
    tokens: Mutex<HashMap<String, (Instant, VapidSignature)>>,
}

impl Signatures {
    pub fn new(keys: VapidKeys, subject: String) -> Self {
        Self { keys, subject, tokens: Mutex::new(HashMap::new()) }
    }

    fn for_origin(&self, audience: String, info: &SubscriptionInfo) -> Result<VapidSignature, WebPushError> {
        if let Ok(tokens) = self.tokens.lock()
            && let Some((made, token)) = tokens.get(&audience)
            && made.elapsed() < SIGNATURE_REUSE
        {
            return Ok(token.clone());
        }
        let mut vapid = VapidSignatureBuilder::from_base64(self.keys.private_key.expose_secret(), info)?;
        vapid.add_claim("aud", audience.as_str());
        vapid.add_claim("sub", self.subject.as_str());
        let token = vapid.build()?;
        if let Ok(mut tokens) = self.tokens.lock() {
            if tokens.len() >= SIGNATURE_ORIGINS {
                tokens.clear();
            }
            tokens.insert(audience, (Instant::now(), token.clone()));
        }
        Ok(token)
    }
}

/// Encrypts `payload` for `target` and signs the request with the deployment's key.
pub fn seal(
    signatures: &Signatures,
    target: &Target<'_>,
    payload: &[u8],
) -> Result<PushRequest, WebPushError> {
    let info = SubscriptionInfo::new(target.endpoint, target.p256dh, target.auth);
    // The origin with its port: web-push's own `aud` leaves a non-default port out.
    let audience = url::Url::parse(target.endpoint)
        .map(|url| url.origin().ascii_serialization())
        .map_err(|_| WebPushError::InvalidUri)?;
    let mut message = WebPushMessageBuilder::new(&info);
    message.set_payload(ContentEncoding::Aes128Gcm, payload);
    message.set_ttl(TTL_SECONDS);
    message.set_urgency(Urgency::High);
    message.set_vapid_signature(signatures.for_origin(audience, &info)?);
    let request = request_builder::build_request::<Vec<u8>>(message.build()?);
    let headers = request
        .headers()
        .iter()
        .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
        .collect();
    Ok(PushRequest { endpoint: target.endpoint.to_owned(), headers, body: request.into_body() })
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn keys() -> VapidKeys {
        let mut scalar = [7u8; 32];
        scalar[0] = 1;
        VapidKeys::from_base64(&URL_SAFE_NO_PAD.encode(scalar)).expect("a key")
    }

    fn header<'a>(request: &'a PushRequest, name: &str) -> &'a str {
        request
            .headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
            .unwrap_or_else(|| panic!("no {name} header"))
    }

    /// A browser's side: ece decrypts what `seal` encrypted, and the VAPID token verifies
    /// against the deployment's public key with the push service's origin as audience.
    #[test]
    fn a_sealed_push_decrypts_with_the_browser_s_key_and_its_token_verifies() {
        let (browser, auth) = ece::generate_keypair_and_auth_secret().expect("browser keys");
        let p256dh = URL_SAFE_NO_PAD.encode(browser.pub_as_raw().expect("public key"));
        let auth = URL_SAFE_NO_PAD.encode(auth);
        let endpoint = "http://127.0.0.1:4567/push/abc";
        let target = Target { endpoint, p256dh: &p256dh, auth: &auth };
        let sender = Sender { id: 3, username: "alice".into(), display_name: "Alice".into() };
        let text = "é".repeat(150);
        let payload = serde_json::to_vec(&Payload::new_message(9, 42, sender, &text, true)).unwrap();
        let keys = keys();
        let signatures = Signatures::new(keys.clone(), "mailto:ops@example.com".into());
        let request = seal(&signatures, &target, &payload).expect("sealed");

        assert_eq!(request.endpoint, endpoint);
        assert_eq!(header(&request, "content-encoding"), "aes128gcm");
        assert_eq!(header(&request, "ttl"), "86400");
        let components = browser.raw_components().expect("components");
        let decrypted = ece::decrypt(&components, &URL_SAFE_NO_PAD.decode(&auth).unwrap(), &request.body)
            .expect("the browser decrypts it");
        let shown: serde_json::Value = serde_json::from_slice(&decrypted).unwrap();
        assert_eq!(
            shown,
            serde_json::json!({
                "type": "new_message", "conversation_id": 9, "message_id": 42,
                "sender": {"id": 3, "username": "alice", "display_name": "Alice"},
                "preview": "é".repeat(100),
            })
        );

        // Authorization: vapid t=<ES256 JWT>, k=<the public key browsers subscribed with>
        let authorization = header(&request, "authorization");
        let (token, key) = authorization
            .strip_prefix("vapid t=")
            .and_then(|rest| rest.split_once(", k="))
            .unwrap_or_else(|| panic!("a VAPID header: {authorization}"));
        assert_eq!(key, keys.public_key);
        let point = URL_SAFE_NO_PAD.decode(key).unwrap();
        let decoding = jsonwebtoken::DecodingKey::from_ec_components(
            &URL_SAFE_NO_PAD.encode(&point[1..33]),
            &URL_SAFE_NO_PAD.encode(&point[33..65]),
        )
        .unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.set_audience(&["http://127.0.0.1:4567"]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(token, &decoding, &validation)
            .expect("the token verifies")
            .claims;
        assert_eq!(claims["sub"], "mailto:ops@example.com");
    }

    #[test]
    fn without_preview_a_push_names_only_the_sender() {
        let sender = Sender { id: 1, username: "bob".into(), display_name: "Bob".into() };
        let payload = Payload::new_message(1, 2, sender, "secret plans", false);
        assert_eq!(serde_json::to_value(&payload).unwrap()["preview"], serde_json::Value::Null);
    }
}
