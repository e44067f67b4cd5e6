//! The citizen's trail as JSON (`GET /me/activity`) and the chart of reads per day.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use super::extract::Authed;
#[allow(unused_imports)]
use super::openapi::{CitizenErrors, Problem};
use crate::activity::{self, TrailFilter};
use crate::error::invalid;
use crate::ids::AgencyId;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(activity))
}

/// Query parameters of the trail.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TrailQuery {
    /// One action (`document.read`, `grant.revoke`…) or `reads` for every read.
    pub action: Option<String>,
    /// One agency's id.
    pub agency: Option<AgencyId>,
    /// `ok`, `refused` or `failed`.
    #[param(pattern = "^(ok|refused|failed)?$")]
    pub outcome: Option<String>,
    /// From (RFC 3339).
    #[param(schema_with = super::params::time_or_empty)]
    pub since: Option<String>,
    /// Until (RFC 3339, exclusive).
    #[param(schema_with = super::params::time_or_empty)]
    pub until: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(minimum = 1)]
    pub cursor: Option<i64>,
    /// 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
}

impl TrailQuery {
    /// The domain filter, with times checked.
    pub fn filter(&self) -> Result<TrailFilter, ApiError> {
        if self.cursor.is_some_and(|c| c < 1) {
            return Err(invalid("cursor", "must be a next_cursor this list returned").into());
        }
        Ok(TrailFilter {
            action: self.action.clone().filter(|a| !a.is_empty()),
            agency: self.agency,
            outcome: super::params::outcome(self.outcome.as_deref())?,
            since_ms: super::params::time("since", self.since.as_deref())?,
            until_ms: super::params::time("until", self.until.as_deref())?,
            before_seq: self.cursor,
            delegate: None,
        })
    }
}

#[utoipa::path(
    get,
    path = "/me/activity",
    tag = "citizen",
    summary = "Every event concerning the signed-in citizen, newest first: who read what, when, why",
    params(TrailQuery),
    security(("citizen_session" = [])),
    responses((status = 200, description = "{events, next_cursor}", body = Object, example = json!({"events":[{"seq":42,"at":"2026-11-28T09:10:00Z","action":"document.read","outcome":"ok","actor_kind":"agency","agency":{"id":"3f0c7b2a-0000-4000-8000-000000000003","name":"北京市市场监督管理局","level":"provincial"},"officer_id":"officer-7","case_id":"C-1","objects":["5a3e0c1e-0000-4000-8000-000000000002"],"grant_id":"9d2150c4-0000-4000-8000-000000000001","purpose":"企业设立登记","tier":"fields","fields":["company_name"],"detail":null}],"next_cursor":null})), CitizenErrors)
)]
async fn activity(
    State(state): State<AppState>,
    Authed(session): Authed,
    Query(q): Query<TrailQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(invalid("limit", "must be from 1 to 200").into());
    }
    let (events, next) = activity::list(&state, &session, &q.filter()?, limit).await?;
    Ok(Json(
        serde_json::json!({ "events": events, "next_cursor": next }),
    ))
}

/// A stacked bar chart of reads per day by agency, as SVG (shown as an image, so it needs
/// no script and no inline style under the page's CSP). Colours are told apart by the
/// legend and by a table beside the chart.
pub fn chart_svg(labels: &[String], series: &[(String, Vec<u32>)], title: &str) -> Response {
    const W: usize = 720;
    const H: usize = 260;
    const LEFT: usize = 48;
    const BOTTOM: usize = 40;
    const TOP: usize = 30;
    const PALETTE: [&str; 6] = [
        "#1f5fa8", "#d0661b", "#2f8f4e", "#8c3fa3", "#b3263a", "#5c6b73",
    ];
    let colour = |k: usize| PALETTE.get(k % PALETTE.len()).copied().unwrap_or("#333");
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let totals: Vec<u32> = (0..labels.len())
        .map(|i| {
            series
                .iter()
                .map(|(_, c)| c.get(i).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let max = totals.iter().copied().max().unwrap_or(0).max(1);
    let plot_h = H - TOP - BOTTOM;
    let step = (W - LEFT - 10) as f64 / labels.len().max(1) as f64;
    let bar = (step * 0.7).max(1.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {}\" role=\"img\" aria-label=\"{}\" font-family=\"sans-serif\" font-size=\"14\">",
        H + 20 * series.len().div_ceil(3),
        esc(title)
    );
    svg.push_str(&format!("<title>{}</title>", esc(title)));
    // Axis and gridlines at whole counts: 0, the middle one (when there is one), max.
    let mut ticks = vec![0, max];
    if max >= 2 {
        ticks.insert(1, max / 2);
    }
    for value in ticks {
        let frac = f64::from(value) / f64::from(max);
        let y = TOP as f64 + plot_h as f64 * (1.0 - frac);
        svg.push_str(&format!(
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ccc\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#333\">{value}</text>",
            W - 10,
            LEFT - 4,
            y + 4.0
        ));
    }
    for (i, label) in labels.iter().enumerate() {
        let x = LEFT as f64 + step * i as f64 + (step - bar) / 2.0;
        let mut base = 0u32;
        for (k, (_, counts)) in series.iter().enumerate() {
            let c = counts.get(i).copied().unwrap_or(0);
            if c == 0 {
                continue;
            }
            let y0 = TOP as f64 + plot_h as f64 * (1.0 - f64::from(base) / f64::from(max));
            let y1 = TOP as f64 + plot_h as f64 * (1.0 - f64::from(base + c) / f64::from(max));
            svg.push_str(&format!(
                "<rect x=\"{x:.1}\" y=\"{y1:.1}\" width=\"{bar:.1}\" height=\"{:.1}\" fill=\"{}\"/>",
                y0 - y1,
                colour(k)
            ));
            base += c;
        }
        if labels.len() <= 10 || i % (labels.len() / 7).max(1) == 0 {
            svg.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\" fill=\"#333\">{}</text>",
                x + bar / 2.0,
                H - BOTTOM + 14,
                esc(label)
            ));
        }
    }
    for (k, (name, _)) in series.iter().enumerate() {
        let x = LEFT + (k % 3) * 220;
        let y = H - 8 + 20 * (k / 3);
        svg.push_str(&format!(
            "<rect x=\"{x}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{}\" y=\"{y}\" fill=\"#333\">{}</text>",
            y - 10,
            colour(k),
            x + 16,
            esc(name)
        ));
    }
    svg.push_str("</svg>");
    let mut response = svg.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("image/svg+xml; charset=utf-8"),
    );
    response
}
