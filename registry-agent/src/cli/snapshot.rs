//! `registry snapshot save|restore|inspect`: Consul's snapshot commands over
//! `GET`/`PUT /v1/snapshot`, with the same messages and exit codes.
//!
//! `save` writes the archive to `FILE.unverified` (mode 0600, synced), reads it back and
//! checks all of it (checksums, metadata, the state decodes), and only then renames it over
//! `FILE`: an interrupted or corrupt download never leaves a `FILE` behind. `inspect` reads
//! a file with the same checks and prints its metadata and what each table holds.

use super::http::{Client, HttpFlags, ServerFlags};
use super::ui::Ui;
use clap::{Args, Subcommand};
use registry_server::snapshot::{self as archive, table_stats, Archive, TableStat, MAX_ARCHIVE};
use reqwest::Method;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// `snapshot` subcommands.
#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Saves an atomic, point-in-time snapshot of the servers' state (catalog, KV entries,
    /// sessions) to FILE, after verifying it.
    #[command(long_about = SAVE_HELP)]
    Save(SaveArgs),
    /// Restores the servers' state from a snapshot FILE, replacing all of it.
    #[command(long_about = RESTORE_HELP)]
    Restore(RestoreArgs),
    /// Displays the metadata of a snapshot FILE and what each of its tables holds.
    #[command(long_about = INSPECT_HELP)]
    Inspect(InspectArgs),
}

const SAVE_HELP: &str = "\
Retrieves an atomic, point-in-time snapshot of the state of the servers, which includes \
key/value entries, the service catalog and sessions, and saves it to FILE.

The archive is first written to FILE.unverified, read back and verified (its SHA-256 sums, \
its metadata, and that its state decodes); only then is it renamed to FILE.

To save a snapshot from the leader:

    $ registry snapshot save backup.snap

To save a possibly stale snapshot from any server (useful without a leader):

    $ registry snapshot save -stale backup.snap";

const RESTORE_HELP: &str = "\
Restores an atomic, point-in-time snapshot of the state of the servers, which includes \
key/value entries, the service catalog and sessions. The whole state is replaced by the \
snapshot's, with its indexes; blocking queries return at once.

The servers check the whole archive before they change anything: a corrupt or truncated \
file is refused and the state is left as it was. Snapshots of up to 256 MiB (compressed and \
uncompressed) can be restored.

Restoring is meant for recovering from a disaster, into a fresh cluster:

    $ registry snapshot restore backup.snap";

const INSPECT_HELP: &str = "\
Displays information about a snapshot file: its ID, size, index, term and format version, \
then the number of records and the bytes of each table, largest first. The file is verified \
as a restore would verify it. No agent is contacted.

    $ registry snapshot inspect backup.snap";

/// `snapshot save`.
#[derive(Args, Debug)]
pub struct SaveArgs {
    #[command(flatten)]
    http: HttpFlags,
    #[command(flatten)]
    server: ServerFlags,
    /// FILE: where to write the snapshot.
    #[arg(value_name = "FILE")]
    args: Vec<String>,
}

/// `snapshot restore`.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    #[command(flatten)]
    http: HttpFlags,
    #[command(flatten)]
    server: ServerFlags,
    /// FILE: the snapshot to restore.
    #[arg(value_name = "FILE")]
    args: Vec<String>,
}

/// `snapshot inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Output format: `pretty` (tables) or `json`.
    #[arg(long, default_value = "pretty", value_name = "FORMAT")]
    format: String,
    /// FILE: the snapshot to inspect.
    #[arg(value_name = "FILE")]
    args: Vec<String>,
}

/// Runs one `snapshot` subcommand.
pub async fn run(command: SnapshotCommand, ui: &mut Ui<'_>) -> i32 {
    match command {
        SnapshotCommand::Save(args) => save(args, ui).await,
        SnapshotCommand::Restore(args) => restore(args, ui).await,
        SnapshotCommand::Inspect(args) => inspect(args, ui),
    }
}

/// The one FILE argument, or Consul's complaint.
fn one_file(args: &[String]) -> Result<PathBuf, String> {
    match args {
        [] => Err("Missing FILE argument".to_string()),
        [file] => Ok(PathBuf::from(file)),
        more => Err(format!(
            "Too many arguments (expected 1, got {})",
            more.len()
        )),
    }
}

/// Reads a snapshot file, refusing one larger than any server would take.
fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut data = Vec::new();
    file.take(MAX_ARCHIVE as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if data.len() > MAX_ARCHIVE {
        return Err(format!(
            "{}: larger than the {MAX_ARCHIVE}-byte limit of a snapshot",
            path.display()
        ));
    }
    Ok(data)
}

/// `FILE.unverified`, beside FILE.
fn unverified_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".unverified");
    PathBuf::from(name)
}

/// Writes `data` to `path` (created or truncated, mode 0600) and syncs it.
fn write_synced(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Syncs the directory holding `file`, so a rename into it is durable.
fn sync_dir(file: &Path) {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

async fn save(args: SaveArgs, ui: &mut Ui<'_>) -> i32 {
    let file = match one_file(&args.args) {
        Ok(f) => f,
        Err(e) => return ui.fail(&e),
    };
    let client = match Client::new(&args.http, Some(&args.server)) {
        Ok(c) => c,
        Err(e) => return ui.fail(&format!("Error connecting to Consul agent: {e}")),
    };
    let snap = match client.get_ok("/v1/snapshot", &[]).await {
        Ok(r) => r.0.body,
        Err(e) => return ui.fail(&format!("Error saving snapshot: {e}")),
    };
    let unverified = unverified_path(&file);
    if let Err(e) = write_synced(&unverified, &snap) {
        let _ = std::fs::remove_file(&unverified);
        return ui.fail(&format!("Error writing unverified snapshot file: {e}"));
    }
    drop(snap);
    let checked =
        read_file(&unverified).and_then(|data| archive::verify(&data).map_err(|e| e.to_string()));
    let index = match checked {
        Ok((archive, _)) => archive.meta.index,
        Err(e) => {
            let _ = std::fs::remove_file(&unverified);
            return ui.fail(&format!("Error verifying snapshot file: {e}"));
        }
    };
    if let Err(e) = std::fs::rename(&unverified, &file) {
        let _ = std::fs::remove_file(&unverified);
        return ui.fail(&format!(
            "Error renaming {:?} to {:?}: {e}",
            unverified.display().to_string(),
            file.display().to_string()
        ));
    }
    sync_dir(&file);
    ui.output(&format!("Saved and verified snapshot to index {index}"));
    0
}

async fn restore(args: RestoreArgs, ui: &mut Ui<'_>) -> i32 {
    let file = match one_file(&args.args) {
        Ok(f) => f,
        Err(e) => return ui.fail(&e),
    };
    let data = match read_file(&file) {
        Ok(d) => d,
        Err(e) => return ui.fail(&format!("Error opening snapshot file: {e}")),
    };
    let client = match Client::new(&args.http, Some(&args.server)) {
        Ok(c) => c,
        Err(e) => return ui.fail(&format!("Error connecting to Consul agent: {e}")),
    };
    match client
        .send(Method::PUT, "/v1/snapshot", &[], Some(data))
        .await
    {
        Ok(r) if r.status == 200 => {
            ui.output("Restored snapshot");
            0
        }
        Ok(r) => ui.fail(&format!("Error restoring snapshot: {}", r.status_error())),
        Err(e) => ui.fail(&format!("Error restoring snapshot: {e}")),
    }
}

fn inspect(args: InspectArgs, ui: &mut Ui<'_>) -> i32 {
    let file = match one_file(&args.args) {
        Ok(f) => f,
        Err(e) => return ui.fail(&e),
    };
    if args.format != "pretty" && args.format != "json" {
        return ui.fail(&format!("Unknown format: {}", args.format));
    }
    let data = match read_file(&file) {
        Ok(d) => d,
        Err(e) => return ui.fail(&format!("Error opening snapshot file: {e}")),
    };
    let (archive, db) = match archive::verify(&data) {
        Ok(v) => v,
        Err(e) => return ui.fail(&format!("Error verifying snapshot: {e}")),
    };
    let stats = table_stats(&db);
    if args.format == "json" {
        let out = serde_json::json!({
            "Meta": archive.meta,
            "Stats": stats,
            "TotalSize": archive.state.len(),
        });
        match serde_json::to_string_pretty(&out) {
            Ok(text) => ui.output(&text),
            Err(e) => return ui.fail(&format!("Failed to encode output: {e}")),
        }
        return 0;
    }
    ui.output(&pretty(&archive, &stats));
    0
}

/// Consul's `ByteSize`: `0`, `512B`, `4.7KB`, `1MB`.
pub fn byte_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TB"),
        (1 << 30, "GB"),
        (1 << 20, "MB"),
        (1 << 10, "KB"),
    ];
    if bytes == 0 {
        return "0".to_string();
    }
    for (scale, unit) in UNITS {
        if bytes >= scale {
            let text = format!("{:.1}", bytes as f64 / scale as f64);
            return format!("{}{unit}", text.trim_end_matches(".0"));
        }
    }
    format!("{bytes}B")
}

/// Go's `tabwriter.NewWriter(w, 8, 8, 6, ' ', 0)` over rows whose every cell ends in a tab
/// but the last: each such cell padded to the widest of its column plus six, at least 8.
fn tabwrite(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            let w = (cell.chars().count() + 6).max(8);
            match widths.get_mut(i) {
                Some(have) => *have = (*have).max(w),
                None => widths.push(w),
            }
        }
    }
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if i + 1 < row.len() {
                    let pad = widths[i].saturating_sub(cell.chars().count());
                    line.push_str(&" ".repeat(pad));
                }
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `pretty` output: metadata, then the tables (as Consul lays out its own).
fn pretty(archive: &Archive, stats: &[TableStat]) -> String {
    let m = &archive.meta;
    let meta = tabwrite(&[
        vec![" ID".into(), m.id.clone()],
        vec![" Size".into(), m.size.to_string()],
        vec![" Index".into(), m.index.to_string()],
        vec![" Term".into(), m.term.to_string()],
        vec![" Version".into(), m.version.to_string()],
    ]);
    let dashes = || {
        vec![
            " ----".to_string(),
            "----".to_string(),
            "----".to_string(),
            String::new(),
        ]
    };
    let mut rows = vec![
        vec![
            " Type".to_string(),
            "Count".to_string(),
            "Size".to_string(),
            String::new(),
        ],
        dashes(),
    ];
    for s in stats {
        rows.push(vec![
            format!(" {}", s.name),
            s.count.to_string(),
            byte_size(s.size),
            String::new(),
        ]);
    }
    rows.push(dashes());
    rows.push(vec![
        " Total".to_string(),
        String::new(),
        byte_size(archive.state.len() as u64),
        String::new(),
    ]);
    format!("{meta}\n\n{}", tabwrite(&rows))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use registry_server::snapshot::Meta;

    #[test]
    fn byte_sizes_read_like_consuls() {
        assert_eq!(byte_size(0), "0");
        assert_eq!(byte_size(313), "313B");
        assert_eq!(byte_size(1024), "1KB");
        assert_eq!(byte_size(4863), "4.7KB");
        assert_eq!(byte_size(3 * 1024 * 1024 / 2), "1.5MB");
    }

    #[test]
    fn pretty_output_aligns_like_tabwriter() {
        let archive = Archive {
            meta: Meta {
                version: 1,
                id: "2-11-1602262512378".into(),
                index: 11,
                term: 2,
                size: 4863,
            },
            state: vec![0; 4863],
        };
        let stats = vec![TableStat {
            name: "KVS",
            count: 3,
            size: 1600,
        }];
        let out = pretty(&archive, &stats);
        let lines: Vec<&str> = out.lines().collect();
        let pad = |cell: &str, width: usize| format!("{cell}{}", " ".repeat(width - cell.len()));
        // The first column is the widest cell (" Version", 8) plus six.
        assert_eq!(lines[0], format!("{}2-11-1602262512378", pad(" ID", 14)));
        assert_eq!(lines[4], format!("{}1", pad(" Version", 14)));
        assert_eq!(lines[5], "");
        // Every cell ends in a tab, so every column is padded, the last one too.
        let row = |a: &str, b: &str, c: &str| format!("{}{}{}", pad(a, 12), pad(b, 11), pad(c, 11));
        assert_eq!(lines[6], row(" Type", "Count", "Size"));
        assert_eq!(lines[7], row(" ----", "----", "----"));
        assert_eq!(lines[8], row(" KVS", "3", "1.6KB"));
        assert_eq!(lines[10], row(" Total", "", "4.7KB"));
    }

    #[test]
    fn file_arguments() {
        assert_eq!(one_file(&[]).unwrap_err(), "Missing FILE argument");
        assert_eq!(
            one_file(&["a".into(), "b".into()]).unwrap_err(),
            "Too many arguments (expected 1, got 2)"
        );
        assert_eq!(
            unverified_path(Path::new("dir/backup.snap")),
            PathBuf::from("dir/backup.snap.unverified")
        );
    }
}
