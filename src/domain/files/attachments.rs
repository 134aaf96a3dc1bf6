//! Files sent with messages: streamed to disk under a random name while their type and size
//! are checked, linked to their message in the message's transaction, and served through
//! signed, expiring URLs.
//!
//! A file is written as `tmp/<instance>/<key>.part`, synced, then renamed to `<key>`; its row is only
//! inserted after that, with the message. A crash mid-upload leaves a `.part` file that is
//! never served (no row names it) and is removed at the next start.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use actix_multipart::Field;
use entity::{attachment, message};
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use sea_orm::prelude::*;
use sea_orm::{ConnectionTrait, QueryOrder};
use secrecy::ExposeSecret;
use sha2::Sha256;
use tokio::io::AsyncWriteExt;

use crate::config::Settings;
use crate::db::Db;
use crate::domain::conversations::visible;
use crate::domain::files::{self, FileClass, SNIFF_BYTES};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::wire::views::{AttachmentView, MessageView};
use crate::wire::{ConversationId, MessageId, UserId};

/// A file on disk, not yet linked to a message.
#[derive(Debug, Clone)]
pub struct StoredFile {
    pub key: String,
    pub filename: String,
    pub mime_type: &'static str,
    pub size: i64,
}

/// An upload whose `.part` file has not been written to for this long is dead.
const STALE_UPLOAD: std::time::Duration = std::time::Duration::from_secs(600);

pub struct Store {
    dir: PathBuf,
    /// This instance's half-written uploads.
    tmp: PathBuf,
    signing_key: Vec<u8>,
    url_ttl_seconds: u64,
    max_image_bytes: u64,
    max_document_bytes: u64,
}

impl Store {
    /// Creates the directories and removes uploads a crash left half-written. With several
    /// instances the directory is shared, so each writes its uploads under `tmp/<instance>`:
    /// its own leftovers go at once, other instances' only once they are stale (an instance
    /// with a generated id never comes back for them).
    pub fn open(settings: &Settings, instance_id: &str) -> std::io::Result<Self> {
        let config = &settings.attachments;
        let dir = PathBuf::from(&config.dir);
        let own: String = instance_id
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
            .collect();
        let tmp = dir.join("tmp").join(own);
        std::fs::create_dir_all(&tmp)?;
        for folder in std::fs::read_dir(dir.join("tmp"))?.flatten() {
            let mine = folder.path() == tmp;
            for entry in std::fs::read_dir(folder.path()).into_iter().flatten().flatten() {
                let stale = entry
                    .metadata()
                    .and_then(|meta| meta.modified())
                    .ok()
                    .and_then(|modified| modified.elapsed().ok())
                    .is_some_and(|age| age > STALE_UPLOAD);
                if (mine || stale) && entry.path().extension().is_some_and(|ext| ext == "part") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        // Derived from the JWT secret, so every instance signs alike without another secret;
        // a derived key never lets a URL signature stand in for a token.
        let mut mac = Hmac::<Sha256>::new_from_slice(settings.auth.jwt_secret.expose_secret().as_bytes())
            .map_err(std::io::Error::other)?;
        mac.update(b"switchboard attachment download urls");
        Ok(Self {
            dir,
            tmp,
            signing_key: mac.finalize().into_bytes().to_vec(),
            url_ttl_seconds: config.url_ttl_seconds,
            max_image_bytes: config.max_image_bytes,
            max_document_bytes: config.max_document_bytes,
        })
    }

    pub fn url_ttl_seconds(&self) -> u64 {
        self.url_ttl_seconds
    }

    pub fn path(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    /// Removes a stored file that will not be linked to a message.
    pub async fn discard(&self, file: &StoredFile) {
        if let Err(err) = tokio::fs::remove_file(self.path(&file.key)).await {
            tracing::warn!(error = %err, "could not remove an unused upload");
        }
    }

    /// Streams one multipart field to disk. The type is judged from the first bytes and the
    /// size limit is enforced as bytes arrive, so an oversized upload is refused early.
    pub async fn receive(&self, field: &mut Field, raw_filename: &str) -> AppResult<StoredFile> {
        let key = format!("{:032x}", rand::random::<u128>());
        let part = self.tmp.join(format!("{key}.part"));
        let result = self.write_part(field, &part, raw_filename).await;
        match result {
            Ok((filename, mime_type, size)) => {
                tokio::fs::rename(&part, self.path(&key)).await.map_err(AppError::internal)?;
                Ok(StoredFile { key, filename, mime_type, size })
            }
            Err(err) => {
                let _ = tokio::fs::remove_file(&part).await;
                Err(err)
            }
        }
    }

    async fn write_part(
        &self,
        field: &mut Field,
        part: &Path,
        raw_filename: &str,
    ) -> AppResult<(String, &'static str, i64)> {
        let filename = files::sanitize_filename(raw_filename);
        let mut file = tokio::fs::File::create(part).await.map_err(AppError::internal)?;
        let mut head: Vec<u8> = Vec::with_capacity(SNIFF_BYTES);
        let mut judged: Option<(&'static str, u64)> = None;
        let mut size: u64 = 0;
        let largest = self.max_image_bytes.max(self.max_document_bytes);
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(|err| {
                AppError::bad_request(
                    ErrorCode::BadMultipart,
                    format!("the upload was cut short: {err}"),
                    Some("file"),
                )
            })?;
            size += chunk.len() as u64;
            let limit = judged.map_or(largest, |(_, limit)| limit);
            if size > limit {
                return Err(too_large(limit));
            }
            if judged.is_none() {
                let wanted = SNIFF_BYTES - head.len();
                head.extend_from_slice(&chunk[..chunk.len().min(wanted)]);
                if head.len() >= SNIFF_BYTES {
                    judged = Some(self.judge(&head, false, &filename)?);
                    file.write_all(&head).await.map_err(AppError::internal)?;
                    let rest = &chunk[chunk.len().min(wanted)..];
                    file.write_all(rest).await.map_err(AppError::internal)?;
                }
            } else {
                file.write_all(&chunk).await.map_err(AppError::internal)?;
            }
        }
        if size == 0 {
            return Err(AppError::validation("file", "the file is empty"));
        }
        let (mime_type, limit) = match judged {
            Some(judged) => judged,
            None => {
                let judged = self.judge(&head, true, &filename)?;
                file.write_all(&head).await.map_err(AppError::internal)?;
                judged
            }
        };
        if size > limit {
            return Err(too_large(limit));
        }
        file.flush().await.map_err(AppError::internal)?;
        file.sync_all().await.map_err(AppError::internal)?;
        Ok((filename, mime_type, i64::try_from(size).unwrap_or(i64::MAX)))
    }

    fn judge(&self, head: &[u8], complete: bool, filename: &str) -> AppResult<(&'static str, u64)> {
        let kind = files::sniff(head, complete, filename).ok_or_else(|| AppError::UnsupportedMediaType {
            message: "files must be JPEG, PNG, GIF, WebP, PDF, DOCX, TXT or CSV (judged from the bytes)"
                .into(),
        })?;
        let limit = match kind.class {
            FileClass::Image => self.max_image_bytes,
            FileClass::Document => self.max_document_bytes,
        };
        Ok((kind.mime, limit))
    }

    fn signature(&self, id: i64, user_id: i64, expires: i64) -> AppResult<Hmac<Sha256>> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.signing_key).map_err(AppError::internal)?;
        mac.update(format!("{id}:{user_id}:{expires}").as_bytes());
        Ok(mac)
    }

    /// A URL for `id`, issued to `user_id`, valid until `expires` (Unix seconds), signed with
    /// HMAC-SHA256. The user is part of the link so that it stops working when they leave
    /// the conversation, not only when it expires.
    pub fn signed_url(&self, id: i64, user_id: i64, expires: i64) -> AppResult<String> {
        let signature = hex::encode(self.signature(id, user_id, expires)?.finalize().into_bytes());
        Ok(format!("/api/attachments/{id}/content?user={user_id}&expires={expires}&signature={signature}"))
    }

    /// Checks a URL's signature (in constant time) and expiry; membership is checked by the
    /// caller.
    pub fn verify(&self, id: i64, user_id: i64, expires: i64, signature: &str) -> AppResult<()> {
        let forged = || AppError::forbidden(ErrorCode::InvalidSignature, "the download link is not valid");
        let bytes = hex::decode(signature).map_err(|_| forged())?;
        self.signature(id, user_id, expires)?.verify_slice(&bytes).map_err(|_| forged())?;
        if expires < chrono::Utc::now().timestamp() {
            return Err(AppError::forbidden(ErrorCode::LinkExpired, "the download link has expired"));
        }
        Ok(())
    }
}

fn too_large(limit: u64) -> AppError {
    AppError::PayloadTooLarge { message: format!("files of this type may be at most {limit} bytes").into() }
}

/// Links a stored file to its message, inside the message's transaction.
pub async fn link(
    conn: &impl ConnectionTrait,
    MessageId(message_id): MessageId,
    UserId(uploader_id): UserId,
    file: &StoredFile,
) -> Result<AttachmentView, DbErr> {
    let row = attachment::ActiveModel {
        message_id: sea_orm::Set(message_id),
        uploader_id: sea_orm::Set(uploader_id),
        filename: sea_orm::Set(file.filename.clone()),
        mime_type: sea_orm::Set(file.mime_type.to_owned()),
        size: sea_orm::Set(file.size),
        storage_key: sea_orm::Set(file.key.clone()),
        created_at: sea_orm::Set(crate::time::now()),
        ..Default::default()
    }
    .insert(conn)
    .await?;
    Ok(view(row))
}

fn view(row: attachment::Model) -> AttachmentView {
    AttachmentView { id: row.id, filename: row.filename, mime_type: row.mime_type, size: row.size }
}

/// Message views with their attachments, in one query for all of them. Deleted messages
/// show none.
pub async fn views(
    conn: &impl ConnectionTrait,
    rows: Vec<message::Model>,
) -> Result<Vec<MessageView>, DbErr> {
    let ids: Vec<i64> = rows.iter().filter(|row| row.deleted_at.is_none()).map(|row| row.id).collect();
    let mut by_message: HashMap<i64, Vec<AttachmentView>> = HashMap::new();
    if !ids.is_empty() {
        for row in attachment::Entity::find()
            .filter(attachment::Column::MessageId.is_in(ids))
            .order_by_asc(attachment::Column::Id)
            .all(conn)
            .await?
        {
            by_message.entry(row.message_id).or_default().push(view(row));
        }
    }
    Ok(rows
        .into_iter()
        .map(|row| {
            let attachments = by_message.remove(&row.id).unwrap_or_default();
            let mut view = MessageView::from(row);
            if !view.deleted {
                view.attachments = attachments;
            }
            view
        })
        .collect())
}

/// An attachment the caller may download: its message is not deleted and the caller is a
/// current member of the message's conversation; 404 otherwise.
pub async fn downloadable(
    db: &Db,
    UserId(user_id): UserId,
    attachment_id: i64,
) -> AppResult<attachment::Model> {
    let (row, message) = live(db, attachment_id).await?;
    visible(&db.read, UserId(user_id), ConversationId(message.conversation_id))
        .await
        .map_err(|_| AppError::not_found("attachment not found"))?;
    Ok(row)
}

async fn live(db: &Db, attachment_id: i64) -> AppResult<(attachment::Model, message::Model)> {
    let not_found = || AppError::not_found("attachment not found");
    let row = attachment::Entity::find_by_id(attachment_id).one(&db.read).await?.ok_or_else(not_found)?;
    let message = message::Entity::find_by_id(row.message_id)
        .one(&db.read)
        .await?
        .filter(|message| message.deleted_at.is_none())
        .ok_or_else(not_found)?;
    Ok((row, message))
}
