//! `socbridge export --format ocsf`: incidents and their findings as OCSF 1.8.0 NDJSON, one
//! document per line: for each incident, its Incident Finding (class 2005), then one
//! Detection Finding (class 2004) per finding, by time observed. Incidents come most recently
//! active first (the order of `incidents list`), read in pages by keyset, so the export
//! streams in constant memory however large the store is. The mapping is `socbridge_ocsf`'s.
//!
//! Arguments are checked before the store is opened: an unknown format, a bad `--since` or an
//! unknown tenant is bad input (exit 2). With `--out`, the lines go to `FILE.partial`, renamed
//! to `FILE` once complete, so a failed export never leaves a truncated file in its place.

use crate::cli::{Cli, ExportArgs};
use crate::{bad_input, incidents::parse_since, open_store};
use anyhow::Context as _;
use socbridge_model::{IncidentFilter, Timestamp};
use socbridge_store::Store;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The formats `--format` takes.
const FORMATS: &[&str] = &["ocsf"];

/// Incidents read per page.
const PAGE: u32 = 500;

/// A progress line on stderr every this many incidents.
const PROGRESS_EVERY: u64 = 1_000;

/// What an export wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub incidents: u64,
    pub findings: u64,
}

pub async fn run(cli: &Cli, args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let format = args.format.trim().to_ascii_lowercase();
    if !FORMATS.contains(&format.as_str()) {
        return Err(bad_input(format!(
            "--format: `{}` is not a supported export format (supported: {})",
            args.format,
            FORMATS.join(", ")
        )));
    }
    let since = args
        .since
        .as_deref()
        .map(|s| parse_since(s, Timestamp::now()))
        .transpose()?;
    let tenants: Vec<String> = args
        .tenant
        .iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();

    let store = open_store(cli).await?;
    let result = export(&store, since, &tenants, args.out.as_deref()).await;
    store.close().await;
    let counts = result?;
    eprintln!(
        "exported {} incident(s) and {} finding(s) as OCSF 1.8.0",
        counts.incidents, counts.findings
    );
    Ok(ExitCode::SUCCESS)
}

async fn export(
    store: &Store,
    since: Option<Timestamp>,
    tenants: &[String],
    out: Option<&Path>,
) -> anyhow::Result<Counts> {
    if !tenants.is_empty() {
        let known: Vec<String> = store
            .list_tenants()
            .await?
            .into_iter()
            .map(|t| t.name)
            .collect();
        if let Some(missing) = tenants.iter().find(|t| !known.contains(t)) {
            return Err(bad_input(format!("--tenant: no tenant `{missing}`")));
        }
    }
    let filter = IncidentFilter {
        tenants: tenants.to_vec(),
        since,
        limit: Some(PAGE),
        ..IncidentFilter::default()
    };
    match out {
        None => {
            let stdout = std::io::stdout();
            let mut w = BufWriter::new(stdout.lock());
            let counts = write_ocsf(store, filter, &mut w).await?;
            w.flush().context("cannot write to stdout")?;
            Ok(counts)
        }
        Some(path) => {
            let partial = partial_path(path);
            let file = std::fs::File::create(&partial)
                .with_context(|| format!("cannot create {}", partial.display()))?;
            let mut w = BufWriter::new(file);
            let written = async {
                let counts = write_ocsf(store, filter, &mut w).await?;
                w.flush()
                    .with_context(|| format!("cannot write {}", partial.display()))?;
                w.get_ref()
                    .sync_all()
                    .with_context(|| format!("cannot write {}", partial.display()))?;
                anyhow::Ok(counts)
            }
            .await;
            match written {
                Ok(counts) => {
                    std::fs::rename(&partial, path).with_context(|| {
                        format!("cannot move {} to {}", partial.display(), path.display())
                    })?;
                    Ok(counts)
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&partial);
                    Err(e)
                }
            }
        }
    }
}

/// `FILE.partial` next to `FILE`.
fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

/// Writes every incident the filter matches, page by page, with its findings.
async fn write_ocsf(
    store: &Store,
    mut filter: IncidentFilter,
    w: &mut impl Write,
) -> anyhow::Result<Counts> {
    let mut counts = Counts::default();
    loop {
        let page = store.list_incidents(&filter).await?;
        let Some(last) = page.last() else { break };
        filter.before = Some((last.updated_at, last.id));
        let full = page.len() >= PAGE as usize;
        for view in &page {
            // Removed since the page was read (a tenant removed mid-export): nothing to write.
            let Some(detail) = store.get_incident(view.id, None).await? else {
                continue;
            };
            write_line(w, &socbridge_ocsf::incident_finding(&detail))?;
            for doc in socbridge_ocsf::detection_findings(&detail) {
                write_line(w, &doc)?;
                counts.findings += 1;
            }
            counts.incidents += 1;
            if counts.incidents % PROGRESS_EVERY == 0 {
                eprintln!(
                    "exported {} incident(s), {} finding(s) so far",
                    counts.incidents, counts.findings
                );
            }
        }
        if !full {
            break;
        }
    }
    Ok(counts)
}

fn write_line(w: &mut impl Write, doc: &serde_json::Value) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *w, doc).context("cannot write the export")?;
    w.write_all(b"\n").context("cannot write the export")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_sits_next_to_the_file() {
        assert_eq!(
            partial_path(Path::new("/tmp/x/out.ndjson")),
            PathBuf::from("/tmp/x/out.ndjson.partial")
        );
    }
}
