//! Patterns worth an auditor's look in recent events.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::store::audit::AuditRow;

/// A pattern worth a look.
#[derive(Debug, Clone, Serialize)]
pub struct Flag {
    /// `many-citizens`, `night-reads` or `refusal-burst`.
    pub kind: &'static str,
    /// The agency.
    pub agency: Option<String>,
    /// The officer, where one is involved.
    pub officer: Option<String>,
    /// In words.
    pub detail: String,
}

/// Officers reading at least this many distinct citizens within an hour are flagged.
pub const MANY_CITIZENS_PER_HOUR: usize = 10;
/// The newest events of the last week that the flags look at.
pub(super) const RECENT_FOR_FLAGS: i64 = 20_000;
/// At least this many refusals for one agency within ten minutes are flagged.
pub const REFUSALS_PER_BURST: usize = 5;

/// Looks for patterns in recent events (newest first): one officer reading many citizens
/// in an hour, reads at night (22:00–06:00 China Standard Time, UTC+8), bursts of
/// refusals.
pub fn flags(events: &[AuditRow]) -> Vec<Flag> {
    let mut out = Vec::new();
    let reads: Vec<&AuditRow> = events
        .iter()
        .filter(|e| e.actor_kind == "agency" && e.action.starts_with("document."))
        .collect();
    // Many citizens per officer per hour.
    let mut per_officer: BTreeMap<(String, String, i64), BTreeSet<String>> = BTreeMap::new();
    for e in reads.iter().filter(|e| e.outcome == "ok") {
        let key = (
            e.actor_id.clone().unwrap_or_default(),
            e.officer_id.clone().unwrap_or_default(),
            e.at / 3_600_000,
        );
        if let Some(c) = &e.citizen_pseudonym {
            per_officer.entry(key).or_default().insert(c.clone());
        }
    }
    for ((agency, officer, hour), citizens) in per_officer {
        if citizens.len() >= MANY_CITIZENS_PER_HOUR {
            out.push(Flag {
                kind: "many-citizens",
                agency: Some(agency),
                officer: Some(officer),
                detail: format!(
                    "{} citizens read within one hour ({})",
                    citizens.len(),
                    crate::clock::from_ms(hour * 3_600_000)
                ),
            });
        }
    }
    // Reads at night, China Standard Time.
    let mut night: BTreeMap<(String, String), usize> = BTreeMap::new();
    for e in reads.iter().filter(|e| e.outcome == "ok") {
        let hour_cst = ((e.at / 3_600_000) + 8).rem_euclid(24);
        if !(6..22).contains(&hour_cst) {
            *night
                .entry((
                    e.actor_id.clone().unwrap_or_default(),
                    e.officer_id.clone().unwrap_or_default(),
                ))
                .or_default() += 1;
        }
    }
    for ((agency, officer), n) in night {
        out.push(Flag {
            kind: "night-reads",
            agency: Some(agency),
            officer: Some(officer),
            detail: format!("{n} read(s) between 22:00 and 06:00 (UTC+8)"),
        });
    }
    // Refusal bursts: ≥ N refusals for one agency within any ten minutes.
    let mut refusals: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| e.actor_kind == "agency" && e.outcome == "refused")
    {
        refusals
            .entry(e.actor_id.clone().unwrap_or_default())
            .or_default()
            .push(e.at);
    }
    for (agency, mut times) in refusals {
        times.sort_unstable();
        let burst = times
            .windows(REFUSALS_PER_BURST)
            .any(|w| match (w.first(), w.last()) {
                (Some(first), Some(last)) => last - first <= 600_000,
                _ => false,
            });
        if burst {
            out.push(Flag {
                kind: "refusal-burst",
                agency: Some(agency),
                officer: None,
                detail: format!(
                    "{} refusals, at least {REFUSALS_PER_BURST} within ten minutes",
                    times.len()
                ),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(at: i64, officer: &str, citizen: &str, outcome: &str) -> AuditRow {
        AuditRow {
            seq: 0,
            at,
            actor_kind: "agency".into(),
            actor_id: Some("agency-1".into()),
            officer_id: Some(officer.into()),
            case_id: None,
            citizen_pseudonym: Some(citizen.into()),
            action: "document.read".into(),
            object_ids: "[]".into(),
            grant_id: None,
            purpose: None,
            tier: None,
            fields: None,
            outcome: outcome.into(),
            bytes_sent: None,
            request_id: None,
            detail: None,
            prev_hash: Vec::new(),
            hash: Vec::new(),
        }
    }

    // 2026-11-28 02:00 UTC = 10:00 in Beijing (daytime).
    const DAY: i64 = 1_795_831_200_000;

    #[test]
    fn patterns_are_flagged_and_ordinary_work_is_not() {
        let ordinary: Vec<AuditRow> = (0..5)
            .map(|i| read(DAY + i * 60_000, "o-1", &format!("p-{i}"), "ok"))
            .collect();
        assert!(flags(&ordinary).is_empty(), "{:?}", flags(&ordinary));

        let many: Vec<AuditRow> = (0..12)
            .map(|i| read(DAY + i * 60_000, "o-2", &format!("p-{i}"), "ok"))
            .collect();
        let f = flags(&many);
        assert!(
            f.iter()
                .any(|f| f.kind == "many-citizens" && f.officer.as_deref() == Some("o-2"))
        );

        // 16:00 UTC = 00:00 in Beijing.
        let night = vec![read(DAY + 14 * 3_600_000, "o-3", "p-1", "ok")];
        assert_eq!(flags(&night)[0].kind, "night-reads");

        let burst: Vec<AuditRow> = (0..5)
            .map(|i| read(DAY + i * 30_000, "o-4", "p-1", "refused"))
            .collect();
        assert!(flags(&burst).iter().any(|f| f.kind == "refusal-burst"));
        let spread: Vec<AuditRow> = (0..5)
            .map(|i| read(DAY + i * 3_600_000, "o-4", "p-1", "refused"))
            .collect();
        assert!(!flags(&spread).iter().any(|f| f.kind == "refusal-burst"));
    }
}
