//! The auditors' console: sign-in, enrolment and the console itself.

use super::*;

pub(super) async fn audit_login(
    State(state): State<AppState>,
    Visit(page, _): Visit,
) -> Result<Response, ApiError> {
    render(&state, &page, "audit_login.html", context! {})
}

#[derive(Deserialize)]
pub(super) struct VerifyQuery {
    verify: Option<u8>,
}

#[derive(Deserialize)]
pub(super) struct EnrolQuery {
    #[serde(default)]
    token: String,
}

pub(super) async fn audit_enrol(
    State(state): State<AppState>,
    Visit(page, _): Visit,
    Query(q): Query<EnrolQuery>,
) -> Result<Response, ApiError> {
    let name = crate::auditors::invite_name(&state, &q.token).await.ok();
    render(
        &state,
        &page,
        "audit_enrol.html",
        context! { token => q.token, name },
    )
}

pub(super) async fn audit_console(
    State(state): State<AppState>,
    AuditorIn(page, session): AuditorIn,
    Query(q): Query<crate::http::audit::EventsQuery>,
    verify_q: Query<VerifyQuery>,
) -> Result<Response, ApiError> {
    let query = q.query()?;
    let rows = crate::auditors::search(&state, &session, &query, 100).await?;
    let events = crate::auditors::shown(&rows);
    let flags = crate::auditors::recent_flags(&state, &session).await?;
    // A full verification reads the whole trail, so it runs when asked (`?verify=1`);
    // otherwise the page shows the head and the last signed checkpoint.
    let t = page.lang.messages();
    let say = |key: &str, values: &[(&str, String)]| {
        let mut text = t.get(key).cloned().unwrap_or_else(|| key.to_owned());
        for (name, value) in values {
            text = text.replace(&format!("{{{name}}}"), value);
        }
        text
    };
    let checkpoint = |seq: Option<i64>| match seq {
        Some(seq) => say("audit_checkpoint_at", &[("seq", seq.to_string())]),
        None => say("audit_checkpoint_none", &[]),
    };
    let mut chain_evidence: Vec<String> = Vec::new();
    let (verified, intact, chain_text) = if verify_q.verify == Some(1) {
        match crate::auditors::verify_chain(&state, &session).await? {
            Ok(s) => {
                let mut text = say(
                    "audit_chain_verified_text",
                    &[
                        ("events", s.events.to_string()),
                        ("head", s.head_hash.get(..16).unwrap_or_default().to_owned()),
                        ("checkpoint", checkpoint(s.last_checkpoint)),
                    ],
                );
                if let Some((seq, cosigners)) = s.witnessed {
                    text.push_str(" · ");
                    text.push_str(&say(
                        "audit_witnessed_text",
                        &[
                            ("seq", seq.to_string()),
                            ("count", cosigners.to_string()),
                            ("total", state.config.witnesses.len().to_string()),
                            ("quorum", state.config.witness_quorum.to_string()),
                        ],
                    ));
                }
                (true, true, text)
            }
            Err(f) => {
                chain_evidence.clone_from(&f.evidence);
                (true, false, f.to_string())
            }
        }
    } else {
        let (head, hash) = state.store.audit_head().await?;
        let last = state.store.last_checkpoint().await?;
        let hash = custodia_crypto::digest::hex(&hash);
        (
            false,
            true,
            say(
                "audit_chain_head_text",
                &[
                    ("seq", head.to_string()),
                    ("head", hash.get(..16).unwrap_or_default().to_owned()),
                    ("checkpoint", checkpoint(last.map(|c| c.seq))),
                ],
            ),
        )
    };
    let agencies: Vec<_> = crate::agencies::directory(&state)
        .await?
        .into_iter()
        .map(|a| context! { id => a.id.to_string(), name => a.name })
        .collect();
    // Emergency accesses waiting for a verdict, and each agency's record.
    let emergency = crate::emergencies::queue(&state, &session, false).await?;
    let type_names: std::collections::BTreeMap<String, String> = state
        .catalog
        .document_types()
        .iter()
        .map(|t| (t.id.clone(), super::i18n::type_name(page.lang, t)))
        .collect();
    render(
        &state,
        &page,
        "audit.html",
        context! {
            events, flags, verified, intact, chain_text, chain_evidence, agencies,
            emergency_queue => emergency.accesses, emergency_agencies => emergency.agencies,
            type_names,
            q => context! {
                citizen => q.citizen, agency => q.agency, officer => q.officer,
                action => q.action, outcome => q.outcome, since => q.since, until => q.until,
            },
        },
    )
}
