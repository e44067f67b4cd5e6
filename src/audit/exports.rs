//! The trail as auditors take it away: CSV or JSON lines, with lists decoded and hashes
//! in hex, streamed page by page.

use serde::Serialize;

use crate::error::Error;
use crate::ids::GrantId;
use crate::store::Store;
use crate::store::audit::AuditRow;

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl Format {
    /// Parses `csv` or `jsonl`.
    pub fn parse(text: &str) -> Result<Self, Error> {
        match text {
            "csv" => Ok(Self::Csv),
            "jsonl" => Ok(Self::Jsonl),
            _ => Err(crate::error::invalid("format", "must be csv or jsonl")),
        }
    }
}

/// One event as exported and shown: times as RFC 3339, hashes as hex.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ExportedEvent {
    /// Sequence number.
    pub seq: i64,
    /// When (RFC 3339).
    pub at: String,
    /// `citizen`, `agency`, `auditor`, `operator` or `system`.
    pub actor_kind: String,
    /// The actor's id (a citizen's pseudonym, an agency's id…).
    pub actor_id: Option<String>,
    /// The agency official.
    pub officer_id: Option<String>,
    /// The agency's case.
    pub case_id: Option<String>,
    /// The citizen concerned (pseudonym).
    pub citizen: Option<String>,
    /// What happened (`document.read`, `grant.revoke`…).
    pub action: String,
    /// Objects acted on (JSON list).
    pub object_ids: String,
    /// The grant involved.
    pub grant_id: Option<GrantId>,
    /// Purpose.
    pub purpose: Option<String>,
    /// Tier.
    pub tier: Option<String>,
    /// Fields revealed (JSON list).
    pub fields: Option<String>,
    /// `ok`, `refused` or `failed`.
    pub outcome: String,
    /// Bytes sent.
    pub bytes_sent: Option<i64>,
    /// HTTP request id.
    pub request_id: Option<String>,
    /// Why (refusals, failures).
    pub detail: Option<String>,
    /// Previous hash (hex).
    pub prev_hash: String,
    /// This event's hash (hex).
    pub hash: String,
}

impl From<&AuditRow> for ExportedEvent {
    fn from(r: &AuditRow) -> Self {
        use time::format_description::well_known::Rfc3339;
        Self {
            seq: r.seq,
            at: crate::clock::from_ms(r.at)
                .format(&Rfc3339)
                .unwrap_or_default(),
            actor_kind: r.actor_kind.clone(),
            actor_id: r.actor_id.clone(),
            officer_id: r.officer_id.clone(),
            case_id: r.case_id.clone(),
            citizen: r.citizen_pseudonym.clone(),
            action: r.action.clone(),
            object_ids: r.object_ids.clone(),
            grant_id: r.grant_id,
            purpose: r.purpose.clone(),
            tier: r.tier.clone(),
            fields: r.fields.clone(),
            outcome: r.outcome.clone(),
            bytes_sent: r.bytes_sent,
            request_id: r.request_id.clone(),
            detail: r.detail.clone(),
            prev_hash: custodia_crypto::digest::hex(&r.prev_hash),
            hash: custodia_crypto::digest::hex(&r.hash),
        }
    }
}

/// A cell a spreadsheet would take for a formula (`= + - @`, or a leading tab or carriage
/// return) gets a leading `'`, so it opens as the text it is (OWASP "CSV injection").
/// Values are otherwise exported exactly as recorded.
fn neutralise(cell: &mut String) {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        cell.insert(0, '\'');
    }
}

impl ExportedEvent {
    /// This event as a CSV row for a spreadsheet: every text cell neutralised.
    pub fn for_spreadsheet(mut self) -> Self {
        for cell in [
            &mut self.at,
            &mut self.actor_kind,
            &mut self.action,
            &mut self.object_ids,
            &mut self.outcome,
            &mut self.prev_hash,
            &mut self.hash,
        ] {
            neutralise(cell);
        }
        for cell in [
            &mut self.actor_id,
            &mut self.officer_id,
            &mut self.case_id,
            &mut self.citizen,
            &mut self.purpose,
            &mut self.tier,
            &mut self.fields,
            &mut self.request_id,
            &mut self.detail,
        ]
        .into_iter()
        .flatten()
        {
            neutralise(cell);
        }
        self
    }
}

/// Writes every event with `since <= at < until` (ms; `None` = open) to `out`, in
/// sequence order, streaming page by page. Returns how many were written.
pub async fn export(
    store: &Store,
    since: Option<i64>,
    until: Option<i64>,
    format: Format,
    out: &mut (dyn std::io::Write + Send),
) -> Result<u64, Error> {
    const PAGE: i64 = 5_000;
    let io = |e: std::io::Error| Error::Internal(e.into());
    let mut written = 0;
    let mut after = 0;
    let mut header = true;
    loop {
        let page = store.audit_events_after(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        let rows: Vec<ExportedEvent> = page
            .iter()
            .filter(|r| since.is_none_or(|s| r.at >= s) && until.is_none_or(|u| r.at < u))
            .map(ExportedEvent::from)
            .collect();
        match format {
            Format::Csv => {
                let mut w = csv::WriterBuilder::new()
                    .has_headers(header)
                    .from_writer(Vec::new());
                for e in rows.iter().cloned() {
                    w.serialize(e.for_spreadsheet())
                        .map_err(|e| Error::Internal(e.into()))?;
                }
                let buf = w
                    .into_inner()
                    .map_err(|e| Error::Internal(anyhow::anyhow!("{e}")))?;
                out.write_all(&buf).map_err(io)?;
                header = header && rows.is_empty();
            }
            Format::Jsonl => {
                for e in &rows {
                    serde_json::to_writer(&mut *out, e).map_err(|e| Error::Internal(e.into()))?;
                    out.write_all(b"\n").map_err(io)?;
                }
            }
        }
        written += rows.len() as u64;
    }
    out.flush().map_err(io)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::neutralise;

    #[test]
    fn formula_cells_open_as_text() {
        for (raw, shown) in [
            ("=HYPERLINK(\"x\")", "'=HYPERLINK(\"x\")"),
            ("+1", "'+1"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("officer-7", "officer-7"),
            ("", ""),
        ] {
            let mut cell = raw.to_owned();
            neutralise(&mut cell);
            assert_eq!(cell, shown);
        }
    }
}

/// Property tests: no exported cell opens as a formula, and other cells are untouched.
#[cfg(test)]
mod neutralise_properties {
    use super::neutralise;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn no_cell_starts_a_formula(text in "[=+\\-@\t\r]?\\PC{0,30}") {
            let mut cell = text.clone();
            neutralise(&mut cell);
            prop_assert!(!cell.starts_with(['=', '+', '-', '@', '\t', '\r']));
            if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
                prop_assert_eq!(cell, format!("'{text}"));
            } else {
                prop_assert_eq!(cell, text);
            }
        }
    }
}
