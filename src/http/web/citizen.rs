//! The citizen's pages: home, sign-in, settings, documents, grants, requests, activity.

use super::i18n::*;
use super::*;

pub(super) async fn index(
    State(state): State<AppState>,
    Visit(page, session): Visit,
) -> Result<Response, ApiError> {
    let Some(s) = session.as_ref().filter(|s| s.citizen().is_ok()) else {
        return render(&state, &page, "index.html", context! {});
    };
    let profile = citizens::profile(&state, s).await?;
    let unseen_reads = crate::activity::unseen_reads(&state, s).await?;
    // At a glance: what is stored, what waits for an answer, what is shared now.
    let documents = crate::documents::count(&state, s).await?;
    let pending = crate::requests::list(&state, s)
        .await?
        .iter()
        .filter(|r| r.status == crate::status::RequestStatus::Pending)
        .count();
    let active = crate::grants::list(&state, s)
        .await?
        .iter()
        .filter(|g| g.status == crate::status::GrantStatus::Active)
        .count();
    // Every emergency access disclosed to her, told on the first page she sees.
    let emergencies = emergency_notices(&state, &page, s).await?;
    render(
        &state,
        &page,
        "index.html",
        context! {
            unlocked => profile.unlocked, display_name => profile.display_name, unseen_reads,
            documents, pending, active, emergencies,
        },
    )
}

/// The emergency accesses disclosed to the citizen, as the home page and settings tell
/// them (newest first).
async fn emergency_notices(
    state: &AppState,
    page: &Page,
    session: &crate::sessions::Session,
) -> Result<Vec<minijinja::Value>, ApiError> {
    let t = page.lang.messages();
    let text = |key: String| t.get(&key).cloned().unwrap_or(key);
    Ok(crate::emergencies::availability(state, session)
        .await?
        .accesses
        .into_iter()
        .map(|e| {
            let types: Vec<String> = e
                .document_types
                .iter()
                .map(|id| type_name_of(state, page.lang, id))
                .collect();
            context! {
                grant_id => e.grant_id.to_string(),
                agency => e.agency_name,
                at => e.created_at.get(..16).unwrap_or_default().replace('T', " "),
                types => types.join(list_separator(page.lang)),
                justification => e.justification,
                legal_basis => e.legal_basis,
                reads => e.reads,
                status_text => text(format!("status_{}", e.status)),
                verdict => e.verdict.map(|v| text(format!("emergency_verdict_{v}"))),
            }
        })
        .collect())
}

pub(super) async fn register(
    State(state): State<AppState>,
    Visit(page, _): Visit,
) -> Result<Response, ApiError> {
    let enrolment_required = state.config.registration == crate::config::Registration::Enrolment;
    let eid_offered = state.eid.is_some();
    render(
        &state,
        &page,
        "register.html",
        context! { enrolment_required, eid_offered },
    )
}

pub(super) async fn login(
    State(state): State<AppState>,
    Visit(page, _): Visit,
) -> Result<Response, ApiError> {
    let eid_offered = state.eid.is_some();
    render(&state, &page, "login.html", context! { eid_offered })
}

pub(super) async fn unlock(
    State(state): State<AppState>,
    SignedIn(page, _): SignedIn,
) -> Result<Response, ApiError> {
    render(&state, &page, "unlock.html", context! {})
}

/// The name of document type `id` in `lang` (the id itself if the catalog lacks it).
fn type_name_of(state: &AppState, lang: Lang, id: &str) -> String {
    state
        .catalog
        .document_type(id)
        .map(|d| type_name(lang, d))
        .unwrap_or_else(|| id.to_owned())
}

/// A list a delegate may not see shows as empty on her principal's pages (the API
/// refuses it with 403; a page only shows less).
fn unless_forbidden<T>(
    listed: Result<Vec<T>, crate::error::Error>,
) -> Result<Vec<T>, crate::error::Error> {
    match listed {
        Err(crate::error::Error::Forbidden(_)) => Ok(Vec::new()),
        other => other,
    }
}

pub(super) fn date(ms: i64) -> String {
    let t = from_ms(ms);
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

pub(super) async fn settings(
    State(state): State<AppState>,
    SignedIn(page, session): SignedIn,
) -> Result<Response, ApiError> {
    let profile = citizens::profile(&state, &session).await?;
    let passkeys: Vec<_> = profile
        .passkeys
        .iter()
        .map(|p| {
            context! {
                id => p.id.to_string(),
                label => p.label,
                created => date(p.created_at),
                last_used => p.last_used_at.map(date),
            }
        })
        .collect();
    // Which types an emergency agency may read without asking: the choice, always shown.
    let chosen = crate::emergencies::chosen_types(&state, &session).await?;
    let emergency_types: Vec<_> = state
        .catalog
        .document_types()
        .iter()
        .filter(|t| t.sharing_class != crate::catalog::SharingClass::None)
        .map(|t| {
            context! {
                id => t.id, name => type_name(page.lang, t), chosen => chosen.contains(&t.id),
            }
        })
        .collect();
    let emergency_names: Vec<String> = state
        .catalog
        .document_types()
        .iter()
        .filter(|t| chosen.contains(&t.id))
        .map(|t| type_name(page.lang, t))
        .collect();
    render(
        &state,
        &page,
        "settings.html",
        context! {
            passkeys, emergency_types,
            emergency_chosen => emergency_names.join(list_separator(page.lang)),
            unlocked => session.is_unlocked(),
        },
    )
}

pub(super) async fn documents_page(
    State(state): State<AppState>,
    SignedIn(page, session): SignedIn,
) -> Result<Response, ApiError> {
    let docs = unless_forbidden(crate::documents::list(&state, &session).await)?;
    let mut groups: Vec<minijinja::Value> = Vec::new();
    for t in state.catalog.document_types() {
        let mine: Vec<_> = docs
            .iter()
            .filter(|d| d.doc_type == t.id)
            .map(|d| {
                context! {
                    id => d.id.to_string(),
                    version => d.version,
                    updated => date(d.updated_at),
                    issued => d.issuer_agency_id.is_some(),
                    issuer => d.issuer_name.clone(),
                    received => d.status == "received",
                }
            })
            .collect();
        if !mine.is_empty() {
            groups.push(context! { type_id => t.id, type_name => type_name(page.lang, t), documents => mine });
        }
    }
    // A delegate stores only types of her delegation, and only if she may upload.
    let may_upload = session
        .may(crate::status::DelegatedAction::Upload, None)
        .is_ok();
    let types: Vec<_> = state
        .catalog
        .document_types()
        .iter()
        .filter(|t| may_upload && session.covers(&t.id))
        .map(|t| context! { id => t.id, name => type_name(page.lang, t) })
        .collect();
    render(&state, &page, "documents.html", context! { groups, types })
}

#[derive(Deserialize)]
pub(super) struct FormQuery {
    #[serde(rename = "type")]
    doc_type: String,
    replace: Option<crate::ids::DocumentId>,
}

pub(super) async fn document_form(
    State(state): State<AppState>,
    Query(form): Query<FormQuery>,
    Unlocked(page, session): Unlocked,
) -> Result<Response, ApiError> {
    let t = state
        .catalog
        .document_type(&form.doc_type)
        .ok_or_else(ApiError::not_found)?;
    let current = match form.replace {
        Some(id) => {
            crate::documents::get(&state, &session, id, None)
                .await?
                .fields
        }
        None => Default::default(),
    };
    let fields: Vec<_> = t
        .fields
        .iter()
        .map(|f| {
            context! {
                name => f.name,
                label => field_label(page.lang, &f.name),
                kind => serde_json::to_value(f.kind).ok().and_then(|v| v.as_str().map(str::to_owned)),
                required => f.required,
                values => f.values,
                example => f.example,
                value => current.get(&f.name).cloned().unwrap_or_default(),
            }
        })
        .collect();
    let hint = page
        .lang
        .messages()
        .get("file_hint")
        .cloned()
        .unwrap_or_default()
        .replace(
            "{limit}",
            &(state.config.max_upload_bytes / (1024 * 1024)).to_string(),
        );
    render(
        &state,
        &page,
        "document_form.html",
        context! {
            type_id => t.id,
            type_name => type_name(page.lang, t),
            fields,
            has_file => t.has_file,
            file_hint => hint,
            replace => form.replace.map(|id| id.to_string()),
        },
    )
}

#[derive(Deserialize)]
pub(super) struct VersionQuery {
    version: Option<i32>,
}

pub(super) async fn document_page(
    State(state): State<AppState>,
    Query(vq): Query<VersionQuery>,
    axum::extract::Path(id): axum::extract::Path<crate::ids::DocumentId>,
    Unlocked(page, session): Unlocked,
) -> Result<Response, ApiError> {
    let view = crate::documents::get(&state, &session, id, vq.version).await?;
    let t = state.catalog.document_type(&view.doc_type);
    let fields: Vec<_> = match t {
        Some(t) => t
            .fields
            .iter()
            .filter_map(|f| {
                view.fields
                    .get(&f.name)
                    .map(|v| context! { label => field_label(page.lang, &f.name), value => v })
            })
            .collect(),
        None => view
            .fields
            .iter()
            .map(|(k, v)| context! { label => field_label(page.lang, k), value => v })
            .collect(),
    };
    let file = view.file.as_ref().map(|f| {
        context! { name => f.name, image => f.media_type.is_image(), size_kib => f.size.div_ceil(1024) }
    });
    let versions: Vec<_> = view
        .versions
        .iter()
        .map(|v| context! { version => v.version })
        .collect();
    render(
        &state,
        &page,
        "document.html",
        context! {
            id => id.to_string(),
            type_id => view.doc_type,
            type_name => t.map(|t| type_name(page.lang, t)).unwrap_or_else(|| view.doc_type.clone()),
            version => view.version,
            versions,
            fields,
            file,
            issued => view.issuer_agency_id.is_some(),
            issuer => view.issuer.as_ref().map(|i| context! {
                name => i.name.clone(),
                issued_at => i.issued_at.clone(),
                expires_at => i.expires_at.clone(),
                trust => i.trust,
            }),
            received => view.status == "received",
        },
    )
}

pub(super) async fn grants_page(
    State(state): State<AppState>,
    SignedIn(page, session): SignedIn,
) -> Result<Response, ApiError> {
    let t = page.lang.messages();
    let text = |key: String| t.get(&key).cloned().unwrap_or(key);
    let mut grants = Vec::new();
    for crate::grants::Held {
        grant: g,
        agency_name: agency,
    } in unless_forbidden(crate::grants::held(&state, &session).await)?
    {
        let type_names: Vec<String> = g
            .document_types
            .iter()
            .map(|id| {
                state
                    .catalog
                    .document_type(id)
                    .map(|d| type_name(page.lang, d))
                    .unwrap_or_else(|| id.clone())
            })
            .collect();
        let mut scope = type_names.join(list_separator(page.lang));
        if !g.document_ids.is_empty() {
            if !scope.is_empty() {
                scope.push_str(" + ");
            }
            scope.push_str(&format!(
                "{} × {}",
                g.document_ids.len(),
                text("nav_documents".into())
            ));
        }
        let tier = g.tier.as_str();
        grants.push(context! {
            id => g.id.to_string(),
            agency,
            status => g.status.as_str(),
            status_text => text(format!("status_{}", g.status)),
            scope,
            tier_text => text(format!("tier_{tier}")),
            fields => labels(page.lang, &g.fields),
            purpose => g.purpose,
            reads => g.reads,
            max_reads => g.max_reads,
            until => g.expires_at.get(..10).unwrap_or_default().to_owned(),
            emergency => g.emergency,
            end_acknowledged => g.end_acknowledged_at.is_some(),
            deleted_on => g.deleted_at.as_deref().and_then(|d| d.get(..10)).map(str::to_owned),
            deletion_due => g.retention_due_at.as_deref().and_then(|d| d.get(..10)).map(str::to_owned),
            deletion_overdue => g.deletion_overdue,
        });
    }
    // A delegate gives grants only with `grant`, over her delegation's types.
    let unlocked = session.is_unlocked()
        && session
            .may(crate::status::DelegatedAction::Grant, None)
            .is_ok();
    let agencies: Vec<_> = crate::agencies::directory(&state)
        .await?
        .into_iter()
        .map(|a| context! { id => a.id.to_string(), name => a.name, level => text(format!("level_{}", a.level)) })
        .collect();
    let types: Vec<_> = state
        .catalog
        .document_types()
        .iter()
        .filter(|t| t.sharing_class != crate::catalog::SharingClass::None && session.covers(&t.id))
        .map(|t| {
            let fields: Vec<_> = t
                .fields
                .iter()
                .map(|f| context! { name => f.name, label => field_label(page.lang, &f.name) })
                .collect();
            context! { id => t.id, name => type_name(page.lang, t), fields }
        })
        .collect();
    render(
        &state,
        &page,
        "grants.html",
        context! { grants, unlocked, agencies, types },
    )
}

pub(super) async fn requests_page(
    State(state): State<AppState>,
    SignedIn(page, session): SignedIn,
) -> Result<Response, ApiError> {
    let t = page.lang.messages();
    let text = |key: String| t.get(&key).cloned().unwrap_or(key);
    let name_of = |id: &str| type_name_of(&state, page.lang, id);
    let unlocked = session.is_unlocked();
    let mut requests = Vec::new();
    for r in unless_forbidden(crate::requests::list(&state, &session).await)? {
        let preview = if r.status == crate::status::RequestStatus::Pending && unlocked {
            unless_forbidden(crate::requests::preview(&state, &session, r.id).await)?
                .into_iter()
                .map(|p| {
                    let fields: Vec<_> = p
                        .fields
                        .iter()
                        .map(|(k, v)| context! { label => field_label(page.lang, k), value => v })
                        .collect();
                    context! {
                        type_name => name_of(&p.doc_type),
                        version => p.version,
                        fields,
                        file => p.file.map(|f| f.name),
                        digest => p.content_sha256,
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        let asked = r.tier.as_str();
        let tiers: Vec<_> = [
            crate::catalog::Tier::Verify,
            crate::catalog::Tier::Fields,
            crate::catalog::Tier::Full,
        ]
        .into_iter()
        .filter(|x| *x <= r.tier)
        .map(|x| context! { value => x.as_str(), text => text(format!("tier_{}", x.as_str())) })
        .collect();
        let shareable =
            crate::requests::shareable_fields(&state.catalog, r.tier, &r.document_types, &r.fields);
        let field_choices: Vec<_> = shareable
            .iter()
            .map(|f| context! { name => f, label => field_label(page.lang, f) })
            .collect();
        requests.push(context! {
            id => r.id.to_string(),
            field_choices,
            agency => r.agency_name,
            level => text(format!("level_{}", r.agency_level)),
            status => r.status.as_str(),
            status_text => text(format!("status_{}", r.status)),
            types => r.document_types.iter().map(|t| name_of(t)).collect::<Vec<_>>().join(list_separator(page.lang)),
            tier => asked,
            tier_text => text(format!("tier_{asked}")),
            tiers,
            fields => labels(page.lang, &r.fields),
            purpose => r.purpose,
            legal_basis => r.legal_basis,
            officer => r.officer_id,
            case => r.case_id,
            duration => r.duration_days,
            retention => r.retention_days,
            preview,
        });
    }
    render(
        &state,
        &page,
        "requests.html",
        context! { requests, unlocked },
    )
}

#[derive(Deserialize)]
pub(super) struct ActivityQuery {
    #[serde(default)]
    action: String,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    agency: String,
    cursor: Option<i64>,
    #[serde(default, rename = "lang")]
    _lang: Option<String>,
}

pub(super) async fn activity_page(
    State(state): State<AppState>,
    SignedIn(page, session): SignedIn,
    Query(q): Query<ActivityQuery>,
) -> Result<Response, ApiError> {
    use crate::activity;
    let t = page.lang.messages();
    let text = |key: String| t.get(&key).cloned().unwrap_or(key);
    let filter = activity::TrailFilter {
        action: Some(q.action.clone()).filter(|a| !a.is_empty()),
        outcome: Some(q.outcome.clone())
            .filter(|o| ["ok", "refused", "failed"].contains(&o.as_str())),
        agency: q.agency.parse().ok(),
        before_seq: q.cursor,
        delegate: None,
        ..activity::TrailFilter::default()
    };
    let (events, next) = activity::list(&state, &session, &filter, 50).await?;
    let events: Vec<_> = events
        .into_iter()
        .map(|e| {
            // What a delegate did is told as hers, not as the citizen's own.
            let by_delegate = e.actor_kind == "delegate";
            let action_text = match by_delegate {
                true => t
                    .get(&format!("delegate_action_{}", e.action))
                    .cloned()
                    .unwrap_or_else(|| text(format!("action_{}", e.action))),
                false => text(format!("action_{}", e.action)),
            };
            context! {
                seq => e.seq,
                action_text,
                by_delegate,
                outcome => e.outcome.clone(),
                outcome_text => text(format!("outcome_{}", e.outcome)),
                at => e.at.clone(),
                when => e.at.get(..16).unwrap_or_default().replace('T', " "),
                agency => e.agency.as_ref().map(|a| a.name.clone()),
                level => e.agency.as_ref().map(|a| text(format!("level_{}", a.level))),
                officer => e.officer_id,
                case => e.case_id,
                tier => e.tier.map(|tier| text(format!("tier_{tier}"))),
                fields => labels(page.lang, &e.fields),
                // Decisions record the purpose code; show it by its name.
                purpose => e.purpose.map(|p| match state.catalog.purpose(&p) {
                    Some(known) => names_in(page.lang, &known.names),
                    None => p,
                }),
                documents => e.objects.join(", "),
                grant => e.grant_id.map(|g| g.to_string()),
                detail => e.detail,
            }
        })
        .collect();
    let (labels, series) = activity::reads_per_day(&state, &session, 30).await?;
    let mut chart_rows = Vec::new();
    for (agency, counts) in &series {
        for (day, count) in labels.iter().zip(counts) {
            if *count > 0 {
                chart_rows.push(context! { day => day, agency => agency, count => count });
            }
        }
    }
    let agencies: Vec<_> = crate::agencies::directory(&state)
        .await?
        .into_iter()
        .map(|a| context! { id => a.id.to_string(), name => a.name })
        .collect();
    activity::mark_seen(&state, &session).await?;
    // The keys the page's script checks proofs against, shown so the citizen can compare
    // them with the ones published elsewhere.
    let origin = state.config.audit_origin();
    let log_keys: Vec<String> = state
        .keys
        .pinned
        .iter()
        .map(|(_, key)| custodia_crypto::tlog::verifier_key(&origin, key))
        .collect();
    let witness_keys: Vec<String> = state
        .config
        .witnesses
        .iter()
        .map(|w| w.key.encode())
        .collect();
    render(
        &state,
        &page,
        "activity.html",
        context! {
            events, next, chart_rows, agencies, log_keys, witness_keys,
            quorum => state.config.witness_quorum,
            filter_action => q.action, filter_outcome => q.outcome, filter_agency => q.agency,
        },
    )
}

/// `/delegations`: appoint a delegate, accept, end, act for someone, and see what each
/// delegate did. Always the citizen's own (never acted for).
pub(super) async fn delegations_page(
    State(state): State<AppState>,
    SignedIn(page, session): SignedIn,
) -> Result<Response, ApiError> {
    use crate::status::{DelegatedAction, DelegationStatus};
    let t = page.lang.messages();
    let text = |key: String| t.get(&key).cloned().unwrap_or(key);
    let name_of = |id: &str| type_name_of(&state, page.lang, id);
    let mut delegations = Vec::new();
    for d in crate::delegations::list(&state, &session).await? {
        let principal = d.role == "principal";
        // The other side: the delegate for her principal, the principal for her delegate.
        let other = if principal { &d.delegate } else { &d.principal };
        let live = matches!(
            d.status,
            DelegationStatus::Pending | DelegationStatus::Active
        );
        // What the delegate did for me, newest first.
        let acts: Vec<_> = if principal {
            let filter = crate::activity::TrailFilter {
                delegate: Some(d.delegate.citizen_id),
                ..crate::activity::TrailFilter::default()
            };
            crate::activity::list(&state, &session, &filter, 10)
                .await?
                .0
                .into_iter()
                .map(|e| {
                    context! {
                        at => e.at.get(..16).unwrap_or_default().replace('T', " "),
                        action => t.get(&format!("delegate_action_{}", e.action)).cloned().unwrap_or(e.action),
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        delegations.push(context! {
            id => d.id.to_string(),
            principal,
            guardianship => d.guardianship_id.is_some(),
            other => other.display_name.clone().unwrap_or_else(|| text("delegation_name_unknown".into())),
            other_id => other.citizen_id.to_string(),
            status => d.status.as_str(),
            status_text => text(format!("delegation_status_{}", d.status)),
            types => d.document_types.iter().map(|t| name_of(t)).collect::<Vec<_>>().join(list_separator(page.lang)),
            actions => d.actions.iter().map(|a| text(format!("delegated_{a}"))).collect::<Vec<_>>().join(list_separator(page.lang)),
            until => d.expires_at.get(..10).unwrap_or_default().to_owned(),
            can_accept => !principal && d.status == DelegationStatus::Pending,
            can_end => live && d.guardianship_id.is_none(),
            can_act => !principal && d.status == DelegationStatus::Active,
            keyed => d.keyed,
            handover => d.handover_code.clone(),
            acts,
        });
    }
    let types: Vec<_> = state
        .catalog
        .document_types()
        .iter()
        .filter(|t| t.sharing_class != crate::catalog::SharingClass::None)
        .map(|t| context! { id => t.id, name => type_name(page.lang, t) })
        .collect();
    let actions: Vec<_> = DelegatedAction::ALL
        .iter()
        .map(|a| context! { id => a.as_str(), name => text(format!("delegated_{a}")) })
        .collect();
    render(
        &state,
        &page,
        "delegations.html",
        context! { delegations, types, actions, unlocked => session.is_unlocked() },
    )
}
