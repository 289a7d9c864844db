//! The report as a clinical lead reads it: Markdown or a standalone HTML page, built from one
//! set of tables so the two always say the same.

use super::replay::EpisodeTrace;
use super::report::{Figures, OnlyIn};
use super::Report;

/// A titled table with a line of explanation.
struct Section {
    title: String,
    note: String,
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

fn number(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_string(), |v| format!("{v}"))
}

fn signed(value: i64) -> String {
    if value > 0 {
        format!("+{value}")
    } else {
        value.to_string()
    }
}

fn signed_f(value: Option<f64>) -> String {
    match value {
        Some(v) if v > 0.0 => format!("+{v}"),
        other => number(other),
    }
}

fn side_by_side(baseline: String, candidate: String, difference: String) -> String {
    format!("{baseline} → {candidate} ({difference})")
}

fn share(value: Option<f64>) -> Option<f64> {
    value.map(|v| (v * 1000.0).round() / 10.0)
}

fn time(ms: i64, offset_minutes: i32) -> String {
    let local = ms + i64::from(offset_minutes) * 60_000;
    let day = local.div_euclid(86_400_000) as i32;
    let minutes = local.rem_euclid(86_400_000) / 60_000;
    format!(
        "{} {:02}:{:02}",
        vigil_runtime::time::format_date(day),
        minutes / 60,
        minutes % 60
    )
}

fn sections(report: &Report) -> Vec<Section> {
    let rows = report
        .comparison
        .rows
        .iter()
        .map(|row| {
            let (b, c, d) = (&row.baseline, &row.candidate, &row.difference);
            let pair = |f: fn(&Figures) -> Option<f64>, delta: Option<f64>| {
                side_by_side(number(f(b)), number(f(c)), signed_f(delta))
            };
            vec![
                row.rule_id.clone(),
                row.hospital_id.clone(),
                row.managed_patients.to_string(),
                side_by_side(
                    b.episodes.to_string(),
                    c.episodes.to_string(),
                    signed(d.episodes),
                ),
                pair(
                    |f| f.per_100_patients_per_month,
                    d.per_100_patients_per_month,
                ),
                side_by_side(
                    b.renotifications.to_string(),
                    c.renotifications.to_string(),
                    signed(d.renotifications),
                ),
                pair(|f| f.median_episode_hours, d.median_episode_hours),
                side_by_side(
                    number(share(b.resolved_unacknowledged_share)),
                    number(share(c.resolved_unacknowledged_share)),
                    signed_f(share(d.resolved_unacknowledged_share)),
                ),
                side_by_side(
                    b.night_crisis_notifications.to_string(),
                    c.night_crisis_notifications.to_string(),
                    signed(d.night_crisis_notifications),
                ),
            ]
        })
        .collect();
    let mut out = vec![Section {
        title: "Per rule and hospital: baseline → candidate (difference)".into(),
        note: "Hospital: the patients' managing hospital (`all`: every hospital). Episodes opened \
               in the period; per 100 managed patients per month; median hours from raising to \
               resolution; % of resolved episodes never acknowledged; critical notifications \
               between 22:00 and 07:00."
            .into(),
        header: vec![
            "Rule",
            "Hospital",
            "Managed patients",
            "Episodes",
            "Per 100 patients per month",
            "Re-notifications",
            "Median hours",
            "Resolved unacknowledged %",
            "Night crises",
        ],
        rows,
    }];
    let offset = report.utc_offset_minutes;
    out.extend(only_sections(
        "candidate",
        &report.comparison.only_candidate,
        offset,
    ));
    out.extend(only_sections(
        "baseline",
        &report.comparison.only_baseline,
        offset,
    ));
    out
}

fn only_sections<'a>(
    side: &'a str,
    only: &'a [OnlyIn],
    offset: i32,
) -> impl Iterator<Item = Section> + 'a {
    only.iter().map(move |rule| Section {
        title: format!("Only under the {side}: {}", rule.rule_id),
        note: format!(
            "{} episodes, {} patients with this rule's episodes under the {side} alone; the \
             earliest {} below.",
            rule.episodes,
            rule.patients,
            rule.samples.len()
        ),
        header: vec![
            "Opened",
            "Patient (pseudonym)",
            "Raised at",
            "Managed at",
            "Value",
            "Message",
        ],
        rows: rule.samples.iter().map(|e| sample(e, offset)).collect(),
    })
}

fn sample(episode: &EpisodeTrace, offset: i32) -> Vec<String> {
    vec![
        time(episode.opened_ms, offset),
        episode.patient_pseudonym.clone(),
        episode.hospital_id.clone(),
        episode.managing_hospital_id.clone(),
        number(episode.value),
        episode.message.clone(),
    ]
}

fn summary(report: &Report) -> String {
    format!(
        "Period {} to {} (exclusive, UTC{:+}h), {}. Candidate rules: {}; baseline: {}. {} events \
         replayed from {} partitions with {} acknowledgements in {} s.",
        report.from,
        report.to,
        f64::from(report.utc_offset_minutes) / 60.0,
        report.hospital.as_ref().map_or_else(
            || "every hospital".to_string(),
            |h| format!("patients managed at {h}")
        ),
        report.candidate_rules,
        report.baseline_rules,
        report.events_replayed,
        report.partitions,
        report.acknowledgements_replayed,
        report.seconds
    )
}

/// Markdown: a cell's `|` is escaped, line breaks become spaces.
pub fn markdown(report: &Report) -> String {
    let cell = |text: &str| text.replace('|', "\\|").replace(['\n', '\r'], " ");
    let mut out = format!("# Rule backtest\n\n{}\n", summary(report));
    for section in sections(report) {
        out += &format!("\n## {}\n\n{}\n\n", section.title, section.note);
        out += &format!("| {} |\n", section.header.join(" | "));
        out += &format!("|{}\n", "---|".repeat(section.header.len()));
        for row in &section.rows {
            let cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
            out += &format!("| {} |\n", cells.join(" | "));
        }
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A standalone page (no script, no outside resource).
pub fn html(report: &Report) -> String {
    let mut out = String::from(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Rule backtest</title>\
         <style>body{font:14px system-ui,sans-serif;margin:2em;color:#1a1a1a}table{border-collapse:collapse;margin:1em 0}\
         th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f3f3f3}\
         td:nth-child(n+3){font-variant-numeric:tabular-nums}</style></head><body>\n<h1>Rule backtest</h1>\n",
    );
    out += &format!("<p>{}</p>\n", escape(&summary(report)));
    for section in sections(report) {
        out += &format!(
            "<h2>{}</h2>\n<p>{}</p>\n<table><thead><tr>",
            escape(&section.title),
            escape(&section.note)
        );
        for name in &section.header {
            out += &format!("<th>{}</th>", escape(name));
        }
        out += "</tr></thead><tbody>\n";
        for row in &section.rows {
            out += "<tr>";
            for cell in row {
                out += &format!("<td>{}</td>", escape(cell));
            }
            out += "</tr>\n";
        }
        out += "</tbody></table>\n";
    }
    out + "</body></html>\n"
}
