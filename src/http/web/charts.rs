//! Charts as SVG: the citizen's reads per day, the auditors' reads and refusals by agency.

use super::*;

pub(super) async fn activity_chart(
    State(state): State<AppState>,
    SignedIn(page, session): SignedIn,
) -> Result<Response, ApiError> {
    let (labels, series) = crate::activity::reads_per_day(&state, &session, 30).await?;
    let series: Vec<(String, Vec<u32>)> = series.into_iter().collect();
    let title = page
        .lang
        .messages()
        .get("activity_chart_title")
        .cloned()
        .unwrap_or_default();
    Ok(crate::http::activity::chart_svg(&labels, &series, &title))
}

/// Reads (`reads.svg`) or refusals (`refusals.svg`) per day by agency, last 30 days.
pub(super) async fn audit_chart(
    State(state): State<AppState>,
    AuditorIn(page, session): AuditorIn,
    axum::extract::Path(kind): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    let refusals = match kind.as_str() {
        "reads.svg" => false,
        "refusals.svg" => true,
        _ => return Err(ApiError::not_found()),
    };
    let (labels, series) = crate::auditors::volume(&state, &session, refusals, 30).await?;
    let key = if refusals {
        "audit_chart_refusals"
    } else {
        "audit_chart_reads"
    };
    let title = page.lang.messages().get(key).cloned().unwrap_or_default();
    let series: Vec<(String, Vec<u32>)> = series.into_iter().collect();
    Ok(crate::http::activity::chart_svg(&labels, &series, &title))
}
