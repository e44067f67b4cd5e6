//! Patterns worth an auditor's look in the last week's events. The database counts them
//! ([`Store::audit_flag_counts`](crate::store::Store::audit_flag_counts)), over every event
//! of the week however many there are; this module holds the rules and puts them in words.

use serde::Serialize;

use crate::store::audit::FlagCounts;

/// A pattern worth a look.
#[derive(Debug, Clone, Serialize)]
pub struct Flag {
    /// `many-citizens`, `night-reads`, `refusal-burst` or `emergency-unreviewed`.
    pub kind: &'static str,
    /// The agency.
    pub agency: Option<String>,
    /// The officer, where one is involved.
    pub officer: Option<String>,
    /// In words.
    pub detail: String,
}

/// Officers reading at least this many distinct citizens within a clock hour are flagged.
pub const MANY_CITIZENS_PER_HOUR: i64 = 10;
/// At least this many refusals for one agency within ten minutes are flagged.
pub const REFUSALS_PER_BURST: u32 = 5;
/// How far back the console looks.
pub const FLAG_WINDOW_MS: i64 = 7 * 86_400_000;
/// An emergency access not reviewed within this time is flagged (SPEC §6).
pub const EMERGENCY_REVIEW_DUE_MS: i64 = 7 * 86_400_000;

/// The patterns in the counts: one officer reading many citizens in an hour, reads at night
/// (22:00–06:00 China Standard Time, UTC+8), bursts of refusals.
pub fn flags(counts: &FlagCounts) -> Vec<Flag> {
    let mut out = Vec::new();
    for (agency, officer, hour, citizens) in &counts.many_citizens {
        out.push(Flag {
            kind: "many-citizens",
            agency: Some(agency.clone().unwrap_or_default()),
            officer: Some(officer.clone().unwrap_or_default()),
            detail: format!(
                "{citizens} citizens read within one hour ({})",
                crate::clock::from_ms(hour.saturating_mul(3_600_000))
            ),
        });
    }
    for (agency, officer, n) in &counts.night_reads {
        out.push(Flag {
            kind: "night-reads",
            agency: Some(agency.clone().unwrap_or_default()),
            officer: Some(officer.clone().unwrap_or_default()),
            detail: format!("{n} read(s) between 22:00 and 06:00 (UTC+8)"),
        });
    }
    for (agency, n) in &counts.refusal_bursts {
        out.push(Flag {
            kind: "refusal-burst",
            agency: Some(agency.clone().unwrap_or_default()),
            officer: None,
            detail: format!("{n} refusals, at least {REFUSALS_PER_BURST} within ten minutes"),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_count_becomes_one_flag_in_words() {
        assert!(flags(&FlagCounts::default()).is_empty());
        let counts = FlagCounts {
            many_citizens: vec![(Some("a-1".into()), Some("o-2".into()), 498_842, 12)],
            night_reads: vec![(Some("a-1".into()), Some("o-3".into()), 2)],
            refusal_bursts: vec![(Some("a-2".into()), 7)],
        };
        let f = flags(&counts);
        let kinds: Vec<&str> = f.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, ["many-citizens", "night-reads", "refusal-burst"]);
        assert_eq!(f[0].officer.as_deref(), Some("o-2"));
        assert!(f[0].detail.starts_with("12 citizens read within one hour"));
        assert_eq!(f[1].detail, "2 read(s) between 22:00 and 06:00 (UTC+8)");
        assert_eq!(f[2].agency.as_deref(), Some("a-2"));
        assert!(f[2].officer.is_none());
    }
}
