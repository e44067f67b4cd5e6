//! What an event says: the action, the outcome, who acted, and the builder every part of
//! Custodia fills in before appending.

use serde::{Deserialize, Serialize};

use super::chain;
use crate::ids::GrantId;
use crate::status::Tier;
use crate::status::named_enum;
use crate::store::audit::AuditRow;
use custodia_crypto::tlog::TreeHash;

named_enum! {
    /// What an event records: one name each, stored in the trail and shown as it is.
    Action {
        /// `document.read`
        DocumentRead => "document.read",
        /// `document.file`
        DocumentFile => "document.file",
        /// `document.upload`
        DocumentUpload => "document.upload",
        /// `document.replace`
        DocumentReplace => "document.replace",
        /// `document.delete`
        DocumentDelete => "document.delete",
        /// `document.deposit`
        DocumentDeposit => "document.deposit",
        /// `document.receive`
        DocumentReceive => "document.receive",
        /// `document.accept`: a citizen accepted a deposit, which may now join grants
        DocumentAccept => "document.accept",
        /// `grant.create`
        GrantCreate => "grant.create",
        /// `grant.revoke`
        GrantRevoke => "grant.revoke",
        /// `grant.expire`
        GrantExpire => "grant.expire",
        /// `grant.exhausted`
        GrantExhausted => "grant.exhausted",
        /// `grant.documents`
        GrantDocuments => "grant.documents",
        /// `request.create`
        RequestCreate => "request.create",
        /// `request.approve`
        RequestApprove => "request.approve",
        /// `request.deny`
        RequestDeny => "request.deny",
        /// `citizen.register`
        CitizenRegister => "citizen.register",
        /// `citizen.enrol`: an enrolment code was issued
        CitizenEnrol => "citizen.enrol",
        /// `citizen.reenrol`: an enrolment code replaced every passkey
        CitizenReenrol => "citizen.reenrol",
        /// `citizen.step-up`: a passkey confirmed for an account change
        CitizenStepUp => "citizen.step-up",
        /// `passkey.add`
        PasskeyAdd => "passkey.add",
        /// `passkey.remove`
        PasskeyRemove => "passkey.remove",
        /// `passphrase.change`
        PassphraseChange => "passphrase.change",
        /// `vault.recover`: a new passphrase set with the recovery code
        VaultRecover => "vault.recover",
        /// `sessions.end`: every session signed out at once
        SessionsEnd => "sessions.end",
        /// `login`
        Login => "login",
        /// `vault.unlock`
        VaultUnlock => "vault.unlock",
        /// `auditor.invite`
        AuditorInvite => "auditor.invite",
        /// `auditor.enrol`
        AuditorEnrol => "auditor.enrol",
        /// `auditor.disable`: an auditor's access ended by the operator
        AuditorDisable => "auditor.disable",
        /// `audit.query`
        AuditQuery => "audit.query",
        /// `audit.verify`
        AuditVerify => "audit.verify",
        /// `audit.export`
        AuditExport => "audit.export",
        /// `audit.reveal`: the oversight office opened a national ID with its key
        AuditReveal => "audit.reveal",
        /// `audit.confirm-identity`: the console confirmed or refuted a candidate ID
        AuditConfirmIdentity => "audit.confirm-identity",
        /// `audit.oversight-key`: a new oversight public key was set up
        AuditOversightKey => "audit.oversight-key",
        /// `agency.create`
        AgencyCreate => "agency.create",
        /// `agency.rotate-key`
        AgencyRotateKey => "agency.rotate-key",
        /// `agency.disable`
        AgencyDisable => "agency.disable",
        /// `agency.set-issuer-key`
        AgencySetIssuerKey => "agency.set-issuer-key",
        /// `agency.set-issuer-types`: the document types an issuer may deposit
        AgencySetIssuerTypes => "agency.set-issuer-types",
        /// `agency.revoke-issuer-key`: an issuer key revoked as compromised since a date
        AgencyRevokeIssuerKey => "agency.revoke-issuer-key",
        /// `delegation.create`: a citizen appointed a delegate
        DelegationCreate => "delegation.create",
        /// `delegation.accept`: the delegate accepted
        DelegationAccept => "delegation.accept",
        /// `delegation.end`: either side ended it, or it ran out
        DelegationEnd => "delegation.end",
        /// `delegation.key`: a delegation received its keys at the principal's unlock
        DelegationKey => "delegation.key",
        /// `guardianship.declare`: an authority declared a guardian
        GuardianshipDeclare => "guardianship.declare",
        /// `guardianship.end`: withdrawn by the authority, or the ward came of age
        GuardianshipEnd => "guardianship.end",
        /// `emergency.set`: a citizen chose which types may be read in an emergency
        EmergencySet => "emergency.set",
        /// `emergency.access`: an emergency agency broke the glass (an emergency grant)
        EmergencyAccess => "emergency.access",
        /// `emergency.review`: an auditor judged an emergency access
        EmergencyReview => "emergency.review",
        /// `webhook.add`: an agency added a webhook endpoint
        WebhookAdd => "webhook.add",
        /// `webhook.remove`: an agency removed one
        WebhookRemove => "webhook.remove",
        /// `grant.revocation-ack`: the agency acknowledged it stopped using an ended grant
        GrantRevocationAck => "grant.revocation-ack",
        /// `grant.retention-ack`: the agency confirmed it deleted what it kept
        GrantRetentionAck => "grant.retention-ack",
        /// `keys.rotate-master`
        KeysRotateMaster => "keys.rotate-master",
        /// `keys.rotate-signing`
        KeysRotateSigning => "keys.rotate-signing",
    }
}

named_enum! {
    /// How it ended.
    Outcome {
        /// Done.
        Ok => "ok",
        /// Refused by a rule (consent, policy, limit).
        Refused => "refused",
        /// Attempted and failed (a wrong passphrase, a bad passkey).
        Failed => "failed",
    }
}

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorKind {
    /// A citizen, by pseudonym.
    Citizen,
    /// An agency, by id, with officer and case.
    Agency,
    /// An auditor, by id.
    Auditor,
    /// The operator, through the CLI.
    Operator,
    /// A citizen acting for another (by the delegate's pseudonym; the event's citizen is
    /// the principal's).
    Delegate,
    /// The server itself (expiry, sweeps).
    System,
}

impl ActorKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Citizen => "citizen",
            Self::Agency => "agency",
            Self::Auditor => "auditor",
            Self::Operator => "operator",
            Self::Delegate => "delegate",
            Self::System => "system",
        }
    }
}

/// One event to append. Build with [`Event::new`] and the setters.
#[derive(Debug, Clone)]
pub struct Event {
    actor_kind: &'static str,
    actor_id: Option<String>,
    officer_id: Option<String>,
    case_id: Option<String>,
    citizen: Option<String>,
    action: Action,
    object_ids: Vec<String>,
    grant_id: Option<GrantId>,
    purpose: Option<String>,
    tier: Option<Tier>,
    fields: Option<Vec<String>>,
    outcome: Outcome,
    bytes_sent: Option<i64>,
    request_id: Option<String>,
    detail: Option<String>,
}

impl Event {
    /// `actor` did `action` (for example `document.read`) with `outcome` (`ok`, `refused`,
    /// `failed`).
    pub fn new(actor: ActorKind, actor_id: Option<String>, action: Action) -> Self {
        Self {
            actor_kind: actor.as_str(),
            actor_id,
            officer_id: None,
            case_id: None,
            citizen: None,
            action,
            object_ids: Vec::new(),
            grant_id: None,
            purpose: None,
            tier: None,
            fields: None,
            outcome: Outcome::Ok,
            bytes_sent: None,
            request_id: None,
            detail: None,
        }
    }
    /// The officer and case of an agency read.
    pub fn officer(mut self, officer: Option<&str>, case: Option<&str>) -> Self {
        self.officer_id = officer.map(str::to_owned);
        self.case_id = case.map(str::to_owned);
        self
    }
    /// The citizen concerned, by pseudonym.
    pub fn citizen(mut self, pseudonym: Option<&str>) -> Self {
        self.citizen = pseudonym.map(str::to_owned);
        self
    }
    /// Ids of the objects acted on (documents, requests, agencies…).
    pub fn objects(mut self, ids: impl IntoIterator<Item = String>) -> Self {
        self.object_ids = ids.into_iter().collect();
        self
    }
    /// The grant involved.
    pub fn grant(mut self, grant: Option<GrantId>) -> Self {
        self.grant_id = grant;
        self
    }
    /// The purpose.
    pub fn purpose(mut self, purpose: Option<&str>) -> Self {
        self.purpose = purpose.map(str::to_owned);
        self
    }
    /// The tier and fields revealed.
    pub fn tier(mut self, tier: Tier, fields: Option<Vec<String>>) -> Self {
        self.tier = Some(tier);
        self.fields = fields;
        self
    }
    /// The outcome (default `ok`).
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }
    /// Why, for refusals and failures (never personal data).
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
    /// Bytes that will be sent (a read records its size before sending).
    pub fn bytes(mut self, bytes: Option<u64>) -> Self {
        self.bytes_sent = bytes.map(|b| i64::try_from(b).unwrap_or(i64::MAX));
        self
    }
    /// The HTTP request id.
    pub fn request(mut self, request_id: Option<&str>) -> Self {
        self.request_id = request_id.map(str::to_owned);
        self
    }
    /// The action name.
    pub fn action(&self) -> &'static str {
        self.action.as_str()
    }

    /// The event in the form it is queued, staged in a change's transaction and chained
    /// in: every value as it will be stored.
    pub(crate) fn stage(self) -> Staged {
        Staged {
            actor_kind: self.actor_kind.to_owned(),
            actor_id: self.actor_id,
            officer_id: self.officer_id,
            case_id: self.case_id,
            citizen: self.citizen,
            action: self.action.as_str().to_owned(),
            object_ids: self.object_ids,
            grant_id: self.grant_id,
            purpose: self.purpose,
            tier: self.tier.map(|t| t.as_str().to_owned()),
            fields: self.fields,
            outcome: self.outcome.as_str().to_owned(),
            bytes_sent: self.bytes_sent,
            request_id: self.request_id,
            detail: self.detail,
        }
    }
}

/// An event with every value as it will be stored, not yet given its place in the chain:
/// what the sequencer appends, and what a change's transaction stages in `audit_outbox`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Staged {
    actor_kind: String,
    actor_id: Option<String>,
    officer_id: Option<String>,
    case_id: Option<String>,
    citizen: Option<String>,
    action: String,
    object_ids: Vec<String>,
    grant_id: Option<GrantId>,
    purpose: Option<String>,
    tier: Option<String>,
    fields: Option<Vec<String>>,
    outcome: String,
    bytes_sent: Option<i64>,
    request_id: Option<String>,
    detail: Option<String>,
}

impl Staged {
    /// The action name.
    pub(super) fn action(&self) -> &str {
        &self.action
    }

    /// The citizen concerned, by pseudonym.
    pub(super) fn citizen_pseudonym(&self) -> Option<&str> {
        self.citizen.as_deref()
    }

    /// The read this event claimed was refused when its batch committed.
    pub(super) fn refused(mut self, detail: &str) -> Self {
        self.outcome = Outcome::Refused.as_str().to_owned();
        self.detail = Some(detail.to_owned());
        self.bytes_sent = None;
        self
    }

    /// The stored row at `seq` following `prev_hash`, and its Merkle leaf (both from one
    /// canonical encoding).
    pub(super) fn into_row(self, seq: i64, at: i64, prev_hash: Vec<u8>) -> (AuditRow, TreeHash) {
        let mut row = AuditRow {
            seq,
            at,
            actor_kind: self.actor_kind,
            actor_id: self.actor_id,
            officer_id: self.officer_id,
            case_id: self.case_id,
            citizen_pseudonym: self.citizen,
            action: self.action,
            object_ids: serde_json::to_string(&self.object_ids).unwrap_or_else(|_| "[]".into()),
            grant_id: self.grant_id,
            purpose: self.purpose,
            tier: self.tier,
            fields: self
                .fields
                .map(|f| serde_json::to_string(&f).unwrap_or_else(|_| "[]".into())),
            outcome: self.outcome,
            bytes_sent: self.bytes_sent,
            request_id: self.request_id,
            detail: self.detail,
            prev_hash,
            hash: Vec::new(),
            body: None,
        };
        let body = chain::canonical(&row);
        row.hash = chain::chain_hash(&row.prev_hash, &body).to_vec();
        let leaf = custodia_crypto::tlog::leaf_hash(body.as_bytes());
        row.body = Some(body);
        (row, leaf)
    }
}

#[cfg(test)]
mod names {
    use super::{Action, Outcome};

    #[test]
    fn every_action_and_outcome_has_its_own_stored_name() {
        let mut seen = std::collections::BTreeSet::new();
        for a in Action::ALL {
            let name = a.as_str();
            assert!(seen.insert(name), "{name} is used twice");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '.' || c == '-'),
                "{name}"
            );
        }
        let outcomes: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(outcomes, ["ok", "refused", "failed"]);
    }
}
