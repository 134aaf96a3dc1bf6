//! Stage 2: deciding, without I/O, what each send of a batch does: refused, a repeat of an
//! earlier send, or accepted into a conversation (opened by it if it is a first message),
//! with the unread counters it moves.

use std::collections::{HashMap, HashSet};

use entity::conversation;
use sea_orm::DbErr;

use super::load::{Loaded, UserCache};
use super::{Accepted, PendingMessage, Results};
use crate::config::MessagingSettings;
use crate::domain::conversations::{self, direct_key};
use crate::domain::messaging::mentions;
use crate::domain::messaging::messages::{Sent, Target};
use crate::domain::safety::{self, Pair};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::wire::views::{ConversationKind, MessageView, ReplyView};

/// The users a batch's checks need: every sender, and each recipient named by user id.
pub(super) fn users_named(jobs: &[PendingMessage], results: &Results) -> HashSet<i64> {
    let mut ids = HashSet::new();
    for (job, _) in jobs.iter().zip(results).filter(|(_, result)| result.is_none()) {
        ids.insert(job.sender_id);
        if let Target::User(recipient) = job.target {
            ids.insert(recipient);
        }
    }
    ids
}

/// A send whose target exists and admits its sender; `conversation` is `None` for a first
/// message, `other` is the other user of a direct conversation.
pub(super) struct Checked {
    job: usize,
    conversation: Option<conversation::Model>,
    other: Option<i64>,
}

/// Who may write where: the sender exists, a recipient exists, a conversation is one the
/// sender belongs to (and a group when sent to as one). Refusals go into `results`.
pub(super) fn targets(
    jobs: &[PendingMessage],
    users: &UserCache,
    loaded: &Loaded,
    results: &mut Results,
) -> Vec<Checked> {
    let mut checked = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        if results[i].is_some() {
            continue;
        }
        match target(job, users, loaded).and_then(|found| quotes_its_own(job, found, loaded)) {
            Ok((conversation, other)) => checked.push(Checked { job: i, conversation, other }),
            Err(err) => results[i] = Some(Err(err)),
        }
    }
    checked
}

/// A send's conversation (none yet for a first message) and the other user of a direct one.
type Found = (Option<conversation::Model>, Option<i64>);

fn target(job: &PendingMessage, users: &UserCache, loaded: &Loaded) -> AppResult<Found> {
    let sender = job.sender_id;
    if users.get(sender).is_none() {
        return Err(AppError::unauthorized(ErrorCode::InvalidToken, "the token's user does not exist"));
    }
    match job.target {
        Target::User(recipient) => {
            if users.get(recipient).is_none() {
                return Err(AppError::not_found("recipient not found"));
            }
            Ok((loaded.by_key.get(&direct_key(sender, recipient)).cloned(), Some(recipient)))
        }
        Target::Conversation(id) | Target::Group(id) => {
            let member = loaded.members.get(&id).is_some_and(|list| list.iter().any(|(u, _)| *u == sender));
            let Some(conversation) = loaded.by_id.get(&id).filter(|_| member) else {
                return Err(AppError::not_found("conversation not found"));
            };
            if matches!(job.target, Target::Group(_)) && conversation.kind != ConversationKind::Group {
                return Err(AppError::not_found("group not found"));
            }
            Ok((Some(conversation.clone()), conversations::direct_partner(conversation, sender)))
        }
    }
}

/// A reply quotes a message of its own conversation (so never in a first message); 422
/// otherwise, also for a message that does not exist.
fn quotes_its_own(job: &PendingMessage, found: Found, loaded: &Loaded) -> AppResult<Found> {
    let Some(quoted) = job.reply_to_id else { return Ok(found) };
    let conversation = found.0.as_ref().map(|conversation| conversation.id);
    if loaded.quoted.get(&quoted).is_some_and(|row| Some(row.conversation_id) == conversation) {
        Ok(found)
    } else {
        Err(AppError::validation("reply_to_id", "reply_to_id must be a message of this conversation"))
    }
}

/// The (sender, other) pairs of the direct messages, for one blocks-and-contacts query.
pub(super) fn direct_pairs(jobs: &[PendingMessage], checked: &[Checked]) -> Vec<(i64, i64)> {
    checked.iter().filter_map(|c| c.other.map(|other| (jobs[c.job].sender_id, other))).collect()
}

/// A send that passed the policy, its body masked as the pair requires.
pub(super) struct Admitted {
    job: usize,
    conversation: Option<conversation::Model>,
    other: Option<i64>,
    body: String,
}

pub(super) struct Plan {
    pub admitted: Vec<Admitted>,
    /// (send, the earlier send of this batch with the same `client_id`).
    pub repeats: Vec<(usize, usize)>,
    /// Direct conversations to open: (key, first sender, recipient).
    pub to_open: Vec<(String, i64, i64)>,
}

/// Blocks, the direct policy and masking for direct messages; a retry of a send admitted
/// earlier in the batch becomes a repeat of it; first messages list the conversations to open.
pub(super) fn admit(
    jobs: &[PendingMessage],
    checked: Vec<Checked>,
    standing: &HashMap<(i64, i64), Pair>,
    rules: &MessagingSettings,
    results: &mut Results,
) -> Plan {
    let mut plan = Plan { admitted: Vec::new(), repeats: Vec::new(), to_open: Vec::new() };
    let mut first_send: HashMap<(i64, &str), usize> = HashMap::new();
    let mut opening: HashSet<String> = HashSet::new();
    for Checked { job: i, conversation, other } in checked {
        let job = &jobs[i];
        if let Some(client_id) = job.client_id.as_deref()
            && let Some(&first) = first_send.get(&(job.sender_id, client_id))
        {
            plan.repeats.push((i, first));
            continue;
        }
        let mut body = job.body.clone();
        if let Some(other) = other {
            let pair = standing.get(&safety::pair_key(job.sender_id, other)).unwrap_or(&Pair::NONE);
            if let Err(err) = pair.may_message(rules) {
                results[i] = Some(Err(err));
                continue;
            }
            body = pair.mask(rules, body);
        }
        if conversation.is_none()
            && let Some(recipient) = other
        {
            let key = direct_key(job.sender_id, recipient);
            if opening.insert(key.clone()) {
                plan.to_open.push((key, job.sender_id, recipient));
            }
        }
        if let Some(client_id) = job.client_id.as_deref() {
            first_send.insert((job.sender_id, client_id), plan.admitted.len());
        }
        plan.admitted.push(Admitted { job: i, conversation, other, body });
    }
    plan
}

/// Gives each admitted send its conversation (the first send into an opened one announces
/// it), its quote and its mentions, and moves the recipients' unread counters in batch order.
pub(super) fn accept(
    jobs: &[PendingMessage],
    admitted: Vec<Admitted>,
    mut opened: HashMap<String, (conversation::Model, bool)>,
    loaded: &mut Loaded,
) -> Result<Vec<Accepted>, DbErr> {
    let mut accepted = Vec::with_capacity(admitted.len());
    for Admitted { job: i, conversation, other, body } in admitted {
        let job = &jobs[i];
        let (conversation, opened_by_this) = match conversation {
            Some(conversation) => (conversation, false),
            None => {
                let key = direct_key(job.sender_id, other.unwrap_or_default());
                let Some((conversation, unannounced)) = opened.get_mut(&key) else {
                    return Err(DbErr::Custom("a direct conversation was not opened".into()));
                };
                (conversation.clone(), std::mem::take(unannounced))
            }
        };
        let reply_to = job.reply_to_id.and_then(|id| loaded.quoted.get(&id)).map(ReplyView::from);
        let list = loaded.members.entry(conversation.id).or_default();
        let mentions = if conversation.kind == ConversationKind::Group && !loaded.named.is_empty() {
            mentions::resolve(
                &body,
                &loaded.named,
                |id| list.iter().any(|(member, _)| *member == id),
                job.sender_id,
            )
        } else {
            Vec::new()
        };
        let mut recipients = Vec::with_capacity(list.len().saturating_sub(1));
        for (user_id, state) in list.iter_mut().filter(|(user_id, _)| *user_id != job.sender_id) {
            state.unread_count += 1;
            if mentions.binary_search(user_id).is_ok() {
                state.unread_mentions += 1;
            }
            recipients.push((*user_id, *state));
        }
        accepted.push(Accepted {
            job: i,
            conversation,
            body,
            opened: opened_by_this,
            recipients,
            reply_to,
            mentions,
        });
    }
    Ok(accepted)
}

/// Stored messages answer their sends; repeats within the batch answer with the first.
pub(super) fn answer(
    results: &mut Results,
    repeats: Vec<(usize, usize)>,
    accepted: &[Accepted],
    views: Vec<MessageView>,
) {
    for (repeat, first) in repeats {
        results[repeat] = Some(Ok(Sent::Existing(views[first].clone())));
    }
    for (sent, view) in accepted.iter().zip(views) {
        results[sent.job] = Some(Ok(Sent::Created(view)));
    }
}

/// Every send's result; a send left without one is a bug, answered as a server error.
pub(super) fn finish(results: Results) -> Vec<AppResult<Sent>> {
    results
        .into_iter()
        .map(|result| {
            result.unwrap_or_else(|| Err(AppError::internal(DbErr::Custom("a send got no result".into()))))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DirectPolicy;
    use crate::domain::messaging::send::ReadState;
    use crate::time;
    use crate::wire::views::UserView;

    fn user(id: i64) -> UserView {
        UserView {
            id,
            username: format!("u{id}"),
            display_name: format!("U{id}"),
            created_at: time::now(),
            is_bot: false,
        }
    }

    fn send(sender_id: i64, target: Target, client_id: Option<&str>) -> PendingMessage {
        PendingMessage {
            sender_id,
            target,
            body: "mail me at a@example.com".into(),
            client_id: client_id.map(str::to_owned),
            attachment: None,
            reply_to_id: None,
            auto_reply: None,
        }
    }

    fn group(id: i64, members: &[i64]) -> (conversation::Model, Vec<(i64, ReadState)>) {
        let model = conversation::Model {
            id,
            kind: ConversationKind::Group,
            name: Some("g".into()),
            direct_key: None,
            created_by: members[0],
            created_at: time::now(),
            last_message_id: None,
            last_activity_id: 1,
        };
        (model, members.iter().map(|member| (*member, ReadState::default())).collect())
    }

    fn refused(results: &Results, i: usize) -> Option<u16> {
        use actix_web::ResponseError;
        results[i].as_ref().and_then(|result| result.as_ref().err()).map(|err| err.status_code().as_u16())
    }

    #[test]
    fn targets_refuse_strangers_unknown_users_and_a_direct_conversation_sent_to_as_a_group() {
        let users = UserCache::with([user(1), user(2), user(3)]);
        let mut loaded = Loaded::default();
        let (model, members) = group(10, &[1, 2]);
        loaded.by_id.insert(10, model);
        loaded.members.insert(10, members);
        let mut direct = group(11, &[1, 2]).0;
        direct.kind = ConversationKind::Direct;
        direct.direct_key = Some(direct_key(1, 2));
        loaded.by_id.insert(11, direct);
        loaded.members.insert(11, group(11, &[1, 2]).1);
        let jobs = vec![
            send(1, Target::Group(10), None),
            send(3, Target::Group(10), None),
            send(1, Target::User(99), None),
            send(99, Target::User(1), None),
            send(1, Target::Group(11), None),
            send(1, Target::Conversation(11), None),
            send(1, Target::User(3), None),
        ];
        let mut results: Results = jobs.iter().map(|_| None).collect();
        let checked = targets(&jobs, &users, &loaded, &mut results);
        let admitted: Vec<usize> = checked.iter().map(|c| c.job).collect();
        assert_eq!(admitted, [0, 5, 6]);
        assert_eq!([1, 2, 3, 4].map(|i| refused(&results, i)), [Some(404), Some(404), Some(401), Some(404)]);
        assert_eq!(direct_pairs(&jobs, &checked), [(1, 2), (1, 3)], "direct messages, existing or first");
    }

    #[test]
    fn a_retry_within_the_batch_repeats_the_first_send_and_first_messages_open_one_conversation() {
        let jobs = vec![
            send(1, Target::User(2), Some("a")),
            send(1, Target::User(2), Some("a")),
            send(2, Target::User(1), Some("a")),
        ];
        let checked =
            (0..3).map(|job| Checked { job, conversation: None, other: Some(if job == 2 { 1 } else { 2 }) });
        let mut results: Results = jobs.iter().map(|_| None).collect();
        let rules = MessagingSettings { mask_pii_before_contact: true, ..Default::default() };
        let plan = admit(&jobs, checked.collect(), &HashMap::new(), &rules, &mut results);
        assert_eq!(plan.repeats, [(1, 0)], "same sender and client_id");
        assert_eq!(plan.admitted.len(), 2, "another sender's equal client_id is its own");
        assert_eq!(plan.to_open, [(direct_key(1, 2), 1, 2)], "one conversation for the pair");
        assert!(
            plan.admitted.iter().all(|sent| !sent.body.contains("a@example.com")),
            "masked between strangers"
        );

        let (mut model, _) = group(20, &[1, 2]);
        model.kind = ConversationKind::Direct;
        let opened = HashMap::from([(direct_key(1, 2), (model, true))]);
        let fresh = ReadState::default();
        let mut loaded = Loaded::default();
        loaded.members.insert(20, vec![(1, fresh), (2, fresh)]);
        let Ok(accepted) = accept(&jobs, plan.admitted, opened, &mut loaded) else { panic!("not accepted") };
        assert_eq!(
            accepted.iter().map(|sent| sent.opened).collect::<Vec<_>>(),
            [true, false],
            "the first announces it"
        );
        let one = ReadState { unread_count: 1, ..fresh };
        assert_eq!(accepted[0].recipients, [(2, one)]);
        assert_eq!(accepted[1].recipients, [(1, one)]);
    }

    #[test]
    fn a_block_or_the_contacts_policy_refuses_a_direct_message() {
        let jobs = vec![send(1, Target::User(2), None), send(3, Target::User(4), None)];
        let checked = vec![
            Checked { job: 0, conversation: None, other: Some(2) },
            Checked { job: 1, conversation: None, other: Some(4) },
        ];
        let standing = HashMap::from([(safety::pair_key(2, 1), Pair { blocked: true, contacts: true })]);
        let rules = MessagingSettings { direct_policy: DirectPolicy::Contacts, ..Default::default() };
        let mut results: Results = jobs.iter().map(|_| None).collect();
        let plan = admit(&jobs, checked, &standing, &rules, &mut results);
        assert!(plan.admitted.is_empty() && plan.to_open.is_empty());
        assert_eq!([refused(&results, 0), refused(&results, 1)], [Some(403), Some(403)]);
    }
}
