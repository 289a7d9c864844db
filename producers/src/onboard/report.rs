//! A data profile as a readable report (Markdown and HTML from one outline) and as a draft code
//! table the hospital can review.

use std::fmt::Write;

use super::profile::DataProfile;
use crate::edge::CodeTable;

/// One section of the report: a heading, sentences, and at most one table.
struct Section {
    title: &'static str,
    lines: Vec<String>,
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Section {
    fn new(title: &'static str) -> Self {
        Section {
            title,
            lines: Vec::new(),
            header: Vec::new(),
            rows: Vec::new(),
        }
    }
}

fn count(n: u64) -> String {
    // Thousands grouped the way both zh-CN and en read them.
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn outline(profile: &DataProfile) -> Vec<Section> {
    vec![
        summary_section(profile),
        rejected_section(profile),
        tables_section(profile),
        codes_section(profile),
        units_section(profile),
        time_section(profile),
        identity_section(profile),
    ]
}

fn summary_section(profile: &DataProfile) -> Section {
    let mut summary = Section::new("Summary");
    summary.lines.push(format!(
        "{} records read ({} tombstones); the edge would accept {} ({:.1}% of the change events) and reject {}.",
        count(profile.records),
        count(profile.tombstones),
        count(profile.accepted),
        profile.accepted_share() * 100.0,
        count(profile.rejected_total()),
    ));
    if profile.other_hospitals > 0 {
        summary.lines.push(format!(
            "{} records of other hospitals in the input were left out.",
            count(profile.other_hospitals)
        ));
    }
    let ops: Vec<String> = profile
        .operations
        .iter()
        .map(|(op, n)| format!("{op} {}", count(*n)))
        .collect();
    summary
        .lines
        .push(format!("Operations: {}.", ops.join(", ")));
    summary
}

fn rejected_section(profile: &DataProfile) -> Section {
    let mut rejected = Section::new("What the edge would reject");
    rejected.header = vec!["reason", "records", "example"];
    for (reason, n) in &profile.rejected {
        let example = profile
            .rejection_examples
            .get(reason)
            .cloned()
            .unwrap_or_default();
        rejected.rows.push(vec![reason.clone(), count(*n), example]);
    }
    if rejected.rows.is_empty() {
        rejected.lines.push("Nothing.".into());
    }
    rejected
}

fn tables_section(profile: &DataProfile) -> Section {
    let mut tables = Section::new("Tables and columns");
    tables.header = vec![
        "table",
        "kind",
        "records",
        "columns Vigil reads that never came",
        "columns Vigil does not read",
    ];
    for (name, table) in &profile.tables {
        tables.rows.push(vec![
            name.clone(),
            table.kind.clone(),
            count(table.records),
            table.missing_columns.join(", "),
            table.unread_columns.join(", "),
        ]);
    }
    tables
}

fn codes_section(profile: &DataProfile) -> Section {
    let mut codes = Section::new("Local codes without a mapping");
    codes.lines.push(
        "Suggestions come from the bundled terminology: concepts whose units accept the values \
         seen and whose plausible range holds at least 90% of them. Verify each before use."
            .into(),
    );
    codes.header = vec![
        "lab code",
        "records",
        "units",
        "example values",
        "suggested LOINC",
    ];
    for (code, unknown) in &profile.unknown_lab_codes {
        let units: Vec<String> = unknown
            .units
            .iter()
            .map(|(u, n)| format!("{u} ({n})"))
            .collect();
        let examples: Vec<String> = unknown.examples.iter().map(|v| v.to_string()).collect();
        let suggested: Vec<String> = unknown
            .suggestions
            .iter()
            .map(|s| format!("{} {} ({:.0}%)", s.loinc, s.name, s.plausible_share * 100.0))
            .collect();
        codes.rows.push(vec![
            code.clone(),
            count(unknown.records),
            units.join(", "),
            examples.join(", "),
            if suggested.is_empty() {
                "none fits".into()
            } else {
                suggested.join("; ")
            },
        ]);
    }
    for (code, n) in &profile.unmapped_drug_codes {
        codes.lines.push(format!("Drug code {code}: {} prescriptions without an ATC code (accepted, counted as unmapped).", count(*n)));
    }
    if profile.unknown_lab_codes.is_empty() && profile.unmapped_drug_codes.is_empty() {
        codes.lines.push("Every code seen has a mapping.".into());
    }
    codes
}

fn units_section(profile: &DataProfile) -> Section {
    let mut units = Section::new("Units that differ from the code table");
    units.header = vec!["code: unit sent → unit in the code table", "records"];
    for (what, n) in &profile.unit_differences {
        units.rows.push(vec![what.clone(), count(*n)]);
    }
    units.lines.push(if profile.unit_differences.is_empty() {
        "None.".into()
    } else {
        "The edge converts these (they are accepted); a unit it cannot convert is rejected as unexpected_unit.".into()
    });
    units
}

fn time_section(profile: &DataProfile) -> Section {
    let mut time = Section::new("Clocks and order");
    time.lines.push(format!(
        "{} changes arrived more than an hour older than the newest change of their table (out of order).",
        count(profile.out_of_order_changes)
    ));
    time.lines
        .push(match profile.clinical_after_change_median_hours {
            Some(hours) => format!(
            "{} facts have a clinical time after the database recorded them (median {hours} h): \
             check the time zone the local-time columns are read in.",
            count(profile.clinical_after_change)
        ),
            None => "No clinical time is after the time the database recorded it.".into(),
        });
    let invalid_dates = profile.rejected.get("invalid_date").copied().unwrap_or(0);
    time.lines.push(format!(
        "{} times outside 1990..tomorrow.",
        count(invalid_dates)
    ));
    time
}

fn identity_section(profile: &DataProfile) -> Section {
    let mut identity = Section::new("Identifiers and duplicates");
    let missing = profile
        .rejected
        .get("missing_patient_identifier")
        .copied()
        .unwrap_or(0);
    let invalid = profile
        .rejected
        .get("invalid_patient_identifier")
        .copied()
        .unwrap_or(0);
    identity.lines.push(format!(
        "{} records without a resident identity number, {} with one that fails its check character.",
        count(missing),
        count(invalid)
    ));
    identity.lines.push(format!(
        "{} records arrived more than once, byte for byte (the edge's output is idempotent; \
         the repeats cost bandwidth only).",
        count(profile.duplicate_records)
    ));
    identity
}

fn title(profile: &DataProfile, source: &str) -> String {
    format!(
        "Data profile of {} ({}, {} connector) from {source}",
        profile.hospital, profile.vendor, profile.connector
    )
}

/// The report as Markdown.
pub fn render_markdown(profile: &DataProfile, source: &str) -> String {
    let mut out = format!("# {}\n", title(profile, source));
    for section in outline(profile) {
        let _ = write!(out, "\n## {}\n\n", section.title);
        for line in &section.lines {
            let _ = writeln!(out, "{line}\n");
        }
        if section.rows.is_empty() {
            continue;
        }
        let cell = |text: &str| text.replace('|', "\\|");
        let _ = writeln!(out, "| {} |", section.header.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(section.header.len()));
        for row in &section.rows {
            let cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
            let _ = writeln!(out, "| {} |", cells.join(" | "));
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

/// The report as one self-contained HTML page.
pub fn render_html(profile: &DataProfile, source: &str) -> String {
    let title = escape(&title(profile, source));
    let mut out = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;max-width:70em;margin:2em auto}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}</style>\
         </head><body>\n<h1>{title}</h1>\n"
    );
    for section in outline(profile) {
        let _ = writeln!(out, "<h2>{}</h2>", escape(section.title));
        for line in &section.lines {
            let _ = writeln!(out, "<p>{}</p>", escape(line));
        }
        if section.rows.is_empty() {
            continue;
        }
        out.push_str("<table><tr>");
        for h in &section.header {
            let _ = write!(out, "<th>{}</th>", escape(h));
        }
        out.push_str("</tr>\n");
        for row in &section.rows {
            out.push_str("<tr>");
            for c in row {
                let _ = write!(out, "<td>{}</td>", escape(c));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n");
    }
    out.push_str("</body></html>\n");
    out
}

/// The hospital's code table with a line for every unknown lab code: the best suggestion
/// filled in but commented out, so nothing is mapped until someone has checked it.
pub fn draft_code_table(profile: &DataProfile, codes: &CodeTable) -> String {
    let mut out = format!(
        "# Draft code table for {} from a data profile. Mapped codes are as in force; each\n\
         # unknown code has a suggestion, commented out: check it, then uncomment.\n\n[lab]\n",
        profile.hospital
    );
    for (code, mapped) in &codes.lab {
        let _ = writeln!(
            out,
            "{code} = {{ loinc = \"{}\", unit = \"{}\" }}",
            mapped.loinc, mapped.unit
        );
    }
    for (code, unknown) in &profile.unknown_lab_codes {
        let unit = unknown
            .units
            .keys()
            .next()
            .map(String::as_str)
            .unwrap_or("");
        match unknown.suggestions.first() {
            Some(best) => {
                let _ = writeln!(
                    out,
                    "# {code} = {{ loinc = \"{}\", unit = \"{unit}\" }}  # {} — {} records",
                    best.loinc, best.name, unknown.records
                );
            }
            None => {
                let _ = writeln!(out, "# {code} = {{ loinc = \"?\", unit = \"{unit}\" }}  # no suggestion — {} records", unknown.records);
            }
        }
    }
    out.push_str("\n[drug]\n");
    for (code, atc) in &codes.drug {
        let _ = writeln!(out, "{code} = \"{atc}\"");
    }
    for code in profile.unmapped_drug_codes.keys() {
        let _ = writeln!(out, "# {code} = \"?\"  # no ATC code yet");
    }
    if !codes.diagnosis.is_empty() {
        out.push_str("\n[diagnosis]\n");
        for (code, icd) in &codes.diagnosis {
            let _ = writeln!(out, "{code} = \"{icd}\"");
        }
    }
    out
}
